"""Expected value of each (customer, play) and the capacity-constrained choice of contacts.

For every scored customer and each eligible play
(:func:`~churn.targeting.playbook.eligible_plays`)::

    expected value = P(churn in horizon) x save rate x MRR x months kept - cost

where the save rate is the play's effect for the customer's segment
(:mod:`~churn.targeting.uplift`) and the cost is the play's
(:func:`~churn.targeting.playbook.play_cost`). With ``target.configured_rate_scaling:
addressed_share`` a *configured* rate is the rate for a customer whose excess risk lies
entirely in the play's families, so the customer's rate is ``save_rate x share`` with share the
play's families' part of the customer's positive contributions
(:func:`~churn.targeting.playbook.addressed_share`); with ``dose`` the configured rate is the
share of the play's families' log-odds push removed, ``1 - sigmoid(logit(p) - rate x dose) / p``
(:func:`~churn.targeting.dose_response.save_rates_from_dose`). Measured rates are used as they
are.

:func:`select_contacts` is greedy by value per unit of capacity: every contact uses one unit of
its team's weekly capacity (and of its play's, when the play has one), so candidates are taken
in decreasing order of value, skipping a customer already chosen and a team or play that is
full. A candidate with a value at or below zero is never taken, even with capacity left. Greedy
is optimal for one team with unit-sized contacts; with a customer eligible for several teams it
is the usual 1/2-approximation of the assignment problem, which is plenty for a weekly list.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from churn.config import TargetConfig
from churn.targeting.dose_response import DoseEffect, save_rates_from_dose
from churn.targeting.playbook import addressed_share, play_cost, play_dose
from churn.targeting.uplift import CONFIGURED_SOURCES, SEGMENT_HIGH, SEGMENT_LOW, PlayEffect

#: Source of a save rate from the play's dose response (:mod:`~churn.targeting.dose_response`).
SOURCE_DOSE_RESPONSE = "logged actions (dose response)"

#: Per-row numbers (arrays or series of one length) or one number for every row.
Numbers = np.ndarray | pd.Series | float

CANDIDATE_COLUMNS = (
    "customer_id", "play", "team", "churn_probability", "mrr", "segment", "save_rate",
    "effect_source", "value_at_risk", "cost", "expected_value", "reason_rank", "reason_feature",
)


def build_candidates(
    scores: pd.DataFrame,
    eligible: pd.DataFrame,
    doses: pd.DataFrame,
    effects: list[PlayEffect],
    config: TargetConfig,
    probability_column: str = "churn_probability",
    dose_effects: Mapping[str, DoseEffect] | None = None,
) -> pd.DataFrame:
    """Every eligible (customer, play) with its expected value.

    Args:
        scores: ``customer_id``, the probability column and ``mrr``.
        eligible: :func:`~churn.targeting.playbook.eligible_plays` output.
        doses: ``customer_id``, ``dose_<family>`` and ``positive_total`` columns
            (:func:`~churn.targeting.playbook.family_doses`); customers missing here get dose 0
            (and share 0).
        effects: Effects per play and segment
            (:func:`~churn.targeting.uplift.estimate_play_effects`).
        config: The ``target`` section (plays, months kept, configured rate scaling).
        probability_column: Column of ``scores`` holding the churn probability.
        dose_effects: Play -> fitted dose response: where given, the play's save rate is the
            customer's own (:func:`~churn.targeting.dose_response.save_rates_from_dose`)
            instead of its segment's.

    Returns:
        One row per candidate with :data:`CANDIDATE_COLUMNS`.
    """
    by_key = {(e.play, e.segment): e for e in effects}
    base = scores[["customer_id", probability_column, "mrr"]].rename(
        columns={probability_column: "churn_probability"})
    frame = eligible.merge(base, on="customer_id", how="inner", validate="many_to_one")
    frame = frame.merge(doses, on="customer_id", how="left", validate="many_to_one")
    parts = []
    for name, play in config.plays.items():
        part = frame[frame["play"] == name].copy()
        if part.empty:
            continue
        dose = np.nan_to_num(play_dose(part, play))
        low, high = by_key[(name, SEGMENT_LOW)], by_key[(name, SEGMENT_HIGH)]
        split = low.dose_split if low.dose_split is not None else np.inf
        is_high = dose > split
        part["team"] = play.team
        part["segment"] = np.where(is_high, SEGMENT_HIGH, SEGMENT_LOW)
        part["save_rate"] = np.where(is_high, high.save_rate, low.save_rate)
        part["effect_source"] = np.where(is_high, high.source, low.source)
        if config.configured_rate_scaling == "addressed_share":
            # A configured rate assumes all of the excess risk is where the play acts; a
            # measured rate is already the average over its segment's customers.
            configured = part["effect_source"].isin(CONFIGURED_SOURCES).to_numpy()
            share = addressed_share(part, play)
            part["save_rate"] = np.where(configured, part["save_rate"] * share,
                                         part["save_rate"])
        elif config.configured_rate_scaling == "dose":
            # The configured rate read as the share of the play's families' log-odds push the
            # contact removes: the customer's own rate then follows from its probability.
            configured = part["effect_source"].isin(CONFIGURED_SOURCES).to_numpy()
            own = save_rates_from_dose(part["churn_probability"].to_numpy(dtype=np.float64),
                                       dose, part["save_rate"].to_numpy(dtype=np.float64))
            part["save_rate"] = np.where(configured, own, part["save_rate"])
        fit = (dose_effects or {}).get(name)
        if fit is not None:
            part["save_rate"] = save_rates_from_dose(
                part["churn_probability"].to_numpy(dtype=np.float64), dose, fit.theta)
            part["effect_source"] = SOURCE_DOSE_RESPONSE
        part["cost"] = play_cost(play, part["mrr"])
        parts.append(part)
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in CANDIDATE_COLUMNS})
    out = pd.concat(parts, ignore_index=True)
    out["value_at_risk"] = compute_value_at_risk(out["mrr"].to_numpy(dtype=np.float64), config)
    out["expected_value"] = compute_expected_value(
        out["churn_probability"].to_numpy(dtype=np.float64), out["save_rate"],
        out["value_at_risk"], out["cost"])
    return out[list(CANDIDATE_COLUMNS)].reset_index(drop=True)


def compute_value_at_risk(mrr: np.ndarray, config: TargetConfig) -> np.ndarray:
    """Revenue a churner takes along: ``MRR x target.months_kept`` (missing MRR: 0)."""
    return np.nan_to_num(mrr, nan=0.0) * config.months_kept


def compute_expected_value(probability: Numbers, save_rate: Numbers, value_at_risk: Numbers,
                           cost: Numbers) -> Numbers:
    """``p x save rate x value at risk - cost``, multiplied in this order.

    :func:`build_candidates` and :func:`bound_expected_values` both compute it here: the bound
    is at least the value to the bit only because both round the same operations in the same
    order.
    """
    return probability * save_rate * value_at_risk - cost


def bound_expected_values(
    scores: pd.DataFrame,
    effects: list[PlayEffect],
    config: TargetConfig,
    probability_column: str = "churn_probability",
    dose_effects: Mapping[str, DoseEffect] | None = None,
) -> np.ndarray:
    """An upper bound of each customer's expected value over every play, before any reason.

    :func:`build_candidates` values a (customer, play) at ``p x rate x value at risk - cost``,
    and only the rate depends on the customer's reasons and doses. The bound takes each
    play's largest possible rate: the larger of its two segments' rates; with
    ``configured_rate_scaling: addressed_share``, a rate times a share in [0, 1] is at most
    that; where a rate follows from the dose (a dose response fit, or ``configured_rate_scaling:
    dose``) at most 1, as ``1 - sigmoid(logit(p) - x) / p`` is. A negative largest rate counts
    as 0. The probability and the value at risk are not negative and rounding is monotone, so
    the bound computed in the same order is at least the computed value, to the bit.

    Args:
        scores: ``customer_id``, the probability column and ``mrr``, one row per customer.
        effects: As for :func:`build_candidates`.
        config: As for :func:`build_candidates`.
        probability_column: As for :func:`build_candidates`.
        dose_effects: As for :func:`build_candidates`.

    Returns:
        One bound per row of ``scores`` (NaN where the probability is missing, ``-inf`` with
        no play).
    """
    by_key = {(e.play, e.segment): e for e in effects}
    probability = scores[probability_column].to_numpy(dtype=np.float64)
    mrr = scores["mrr"].to_numpy(dtype=np.float64)
    value_at_risk = compute_value_at_risk(mrr, config)
    bound = np.full(len(scores), -np.inf)
    for name, play in config.plays.items():
        rate = max(by_key[(name, SEGMENT_LOW)].save_rate, by_key[(name, SEGMENT_HIGH)].save_rate)
        if config.configured_rate_scaling == "dose" or name in (dose_effects or {}):
            rate = max(rate, 1.0)
        rate = max(rate, 0.0)
        value = compute_expected_value(probability, rate, value_at_risk, play_cost(play, mrr))
        bound = np.where(np.isnan(value) | (value > bound), value, bound)
    return bound


def select_contacts(
    candidates: pd.DataFrame,
    rank_by: str,
    teams: Mapping[str, int],
    play_capacity: Mapping[str, int | None],
    *,
    positive_value_only: bool = True,
) -> pd.DataFrame:
    """Greedy choice: best ``rank_by`` first, one play per customer, within every capacity.

    Args:
        candidates: Rows with ``customer_id``, ``play``, ``team``, ``expected_value`` and
            ``rank_by``.
        rank_by: Column to rank by, higher first (ties: input order).
        teams: Team -> contacts per week.
        play_capacity: Play -> contacts per week (``None``: the team's limit only).
        positive_value_only: Never take a candidate with ``expected_value <= 0``.

    Returns:
        The chosen rows in the order taken, with ``contact_rank`` (1 = first).
    """
    order = np.argsort(-candidates[rank_by].to_numpy(dtype=np.float64), kind="stable")
    left_team = dict(teams)
    left_play = {p: c for p, c in play_capacity.items() if c is not None}
    customers = candidates["customer_id"].to_numpy()
    plays = candidates["play"].to_numpy()
    team_of = candidates["team"].to_numpy()
    value = candidates["expected_value"].to_numpy(dtype=np.float64)
    taken: list[int] = []
    seen: set[object] = set()
    for row in order:
        if positive_value_only and not value[row] > 0:
            continue
        customer, play, team = customers[row], plays[row], team_of[row]
        if customer in seen or left_team.get(team, 0) <= 0 or left_play.get(play, 1) <= 0:
            continue
        taken.append(row)
        seen.add(customer)
        left_team[team] -= 1
        if play in left_play:
            left_play[play] -= 1
        if not any(v > 0 for v in left_team.values()):
            break
    chosen = candidates.iloc[taken].copy()
    chosen["contact_rank"] = np.arange(1, len(chosen) + 1)
    return chosen.reset_index(drop=True)
