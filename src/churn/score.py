"""Scoring: calibrated churn probability, revenue at risk, reasons and risk shares per customer.

The pure core :func:`score_frame` turns a feature frame into one row of scores per customer; the
MLflow pyfunc (:mod:`churn.pyfunc`) calls it, so every consumer gets the same answer. The
runner :func:`run_score` loads a model (directory or MLflow registry), builds point-in-time
features at the cutoff, scores, ranks, and writes the scores atomically, with a contributions
sidecar and, when an earlier scoring exists, a "what changed" file (:mod:`churn.changes`).

Explanations are exact TreeSHAP contributions in log-odds (``model.contributions``). The kernel
is pluggable (``contributions_fn``) so a faster exact kernel can be swapped in; every batch is
checked for additivity against the model's raw score, so a wrong kernel fails loudly instead of
writing wrong reasons.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churn.changes import (
    CHANGES_SUFFIX,
    CONTRIBUTIONS_SUFFIX,
    compare_scores,
    find_previous_scores,
    read_previous_scores,
    sidecar_path,
)
from churn.contract import CONTRACT
from churn.errors import DataContractError, EmptyPopulationError, ModelError
from churn.io import read_tables, write_parquet, write_table
from churn.model import ChurnModel
from churn.model_source import load_model
from churn.reasons import (
    FeatureSpec,
    build_feature_specs,
    build_reason_columns,
    top_positive_reasons,
)

if TYPE_CHECKING:
    from churn.config import Params

logger = logging.getLogger(__name__)

ContributionsFn = Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]]

FAMILIES = ("acquisition", "billing", "usage", "support", "engagement")
PHASES = ("pre_sale", "post_sale")
MRR_FEATURE = "mrr_at_cutoff"
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
      i = 1..reasons: the features with the largest *positive* contributions (those pushing risk
      up), in decreasing order, ties by model feature order. Slots beyond the number of positive
      contributions hold missing values.
    * ``risk_share_<family>`` for acquisition, billing, usage, support, engagement (plus any
      other family in the catalog, e.g. profile) and ``risk_share_pre_sale``,
      ``risk_share_post_sale``: the share of the row's total *positive* contribution that comes
      from the family's (phase's) features, ``sum(max(c, 0) over the group) / sum(max(c, 0))``;
      all 0 for a row with no positive contribution. Over families (and over phases) the shares
      sum to 1 for every other row. Negative contributions (protective factors) are left out,
      so a share answers "where does this customer's risk come from".

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
) -> ScoreResult:
    """Like :func:`score_frame` (same arguments), also returning every feature's contribution.

    Args:
        keep_contributions: Keep the full contributions (for "what changed"); else ``None``.
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
    explain = contributions_fn or model.contributions
    n_features = len(model.feature_names)
    score_parts: list[pd.DataFrame] = []
    contribution_parts: list[pd.DataFrame] = []
    # LightGBM cannot predict zero rows, so an empty frame is scored without the booster.
    starts = range(0, len(features), batch_rows) if len(features) else [0]
    for start in starts:
        batch = features.iloc[start : start + batch_rows]
        if len(batch):
            contributions, base = explain(batch)
            raw = model.predict_raw(batch)
            check_additivity(contributions, base, raw)
        else:
            contributions, base, raw = np.empty((0, n_features)), np.empty(0), np.empty(0)
        score_parts.append(_score_batch(model, batch, contributions, raw, specs, groups, reasons))
        if keep_contributions:
            contribution_parts.append(_contribution_frame(batch, contributions, base, specs))
    scores = pd.concat(score_parts) if len(score_parts) > 1 else score_parts[0]
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


def _mrr(batch: pd.DataFrame) -> np.ndarray:
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
) -> pd.DataFrame:
    probability = model.calibrator.transform(raw)
    mrr = _mrr(batch)
    columns: dict[str, Any] = {
        "customer_id": _column_or_missing(batch, "customer_id", "str"),
        "cutoff": _column_or_missing(batch, "cutoff", "datetime64[us, UTC]"),
        "churn_probability": probability,
        "mrr": mrr,
        "expected_revenue_at_risk": probability * MONTHS_PER_YEAR * mrr,
    }
    index, value = top_positive_reasons(contributions, reasons)
    columns.update(build_reason_columns(batch, index, value, specs, model.typical_values, reasons))
    shares = risk_shares(contributions, groups)
    columns.update({f"risk_share_{group}": share for group, share in shares.items()})
    return pd.DataFrame(columns, index=batch.index)


