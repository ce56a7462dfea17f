"""Scoring: calibrated churn probability, revenue at risk, reasons and risk shares per customer.

The pure core :func:`score_frame` turns a feature frame into one row of scores per customer; the
MLflow pyfunc (:mod:`churn.tracking.pyfunc`) calls it, so every consumer gets the same answer. The
runner :func:`run_score` loads a model (directory or MLflow registry), builds point-in-time
features at the cutoff, scores, ranks, and writes the scores atomically, with a contributions
sidecar and, when an earlier scoring exists, a "what changed" file (:mod:`churn.model.changes`).

Explanations are exact TreeSHAP contributions in log-odds (``model.contributions``). The kernel
is pluggable (``contributions_fn``) so a faster exact kernel can be swapped in; every batch is
checked for additivity against the model's raw score, so a wrong kernel fails loudly instead of
writing wrong reasons.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from churn.domain.catalog import MRR_FEATURE, FeatureSpec
from churn.domain.contract import TIMESTAMP_DTYPE
from churn.domain.families import FAMILIES, PHASES
from churn.errors import ModelError
from churn.model.artifact import ChurnModel
from churn.model.reason_reference import read_first_reason, read_level_ratios
from churn.model.reason_selection import (
    describe_decision_dates,
    eligible_mask,
    select_reasons,
)
from churn.model.reasons import build_feature_specs, build_reason_columns

logger = logging.getLogger(__name__)


ContributionsFn = Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]]


MONTHS_PER_YEAR = 12


#: Largest accepted gap between sum(contributions) + base and the raw score (log-odds).
ADDITIVITY_TOLERANCE = 1e-6


#: Features reported per customer in the changes file.
MOVED_FEATURES = 3


@dataclass(frozen=True)
class ScoreResult:
    """Scores plus, optionally, every feature's contribution for every row.

    Attributes:
        scores: The :func:`score_frame` output.
        contributions: ``customer_id``, ``cutoff``, ``base_value`` and one ``float32`` column
            per model feature (log-odds contribution), or ``None`` when not kept. ``float32``
            halves the memory of a million-row run and is ample to rank what moved a score.
    """

    scores: pd.DataFrame
    contributions: pd.DataFrame | None


def score_frame(
    model: ChurnModel,
    features: pd.DataFrame,
    reasons: int = 3,
    *,
    batch_rows: int = 200_000,
    contributions_fn: ContributionsFn | None = None,
) -> pd.DataFrame:
    """Score a feature frame: probability, revenue at risk, top reasons and risk shares.

    Output columns, one row per input row (input index kept):

    * ``customer_id``, ``cutoff``: copied from the input (missing values if absent).
    * ``churn_probability``: calibrated probability of churning within the label horizon.
    * ``mrr``: the ``mrr_at_cutoff`` feature, else an ``mrr`` column, else missing.
    * ``expected_revenue_at_risk``: ``churn_probability * 12 * mrr``, i.e. the expected loss of
      *annualised* recurring revenue (a year of MRR), the usual unit for retention budgets.
    * ``reason_{i}_feature``, ``reason_{i}_value`` (raw value as display text),
      ``reason_{i}_contribution`` (SHAP, log-odds), ``reason_{i}_text`` (a sentence), for
      i = 1..reasons: the *eligible* features with the largest *positive* contributions (those
      pushing risk up), in decreasing order, ties by model feature order, a value equal to the
      typical value skipped (:mod:`churn.model.reason_selection`); a model trained with
      ``train.first_reason: family`` puts first the strongest feature of the family with the
      largest net push. Slots beyond the number of such contributions hold missing values.
    * ``decision_context`` (only when the scores hold ``next_decision_date``): "renews
      2026-02-14", the next decision date beside the reasons.
    * ``risk_share_<family>`` for acquisition, billing, usage, support, engagement (plus any
      other family in the catalog, e.g. profile) and ``risk_share_pre_sale``,
      ``risk_share_post_sale``: the share of the row's total *positive* contribution that comes
      from the family's (phase's) features, ``sum(max(c, 0) over the group) / sum(max(c, 0))``,
      both sums over *reason-eligible* features only (exposure and contract timing say when,
      not why: they belong to no group); all 0 for a row with no such positive contribution.
      Over families (and over phases) the shares sum to 1 for every other row. Negative
      contributions (protective factors) are left out, so a share answers "where does this
      customer's risk come from".

    Args:
        model: The trained model.
        features: Feature frame; columns are matched by name, extra columns are ignored.
        reasons: Number of reasons per row (0 for none).
        batch_rows: Rows explained at a time; bounds the memory of the explanation arrays.
        contributions_fn: ``frame -> (contributions, base)`` in log-odds, exact TreeSHAP;
            defaults to ``model.contributions``.

    Returns:
        The scores frame.

    Raises:
        ModelError: If a feature column is missing (named), or the contributions do not add up
            to the model's raw score.
    """
    return score_population(
        model,
        features,
        reasons,
        batch_rows=batch_rows,
        contributions_fn=contributions_fn,
        keep_contributions=False,
    ).scores


def score_population(
    model: ChurnModel,
    features: pd.DataFrame,
    reasons: int = 3,
    *,
    batch_rows: int = 200_000,
    contributions_fn: ContributionsFn | None = None,
    keep_contributions: bool = True,
    texts: bool = True,
    population_rows: int | None = None,
) -> ScoreResult:
    """Like :func:`score_frame` (same arguments), also returning every feature's contribution.

    Args:
        keep_contributions: Keep the full contributions (for "what changed"); else ``None``.
        texts: ``False`` leaves the reasons' ``_value`` and ``_text`` columns empty
            (:func:`~churn.model.reasons.build_reason_columns`); every other column is the same.
        population_rows: When ``features`` is part of a larger population, its number of rows:
            the kernel is then the one the whole population's scoring uses, so every row gets
            the same numbers to the bit (default: ``len(features)``).
    """
    if reasons < 0 or batch_rows < 1:
        raise ValueError("reasons must be >= 0 and batch_rows >= 1")
    model.prepare(features.head(0))  # fails fast, naming every missing feature column
    specs = build_feature_specs(model.catalog, model.feature_names, model.categorical_levels)
    # Families then phases: one pass over the positive contributions serves both share sets.
    groups = {
        **group_memberships(specs, "family", FAMILIES),
        **group_memberships(specs, "phase", PHASES),
    }
    n_features = len(model.feature_names)
    population = population_rows or len(features)
    score_parts: list[pd.DataFrame] = []
    contribution_parts: list[pd.DataFrame] = []
    # LightGBM cannot predict zero rows, so an empty frame is scored without the booster.
    starts = range(0, len(features), batch_rows) if len(features) else [0]
    for start in starts:
        batch = features.iloc[start : start + batch_rows]
        if len(batch):
            # One matrix per batch serves the explanation and the raw scores (building it is
            # about a second per 400k rows), unless a plugged-in kernel builds its own.
            matrix = model.prepare(batch)
            if contributions_fn is None:
                # One walk of the trees gives both when the kernel explains the batch.
                contributions, base, raw = model.contributions_and_raw_of_matrix(
                    matrix, population_rows=population
                )
            else:
                contributions, base = contributions_fn(batch)
                raw = model.predict_raw_matrix(matrix, population_rows=population)
            check_additivity(contributions, base, raw)
        else:
            contributions, base, raw = np.empty((0, n_features)), np.empty(0), np.empty(0)
        score_parts.append(
            _score_batch(model, batch, contributions, raw, specs, groups, reasons, texts)
        )
        if keep_contributions:
            contribution_parts.append(_contribution_frame(batch, contributions, base, specs))
    scores = pd.concat(score_parts) if len(score_parts) > 1 else score_parts[0]
    if "next_decision_date" in scores.columns:  # reason context, not a reason (issue 13)
        scores["decision_context"] = describe_decision_dates(scores["next_decision_date"])
    kept = None
    if keep_contributions:
        kept = pd.concat(contribution_parts, ignore_index=True)
    return ScoreResult(scores=scores, contributions=kept)


def check_additivity(contributions: np.ndarray, base: np.ndarray, raw: np.ndarray) -> None:
    """Raise :class:`ModelError` unless ``contributions.sum(1) + base`` equals ``raw``.

    TreeSHAP is exact, so this holds to floating-point rounding; a plugged-in kernel that breaks
    it would produce wrong reasons.
    """
    gap = np.abs(contributions.sum(axis=1) + base - raw)
    worst = float(gap.max()) if gap.size else 0.0
    if not worst <= ADDITIVITY_TOLERANCE:
        raise ModelError(
            f"contributions do not add up to the model's raw score (max gap {worst:.3g} "
            f"log-odds > {ADDITIVITY_TOLERANCE}); the contributions kernel is not exact "
            "TreeSHAP for this model"
        )


def group_memberships(
    specs: Mapping[str, FeatureSpec], attribute: str, required: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Return group -> boolean mask over features, for ``family`` or ``phase``.

    The ``required`` groups come first and always exist (all-False when no feature belongs),
    so the output schema does not depend on which feature families a data set has; any other
    group found in the catalog (e.g. ``profile``) follows, sorted.
    """
    values = np.array([getattr(spec, attribute) for spec in specs.values()], dtype=object)
    groups = list(required) + sorted(set(values) - set(required))
    return {group: values == group for group in groups}


