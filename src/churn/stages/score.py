"""The ``churn score`` stage: build point-in-time features at a cutoff, score, write atomically."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churn.domain.contract import CONTRACT, TIMESTAMP_DTYPE
from churn.domain.modes import Mode, reference_date
from churn.errors import DataContractError, EmptyPopulationError
from churn.io import atomic_directory, read_tables, write_parquet, write_table
from churn.layout import CHANGES_SUFFIX, CONTRIBUTIONS_SUFFIX, sidecar_path
from churn.model.changes import compare_scores, find_previous_scores, read_previous_scores
from churn.model.scoring import MOVED_FEATURES, MRR_FEATURE, finalize_scores, score_population
from churn.sql import utc_midnight, utc_timestamp
from churn.tracking.loading import load_model

if TYPE_CHECKING:
    from churn.config import Params

logger = logging.getLogger(__name__)


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
        return utc_midnight(configured)
    if entity_as_of is not None:
        return utc_midnight(entity_as_of)
    latest: pd.Timestamp | None = None
    for name, frame in tables.items():
        column = CONTRACT[name].event_time if name in CONTRACT else None
        if column is None or column not in frame.columns or not frame[column].notna().any():
            continue
        value = utc_timestamp(frame[column].max())
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

    Events mode: customers with an active subscription
    (:func:`churn.labels.build.active_population`).
    Entity mode: every customer in the customer table.
    """
    if params.ingest.mode is not Mode.ENTITY:
        from churn.labels.build import active_population

        return active_population(tables, cutoff, params.label)
    customers = tables["customers"].reset_index(drop=True)
    return pd.DataFrame(
        {
            "customer_id": customers["customer_id"].astype("str"),
            "cutoff": pd.Series(cutoff, index=customers.index, dtype=TIMESTAMP_DTYPE),
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
    from churn.stages.features import compute_features

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

    Files (written as one unit into a staging folder beside ``out_path``'s folder and swapped
    in whole, only after everything was computed; see :func:`churn.io.atomic_directory`):

    * ``out_path``: :func:`score_frame` columns plus ``risk_decile``, sorted by
      ``expected_revenue_at_risk`` (Parquet or CSV per ``score.output_format``).
    * ``<stem>_contributions.parquet`` beside it: every feature's contribution per customer.
    * ``<stem>_changes.parquet`` beside it (see :func:`churn.model.changes.compare_scores`), when an
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
    from churn.stages.features import pin_model_usage_event_types, prepare_tables

    tables = prepare_tables(params, tables)
    params = pin_model_usage_event_types(params, model.feature_names, tables)
    entity = params.ingest.mode is Mode.ENTITY
    as_of = reference_date(params.ingest.as_of) if entity else None
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
    replaced = {out_path.name, contributions_path.name, changes_path.name}
    # Scores, contributions and changes are one unit: staged beside the scores folder and
    # swapped in whole (other files in it are carried over), so a kill never leaves new
    # contributions beside old scores. Without a previous scoring there are no changes, and a
    # changes file of an older run would describe other scores: it is not carried over.
    with atomic_directory(out_path.parent, keep_existing=True, skip=replaced) as staging:
        write_parquet(result.contributions, staging / contributions_path.name)
        if changes is not None:
            write_parquet(changes, staging / changes_path.name)
        write_table(scores, staging / out_path.name, params.score.output_format)
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
