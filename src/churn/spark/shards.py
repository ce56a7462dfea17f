"""Sharded execution: run a per-customer pandas function over customer shards on Spark.

Every customer belongs to one of ``shards`` shards, ``pmod(xxhash64(customer_id), shards)``:
a fixed function of the id, the same on every run, machine and cluster size. Each map task
packs its slice of a table into one Arrow IPC blob per shard (no shuffle of individual rows);
the blobs of all tables and of the population are shuffled once, by shard, one shard per
task; the task restores the input pandas dtypes and runs the function on its shard. A
``_row`` number travels with every population row to restore its order.

Why blobs rather than a long-format union of the tables (a ``_table`` column and the union of
all columns): the tables share few columns, so every event row would carry ~45 mostly-null
columns through the shuffle and into pandas. A blob keeps each table's own columns and exact
Arrow types (timestamps stay ``timestamp[us, UTC]``). Blobs are capped at
:data:`PACK_CHUNK_ROWS` rows so that no single value approaches Spark's 2 GiB row limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churn.errors import ChurnError
from churn.spark.arrow import (
    _empty_frame,
    _spark_type_for_pandas,
    arrow_to_pandas,
    coerce_dtypes,
    pandas_to_arrow,
)
from churn.spark.storage import TableInput, _to_spark

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession
    from pyspark.sql import DataFrame as SparkDataFrame


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
