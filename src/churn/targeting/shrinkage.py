"""Segment effects shrunk toward their play's pooled effect (empirical Bayes).

A play's three segments split its few hundred control rows three ways, so one segment's save
rate can be far off by chance (a negative save rate for a play that cannot hurt, or a
configured guess where a segment has too few controls). Each addressed segment's estimate is
replaced by the precision-weighted mean of itself and the play's pooled addressed estimate,

    shrunk = (e_s / se_s^2 + e_pool / tau^2) / (1 / se_s^2 + 1 / tau^2),

with ``tau^2`` the between-segment variance of the true effects around their play's pooled
effect, estimated once over every play by the DerSimonian-Laird moment estimator
(DerSimonian & Laird 1986; the James-Stein idea of Efron & Morris 1975). With ``tau^2 = 0`` all
segments take the pooled effect; a very precise segment keeps its own. An addressed segment
with too few rows takes the pooled estimate when that one is trusted.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from churn.targeting.uplift import (
    ADDRESSED_SEGMENTS,
    SOURCE_LOGGED,
    Estimate,
    PlayEffect,
)

#: Source of a segment effect shrunk toward (or taken from) its play's pooled effect.
SOURCE_SHRUNK = "logged actions (shrunk to the play's pooled effect)"


def between_segment_variance(estimates: np.ndarray, errors: np.ndarray, groups: np.ndarray,
                             centres: dict[object, float]) -> float:
    """DerSimonian-Laird ``tau^2`` of segment effects around their group's centre.

    Args:
        estimates: Segment estimates.
        errors: Their standard errors (> 0).
        groups: Group (play) of each estimate.
        centres: Group -> the pooled effect the segments deviate from.

    Returns:
        ``max(0, (Q - df) / (sum(w) - sum(w^2) / sum(w)))``, ``Q = sum(w (e - centre)^2)``,
        ``w = 1 / se^2``, ``df`` the number of estimates less the number of groups; 0 when
        there are too few estimates.
    """
    e = np.asarray(estimates, dtype=np.float64)
    w = 1.0 / np.asarray(errors, dtype=np.float64) ** 2
    centre = np.array([centres[g] for g in groups], dtype=np.float64)
    df = len(e) - len(set(groups))
    if df <= 0:
        return 0.0
    q = float((w * (e - centre) ** 2).sum())
    denominator = float(w.sum() - (w**2).sum() / w.sum())
    return max(0.0, (q - df) / denominator) if denominator > 0 else 0.0


def shrink_effects(effects: list[PlayEffect], pooled: dict[str, Estimate],
                   min_rows_per_arm: int, max_standard_error: float = np.inf
                   ) -> list[PlayEffect]:
    """The addressed segments' effects shrunk toward each play's pooled addressed estimate.

    Args:
        effects: :func:`~churn.targeting.uplift.estimate_play_effects` output.
        pooled: Play -> estimate on all its addressed logged rows (both dose segments).
        min_rows_per_arm: Rows per arm for a pooled estimate to be trusted.
        max_standard_error: Largest standard error of a trusted pooled estimate.

    Returns:
        The effects, addressed segments replaced where the play's pooled estimate is trusted
        (source :data:`SOURCE_SHRUNK`); the not-addressed segments and the plays without a
        trusted pooled estimate unchanged.
    """
    trusted = {play: e for play, e in pooled.items()
               if min(e.treated_rows, e.control_rows) >= min_rows_per_arm
               and 0 < e.standard_error <= max_standard_error}
    segment_rows = [e for e in effects if e.segment in ADDRESSED_SEGMENTS
                    and e.source == SOURCE_LOGGED and e.play in trusted
                    and e.standard_error]
    tau2 = between_segment_variance(
        np.array([e.save_rate for e in segment_rows]),
        np.array([e.standard_error for e in segment_rows]),
        np.array([e.play for e in segment_rows], dtype=object),
        {play: e.save_rate for play, e in trusted.items()},
    ) if segment_rows else 0.0
    out = []
    for effect in effects:
        centre = trusted.get(effect.play)
        if effect.segment not in ADDRESSED_SEGMENTS or centre is None:
            out.append(effect)
            continue
        if effect.source == SOURCE_LOGGED and effect.standard_error:
            weight = tau2 / (tau2 + effect.standard_error**2)  # 0 when tau2 is 0
            rate = weight * effect.save_rate + (1 - weight) * centre.save_rate
            # Standard error of the shrunk mean, ignoring tau2's own uncertainty.
            error = float(np.sqrt(1 / (1 / effect.standard_error**2 + 1 / tau2))) if tau2 > 0 \
                else centre.standard_error
        else:
            rate, error = centre.save_rate, centre.standard_error
        out.append(replace(effect, save_rate=float(rate), standard_error=float(error),
                           source=SOURCE_SHRUNK))
    return out
