"""Features on Spark with the local feature code: one customer shard per task.

Nothing here re-implements a feature: each of ``features.spark.shards`` customer shards
(:func:`churn.spark.shards.map_shards`) runs the *same*
:func:`churn.features.build.build_features` (DuckDB inside) in a Spark worker. A customer's
features depend only on that customer's rows, so the union of the shards equals the local
result, row for row. :func:`run_features_spark` is the Parquet-in, Parquet-out runner the
spark-submit job in ``pipelines/`` calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churn.domain.modes import Mode
from churn.errors import DataContractError
from churn.spark.arrow import _STR_DTYPE, _empty_frame, spark_to_pandas
from churn.spark.session import build_spark_session
from churn.spark.shards import ROW_COLUMN, collect_rows, map_shards, sort_rows
from churn.spark.storage import (
    OutputLayout,
    TableInput,
    _Converted,
    _to_spark,
    path_exists,
    write_spark_parquet,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import SparkSession

    from churn.config import FeaturesConfig, Params

logger = logging.getLogger(__name__)


@dataclass
class SparkFeatureResult:
    """What :func:`build_features_spark` returns: a :class:`~churn.features.build.FeatureResult`
    look-alike whose rows live in Spark until asked for.

    Attributes:
        rows: The lazy Spark result of :func:`map_shards`: ``_row`` (population row number)
            then the feature columns, unsorted.
        catalog: The feature catalog, as the local engine returns it.
        skipped: Family (or ``family.part``) -> reason, as the local engine returns it.
        dtypes: Column -> pandas dtype of the local frame (restored by :attr:`frame`).
    """

    rows: SparkDataFrame
    catalog: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)
    dtypes: dict[str, Any] = field(default_factory=dict)
    _frame: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def sdf(self) -> SparkDataFrame:
        """The features as a lazy Spark DataFrame with the local frame's columns, sorted in the
        population's order (e.g. ``result.sdf.write.parquet(directory)``)."""
        return sort_rows(self.rows)

    @property
    def frame(self) -> pd.DataFrame:
        """The features as pandas with the local engine's dtypes (runs the job once, cached)."""
        if self._frame is None:
            self._frame = collect_rows(self.rows, self.dtypes)
        return self._frame

    def to_pandas(self) -> pd.DataFrame:
        """Same as :attr:`frame`."""
        return self.frame


def _learn_output(
    tables: Mapping[str, _Converted],
    population: _Converted,
    cfg: FeaturesConfig,
    mode: Mode | None,
) -> Any:
    """Run ``build_features`` on the driver to learn the output columns, catalog and skips.

    The catalog depends only on the configuration, which tables are present and (entity mode)
    the customer columns and dtypes, never on the rows: so empty tables with the right dtypes
    and a single population row give exactly what the full run gives, for one tiny Spark job.
    The workers check that their output matches.
    """
    from churn.features.build import build_features

    pop_sdf, pop_dtypes = population
    first = spark_to_pandas(pop_sdf.limit(1), pop_dtypes).drop(
        columns=[ROW_COLUMN], errors="ignore"
    )
    empty = {name: _empty_frame(dtypes) for name, (_, dtypes) in tables.items()}
    return build_features(empty, first, cfg, mode=mode)


def _resolve_usage_event_types(
    inputs: Mapping[str, _Converted], population: _Converted, cfg: FeaturesConfig
) -> FeaturesConfig:
    """Resolve ``usage_event_types: auto`` once, on the driver, over all the events.

    Shards must not choose: each would see only its customers' events. The rule is the local
    one (:func:`churn.features.families.usage.resolve_usage_event_types`): the most frequent
    types among the events before the population's earliest cutoff.
    """
    from pyspark.sql import functions as sf

    from churn.features.families.usage import AUTO, rank_usage_event_types

    if cfg.usage_event_types != AUTO:
        return cfg
    first = population.sdf.agg(sf.min("cutoff")).collect()[0][0]
    counts: dict[str, int] = {}
    if "usage_events" in inputs and first is not None:
        rows = (
            inputs["usage_events"]
            .sdf.filter(sf.col("occurred_at") < sf.lit(first))
            .groupBy("event_type")
            .count()
            .collect()
        )
        counts = {str(r["event_type"]): int(r["count"]) for r in rows if r["event_type"]}
    types = rank_usage_event_types(counts, cfg.usage_event_types_top)
    return cfg.model_copy(update={"usage_event_types": types})


