"""Inputs and outputs of the Spark engine: what a table input may be, local paths and URIs.

A table input is a Spark DataFrame, a pandas DataFrame or a Parquet path (file, directory or
a Hadoop URI such as ``s3a://``); :func:`_to_spark` turns any of them into Spark plus the
pandas dtypes its rows must get back.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import pandas as pd

from churn.errors import DataContractError
from churn.spark.arrow import _pandas_dtype_for_spark, pandas_dtypes_of_parquet, pandas_to_arrow

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import SparkSession

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


OutputLayout = Literal["file", "directory"]
"""How a runner writes: one Parquet file via the driver, or a directory by the executors."""


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
