"""The ``churn features`` stage: read tables and labels, compute features, write them atomically."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from churn.config import Params
from churn.console import log_table
from churn.domain.contract import CONTRACT
from churn.domain.modes import Mode
from churn.errors import ChurnError, DataContractError, EmptyPopulationError
from churn.features.build import FeatureResult, build_features, write_features
from churn.features.families.usage import (
    AUTO,
    resolve_usage_event_types,
    usage_event_types_of_model,
)
from churn.io import read_frame, read_tables, write_parquet, write_table
from churn.layout import table_file_name

logger = logging.getLogger(__name__)


def prepare_tables(
    params: Params, tables: Mapping[str, pd.DataFrame | Path]
) -> dict[str, pd.DataFrame | Path]:
    """Select the tables the mode uses; in entity mode drop the label column (it is the target).

    Raises:
        DataContractError: If a table the mode needs is missing.
    """
    if params.ingest.mode is Mode.ENTITY:
        if "customers" not in tables:
            raise DataContractError("entity mode: the customers table is missing")
        customers = tables["customers"]
        label = params.ingest.label_column
        return {"customers": customers.drop(columns=[label]) if label in customers else customers}
    missing = [t for t in ("customers", "subscriptions") if t not in tables]
    if missing:
        raise DataContractError(f"events mode: required table(s) {missing} missing")
    return dict(tables)


def compute_features(
    params: Params, tables: dict[str, pd.DataFrame], labels: pd.DataFrame
) -> FeatureResult:
    """Compute features with the configured engine (DuckDB locally, or Spark).

    Training (``churn features``) and scoring (``churn score``) both call this, so the two
    can never use different feature code. ``features.usage_event_types: auto`` is resolved
    here, once, from the events before the earliest cutoff of ``labels``, so every Spark shard
    computes the same columns (scoring pins the model's types first, see
    :func:`pin_model_usage_event_types`).
    """
    first_cutoff = labels["cutoff"].min() if len(labels) else None
    cfg = resolve_usage_event_types(params.features, tables, first_cutoff)
    if cfg.engine != "spark":
        return build_features(tables, labels, cfg, mode=params.ingest.mode)
    module = "churn.spark.features"
    try:
        # A literal name, so tools that follow imports (the dvc.yaml deps test) see it.
        spark_engine = importlib.import_module("churn.spark.features")
    except ModuleNotFoundError as exc:
        what = f"the module {module}" if exc.name == module else f"{exc.name!r}"
        raise ChurnError(
            f"features.engine is 'spark' but {what} cannot be imported; install the extra "
            "with `pip install -e '.[spark]'` or set features.engine: local"
        ) from exc
    # The Spark workers call build_features without a mode: prepare_tables leaves only
    # customers in entity mode, from which build_features infers the same mode.
    return spark_engine.build_features_spark(tables=tables, population=labels, cfg=cfg)


def pin_model_usage_event_types(
    params: Params, feature_names: Iterable[str], tables: Mapping[str, pd.DataFrame | Path]
) -> Params:
    """Return ``params`` with ``usage_event_types: auto`` replaced by the model's types.

    Scoring must compute the columns the model was trained on, whatever event types the
    scoring data holds (see :mod:`churn.features.families.usage`). An explicit list is kept.
    """
    if params.features.usage_event_types != AUTO:
        return params
    types = usage_event_types_of_model(feature_names, tables.get("usage_events"))
    features = params.features.model_copy(update={"usage_event_types": types})
    return params.model_copy(update={"features": features})


def read_feature_tables(params: Params, validated_dir: Path) -> dict[str, pd.DataFrame | Path]:
    """Return the validated tables the features stage reads, big ones as Parquet paths.

    With the local engine only ``customers`` is read into pandas (its columns and values are
    checked in Python); DuckDB scans the other files itself, so they never exist whole in
    pandas. The Spark engine gets every table as a frame.
    """
    if params.features.engine == "spark" or params.ingest.mode is Mode.ENTITY:
        return dict(read_tables(validated_dir, list(CONTRACT)))
    tables: dict[str, pd.DataFrame | Path] = dict(read_tables(validated_dir, ["customers"]))
    for name in CONTRACT:
        path = validated_dir / table_file_name(name)
        if name != "customers" and path.exists():
            tables[name] = path
    return tables


def run_features(
    params: Params,
    validated_dir: Path,
    labels_path: Path,
    out_path: Path,
    catalog_path: Path,
    scoring_out: Path | None = None,
) -> None:
    """Compute features for every labels row and write the features Parquet and catalog CSV.

    The local engine streams the features from DuckDB to the file in batches
    (:func:`churn.features.build.write_features`): memory is ``features.duckdb_memory_limit``
    (DuckDB spills past it into a scratch folder beside the output, removed after) plus the
    customers table, the labels and one batch, not the whole features table.

    Args:
        params: All parameters (``features`` knobs; ``ingest.mode`` and ``label_column``).
        validated_dir: Directory of validated tables.
        labels_path: Labels Parquet from ``churn label``.
        out_path: Features Parquet to write.
        catalog_path: Feature catalog CSV to write.
        scoring_out: Where to write the scoring cutoff's rows too (the customers ``churn
            score`` would score, computed in the same pass:
            :mod:`churn.stages.scoring_population`); the file is always written, without rows
            and with the reason in its metadata when there are none. ``None``: not computed.

    Raises:
        DataContractError: If a required table is missing.
        EmptyPopulationError: If the labels are empty.
        ChurnError: If the Spark engine is requested but unavailable.
    """
    tables = prepare_tables(params, read_feature_tables(params, validated_dir))
    labels = read_frame(labels_path)
    if labels.empty:
        raise EmptyPopulationError(f"{labels_path} has no rows: nothing to compute features for")
    if params.features.engine == "spark":
        result = compute_features(params, tables, labels)
        write_parquet(result.frame, out_path)
        rows, catalog, skipped = len(result.frame), result.catalog, result.skipped
        if scoring_out is not None:
            from churn.stages.scoring_population import write_no_scoring_rows

            write_no_scoring_rows(scoring_out, "features.engine spark: only the local engine")
    else:
        first_cutoff = labels["cutoff"].min()
        cfg = resolve_usage_event_types(params.features, tables, first_cutoff)
        population, split = labels, {}
        if scoring_out is not None:
            population, split = _add_scoring_rows(params, tables, labels, validated_dir)
            split["split_path"] = scoring_out
        summary = write_features(
            tables, population, cfg, out_path, mode=params.ingest.mode, **split
        )
        # The summary counts both files' rows; the title gives the training file's.
        rows, catalog, skipped = len(labels), summary.catalog, summary.skipped
        if summary.rows > len(labels):
            logger.info("%s: %d scoring rows", scoring_out, summary.rows - len(labels))
    by_family = catalog.groupby("family", sort=False).size()
    table_rows = [(family, f"{count}", "") for family, count in by_family.items()]
    table_rows += [(family, "0", reason) for family, reason in skipped.items()]
    log_table(
        logger,
        f"features: {rows:,} rows x {len(catalog)} features ({params.features.engine} engine)",
        ["family", "features", "skipped"],
        table_rows,
    )
    write_table(catalog, catalog_path, fmt="csv")
    logger.info("wrote %s and %s", out_path, catalog_path)


def _add_scoring_rows(
    params: Params,
    tables: Mapping[str, pd.DataFrame | Path],
    labels: pd.DataFrame,
    validated_dir: Path,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The labels with the scoring population appended, and :func:`write_features`' split
    arguments (the rows from the labels' end on, and their file's metadata)."""
    from churn.stages.scoring_population import (
        POPULATION_TABLES,
        describe_scoring_inputs,
        plan_scoring_rows,
        scoring_rows_metadata,
    )

    # The population is built as churn score builds it: its tables in pandas.
    frames = dict(tables)
    wanted = [n for n in POPULATION_TABLES if isinstance(frames.get(n), Path)]
    frames.update(read_tables(validated_dir, wanted))
    population, cutoff, note = plan_scoring_rows(params, frames, labels)
    logger.info("scoring rows: %s", note if population is None else f"{note}, for churn score")
    if population is None:
        combined, fingerprint = labels, None
    else:
        combined = pd.concat([labels, population], ignore_index=True)
        fingerprint = describe_scoring_inputs(params, validated_dir)
    metadata = scoring_rows_metadata(fingerprint, cutoff, note)
    return combined, {"split_at": len(labels), "split_metadata": metadata}