def _output_dtypes(frame: pd.DataFrame, catalog: pd.DataFrame) -> dict[str, Any]:
    """Output dtypes: the catalog's kind decides feature dtypes (a small sample cannot)."""
    dtypes = dict(frame.dtypes.items())
    if {"name", "kind"} <= set(catalog.columns):
        for name, kind in zip(catalog["name"], catalog["kind"], strict=True):
            if name in dtypes:
                dtypes[name] = np.dtype("float64") if kind == "numeric" else _STR_DTYPE
    return dtypes


def build_features_spark(
    spark: SparkSession | None = None,
    tables: Mapping[str, TableInput] | None = None,
    population: TableInput | None = None,
    cfg: FeaturesConfig | None = None,
    *,
    mode: Mode | None = None,
) -> SparkFeatureResult:
    """Compute the features of ``population`` on Spark with the local feature code.

    Each of ``cfg.spark.shards`` customer shards runs :func:`churn.features.build.build_features`
    in a Spark worker; the result equals the local engine's, row for row (same columns, dtypes,
    values and row order).

    Both callers' forms work: ``build_features_spark(spark, tables, population, cfg)`` (the
    caller owns the session; ``churn score``) and ``build_features_spark(tables=...,
    population=..., cfg=...)`` (``churn features``: a session is built from
    ``cfg.spark.master`` and the frame is collected before returning).

    Args:
        spark: The session (see :func:`build_spark_session`), or ``None`` to build one.
        tables: Validated table name -> Spark DataFrame, pandas DataFrame or Parquet path
            (tables with their validated dtypes; a path's dtypes come from its Parquet
            metadata).
        population: The rows to compute features for (same kinds of input), e.g. the labels;
            its row order is the output's order.
        cfg: Feature settings; ``cfg.spark.shards`` sets the number of shards.
        mode: ``ingest.mode``, passed to every ``build_features`` call (``None``: inferred
            from the tables, identically on every shard since each gets every table).

    Returns:
        The Spark frame (lazy unless the session was built here), the catalog and the skipped
        families, with :attr:`SparkFeatureResult.frame` giving pandas.

    Raises:
        TypeError: If ``tables``, ``population`` or ``cfg`` is missing.
    """
    from churn.features.build import build_features

    if tables is None or population is None or cfg is None:
        raise TypeError("build_features_spark needs tables, population and cfg")
    owns_session = spark is None
    if spark is None:
        spark = build_spark_session(cfg.spark.master)
    inputs = {name: _to_spark(spark, data, name) for name, data in tables.items()}
    if isinstance(population, pd.DataFrame):
        # Number the rows before Spark sees them: a pandas frame's order is its positions.
        population = population.assign(**{ROW_COLUMN: np.arange(len(population), dtype=np.int64)})
    pop = _to_spark(spark, population, "population")
    cfg = _resolve_usage_event_types(inputs, pop, cfg)
    learned = _learn_output(inputs, pop, cfg, mode)
    dtypes = _output_dtypes(learned.frame, learned.catalog)

    def shard_features(frames: dict[str, pd.DataFrame], shard_pop: pd.DataFrame) -> pd.DataFrame:
        return build_features(frames, shard_pop, cfg, mode=mode).frame

    rows = map_shards(spark, inputs, pop, shard_features, dtypes, cfg.spark.shards)
    result = SparkFeatureResult(
        rows=rows, catalog=learned.catalog, skipped=dict(learned.skipped), dtypes=dtypes
    )
    if owns_session:
        # The caller never saw the session: hand back finished rows, not a lazy plan on a
        # session it does not know about.
        result.frame  # noqa: B018
    return result


