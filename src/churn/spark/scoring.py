"""Scores on Spark with the churn model, ranked like ``churn score``.

The ChurnModel's verified data files are broadcast and :func:`churn.model.scoring.score_frame`
(what the MLflow pyfunc runs) is applied per Arrow batch (no pickle is ever loaded, not even an
MLflow model's ``python_model.pkl``); the risk decile, a property of the whole population, is
a window over the scored rows. A model folder holding a survival head gets the horizon columns
(``churn_probability_<H>d``, ``next_decision_date``) of ``churn score`` too, computed per batch by
:func:`churn.model.horizon_scoring.score_frame_with_head`, the local core.
:func:`run_score_spark` is the Parquet-in, Parquet-out runner the spark-submit job in
``pipelines/`` calls.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from churn.errors import DataContractError
from churn.spark.arrow import (
    _pandas_dtype_for_spark,
    _spark_type_for_pandas,
    arrow_to_pandas,
    coerce_dtypes,
    pandas_to_arrow,
    spark_to_pandas,
)
from churn.spark.session import build_spark_session
from churn.spark.shards import ROW_COLUMN
from churn.spark.storage import (
    OutputLayout,
    TableInput,
    _Converted,
    _to_spark,
    write_spark_parquet,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import SparkSession

    from churn.config import Params

logger = logging.getLogger(__name__)


def _resolve_churn_model_dir(model_uri: str | Path, workdir: Path) -> Path:
    """Return a local :class:`churn.model.artifact.ChurnModel` directory for ``model_uri``.

    An exported directory (``models/churn``) is used as it is; an MLflow model directory or URI
    (``models:/churn@champion``, ``runs:/...``) is downloaded and its ``churn_model`` artifact
    (plain, checksummed data files) is taken. The pyfunc wrapper itself is never loaded, so no
    ``python_model.pkl`` of an older logged model is ever unpickled.
    """
    from churn.model.artifact import META_FILE
    from churn.tracking.loading import find_churn_model_dir
    from churn.tracking.store import connection_uri, import_mlflow, tracking_uri

    import_mlflow()
    import mlflow.artifacts

    text = str(model_uri)
    if Path(text).is_dir() and (Path(text) / META_FILE).exists():
        return Path(text)
    if Path(text).is_dir():
        return find_churn_model_dir(Path(text))
    store = connection_uri(tracking_uri())
    registry = connection_uri(os.environ.get("MLFLOW_REGISTRY_URI") or store)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=text, dst_path=str(workdir), tracking_uri=store, registry_uri=registry
    )
    return find_churn_model_dir(Path(local))


def _archive(directory: str | Path) -> bytes:
    """Return a directory as gzipped tar bytes (to broadcast a model to the executors)."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(str(directory), arcname="model")
    return buffer.getvalue()


_WORKER_MODELS: dict[str, Any] = {}
"""(ChurnModel, survival head or ``None``) loaded in this Python worker, by archive digest
(loaded once per worker)."""


def _load_model_and_head(directory: Path) -> tuple[Any, Any]:
    """Load (verified, from data files) the ChurnModel and, when the folder holds one, its head."""
    from churn.model.artifact import ChurnModel
    from churn.model.survival import SurvivalHead, has_survival_head

    head = SurvivalHead.load(directory) if has_survival_head(directory) else None
    return ChurnModel.load(directory), head


def _worker_model(key: str, broadcast: Any) -> tuple[Any, Any]:
    """Unpack and load the broadcast ChurnModel (and survival head) once per worker."""
    loaded = _WORKER_MODELS.get(key)
    if loaded is None:
        import io
        import tarfile
        import tempfile

        # The loaders read every file into memory, so the unpacked copy is removed right away
        # (one folder per Python worker would otherwise pile up in the temp folder).
        with tempfile.TemporaryDirectory(prefix="churn-model-") as target:
            with tarfile.open(fileobj=io.BytesIO(broadcast.value), mode="r:gz") as tar:
                tar.extractall(target, filter="data")
            loaded = _load_model_and_head(Path(target) / "model")
        _WORKER_MODELS[key] = loaded
    return loaded