def risk_shares(
    contributions: np.ndarray, groups: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Share of each row's total positive contribution coming from each feature group.

    Args:
        contributions: ``(n, p)`` contributions.
        groups: Group -> boolean mask over the ``p`` features (see :func:`group_memberships`).

    Returns:
        Group -> ``(n,)`` shares in [0, 1]; 0 for rows with no positive contribution.
    """
    positive = np.clip(contributions, 0.0, None)
    total = positive.sum(axis=1, keepdims=True)
    membership = np.column_stack([mask.astype(np.float64) for mask in groups.values()])
    sums = positive @ membership
    shares = np.divide(sums, total, out=np.zeros_like(sums), where=total > 0)
    return {group: shares[:, j] for j, group in enumerate(groups)}


def _column_or_missing(batch: pd.DataFrame, name: str, dtype: str) -> Any:
    """Return a column's values (no index, so no alignment surprises) or all-missing values."""
    if name in batch.columns:
        return batch[name].array
    return pd.array(np.full(len(batch), None, dtype=object), dtype=dtype)


def read_mrr(batch: pd.DataFrame) -> np.ndarray:
    """The scores' ``mrr`` of each row: the ``mrr_at_cutoff`` feature, else ``mrr``, else NaN."""
    for name in (MRR_FEATURE, "mrr"):
        if name in batch.columns:
            return pd.to_numeric(batch[name], errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
    return np.full(len(batch), np.nan)


def _score_batch(
    model: ChurnModel,
    batch: pd.DataFrame,
    contributions: np.ndarray,
    raw: np.ndarray,
    specs: Mapping[str, FeatureSpec],
    groups: Mapping[str, np.ndarray],
    reasons: int,
    texts: bool = True,
) -> pd.DataFrame:
    probability = model.calibrator.transform(raw)
    mrr = read_mrr(batch)
    columns: dict[str, Any] = {
        "customer_id": _column_or_missing(batch, "customer_id", "str"),
        "cutoff": _column_or_missing(batch, "cutoff", TIMESTAMP_DTYPE),
        "churn_probability": probability,
        "mrr": mrr,
        "expected_revenue_at_risk": probability * MONTHS_PER_YEAR * mrr,
    }
    index, value = select_reasons(
        batch,
        contributions,
        specs,
        model.typical_values,
        reasons,
        first_reason=read_first_reason(model.metadata),
    )
    columns.update(
        build_reason_columns(
            batch,
            index,
            value,
            specs,
            model.typical_values,
            reasons,
            model.categorical_levels,
            read_level_ratios(model.metadata),
            texts=texts,
        )
    )
    # Exposure and contract timing count neither in a group nor in the total (issue 13).
    shares = risk_shares(np.where(eligible_mask(specs), contributions, 0.0), groups)
    columns.update({f"risk_share_{group}": share for group, share in shares.items()})
    return pd.DataFrame(columns, index=batch.index)


def _contribution_frame(
    batch: pd.DataFrame, contributions: np.ndarray, base: np.ndarray, specs: Mapping[str, Any]
) -> pd.DataFrame:
    columns: dict[str, Any] = {
        "customer_id": _column_or_missing(batch, "customer_id", "str"),
        "cutoff": _column_or_missing(batch, "cutoff", TIMESTAMP_DTYPE),
        "base_value": np.asarray(base, dtype=np.float64),
    }
    columns.update({name: contributions[:, j].astype(np.float32) for j, name in enumerate(specs)})
    return pd.DataFrame(columns)


def rank_risk_deciles(scores: pd.DataFrame) -> np.ndarray:
    """Return each row's risk decile over the whole scored population.

    Rows are ranked by decreasing ``churn_probability``, ties broken by ``customer_id``
    (ascending), so the deciles are deterministic; the top tenth of the ranking is decile 1.

    Args:
        scores: Scores with ``churn_probability`` and ``customer_id``.

    Returns:
        ``int64`` deciles in 1..10 aligned with ``scores``.
    """
    n_rows = len(scores)
    order = np.lexsort(
        (
            scores["customer_id"].to_numpy(dtype=object),
            -scores["churn_probability"].to_numpy(dtype=np.float64),
        )
    )
    rank = np.empty(n_rows, dtype=np.int64)
    rank[order] = np.arange(n_rows)
    return rank * 10 // max(n_rows, 1) + 1


def finalize_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Add ``risk_decile`` and sort by expected revenue at risk (desc, missing last).

    Ties are broken by probability (desc), then ``customer_id``, so reruns are byte-stable.
    """
    out = scores.reset_index(drop=True)
    out.insert(
        out.columns.get_loc("expected_revenue_at_risk") + 1, "risk_decile", rank_risk_deciles(out)
    )
    revenue = out["expected_revenue_at_risk"].to_numpy(dtype=np.float64)
    order = np.lexsort(
        (
            out["customer_id"].to_numpy(dtype=object),
            -out["churn_probability"].to_numpy(dtype=np.float64),
            np.where(np.isnan(revenue), np.inf, -revenue),
        )
    )
    return out.iloc[order].reset_index(drop=True)