def _contribution_frame(
    batch: pd.DataFrame, contributions: np.ndarray, base: np.ndarray, specs: Mapping[str, Any]
) -> pd.DataFrame:
    columns: dict[str, Any] = {
        "customer_id": _column_or_missing(batch, "customer_id", "str"),
        "cutoff": _column_or_missing(batch, "cutoff", "datetime64[us, UTC]"),
        "base_value": np.asarray(base, dtype=np.float64),
    }
    columns.update({name: contributions[:, j].astype(np.float32) for j, name in enumerate(specs)})
    return pd.DataFrame(columns)


# ----------------------------------------------------------------------------------------------
# Runner: model loading, cutoff, population and features, ranking, writing
# ----------------------------------------------------------------------------------------------


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


def choose_cutoff(
    tables: Mapping[str, pd.DataFrame],
    configured: dt.date | None,
    entity_as_of: dt.date | None = None,
) -> pd.Timestamp:
    """Return the scoring cutoff (UTC midnight).

    A configured date wins. In entity mode (``entity_as_of`` given, or ``None`` meaning the run
    date) the cutoff is that date, as in ``churn label``. Otherwise it is the day *after* the
    latest known-at time (each contract table's ``event_time``, so a scheduled future
    ``ended_at`` cannot push it ahead): cutoffs are exclusive, so every row in the data is known
    at that cutoff and nothing is left out.

    Raises:
        DataContractError: If no configured date and no event timestamp exist.
    """
    if configured is not None:
        return pd.Timestamp(configured).tz_localize("UTC").as_unit("us")
    if entity_as_of is not None:
        return pd.Timestamp(entity_as_of).tz_localize("UTC").as_unit("us")
    latest: pd.Timestamp | None = None
    for name, frame in tables.items():
        column = CONTRACT[name].event_time if name in CONTRACT else None
        if column is None or column not in frame.columns or not frame[column].notna().any():
            continue
        value = pd.Timestamp(frame[column].max())
        value = value.tz_localize("UTC") if value.tzinfo is None else value.tz_convert("UTC")
        latest = value if latest is None else max(latest, value)
    if latest is None:
        raise DataContractError(
            "cannot choose a cutoff: the validated tables hold no event timestamps; "
            "set score.cutoff in params.yaml or pass --cutoff YYYY-MM-DD"
        )
    return (latest.floor("D") + pd.Timedelta(days=1)).as_unit("us")


def build_population(
    tables: Mapping[str, pd.DataFrame], cutoff: pd.Timestamp, params: Params
) -> pd.DataFrame:
    """Return the customers to score at ``cutoff`` as label rows (label missing).

    Events mode: customers with an active subscription (:func:`churn.label.active_population`).
    Entity mode: every customer in the customer table.
    """
    if params.ingest.mode != "entity":
        from churn.label import active_population

        return active_population(tables, cutoff, params.label)
    customers = tables["customers"].reset_index(drop=True)
    return pd.DataFrame(
        {
            "customer_id": customers["customer_id"].astype("str"),
            "cutoff": pd.Series(cutoff, index=customers.index, dtype="datetime64[us, UTC]"),
            "label": pd.Series(pd.NA, index=customers.index, dtype="Int8"),
            "mrr": pd.to_numeric(customers.get("mrr", np.nan), errors="coerce"),
        }
    )