def score_spark(
    spark: SparkSession,
    features: TableInput,
    model_uri: str | Path,
    reasons: int = 3,
    *,
    horizon_days: int = 60,
    model_form: str = "classifier",
) -> SparkDataFrame:
    """Score a feature frame on Spark with the churn model, ranked like ``churn score``.

    The ChurnModel's data files (verified against their manifest; no pickle is loaded, not even
    an MLflow model's ``python_model.pkl``) are broadcast to the executors and
    :func:`churn.model.scoring.score_frame` (what the MLflow pyfunc runs) is applied per Arrow
    batch with ``mapInArrow``. Not ``mlflow.pyfunc.spark_udf``: with a struct result type (the
    scores mix numbers and text) MLflow 3.17 casts string fields with ``astype(np.str_)``, which
    turns a missing reason into the text ``"nan"``. Here the batches are converted with the
    exact dtypes both ways.

    ``risk_decile`` and the final order follow :func:`churn.model.scoring.finalize_scores`:
    deciles over the whole population by probability (desc), ties by ``customer_id`` then input
    order; rows sorted by expected revenue at risk (desc, missing last), probability (desc),
    ``customer_id``.

    Args:
        spark: The session.
        features: The feature frame (Spark DataFrame, pandas DataFrame or Parquet path), e.g.
            :attr:`churn.spark.features.SparkFeatureResult.frame`.
        model_uri: An MLflow model URI (``models:/churn@champion``, ``runs:/<id>/model``), an
            MLflow model directory, or an exported ChurnModel directory (``models/churn``).
        reasons: Reasons per customer (any number: the model is scored directly, whatever
            number of reasons a logged pyfunc was configured with).
        horizon_days: ``label.horizon_days``, the primary horizon (used with a head only).
        model_form: ``train.model_form``; ``hazard`` makes the head's primary horizon
            ``churn_probability`` and its reasons the reasons, as in ``churn score``.

    Returns:
        The scores as a lazy Spark DataFrame: the :func:`churn.model.scoring.score_frame`
        columns (with the horizon columns after ``churn_probability`` when the model folder
        holds a survival head) plus ``risk_decile`` after ``expected_revenue_at_risk``. The
        scored rows are persisted (memory and disk), because the ranking reads them twice.

    Raises:
        ModelError: If the model files fail verification (see
            :meth:`churn.model.artifact.ChurnModel.load`).
    """
    import tempfile

    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as sf
    from pyspark.sql.pandas.types import to_arrow_type
    from pyspark.sql.types import LongType, StructField, StructType

    from churn.model.horizon_scoring import score_frame_with_head
    from churn.tracking.store import quiet_mlflow

    sdf, dtypes = _to_spark(spark, features, "features")
    with quiet_mlflow(), tempfile.TemporaryDirectory(prefix="churn-spark-model-") as tmp:
        model_dir = _resolve_churn_model_dir(model_uri, Path(tmp))
        model, head = _load_model_and_head(model_dir)

        def score(churn_model: Any, survival_head: Any, frame: pd.DataFrame) -> pd.DataFrame:
            return score_frame_with_head(
                churn_model,
                survival_head,
                frame,
                reasons,
                primary_horizon=horizon_days,
                head_is_primary=model_form == "hazard",
            )

        # The model itself says what it returns (the reason and risk-share columns depend on
        # the number of reasons and the catalog's families, the horizon columns on the head):
        # score a few rows on the driver.
        sample_out = score(model, head, spark_to_pandas(sdf.limit(20), dtypes))
        archive = _archive(model_dir)
    model_key = hashlib.sha256(archive).hexdigest()
    payload = spark.sparkContext.broadcast(archive)
    out_dtypes = dict(sample_out.dtypes.items())
    schema = StructType(
        [StructField(c, _spark_type_for_pandas(d, c), True) for c, d in out_dtypes.items()]
        + [StructField(ROW_COLUMN, LongType(), False)]
    )

    def predict(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        arrow_schema = pa.schema(
            [pa.field(f.name, to_arrow_type(f.dataType), f.nullable) for f in schema.fields]
        )
        churn_model, survival_head = _worker_model(model_key, payload)
        for batch in batches:
            frame = arrow_to_pandas(pa.Table.from_batches([batch]), dtypes)
            rows = frame.pop(ROW_COLUMN).to_numpy(dtype=np.int64)
            out = score(churn_model, survival_head, frame).reset_index(drop=True)
            out = coerce_dtypes(out, out_dtypes)
            out[ROW_COLUMN] = rows
            yield from pandas_to_arrow(out, arrow_schema).to_batches()

    scored = (
        sdf.withColumn(ROW_COLUMN, sf.monotonically_increasing_id())
        .mapInArrow(predict, schema)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    # Deciles rank the whole population: a single-partition window, but over three narrow
    # columns (tens of bytes per row), joined back by the row id.
    rank_window = Window.orderBy(
        sf.col("churn_probability").desc(), sf.col("customer_id").asc(), sf.col(ROW_COLUMN).asc()
    )
    deciles = scored.select(
        ROW_COLUMN,
        sf.row_number().over(rank_window).alias("_rank"),
        sf.count("*").over(Window.partitionBy()).alias("_n"),
    ).select(ROW_COLUMN, sf.expr("(_rank - 1) * 10 div _n + 1").alias("risk_decile"))
    columns = list(out_dtypes)
    columns.insert(columns.index("expected_revenue_at_risk") + 1, "risk_decile")
    revenue = sf.col("expected_revenue_at_risk")
    return (
        scored.join(deciles, ROW_COLUMN)
        .orderBy(
            sf.when(sf.isnan(revenue), None).otherwise(revenue).desc_nulls_last(),
            sf.col("churn_probability").desc(),
            sf.col("customer_id").asc(),
            sf.col(ROW_COLUMN).asc(),
        )
        .select(*columns)
    )


def score_dtypes(scores: SparkDataFrame) -> dict[str, Any]:
    """Pandas dtypes of a :func:`score_spark` frame as ``churn score`` writes them."""
    dtypes = {f.name: _pandas_dtype_for_spark(f.dataType) for f in scores.schema.fields}
    dtypes["risk_decile"] = np.dtype("int64")
    return dtypes


def select_scoring_rows(
    features: SparkDataFrame, cutoff: dt.date | None
) -> tuple[SparkDataFrame, pd.Timestamp]:
    """Keep the rows of one cutoff: ``cutoff`` if given, else the latest in the features.

    Raises:
        EmptyPopulationError: If no row has that cutoff.
        DataContractError: If a customer appears twice at the cutoff.
    """
    from pyspark.sql import functions as sf

    from churn.errors import EmptyPopulationError

    if cutoff is None:
        latest = features.agg(sf.max("cutoff").alias("cutoff")).collect()[0].cutoff
        if latest is None:
            raise EmptyPopulationError("the features hold no rows, so there is nothing to score")
        chosen = pd.Timestamp(latest)
    else:
        chosen = pd.Timestamp(cutoff)
    chosen = (chosen.tz_localize("UTC") if chosen.tzinfo is None else chosen).as_unit("us")
    rows = features.where(sf.col("cutoff") == sf.lit(chosen.to_pydatetime()))
    counts = rows.agg(
        sf.count("*").alias("rows"), sf.count_distinct("customer_id").alias("customers")
    ).collect()[0]
    if counts.rows == 0:
        raise EmptyPopulationError(
            f"no feature rows at the cutoff {chosen:%Y-%m-%d}; check score.cutoff"
        )
    if counts.rows != counts.customers:
        raise DataContractError(
            f"{counts.rows - counts.customers} customer(s) appear more than once at the cutoff "
            f"{chosen:%Y-%m-%d}"
        )
    return rows, chosen


def run_score_spark(
    params: Params,
    features_path: str | Path,
    model_uri: str | Path,
    out_path: str | Path,
    *,
    spark: SparkSession | None = None,
    layout: OutputLayout = "file",
) -> dict[str, Any]:
    """Score a features Parquet on Spark with the churn model; write scores like ``churn score``.

    Scores the rows of one cutoff (``score.cutoff``, else the latest cutoff in the features:
    the labels' scoring cutoff) with :func:`score_spark`: same columns (horizon columns
    included when the model folder holds a survival head), reasons, deciles and order as
    ``churn score``. The contributions and "what changed" sidecars of the local
    stage are not written.

    Args:
        params: Pipeline parameters (``score`` section; ``features.spark.master``).
        features_path: Features Parquet (file, directory or URI), e.g. from
            :func:`run_features_spark`.
        model_uri: MLflow model URI, MLflow model directory or exported ChurnModel directory.
        out_path: Scores output: a file (``layout="file"``, Parquet or CSV per
            ``score.output_format``) or a Parquet directory.
        spark: A session to use; ``None`` builds one from ``features.spark.master``.
        layout: ``file`` or ``directory``.

    Returns:
        A summary: cutoff, rows (file layout only), output, seconds.
    """
    from churn.io import write_table

    started = time.perf_counter()
    spark = spark or build_spark_session(params.features.spark.master)
    features = _to_spark(spark, features_path, "features")
    rows, cutoff = select_scoring_rows(features.sdf, params.score.cutoff)
    scores = score_spark(
        spark,
        _Converted(rows, features.dtypes),
        model_uri,
        params.score.reasons,
        horizon_days=params.label.horizon_days,
        model_form=params.train.model_form,
    )
    summary: dict[str, Any] = {"cutoff": cutoff.isoformat(), "scores": str(out_path)}
    if layout == "file":
        frame = spark_to_pandas(scores, score_dtypes(scores))
        write_table(frame, str(out_path), params.score.output_format)
        summary["rows"] = len(frame)
    else:
        write_spark_parquet(scores, out_path)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    logger.info("spark scores at %s -> %s in %.1fs", cutoff.date(), out_path, summary["seconds"])
    return summary
