"""Scale-out on Apache Spark with the same code: features and scores computed by Spark workers.

Nothing here re-implements a feature or a score; Spark only moves data and runs the package's
own functions:

* **Features** (:func:`build_features_spark`). Every customer belongs to one of
  ``features.spark.shards`` shards, ``pmod(xxhash64(customer_id), shards)``: a fixed function of
  the id, the same on every run, machine and cluster size. Each map task packs its slice of a
  table into one Arrow IPC blob per shard (no shuffle of individual rows); the blobs of all
  tables and of the population are shuffled once, by shard, one shard per task; the task
  restores the validated pandas dtypes and runs the *same*
  :func:`churn.features.build.build_features` (DuckDB inside) on its shard. A customer's
  features depend only on that customer's rows, so the union of the shards equals the local
  result; a ``_row`` number travels with every population row to restore its order.
* **Scores** (:func:`score_spark`). The MLflow pyfunc (:class:`churn.tracking.pyfunc.ChurnPyfuncModel`,
  i.e. :func:`churn.model.scoring.score_frame`) is broadcast and applied per Arrow batch; the risk
  decile, a property of the whole population, is a window over the scored rows.

Why blobs rather than a long-format union of the tables (a ``_table`` column and the union of
all columns): the tables share few columns, so every event row would carry ~45 mostly-null
columns through the shuffle and into pandas. A blob keeps each table's own columns and exact
Arrow types (timestamps stay ``timestamp[us, UTC]``). Blobs are capped at
:data:`PACK_CHUNK_ROWS` rows so that no single value approaches Spark's 2 GiB row limit.

PySpark is an optional dependency (``pip install churn[spark]``): it is imported inside the
functions, and importing this module starts no JVM and no session.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churn.errors import ChurnError, DataContractError

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql.types import DataType

    from churn.config import FeaturesConfig, Params

logger = logging.getLogger(__name__)

SHARD_COLUMN = "_shard"
ROW_COLUMN = "_row"
TABLE_COLUMN = "_table"
PART_COLUMN = "_part"
PAYLOAD_COLUMN = "_payload"
POPULATION_KEY = "__population__"
"""Name under which the population travels through the shuffle (not a contract table)."""

PACK_CHUNK_ROWS = 500_000
"""Rows per Arrow IPC blob: a few tens of MiB of events, far below Spark's 2 GiB value limit,
and small enough to keep a map task's output batches modest."""

_PACKED_SCHEMA = "_shard int, _table string, _part long, _payload binary"


# --------------------------------------------------------------------------------------------
# Session
# --------------------------------------------------------------------------------------------


def _local_cores(master: str | None) -> int | None:
    """Return the worker threads of a ``local[N]`` master (``None`` for a cluster master)."""
    if master is None:
        return None
    if master == "local":
        return 1
    match = re.fullmatch(r"local\[(\*|\d+)(?:,\s*\d+)?\]", master)
    if match is None:
        return None
    return (os.cpu_count() or 1) if match.group(1) == "*" else int(match.group(1))