def read_validated_tables(
    spark: SparkSession, params: Params, validated_dir: str | Path
) -> dict[str, _Converted]:
    """Read the validated tables with Spark and select them like ``churn features`` does.

    Mirrors :func:`churn.stages.features.prepare_tables` for Spark frames: events mode needs
    ``customers`` and ``subscriptions``; entity mode reads ``customers`` only, without the
    label column (the target must not become a feature).

    Raises:
        DataContractError: If a table the mode needs is missing.
    """
    from churn.domain.contract import CONTRACT
    from churn.layout import table_file_name

    base = str(validated_dir).rstrip("/")
    names = ["customers"] if params.ingest.mode is Mode.ENTITY else list(CONTRACT)
    tables = {
        name: _to_spark(spark, f"{base}/{table_file_name(name)}", name)
        for name in names
        if path_exists(spark, f"{base}/{table_file_name(name)}")
    }
    if params.ingest.mode is Mode.ENTITY:
        if "customers" not in tables:
            raise DataContractError("entity mode: the customers table is missing")
        sdf, dtypes = tables["customers"]
        label = params.ingest.label_column
        if label in sdf.columns:
            dtypes = {k: v for k, v in dtypes.items() if k != label}
            tables["customers"] = _Converted(sdf.drop(label), dtypes)
        return tables
    missing = [t for t in ("customers", "subscriptions") if t not in tables]
    if missing:
        raise DataContractError(f"events mode: required table(s) {missing} missing")
    return tables


def run_features_spark(
    params: Params,
    validated_dir: str | Path,
    labels_path: str | Path,
    out_path: str | Path,
    catalog_path: str | Path,
    *,
    spark: SparkSession | None = None,
    layout: OutputLayout = "file",
) -> dict[str, Any]:
    """``churn features`` on Spark: validated Parquet and labels in, features Parquet out.

    Spark reads the inputs itself (no pandas on the driver), the shards run
    :func:`churn.features.build.build_features` on the executors, and the output is either

    * ``layout="file"``: one Parquet file collected on the driver, byte-compatible with the
      local engine's ``features.parquet`` (fine up to a few million rows); or
    * ``layout="directory"``: a Parquet directory written by the executors (cluster scale),
      rows in the labels' order across ``part-*`` files; ``pd.read_parquet(dir)`` reads it
      back with the same columns (strings come back as ``str``; integers as nullable).

    Args:
        params: Pipeline parameters (``features``, ``ingest.mode``, ``ingest.label_column``).
        validated_dir: Directory (or URI) of validated tables.
        labels_path: Labels Parquet (file, directory or URI); its row order is kept.
        out_path: Features output (see ``layout``).
        catalog_path: Feature catalog CSV (driver's local file system).
        spark: A session to use; ``None`` builds one from ``features.spark.master``.
        layout: ``file`` or ``directory``.

    Returns:
        A summary: rows (file layout only), features, skipped families, seconds.

    Raises:
        DataContractError: If a required table or the labels are missing.
    """
    from churn.io import write_parquet, write_table

    started = time.perf_counter()
    spark = spark or build_spark_session(params.features.spark.master)
    tables = read_validated_tables(spark, params, validated_dir)
    result = build_features_spark(
        spark, tables, str(labels_path), params.features, mode=params.ingest.mode
    )
    summary: dict[str, Any] = {"features": len(result.catalog), "skipped": dict(result.skipped)}
    if layout == "file":
        frame = result.frame
        write_parquet(frame, str(out_path))
        summary["rows"] = len(frame)
    else:
        write_spark_parquet(result.sdf, out_path)
    write_table(result.catalog, catalog_path, fmt="csv")
    for family, reason in result.skipped.items():
        logger.warning("feature family %s skipped: %s", family, reason)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    logger.info("spark features -> %s (%s) in %.1fs", out_path, layout, summary["seconds"])
    return summary
