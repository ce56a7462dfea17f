"""The feature columns of an output batch converted in Arrow, as the pandas round trip gives them.

:func:`churn.features.build.write_features` fixes the output file's schema with its first batch
the pandas way (``to_pandas``, the catalog dtypes, the key columns beside, then
:func:`churn.io.frame_to_arrow`, which adds pandas' metadata). For the batches after it that
round trip was the whole assembly's cost: 30 batches of 65,536 rows with the catalog's 119
columns took 2.3-2.5 s that way against 0.8-1.0 s here (2026-12-07; about 146 batches at 1M
customers). :func:`convert_feature_columns` turns the family rows' columns into those of the
output schema directly, with the values, types and chunks the round trip gives, so the
Parquet file's bytes are the same:

* A numeric feature (pandas ``float64``, Arrow ``double``) from a floating, integer or boolean
  column: cast to ``double`` (numpy's and Arrow's integer-to-double conversions round alike),
  nulls and NaN both null, as ``pa.Table.from_pandas`` turns the frame's NaN into nulls; one
  chunk, as a column converted from numpy is.
* A categorical feature (pandas ``str``, Arrow ``large_string``) from a ``string`` or
  ``large_string`` column: the cast pandas' ``str`` dtype applies on ``to_pandas``, which keeps
  its chunks. The chunks matter: the Parquet writer encodes a column chunk by chunk, so other
  boundaries could move its page boundaries.

Any other pair of types gives ``None`` and the caller takes the pandas route, as it does when
the first batch's two assemblies differ (:func:`same_arrays`): an Arrow or pandas version that
converts otherwise must not change the file.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def convert_feature_columns(features: pa.Table, schema: pa.Schema) -> list[pa.ChunkedArray] | None:
    """Return ``features``' columns with the types of the same fields in ``schema``.

    Args:
        features: Feature columns as the family files hold them.
        schema: The output schema, holding every column of ``features`` (with the catalog
            types, as the pandas route converted them).

    Returns:
        The converted columns in ``features``' order, or ``None`` when a column is not in
        ``schema`` or its pair of types is not one converted exactly here.
    """
    columns: list[pa.ChunkedArray] = []
    for name, column in zip(features.column_names, features.columns, strict=True):
        index = schema.get_field_index(name)
        if index < 0:
            return None
        converted = _convert_column(column, schema.field(index).type)
        if converted is None:
            return None
        columns.append(converted)
    return columns


def _convert_column(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray | None:
    """Return ``column`` as the pandas route converts it to ``target``, or ``None``."""
    source = column.type
    numeric = (
        pa.types.is_float32(source)
        or pa.types.is_float64(source)
        or pa.types.is_integer(source)
        or pa.types.is_boolean(source)
    )
    if pa.types.is_float64(target) and numeric:
        if not pa.types.is_float64(source):
            # Unchecked, as numpy's astype: an integer beyond 2**53 rounds to the nearest double.
            column = column.cast(pa.float64(), safe=False)
        # One chunk, nulls and NaN both null: what to_pandas (nulls as NaN, chunks joined) and
        # from_pandas (NaN as null) give. Through numpy (to_numpy, then pa.array with
        # from_pandas) the 113 numeric columns of a batch took 53 ms against 19 ms so
        # (2026-12-07); and NaN are rare, so most columns are only joined.
        values = column.combine_chunks()
        nan = pc.is_nan(values)
        if pc.any(nan).as_py():
            values = pc.if_else(nan, None, values)
        return pa.chunked_array([values])
    if pa.types.is_large_string(target) and pa.types.is_large_string(source):
        return column  # pandas keeps a large_string column's chunks as they are
    if pa.types.is_large_string(target) and pa.types.is_string(source):
        # The cast of pandas' StringDtype.__from_arrow__ (it leaves out empty chunks).
        return pc.cast(column, pa.large_string())
    return None


def same_arrays(left: pa.Table, right: pa.Table) -> bool:
    """Whether two tables hold the same columns, types, values and chunk lengths.

    Schema metadata is not compared (the Parquet writer takes the file's own); a NaN never
    equals itself, so a table holding one is never the same as any.
    """
    if not left.schema.equals(right.schema, check_metadata=False) or not left.equals(right):
        return False
    return all(
        [len(chunk) for chunk in a.chunks] == [len(chunk) for chunk in b.chunks]
        for a, b in zip(left.columns, right.columns, strict=True)
    )