def build_scoring_features(
    tables: Mapping[str, pd.DataFrame], cutoff: pd.Timestamp, params: Params
) -> pd.DataFrame:
    """Build the features of every customer in the population at ``cutoff``.

    The feature stage's own table selection and engine dispatch are used (local DuckDB or
    Spark, per ``features.engine``), so scoring features are computed exactly like training
    features.

    Raises:
        EmptyPopulationError: If no customer is in the population at the cutoff.
        ChurnError: If the Spark engine is requested but unavailable.
    """
    from churn.features.runner import compute_features

    population = build_population(tables, cutoff, params)
    if population.empty:
        raise EmptyPopulationError(
            f"no customer is active at the cutoff {cutoff:%Y-%m-%d}, so there is nothing to "
            "score and no file was written; check --cutoff / score.cutoff against the data"
        )
    result = compute_features(params, dict(tables), population)
    for family, reason in result.skipped.items():
        logger.warning("features %s skipped: %s", family, reason)
    # The Spark engine returns a lazy Spark frame; collecting it runs the job.
    frame = result.frame if isinstance(result.frame, pd.DataFrame) else result.to_pandas()
    if MRR_FEATURE not in frame.columns and "mrr" not in frame.columns and "mrr" in population:
        # Revenue at risk needs MRR even when the model does not use it as a feature.
        keys = ["customer_id", "cutoff"]
        frame = frame.merge(population[[*keys, "mrr"]], on=keys, how="left", validate="1:1")
    return frame


def run_score(
    params: Params,
    validated_dir: str | Path,
    model_uri: str | Path,
    out_path: str | Path,
    previous_path: str | Path | None = None,
) -> dict[str, Any]:
    """Score every customer active at the cutoff and write scores, contributions and changes.

    Files (all written atomically, only after everything was computed):

    * ``out_path``: :func:`score_frame` columns plus ``risk_decile``, sorted by
      ``expected_revenue_at_risk`` (Parquet or CSV per ``score.output_format``).
    * ``<stem>_contributions.parquet`` beside it: every feature's contribution per customer.
    * ``<stem>_changes.parquet`` beside it (see :func:`churn.changes.compare_scores`), when an
      earlier scoring exists: ``previous_path`` if given (a missing file is logged and skipped),
      else the scores already at ``out_path`` before they are replaced, so a nightly job that
      overwrites one file reports what changed since the last night.

    Args:
        params: Pipeline parameters (``score``, ``label``, ``features`` sections).
        validated_dir: Directory of validated tables.
        model_uri: Exported model directory or MLflow URI (see :func:`load_model`).
        out_path: Scores file.
        previous_path: Earlier scores file to compare with, or ``None``.

    Returns:
        A summary: cutoff, rows, output paths, seconds.

    Raises:
        EmptyPopulationError: If nobody is active at the cutoff; no file is touched.
    """
    started = time.perf_counter()
    out_path = Path(out_path)
    model = load_model(model_uri)
    tables = read_tables(validated_dir, list(CONTRACT))
    if not tables:
        raise DataContractError(f"no validated tables in {validated_dir}; run 'churn ingest'")
    from churn.features.runner import prepare_tables

    tables = prepare_tables(params, tables)
    entity = params.ingest.mode == "entity"
    as_of = (params.ingest.as_of or dt.datetime.now(dt.UTC).date()) if entity else None
    cutoff = choose_cutoff(tables, params.score.cutoff, as_of)
    features = build_scoring_features(tables, cutoff, params)
    duplicated = features.loc[features["customer_id"].duplicated(), "customer_id"]
    if len(duplicated):  # one row per customer, or rankings and changes would double count
        raise DataContractError(f"customers appear twice in the population: {list(duplicated[:5])}")
    result = score_population(
        model, features, params.score.reasons, batch_rows=params.score.batch_rows
    )
    scores = finalize_scores(result.scores)
    previous = find_previous_scores(previous_path, out_path)
    changes = None
    if previous is not None:
        before, before_contributions = read_previous_scores(previous)
        changes = compare_scores(
            scores, before, result.contributions, before_contributions, top=MOVED_FEATURES
        )

    contributions_path = sidecar_path(out_path, CONTRIBUTIONS_SUFFIX)
    changes_path = sidecar_path(out_path, CHANGES_SUFFIX)
    write_parquet(result.contributions, contributions_path)
    if changes is not None:
        write_parquet(changes, changes_path)
    write_table(scores, out_path, params.score.output_format)
    summary = {
        "cutoff": cutoff.isoformat(),
        "rows": len(scores),
        "scores": str(out_path),
        "contributions": str(contributions_path),
        "changes": None if changes is None else str(changes_path),
        "previous": None if previous is None else str(previous),
        "seconds": round(time.perf_counter() - started, 3),
    }
    logger.info("scored %d customers at %s -> %s", len(scores), cutoff.date(), out_path)
    return summary
