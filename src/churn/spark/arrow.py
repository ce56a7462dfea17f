"""Types: Spark <-> Arrow <-> the pipeline's pandas dtypes, exactly both ways.

The validated tables and the feature and score frames carry nullable pandas dtypes (``str``,
``Int64``, ``boolean``, ``datetime64[us, UTC]``) that Spark does not know; these functions
restore them wherever rows leave Spark or Arrow (workers and driver alike).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from churn.errors import ChurnError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql.types import DataType


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


def spark_to_pandas(sdf: SparkDataFrame, dtypes: Mapping[str, Any]) -> pd.DataFrame:
    """Collect a Spark DataFrame to pandas with exactly the given dtypes (via Arrow)."""
    return arrow_to_pandas(sdf.toArrow(), dtypes)


def _empty_frame(dtypes: Mapping[str, Any]) -> pd.DataFrame:
    """A zero-row frame with the given columns and dtypes."""
    return pd.DataFrame({col: pd.Series([], dtype=dtype) for col, dtype in dtypes.items()})