def _local_driver_memory() -> str:
    """A local-mode JVM heap: 40% of physical memory, between 2 and 16 GiB."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return "4g"
    return f"{min(16, max(2, int(0.4 * physical / 2**30)))}g"


def resolve_master(requested: str | None, configured: str) -> str | None:
    """Pick the Spark master for a job: explicit request, else spark-submit's, else the config.

    Under ``spark-submit`` (which exports ``PYSPARK_GATEWAY_PORT`` to the Python driver) the
    master given to spark-submit must win, so ``None`` is returned and the builder leaves it
    alone; a plain ``python`` run falls back to ``features.spark.master``.
    """
    if requested:
        return requested
    return None if "PYSPARK_GATEWAY_PORT" in os.environ else configured


def build_spark_session(
    master: str | None = "local[2]",
    app_name: str = "churn",
    conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """Create (or reuse) a Spark session set up for churn: UTC everywhere, Arrow on, quiet.

    Time zones are pinned because Spark converts timestamps to the *session* time zone when it
    hands them to Python, and Python workers format and parse times in their *process* time
    zone: both must be UTC for a cutoff to mean the same instant on every machine.

    Local masters also bind the driver to 127.0.0.1 (no network needed), use few shuffle
    partitions (the default 200 mostly schedules empty tasks on a laptop), give the single
    local JVM 40% of the memory (2-16 GiB) and lift the cap on collected results.

    Args:
        master: Spark master URL (``local[2]``, ``local[*]``, ``spark://host:7077``, ``yarn``),
            or ``None`` to keep the one ``spark-submit`` was given. Static settings (master,
            memory) are ignored if a session already runs in this process.
        app_name: Application name shown by the cluster manager.
        conf: Extra Spark settings; they override the defaults set here (except the session
            time zone, which is always UTC).

    Returns:
        The active session, with ``spark.sql.session.timeZone=UTC``.
    """
    from pyspark.sql import SparkSession

    # Workers run `python3` from PATH unless told otherwise; in a venv that is the wrong
    # interpreter (no churn, different pandas). Respect an explicit choice.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    cores = _local_cores(master)
    if cores is not None:
        # Local Python workers descend from the JVM this process starts: they inherit its
        # environment. (Executors elsewhere get TZ from spark.executorEnv.TZ below.)
        os.environ["TZ"] = "UTC"
        time.tzset()
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    settings: dict[str, str] = {
        "spark.executorEnv.TZ": "UTC",
        "spark.executorEnv.PYSPARK_PYTHON": os.environ["PYSPARK_PYTHON"],
        "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # A silent fallback to the row-by-row path would hide a type problem and be 10x slower.
        "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
        # A grouped-map UDF receives a whole group as one Arrow batch; with 32-bit offsets the
        # blobs of one shard could not exceed 2 GiB in total. 64-bit ("large") types lift that.
        "spark.sql.execution.arrow.useLargeVarTypes": "true",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # Standard Parquet timestamps (int64 microseconds, UTC-adjusted) instead of the legacy
        # INT96 that other readers load as naive nanoseconds: pandas reads Spark's output back
        # as datetime64[us, UTC], like the local engine's files.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    }
    if cores is not None:
        settings.update(
            {
                "spark.sql.shuffle.partitions": str(max(2, 2 * cores)),
                "spark.default.parallelism": str(max(2, 2 * cores)),
                "spark.driver.host": "127.0.0.1",
                "spark.driver.bindAddress": "127.0.0.1",
                # One JVM is driver and executors, and the local engine collects the whole
                # feature table through it (the 1 GiB default result cap is ~1M feature rows).
                "spark.driver.memory": _local_driver_memory(),
                "spark.driver.maxResultSize": "0",
            }
        )
    settings.update(conf or {})
    settings["spark.sql.session.timeZone"] = "UTC"

    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    # getOrCreate() hands back a running session with its static settings unchanged; the SQL
    # time zone is a runtime setting, so enforce it on a reused session too.
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.sparkContext.setLogLevel("WARN")
    return spark


def check_session_utc(spark: SparkSession) -> None:
    """Raise if the session or its Python workers do not run in UTC.

    Args:
        spark: The session to check (runs one tiny Spark job).

    Raises:
        ChurnError: If ``spark.sql.session.timeZone`` is not UTC, or a worker's local time
            differs from UTC.
    """
    zone = spark.conf.get("spark.sql.session.timeZone")
    if zone != "UTC":
        raise ChurnError(f"spark.sql.session.timeZone is {zone!r}; churn requires 'UTC'")
    offsets = worker_utc_offsets(spark)
    if any(offset != 0 for offset in offsets):
        raise ChurnError(
            f"Spark Python workers run with UTC offsets {sorted(set(offsets))} seconds; set the "
            "executor environment TZ=UTC (build_spark_session does)"
        )


def worker_utc_offsets(spark: SparkSession, tasks: int = 2) -> list[int]:
    """Return the local-time UTC offset (seconds) seen by Python workers, one per task."""

    def offset(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            yield pd.DataFrame({"offset": [time.localtime().tm_gmtoff] * len(batch)})

    frame = spark.range(tasks, numPartitions=tasks).mapInPandas(offset, "offset long")
    return [int(row.offset) for row in frame.collect()]


def shard_of(customer_id: Column | str, shards: int) -> Column:
    """Spark expression for a customer's shard: ``pmod(xxhash64(customer_id), shards)``.

    xxhash64 is a fixed, documented function of the value's bytes (seed 42), so a customer
    lands in the same shard on every run, machine and cluster size.

    Args:
        customer_id: The customer id column (or its name).
        shards: Number of shards (>= 1).

    Returns:
        An ``int`` column in ``[0, shards)``.
    """
    from pyspark.sql import functions as sf

    column = sf.col(customer_id) if isinstance(customer_id, str) else customer_id
    return sf.pmod(sf.xxhash64(column), sf.lit(shards)).cast("int")


def shard_routing(spark: SparkSession, shards: int) -> list[int]:
    """Return one routing label per shard such that ``repartition(shards, label)`` is 1:1.

    Spark's hash partitioning sends a key to partition ``pmod(hash(key), n)``; for the small
    integers ``0..n-1`` that map has collisions, so a third of the shards would share a task
    while other tasks idle. Instead each shard ``k`` travels under an integer whose hash lands
    in partition ``k``: every shard gets its own task, and the number of shards is exactly the
    parallelism of the feature stage. The labels are found by Spark itself (its ``hash`` is
    the partitioner's Murmur3), in one tiny job.

    Args:
        spark: The session.
        shards: Number of shards (= partitions).

    Returns:
        ``labels[k]``: the ``int`` label of shard ``k``.
    """
    from pyspark.sql import functions as sf

    found: dict[int, int] = {}
    start = 0
    while len(found) < shards:
        candidates = (
            spark.range(start, start + 64 * shards, numPartitions=1)
            .select(sf.col("id").cast("int").alias("label"))
            .select("label", sf.pmod(sf.hash("label"), sf.lit(shards)).alias("partition"))
            .groupBy("partition")
            .agg(sf.min("label").alias("label"))
            .collect()
        )
        for row in candidates:
            found.setdefault(int(row.partition), int(row.label))
        start += 64 * shards
    return [found[k] for k in range(shards)]


# --------------------------------------------------------------------------------------------
# Types: Spark <-> Arrow <-> the pipeline's pandas dtypes
# --------------------------------------------------------------------------------------------

_STR_DTYPE = pd.StringDtype(na_value=np.nan)  # pandas 3's default "str"
_UTC_US = pd.DatetimeTZDtype("us", "UTC")

# Arrow -> nullable pandas dtypes, so integer and boolean columns with nulls never pass
# through float64 or object on their way to the validated dtypes.
_ARROW_TO_NULLABLE: dict[pa.DataType, Any] = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


def _pandas_dtype_for_spark(data_type: DataType) -> Any:
    """The pandas dtype the pipeline uses for a Spark type (validated-data conventions)."""
    from pyspark.sql import types as st

    if isinstance(data_type, st.StringType):
        return _STR_DTYPE
    if isinstance(data_type, st.TimestampType):
        return _UTC_US
    if isinstance(data_type, st.TimestampNTZType):
        return np.dtype("datetime64[us]")
    if isinstance(data_type, st.ByteType):
        return pd.Int8Dtype()
    if isinstance(data_type, st.ShortType | st.IntegerType | st.LongType):
        return pd.Int64Dtype()
    if isinstance(data_type, st.FloatType | st.DoubleType | st.DecimalType):
        return np.dtype("float64")
    if isinstance(data_type, st.BooleanType):
        return pd.BooleanDtype()
    return np.dtype("object")


def _spark_type_for_pandas(dtype: Any, column: str) -> DataType:
    """The Spark type that carries a pandas dtype without loss (for output schemas)."""
    from pyspark.sql import types as st

    dtype = pd.api.types.pandas_dtype(dtype)
    if isinstance(dtype, pd.DatetimeTZDtype):
        return st.TimestampType()
    if dtype.kind == "M":
        return st.TimestampNTZType()
    if pd.api.types.is_bool_dtype(dtype):
        return st.BooleanType()
    if pd.api.types.is_integer_dtype(dtype):
        return {1: st.ByteType(), 2: st.ShortType(), 4: st.IntegerType()}.get(
            dtype.itemsize, st.LongType()
        )
    if pd.api.types.is_float_dtype(dtype):
        return st.DoubleType() if dtype.itemsize == 8 else st.FloatType()
    if pd.api.types.is_string_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return st.StringType()
    raise ChurnError(f"column {column!r}: dtype {dtype} has no Spark equivalent")


def arrow_to_pandas(table: pa.Table, dtypes: Mapping[str, Any]) -> pd.DataFrame:
    """Convert an Arrow table to pandas with exactly the given dtypes.

    Used on both sides: workers restore the validated tables' dtypes, the driver restores the
    feature frame's. Timestamps are normalised to ``datetime64[us, UTC]`` (Arrow from Spark is
    already ``timestamp[us, UTC]``; pandas would otherwise pick ``[ns]`` on some paths).

    Args:
        table: The Arrow table.
        dtypes: Column -> pandas dtype; columns not listed keep pyarrow's default conversion.

    Returns:
        The frame, columns in the table's order.
    """
    frame = table.to_pandas(types_mapper=_ARROW_TO_NULLABLE.get)
    for name, dtype in dtypes.items():
        if name not in frame.columns:
            continue
        target = pd.api.types.pandas_dtype(dtype)
        column = frame[name]
        if column.dtype == target:
            continue
        if isinstance(target, pd.DatetimeTZDtype) and not isinstance(
            column.dtype, pd.DatetimeTZDtype
        ):
            column = pd.to_datetime(column).dt.tz_localize(target.tz)
        frame[name] = column.astype(target)
    return frame


def pandas_to_arrow(frame: pd.DataFrame, schema: pa.Schema | None = None) -> pa.Table:
    """Convert a pandas frame to Arrow (index dropped), optionally cast to ``schema``.

    Goes through pandas' Arrow C stream: ``pa.Table.from_pandas`` (and so Spark's
    ``createDataFrame(pandas)``) reads ``Series.values`` of time-zone-aware columns, which
    pandas 3.1 deprecates with a warning; the stream keeps ``timestamp[us, UTC]`` as it is.
    """
    table = pa.RecordBatchReader.from_stream(frame.reset_index(drop=True)).read_all()
    if schema is None:
        return table
    return table.select(schema.names).cast(schema)


def coerce_dtypes(frame: pd.DataFrame, dtypes: Mapping[str, Any]) -> pd.DataFrame:
    """Return ``frame`` with the listed columns cast to the given dtypes (a no-op if equal)."""
    return arrow_to_pandas(pandas_to_arrow(frame), dtypes)


def pandas_dtypes_of_parquet(path: str | Path) -> dict[str, Any] | None:
    """Return the pandas dtypes recorded in a Parquet file or directory, without reading rows.

    pandas writes its dtypes into the file's metadata (``Int64``, ``boolean``, ``str``,
    ``datetime64[us, UTC]``); Spark drops them when it reads, so the workers rebuild them from
    here. Returns ``None`` for files without pandas metadata (e.g. written by Spark): their
    Spark types are then the better guide.
    """
    import pyarrow.parquet as pq

    path = Path(str(path).removeprefix("file://"))
    schema = pq.read_schema(path) if path.is_file() else pq.ParquetDataset(path).schema
    if schema.pandas_metadata is None:
        return None
    empty = schema.empty_table().to_pandas(types_mapper=_ARROW_TO_NULLABLE.get)
    dtypes = dict(empty.dtypes.items())
    for name, dtype in dtypes.items():
        if isinstance(dtype, pd.DatetimeTZDtype):
            dtypes[name] = pd.DatetimeTZDtype("us", dtype.tz)
    return dtypes


# --------------------------------------------------------------------------------------------
# Sharded execution
# --------------------------------------------------------------------------------------------

TableInput = Any
"""A Spark DataFrame, a pandas DataFrame, or a path to Parquet (file or directory)."""


class _Converted(NamedTuple):
    """An input already turned into Spark, with the pandas dtypes its rows must get back."""

    sdf: SparkDataFrame
    dtypes: dict[str, Any]


def _to_spark(spark: SparkSession, data: TableInput, name: str) -> _Converted:
    """Return a Spark DataFrame for an input and the pandas dtypes its rows must get back."""
    from pyspark.sql import DataFrame as SparkDataFrame

    if isinstance(data, _Converted):
        return data
    if isinstance(data, SparkDataFrame):
        return _Converted(
            data, {f.name: _pandas_dtype_for_spark(f.dataType) for f in data.schema.fields}
        )
    if isinstance(data, pd.DataFrame):
        # createDataFrame slices a frame into default-parallelism partitions; every partition
        # costs a Python task downstream, so keep about a million rows per partition.
        sdf = spark.createDataFrame(pandas_to_arrow(data).replace_schema_metadata(None))
        wanted = max(1, -(-len(data) // 1_000_000))
        if wanted < sdf.rdd.getNumPartitions():
            sdf = sdf.coalesce(wanted)
        return _Converted(sdf, dict(data.dtypes.items()))
    if isinstance(data, str | Path):
        if not path_exists(spark, data):
            raise DataContractError(f"{name}: Parquet input not found: {data}")
        sdf = spark.read.parquet(str(data))
        # Remote storage (no cheap look at the metadata) and files written by Spark (none to
        # look at): the Spark types map onto the validated dtypes (string -> str, bigint ->
        # Int64, timestamp -> UTC...).
        dtypes = None if _is_uri(data) else pandas_dtypes_of_parquet(data)
        if dtypes is None:
            dtypes = {f.name: _pandas_dtype_for_spark(f.dataType) for f in sdf.schema.fields}
        return _Converted(sdf, dtypes)
    raise TypeError(f"{name}: expected a Spark DataFrame, a pandas DataFrame or a path")


def _is_uri(path: str | Path) -> bool:
    """Whether ``path`` names remote storage (``s3a://``, ``hdfs://``...), not a local path."""
    text = str(path)
    return "://" in text and not text.startswith("file://")


def path_exists(spark: SparkSession, path: str | Path) -> bool:
    """Whether a local path or a Hadoop URI (``s3a://``, ``hdfs://``, ``abfss://``) exists."""
    if not _is_uri(path):
        return Path(str(path).removeprefix("file://")).exists()
    # Through the JVM's Hadoop FileSystem: the same credentials and connectors Spark reads with.
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(str(path))
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    return bool(hadoop_path.getFileSystem(conf).exists(hadoop_path))


def _pack_table(sdf: SparkDataFrame, name: str, labels: list[int]) -> SparkDataFrame:
    """Pack one table into Arrow IPC blobs per (input partition, shard), without a shuffle.

    Each map task splits its rows by shard and writes one blob per shard (more when a shard
    exceeds :data:`PACK_CHUNK_ROWS` rows). All tables' blobs are then shuffled together once,
    by shard (see :func:`map_shards`); shuffling each table's rows by itself would cost one
    shuffle and one Python stage per table.

    Args:
        sdf: The table.
        name: Its name (travels with the blobs).
        labels: Routing label per shard (:func:`shard_routing`).

    Returns:
        Rows ``(_shard, _table, _part, _payload)`` with ``_shard`` the routing label.
        ``_part`` orders a shard's blobs as the table's rows were ordered on input (partition
        index, then chunk).
    """
    from pyspark.sql import functions as sf

    columns = [c for c in sdf.columns if c != SHARD_COLUMN]
    if "customer_id" not in columns:
        raise ChurnError(f"{name}: no customer_id column; cannot shard by customer")
    packed_schema = pa.schema(
        [
            (SHARD_COLUMN, pa.int32()),
            (TABLE_COLUMN, pa.string()),
            (PART_COLUMN, pa.int64()),
            (PAYLOAD_COLUMN, pa.binary()),
        ]
    )

    def pack(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        partition = TaskContext.get().partitionId()
        pieces: dict[int, list[pa.Table]] = {}
        for batch in batches:
            if batch.num_rows == 0:
                continue
            shard = batch.column(SHARD_COLUMN).to_numpy(zero_copy_only=False)
            order = np.argsort(shard, kind="stable")  # stable: rows keep their input order
            ordered = pa.Table.from_batches([batch]).select(columns).take(pa.array(order))
            starts = np.flatnonzero(np.r_[True, np.diff(shard[order]) != 0])
            stops = [*starts[1:], len(order)]
            for start, stop in zip(starts, stops, strict=True):
                key = int(shard[order[start]])
                pieces.setdefault(key, []).append(ordered.slice(start, stop - start))
        for key in sorted(pieces):
            table = pa.concat_tables(pieces.pop(key))
            for chunk, start in enumerate(range(0, table.num_rows, PACK_CHUNK_ROWS)):
                sink = pa.BufferOutputStream()
                part = table.slice(start, PACK_CHUNK_ROWS)
                with pa.ipc.new_stream(sink, part.schema) as writer:
                    writer.write_table(part)
                blob = sink.getvalue()
                offsets = pa.py_buffer(np.array([0, blob.size], dtype=np.int32))
                # One output batch per blob: a batch's binary column has 32-bit offsets.
                yield pa.record_batch(
                    [
                        pa.array([key], pa.int32()),
                        pa.array([name], pa.string()),
                        pa.array([(partition << 24) + chunk], pa.int64()),
                        pa.Array.from_buffers(pa.binary(), 1, [None, offsets, blob]),
                    ],
                    schema=packed_schema,
                )

    route = sf.element_at(
        sf.array(*[sf.lit(label) for label in labels]), shard_of("customer_id", len(labels)) + 1
    )
    return sdf.withColumn(SHARD_COLUMN, route).mapInArrow(pack, _PACKED_SCHEMA)


def _unpack(packed: pa.Table, dtypes: Mapping[str, Mapping[str, Any]]) -> dict[str, pd.DataFrame]:
    """Rebuild each table of one shard as pandas with its original dtypes.

    Tables with no rows in this shard come back empty (with their columns and dtypes), so every
    shard sees the same set of tables as a local run and no family is skipped by accident.
    """
    order = sorted(
        range(packed.num_rows),
        key=lambda i: (packed[TABLE_COLUMN][i].as_py(), packed[PART_COLUMN][i].as_py()),
    )
    pieces: dict[str, list[pa.Table]] = {}
    for i in order:
        name = packed[TABLE_COLUMN][i].as_py()
        buffer = packed[PAYLOAD_COLUMN][i].as_buffer()
        pieces.setdefault(name, []).append(pa.ipc.open_stream(buffer).read_all())
    frames = {}
    for name, table_dtypes in dtypes.items():
        if name in pieces:
            table = pa.concat_tables(pieces[name])
            frames[name] = arrow_to_pandas(table, table_dtypes)
        else:
            frames[name] = _empty_frame(table_dtypes)
    return frames


ShardFunction = Callable[[dict[str, pd.DataFrame], pd.DataFrame], pd.DataFrame]
"""``f(tables, population) -> frame``: one output row per population row, same order."""


def map_shards(
    spark: SparkSession,
    tables: Mapping[str, TableInput],
    population: TableInput,
    func: ShardFunction,
    output_dtypes: Mapping[str, Any],
    shards: int,
) -> SparkDataFrame:
    """Run a per-customer pandas function over customer shards on Spark.

    ``func`` receives, for one shard, every table restricted to the shard's customers (with the
    dtypes the tables had on input) and the shard's population rows in population order; it
    returns one row per population row, in the same order. The result is the union over shards
    plus a ``_row`` column, the population row number (:func:`collect_rows` and
    :func:`sort_rows` restore the order). This equals ``func(all tables, population)`` exactly
    when a row's output depends only on its own customer's rows.

    A shard is one task and is held in memory by one Python worker (its tables as pandas plus
    whatever ``func`` needs): choose ``shards`` so that a shard's rows fit comfortably.

    Args:
        spark: The session.
        tables: Table name -> input (Spark DataFrame, pandas DataFrame or Parquet path).
        population: The population (same kinds of input); row order is kept.
        func: The per-shard function (pickled to the workers).
        output_dtypes: Output column -> pandas dtype, in output order. The workers cast to
            these dtypes and fail if the columns differ.
        shards: Number of customer shards.

    Returns:
        A lazy Spark DataFrame: ``_row`` then the output columns, in no particular order.
    """
    from pyspark.sql import functions as sf
    from pyspark.sql.pandas.types import to_arrow_type
    from pyspark.sql.types import LongType, StructField, StructType

    if shards < 1:
        raise ValueError("shards must be >= 1")
    if POPULATION_KEY in tables:
        raise ValueError(f"{POPULATION_KEY!r} is reserved")
    # The output order is the population's row order on input: a pandas frame's positions,
    # or the order of a single Parquet file (Spark scans one file's splits in order, so
    # monotonically_increasing_id increases with the file's row order). A caller that already
    # numbered the rows passes a ``_row`` column.
    if isinstance(population, pd.DataFrame) and ROW_COLUMN not in population.columns:
        population = population.assign(**{ROW_COLUMN: np.arange(len(population), dtype=np.int64)})
    pop_sdf, pop_dtypes = _to_spark(spark, population, "population")
    if ROW_COLUMN not in pop_sdf.columns:
        pop_sdf = pop_sdf.withColumn(ROW_COLUMN, sf.monotonically_increasing_id())
    pop_dtypes = {**pop_dtypes, ROW_COLUMN: np.dtype("int64")}

    labels = shard_routing(spark, shards)
    dtypes: dict[str, dict[str, Any]] = {POPULATION_KEY: pop_dtypes}
    packed = _pack_table(pop_sdf, POPULATION_KEY, labels)
    for name, data in tables.items():
        sdf, table_dtypes = _to_spark(spark, data, name)
        dtypes[name] = table_dtypes
        packed = packed.unionByName(_pack_table(sdf, name, labels))

    out_columns = list(output_dtypes)
    if ROW_COLUMN in out_columns:
        raise ValueError(f"{ROW_COLUMN!r} is reserved")
    schema = StructType(
        [StructField(ROW_COLUMN, LongType(), False)]
        + [StructField(c, _spark_type_for_pandas(d, c), True) for c, d in output_dtypes.items()]
    )
    output_dtypes = dict(output_dtypes)

    def compute(key: tuple, shard_table: pa.Table) -> pa.Table:
        arrow_schema = pa.schema(
            [pa.field(f.name, to_arrow_type(f.dataType), f.nullable) for f in schema.fields]
        )
        frames = _unpack(shard_table, dtypes)
        shard_population = frames.pop(POPULATION_KEY)
        if shard_population.empty:
            return arrow_schema.empty_table()
        shard_population = shard_population.sort_values(ROW_COLUMN, kind="stable")
        rows = shard_population.pop(ROW_COLUMN).to_numpy(dtype=np.int64)
        shard_population = shard_population.reset_index(drop=True)
        result = func(frames, shard_population)
        if list(result.columns) != out_columns:
            raise ChurnError(
                f"shard {key[0].as_py()}: output columns differ from the expected schema; "
                f"missing {sorted(set(out_columns) - set(result.columns))}, "
                f"unexpected {sorted(set(result.columns) - set(out_columns))}"
            )
        if len(result) != len(rows):
            raise ChurnError(
                f"shard {key[0].as_py()}: {len(result)} output rows for {len(rows)} population rows"
            )
        result = coerce_dtypes(result.reset_index(drop=True), output_dtypes)
        result.insert(0, ROW_COLUMN, rows)
        return pandas_to_arrow(result, arrow_schema)

    # An explicit partition count: adaptive execution never merges these partitions, so each
    # shard is one task (merging "small" shards would run them one after another), and
    # groupBy reuses the partitioning instead of shuffling again.
    return (
        packed.repartition(shards, SHARD_COLUMN).groupBy(SHARD_COLUMN).applyInArrow(compute, schema)
    )


def sort_rows(sdf: SparkDataFrame) -> SparkDataFrame:
    """Sort a :func:`map_shards` result into the population's order and drop ``_row``.

    A global sort samples its input to choose range boundaries, which would run every shard's
    computation twice; a plain shuffle first is materialised once (adaptive execution), and
    the sampling and the sort then read its output.
    """
    return sdf.repartition(ROW_COLUMN).orderBy(ROW_COLUMN).drop(ROW_COLUMN)


def collect_rows(sdf: SparkDataFrame, dtypes: Mapping[str, Any]) -> pd.DataFrame:
    """Collect a :func:`map_shards` result to pandas in the population's order.

    Sorting the collected rows on the driver is a numpy argsort; no Spark sort needed.
    """
    table = sdf.toArrow()
    order = pc.sort_indices(table.column(ROW_COLUMN))
    table = table.take(order).drop_columns([ROW_COLUMN])
    return arrow_to_pandas(table, dtypes)


def spark_to_pandas(sdf: SparkDataFrame, dtypes: Mapping[str, Any]) -> pd.DataFrame:
    """Collect a Spark DataFrame to pandas with exactly the given dtypes (via Arrow)."""
    return arrow_to_pandas(sdf.toArrow(), dtypes)


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------


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


def _empty_frame(dtypes: Mapping[str, Any]) -> pd.DataFrame:
    """A zero-row frame with the given columns and dtypes."""
    return pd.DataFrame({col: pd.Series([], dtype=dtype) for col, dtype in dtypes.items()})


def _learn_output(
    tables: Mapping[str, _Converted],
    population: _Converted,
    cfg: FeaturesConfig,
    mode: Literal["events", "entity"] | None,
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
    mode: Literal["events", "entity"] | None = None,
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


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------

_KEY_COLUMNS = ("customer_id", "cutoff")


def _resolve_pyfunc(model_uri: str | Path, reasons: int, workdir: Path) -> tuple[str, bool]:
    """Return a local MLflow pyfunc directory for ``model_uri`` and whether it takes ``reasons``.

    An exported :class:`churn.model.artifact.ChurnModel` directory (``models/churn``) is wrapped into a
    pyfunc here, with the requested number of reasons; an MLflow URI (``models:/churn@champion``,
    ``runs:/...``) or MLflow model directory is downloaded as it was logged.
    """
    import mlflow.artifacts
    import mlflow.pyfunc

    from churn.model.artifact import META_FILE
    from churn.tracking.pyfunc import ARTIFACT_KEY, ChurnPyfuncModel
    from churn.tracking.store import tracking_uri

    text = str(model_uri)
    if Path(text).is_dir() and (Path(text) / META_FILE).exists():
        target = workdir / "pyfunc"
        mlflow.pyfunc.save_model(
            path=str(target),
            python_model=ChurnPyfuncModel(reasons=reasons),
            artifacts={ARTIFACT_KEY: text},
            pip_requirements=[],
        )
        return str(target), True
    if Path(text).is_dir():
        return text, False
    store = tracking_uri()
    registry = os.environ.get("MLFLOW_REGISTRY_URI") or store
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=text, dst_path=str(workdir), tracking_uri=store, registry_uri=registry
    )
    return local, False


def _reason_slots(columns: list[str]) -> int:
    return sum(1 for c in columns if re.fullmatch(r"reason_\d+_feature", c))


def _archive(directory: str | Path) -> bytes:
    """Return a directory as gzipped tar bytes (to broadcast a model to the executors)."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(str(directory), arcname="model")
    return buffer.getvalue()


_WORKER_MODELS: dict[str, Any] = {}
"""Pyfunc models loaded in this Python worker, by archive digest (loaded once per worker)."""


def _worker_model(key: str, broadcast: Any) -> Any:
    """Unpack and load the broadcast pyfunc once per Python worker process."""
    model = _WORKER_MODELS.get(key)
    if model is None:
        import io
        import tarfile
        import tempfile

        import mlflow.pyfunc

        target = tempfile.mkdtemp(prefix="churn-model-")
        with tarfile.open(fileobj=io.BytesIO(broadcast.value), mode="r:gz") as tar:
            tar.extractall(target, filter="data")
        model = mlflow.pyfunc.load_model(str(Path(target) / "model"))
        _WORKER_MODELS[key] = model
    return model


def score_spark(
    spark: SparkSession,
    features: TableInput,
    model_uri: str | Path,
    reasons: int = 3,
) -> SparkDataFrame:
    """Score a feature frame on Spark with the MLflow pyfunc, ranked like ``churn score``.

    The pyfunc (:class:`churn.tracking.pyfunc.ChurnPyfuncModel`, i.e. :func:`churn.model.scoring.score_frame`)
    is broadcast to the executors and applied per Arrow batch with ``mapInArrow``. Not
    ``mlflow.pyfunc.spark_udf``: with a struct result type (the scores mix numbers and text)
    MLflow 3.17 casts string fields with ``astype(np.str_)``, which turns a missing reason into
    the text ``"nan"``. Here the batches are converted with the exact dtypes both ways.

    ``risk_decile`` and the final order follow :func:`churn.model.scoring.finalize_scores`: deciles
    over the whole population by probability (desc), ties by ``customer_id`` then input order;
    rows sorted by expected revenue at risk (desc, missing last), probability (desc),
    ``customer_id``.

    Args:
        spark: The session.
        features: The feature frame (Spark DataFrame, pandas DataFrame or Parquet path), e.g.
            :attr:`SparkFeatureResult.frame`.
        model_uri: An MLflow model URI (``models:/churn@champion``, ``runs:/<id>/model``), an
            MLflow model directory, or an exported ChurnModel directory (``models/churn``).
        reasons: Reasons per customer. A logged pyfunc whose signature has no ``reasons``
            parameter returns the number it was logged with; asking for another is an error.

    Returns:
        The scores as a lazy Spark DataFrame: the :func:`churn.model.scoring.score_frame` columns plus
        ``risk_decile`` after ``expected_revenue_at_risk``. The scored rows are persisted
        (memory and disk), because the ranking reads them twice.

    Raises:
        ModelError: If the model returns a different number of reasons than asked.
    """
    import tempfile

    import mlflow.pyfunc
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as sf
    from pyspark.sql.pandas.types import to_arrow_type
    from pyspark.sql.types import LongType, StructField, StructType

    from churn.errors import ModelError
    from churn.tracking.store import quiet_mlflow

    sdf, dtypes = _to_spark(spark, features, "features")
    with quiet_mlflow(), tempfile.TemporaryDirectory(prefix="churn-spark-model-") as tmp:
        local_model, takes_reasons = _resolve_pyfunc(model_uri, reasons, Path(tmp))
        model = mlflow.pyfunc.load_model(local_model)
        params_schema = model.metadata.get_params_schema()
        params = None
        if params_schema is not None and "reasons" in {p.name for p in params_schema.params}:
            params = {"reasons": reasons}
        # The model itself says what it returns (the reason and risk-share columns depend on
        # the number of reasons and the catalog's families): score a few rows on the driver.
        sample_out = model.predict(spark_to_pandas(sdf.limit(20), dtypes), params=params)
        archive = _archive(local_model)
    model_key = hashlib.sha256(archive).hexdigest()
    payload = spark.sparkContext.broadcast(archive)
    got = _reason_slots(list(sample_out.columns))
    if got != reasons and not takes_reasons and params is None:
        raise ModelError(
            f"the model returns {got} reasons per customer but {reasons} were asked, and its "
            f"signature has no 'reasons' parameter; set score.reasons to {got} or score an "
            "exported model directory"
        )
    out_dtypes = dict(sample_out.dtypes.items())
    schema = StructType(
        [StructField(c, _spark_type_for_pandas(d, c), True) for c, d in out_dtypes.items()]
        + [StructField(ROW_COLUMN, LongType(), False)]
    )

    def predict(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        arrow_schema = pa.schema(
            [pa.field(f.name, to_arrow_type(f.dataType), f.nullable) for f in schema.fields]
        )
        pyfunc = _worker_model(model_key, payload)
        for batch in batches:
            frame = arrow_to_pandas(pa.Table.from_batches([batch]), dtypes)
            rows = frame.pop(ROW_COLUMN).to_numpy(dtype=np.int64)
            out = pyfunc.predict(frame, params=params).reset_index(drop=True)
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


# --------------------------------------------------------------------------------------------
# Runners: Parquet in, Parquet out (the spark-submit jobs in pipelines/ call these)
# --------------------------------------------------------------------------------------------

OutputLayout = Literal["file", "directory"]


def write_spark_parquet(sdf: SparkDataFrame, path: str | Path) -> None:
    """Write a Spark DataFrame as a Parquet directory, atomically on a local file system.

    Local paths are written to a temporary sibling and renamed into place
    (:func:`churn.io.atomic_path`), so readers never see half a directory. Remote URIs rely on
    Spark's output committer (``_SUCCESS`` marks a complete directory) and are overwritten.
    """
    if _is_uri(path):
        sdf.write.mode("overwrite").parquet(str(path))
        return
    from churn.io import atomic_path

    with atomic_path(str(path).removeprefix("file://")) as tmp:
        sdf.write.parquet(str(tmp))


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
    names = ["customers"] if params.ingest.mode == "entity" else list(CONTRACT)
    tables = {
        name: _to_spark(spark, f"{base}/{table_file_name(name)}", name)
        for name in names
        if path_exists(spark, f"{base}/{table_file_name(name)}")
    }
    if params.ingest.mode == "entity":
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
    """Score a features Parquet on Spark with the MLflow pyfunc; write scores like ``churn score``.

    Scores the rows of one cutoff (``score.cutoff``, else the latest cutoff in the features:
    the labels' scoring cutoff) with :func:`score_spark`: same columns, reasons, deciles and
    order as ``churn score``. The contributions and "what changed" sidecars of the local
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
    scores = score_spark(spark, _Converted(rows, features.dtypes), model_uri, params.score.reasons)
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
