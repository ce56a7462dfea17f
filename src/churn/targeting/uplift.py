"""Play effects learned from logged retention actions, with their uncertainty.

The effect of a play is its *save rate*: the share of would-be churners it keeps,
``1 - P(churn | treated) / P(churn | control)``, in the play's units of the EV formula
(``P(churn) x save rate x value - cost``). Two estimators:

* :func:`difference_in_means`: treated vs randomly held-out control within a segment. Its
  standard error is the normal approximation of the log risk ratio (delta method,
  ``var(log RR) = (1 - p_t) / (n_t p_t) + (1 - p_c) / (n_c p_c)``; Katz et al. 1978): closed
  form, cheap, and adequate with :attr:`TargetConfig.min_rows_per_arm` rows per arm. A
  Haldane half-count keeps it finite when an arm has no churner.
* :func:`t_learner_save_rate`: the T-learner (Kuenzel et al. 2019, "Metalearners for
  estimating heterogeneous treatment effects"): one LightGBM classifier on the treated rows,
  one on the control rows, same features; the save rate of a population is
  ``1 - mean(m_treated(x)) / mean(m_control(x))``. It has no closed-form variance, so its
  standard error is a bootstrap (rows resampled within each arm, both models refit).

* :func:`standardized_difference`: the difference in means adjusted for the churn model's
  probability before the action (observed over expected churners per arm), used when the
  logged rows carry it: same estimand, less noise from a control group risky by chance.

Segments (:func:`assign_segments`): a play acts on the families it addresses, so logged rows are
split by whether the play addressed one of the customer's reasons and, among those, by the
play's dose (its families' positive contributions) above or below the median.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd

SEGMENT_NOT_ADDRESSED = "not_addressed"
SEGMENT_LOW = "addressed_low_dose"
SEGMENT_HIGH = "addressed_high_dose"
SEGMENTS = (SEGMENT_NOT_ADDRESSED, SEGMENT_LOW, SEGMENT_HIGH)
ADDRESSED_SEGMENTS = (SEGMENT_LOW, SEGMENT_HIGH)
SOURCE_LOGGED = "logged actions"
SOURCE_CONFIGURED = "configured"
#: A configured rate kept because the segment's logged estimate is too uncertain to rank by.
SOURCE_TOO_UNCERTAIN = "configured (logged estimate too uncertain)"
#: A configured rate kept although the segment's logged estimate passed the gate, because
#: another segment of the same scope (the play, or the playbook) has no usable estimate
#: (``target.one_source_per``).
SOURCE_ONE_SOURCE = "configured (one source: another segment's logged estimate not usable)"
#: Sources whose save rate is a configured one (``target.plays.<play>.save_rate``), not
#: measured: the rates ``target.configured_rate_scaling`` applies to.
CONFIGURED_SOURCES = (SOURCE_CONFIGURED, SOURCE_TOO_UNCERTAIN, SOURCE_ONE_SOURCE)
#: Values of ``target.one_source_per`` (:func:`unify_effect_sources`).
EFFECT_SOURCE_SCOPES = ("segment", "play", "playbook")


@dataclass(frozen=True)
class Estimate:
    """A save rate with its normal-approximation standard error and the counts behind it."""

    save_rate: float
    standard_error: float
    treated_rows: int
    control_rows: int
    treated_churn_rate: float
    control_churn_rate: float


@dataclass(frozen=True)
class PlayEffect:
    """The effect used for one play and segment, and where it came from.

    Attributes:
        play: Play name.
        segment: One of :data:`SEGMENTS`.
        save_rate: Share of would-be churners kept (used in the expected value).
        standard_error: Its standard error (``None`` for a configured rate).
        source: :data:`SOURCE_LOGGED` or :data:`SOURCE_CONFIGURED`.
        treated_rows: Logged treated rows of the segment.
        control_rows: Logged control rows of the segment.
        dose_split: The dose separating low from high (``None`` without logged actions).
        logged_save_rate: The segment's logged estimate, used or not (``None`` without one).
        logged_standard_error: Its standard error (``None`` without one).
    """

    play: str
    segment: str
    save_rate: float
    standard_error: float | None
    source: str
    treated_rows: int
    control_rows: int
    dose_split: float | None
    logged_save_rate: float | None = None
    logged_standard_error: float | None = None

    def to_dict(self) -> dict[str, object]:
        """The effect as a JSON-ready dict."""
        return asdict(self)


def difference_in_means(churned: np.ndarray, control: np.ndarray) -> Estimate | None:
    """Save rate ``1 - p_treated / p_control`` with its delta-method standard error.

    Args:
        churned: 1 if the row churned within the horizon, else 0.
        control: True for control rows, False for treated rows.

    Returns:
        The estimate, or ``None`` when an arm is empty or the control arm has no churner (the
        ratio is undefined).
    """
    churned = np.asarray(churned, dtype=np.float64)
    control = np.asarray(control, dtype=bool)
    n_t, n_c = int((~control).sum()), int(control.sum())
    if n_t == 0 or n_c == 0:
        return None
    k_t, k_c = churned[~control].sum(), churned[control].sum()
    if k_c == 0:
        return None
    p_t, p_c = k_t / n_t, k_c / n_c
    # Haldane: half a churner more in each arm keeps log(RR)'s variance finite at k_t = 0.
    h_t, h_c = max(k_t, 0.5) / n_t, k_c / n_c
    var_log_ratio = (1 - h_t) / (n_t * h_t) + (1 - h_c) / (n_c * h_c)
    ratio = p_t / p_c
    return Estimate(
        save_rate=float(1 - ratio),
        standard_error=float(max(ratio, h_t / h_c) * np.sqrt(var_log_ratio)),
        treated_rows=n_t,
        control_rows=n_c,
        treated_churn_rate=float(p_t),
        control_churn_rate=float(p_c),
    )


def standardized_difference(
    churned: np.ndarray, control: np.ndarray, expected: np.ndarray
) -> Estimate | None:
    """Save rate from observed over model-expected churners in each arm (covariate-adjusted).

    ``1 - (O_t / E_t) / (O_c / E_c)`` with ``O`` the churners and ``E`` the sum of the churn
    model's probabilities at the cutoff before the action (a pre-treatment covariate) in each
    arm: indirect standardisation, so a control group that is riskier by chance does not read
    as an effect (the regression-adjustment idea of Lin 2013, "Agnostic notes on regression
    adjustments to experimental data"). The estimand is the one of
    :func:`difference_in_means`; the standard error is the delta method on the log ratio with
    ``var(O) = sum(q (1 - q))``, ``q`` the expected probabilities rescaled to each arm's
    observed rate.

    Returns:
        The estimate (churn rates are the observed ones), or ``None`` as for
        :func:`difference_in_means`.
    """
    plain = difference_in_means(churned, control)
    if plain is None:
        return None
    churned = np.asarray(churned, dtype=np.float64)
    control = np.asarray(control, dtype=bool)
    expected = np.asarray(expected, dtype=np.float64)
    parts = []
    for arm in (~control, control):
        observed, total = churned[arm].sum(), expected[arm].sum()
        q = np.clip(expected[arm] * max(observed, 0.5) / total, 0.0, 1.0)
        parts.append((observed / total, float((q * (1 - q)).sum()), max(observed, 0.5)))
    (ratio_t, var_t, o_t), (ratio_c, var_c, o_c) = parts
    ratio = ratio_t / ratio_c
    se = max(ratio, 1e-12) * np.sqrt(var_t / o_t**2 + var_c / o_c**2)
    return Estimate(float(1 - ratio), float(se), plain.treated_rows, plain.control_rows,
                    plain.treated_churn_rate, plain.control_churn_rate)


def assign_segments(
    addressed: np.ndarray, dose: np.ndarray, dose_split: float | np.ndarray
) -> np.ndarray:
    """Segment of each row: not addressed, or addressed with a dose below/above the split."""
    addressed = np.asarray(addressed, dtype=bool)
    high = np.asarray(dose, dtype=np.float64) > dose_split
    return np.where(~addressed, SEGMENT_NOT_ADDRESSED, np.where(high, SEGMENT_HIGH, SEGMENT_LOW))


def dose_split_of(addressed: np.ndarray, dose: np.ndarray) -> float:
    """Median dose of the addressed logged rows (0 when there are none)."""
    doses = np.asarray(dose, dtype=np.float64)[np.asarray(addressed, dtype=bool)]
    return float(np.median(doses)) if len(doses) else 0.0


def estimate_play_effects(
    logged: pd.DataFrame,
    configured: dict[str, float],
    min_rows_per_arm: int,
    max_standard_error: float = np.inf,
) -> tuple[list[PlayEffect], pd.DataFrame]:
    """Per play and segment: the logged estimate where trusted, else the configured rate.

    A logged estimate replaces the configured save rate when its segment has at least
    ``min_rows_per_arm`` treated and control rows, a control churner, and a standard error of
    at most ``max_standard_error``. A segment with enough rows but a noisier estimate keeps the
    configured rate (source :data:`SOURCE_TOO_UNCERTAIN`): ranking by an estimate whose error
    exceeds the differences between plays orders the list by noise. Every estimate is kept in
    ``logged_save_rate`` / ``logged_standard_error`` whether used or not. The not-addressed
    segment never falls back to a configured rate: a play aimed elsewhere is assumed to do
    nothing (0) unless the log shows otherwise.

    Args:
        logged: One row per logged action: ``play``, ``control`` (bool), ``churned`` (0/1),
            ``addressed`` (bool), ``dose`` (float) and optionally ``expected`` (the churn
            model's probability before the action: then :func:`standardized_difference`,
            else :func:`difference_in_means`). May be empty.
        configured: Play -> configured save rate (``target.plays.<play>.save_rate``).
        min_rows_per_arm: Rows needed in each arm.
        max_standard_error: Largest standard error of a logged estimate that is used.

    Returns:
        The effects (one per play and segment) and every logged estimate as a frame (``play``,
        ``segment``, ``dose_split`` and the :class:`Estimate` fields), trusted or not.
    """
    effects: list[PlayEffect] = []
    estimates: list[dict[str, object]] = []
    for play, rate in configured.items():
        rows = logged[logged["play"] == play] if len(logged) else logged
        split = None
        segment_of = np.array([], dtype=object)
        if len(rows):
            split = dose_split_of(rows["addressed"].to_numpy(), rows["dose"].to_numpy())
            segment_of = assign_segments(rows["addressed"].to_numpy(), rows["dose"].to_numpy(),
                                         split)
        for segment in SEGMENTS:
            estimate = None
            if len(rows):
                part = rows[segment_of == segment]
                if "expected" in part.columns:
                    estimate = standardized_difference(part["churned"].to_numpy(),
                                                       part["control"].to_numpy(),
                                                       part["expected"].to_numpy())
                else:
                    estimate = difference_in_means(part["churned"].to_numpy(),
                                                   part["control"].to_numpy())
            if estimate is not None:
                estimates.append({"play": play, "segment": segment, "dose_split": split,
                                  **asdict(estimate)})
            enough = (estimate is not None and estimate.treated_rows >= min_rows_per_arm
                      and estimate.control_rows >= min_rows_per_arm)
            precise = enough and estimate.standard_error <= max_standard_error
            logged_fields = {
                "logged_save_rate": estimate.save_rate if estimate else None,
                "logged_standard_error": estimate.standard_error if estimate else None,
            }
            if precise:
                effects.append(PlayEffect(play, segment, estimate.save_rate,
                                          estimate.standard_error, SOURCE_LOGGED,
                                          estimate.treated_rows, estimate.control_rows, split,
                                          **logged_fields))
            else:
                fallback = 0.0 if segment == SEGMENT_NOT_ADDRESSED else rate
                effects.append(PlayEffect(
                    play, segment, fallback, None,
                    SOURCE_TOO_UNCERTAIN if enough else SOURCE_CONFIGURED,
                    estimate.treated_rows if estimate else 0,
                    estimate.control_rows if estimate else 0, split, **logged_fields,
                ))
    columns = ["play", "segment", "dose_split", *Estimate.__dataclass_fields__]
    return effects, pd.DataFrame(estimates, columns=columns)


def unify_effect_sources(
    effects: list[PlayEffect],
    configured: Mapping[str, float],
    scope: str,
    logged_sources: Collection[str] = (SOURCE_LOGGED,),
) -> list[PlayEffect]:
    """The effects with one source (logged or configured) per play or for the whole playbook.

    The expected value compares save rates across the segments of a play and across plays, so
    a logged rate next to a configured one compares two different things: a measured effect
    (0.01-0.12 on the simulator) with a guess (0.25 by default), and the list leans to
    whichever reads higher. Here, within each scope, the addressed segments (the only ones
    that rank the list: a play is eligible only where it addresses a reason) keep their logged
    rates only if **every** addressed segment of the scope has one; otherwise every one of them
    takes its play's configured rate (source :data:`SOURCE_ONE_SOURCE` where a logged rate is
    dropped). The not-addressed segments are left as they are.

    Args:
        effects: :func:`estimate_play_effects` output (or a later refinement of it).
        configured: Play -> configured save rate.
        scope: ``"segment"`` (each segment on its own: the effects unchanged), ``"play"`` (one
            source per play) or ``"playbook"`` (one source for all plays: logged only if every
            addressed segment of every play is).
        logged_sources: The sources that count as logged.

    Returns:
        The effects, in the same order.

    Raises:
        ValueError: If ``scope`` is not one of :data:`EFFECT_SOURCE_SCOPES`.
    """
    if scope not in EFFECT_SOURCE_SCOPES:
        raise ValueError(f"effect source scope must be one of {EFFECT_SOURCE_SCOPES}: {scope!r}")
    if scope == "segment":
        return list(effects)
    addressed = [e for e in effects if e.segment in ADDRESSED_SEGMENTS]
    all_logged = {e.play: True for e in addressed}
    for effect in addressed:
        all_logged[effect.play] &= effect.source in logged_sources
    if scope == "playbook":
        everywhere = all(all_logged.values())
        all_logged = dict.fromkeys(all_logged, everywhere)
    out = []
    for effect in effects:
        if effect.segment not in ADDRESSED_SEGMENTS or all_logged[effect.play]:
            out.append(effect)
        elif effect.source in logged_sources:
            out.append(replace(effect, save_rate=configured[effect.play], standard_error=None,
                               source=SOURCE_ONE_SOURCE))
        else:  # already the configured rate
            out.append(effect)
    return out


def t_learner_save_rate(
    treated: tuple[pd.DataFrame, np.ndarray],
    control: tuple[pd.DataFrame, np.ndarray],
    population: pd.DataFrame,
    *,
    rounds: int,
    seed: int,
) -> tuple[float, float | None]:
    """The T-learner's save rate over ``population`` and its bootstrap standard error.

    Each arm's rows are binned once (LightGBM's histogram bins, learned on the whole arm); a
    bootstrap resample is a subset of those binned rows (``Dataset.subset``), so the binning,
    about half of a fit on these sizes, is not repeated for every resample. The trees of a
    resample still come from its rows alone; only their candidate split points are the whole
    arm's. A resample's rows are taken in sorted order (LightGBM sorts a subset's rows).

    The fits run one after another on one LightGBM thread. They used to run side by side in
    Python threads, and ``churn target`` once died of a segmentation fault inside LightGBM at a
    million customers with them (2026-12-05; LightGBM documents no thread safety for
    concurrent trainings in one process); the stage now runs the plays' cross-checks in
    worker processes instead (:mod:`churn.stages.tlearner_checks`).

    Args:
        treated: Features and churn outcomes (0/1) of the treated rows.
        control: Features and outcomes of the control rows (same feature columns).
        population: Features of the rows whose average effect is wanted.
        rounds: Bootstrap resamples (0: no standard error).
        seed: Seed of the resampling and the models.

    Returns:
        ``1 - mean(m_treated(x)) / mean(m_control(x))`` over ``population``, and its
        bootstrap standard error (``None`` when ``rounds`` is 0).
    """
    rng = np.random.default_rng(seed)
    resamples = [
        tuple(rng.integers(0, len(frame), len(frame)) for frame, _ in (treated, control))
        for _ in range(rounds)
    ]
    arms = (_BinnedArm(*treated, seed), _BinnedArm(*control, seed))

    def fit(rows: tuple[np.ndarray, ...] | None) -> float:
        treated_mean, control_mean = (
            arm.predict_mean(None if rows is None else rows[i], population)
            for i, arm in enumerate(arms)
        )
        return 1 - treated_mean / control_mean if control_mean > 0 else float("nan")

    estimate, draws = fit(None), [fit(rows) for rows in resamples]
    finite = [d for d in draws if np.isfinite(d)]
    spread = float(np.std(finite, ddof=1)) if len(finite) > 1 else None
    return estimate, spread


def _t_learner_params(seed: int) -> dict[str, object]:
    """The T-learner's LightGBM parameters: small, heavily regularised trees (a few thousand
    logged rows per arm at most), one thread per model.

    At most 63 bins a feature, not LightGBM's 255: with a few thousand rows and at least 40
    in a leaf, finer split points only fit noise, and building the histograms is most of a
    fit. On the 100k simulated run's five plays (1,276-6,892 rows, 109 features, 2026-12-06)
    the cross-check took 0.77x the CPU, and each play's save rate moved by at most 0.15 of
    its bootstrap standard error.
    """
    return {
        "objective": "binary",
        "learning_rate": 0.05,
        "num_leaves": 7,
        "min_data_in_leaf": 40,
        "max_bin": 63,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "seed": seed,
        "num_threads": 1,
        "verbose": -1,
    }


_T_LEARNER_ROUNDS = 80


class _BinnedArm:
    """One arm of the T-learner: its rows binned once, refit on any resample of them."""

    def __init__(self, frame: pd.DataFrame, outcome: np.ndarray, seed: int) -> None:
        import lightgbm as lgb

        self.outcome = np.asarray(outcome, dtype=np.int64)
        self.params = _t_learner_params(seed)
        self._binned = None
        if len(self.outcome) and self.outcome.min() != self.outcome.max():
            self._binned = lgb.Dataset(
                frame, self.outcome, params=self.params, free_raw_data=False
            ).construct()

    def predict_mean(self, rows: np.ndarray | None, population: pd.DataFrame) -> float:
        """The mean predicted churn over ``population`` of a model fitted on ``rows`` (all
        rows: ``None``); a resample with one class only is that constant."""
        import lightgbm as lgb

        outcome = self.outcome if rows is None else self.outcome[rows]
        if outcome.min() == outcome.max():
            return float(outcome[0])
        positions = np.arange(len(self.outcome)) if rows is None else np.sort(rows)
        subset = self._binned.subset(positions, params=self.params).construct()
        # Kept as trained: by default lgb.train copies the model through its text form at
        # the end, the same trees, 4% of the cross-check's time.
        booster = lgb.train(
            self.params, subset, num_boost_round=_T_LEARNER_ROUNDS, keep_training_booster=True
        )
        return float(booster.predict(population).mean())
