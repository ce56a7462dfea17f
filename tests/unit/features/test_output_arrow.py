"""Feature columns converted in Arrow equal the pandas round trip's, chunks included."""

from __future__ import annotations

import decimal
import itertools

import numpy as np
import pyarrow as pa
import pytest

from churn.domain.catalog import KIND_DTYPES
from churn.features.output_arrow import convert_feature_columns, same_arrays


def _pandas_round_trip(features: pa.Table, kinds: dict[str, str]) -> pa.Table:
    """The naive reference: to pandas, the catalog dtypes, back to Arrow (NaN as null)."""
    dtypes = {name: KIND_DTYPES[kind] for name, kind in kinds.items()}
    frame = features.to_pandas(split_blocks=True).astype(dtypes)
    return pa.Table.from_pandas(frame, preserve_index=False)


def _chunks(arrays: list[pa.Array]) -> pa.ChunkedArray:
    return pa.chunked_array(arrays, type=arrays[0].type)


def _family_rows() -> tuple[pa.Table, dict[str, str]]:
    """Six rows as a batch spanning row groups holds them: several chunks, an empty one, one a
    slice of a larger array, with nulls, NaN and integers beyond a double's."""
    columns = {
        "logins": [
            pa.array([1, None, 3]),
            pa.array([], pa.int64()),
            pa.array([2**60 + 1, 5, None]),
        ],
        "seats": [pa.array([1, 2], pa.int32()), pa.array([3, 4, 5, 6], pa.int32())],
        "events": [pa.array([2**64 - 1, 0], pa.uint64()), pa.array([7, None, 9, 10], pa.uint64())],
        "has_plan": [pa.array([True, None]), pa.array([False, True, None, False])],
        "trial": [pa.array([True, False, False]), pa.array([True, True, False])],
        "ratio": [
            pa.array([np.nan, 1.5], pa.float32(), from_pandas=False),
            pa.array([None, 0.25, np.nan, -1.0], pa.float32(), from_pandas=False),
        ],
        "mrr": [
            pa.array([np.nan, -0.0, np.inf], from_pandas=False),
            pa.array([None, 2.5, np.nan, 1e308], from_pandas=False).slice(1),
        ],
        "segment": [
            pa.array(["smb", None, ""]),
            pa.array([], pa.string()),
            pa.array(["x", "enterprise", None, "public_sector"]).slice(1),
        ],
        "country": [
            pa.array(["DE", None], pa.large_string()),
            pa.array([], pa.large_string()),
            pa.array(["FR", "US", None, ""], pa.large_string()),
        ],
    }
    kinds = dict.fromkeys(columns, "numeric") | {"segment": "categorical", "country": "categorical"}
    return pa.table({name: _chunks(arrays) for name, arrays in columns.items()}), kinds


def test_converted_columns_equal_the_pandas_round_trip_chunk_for_chunk() -> None:
    features, kinds = _family_rows()
    expected = _pandas_round_trip(features, kinds)
    columns = convert_feature_columns(features, expected.schema)
    assert columns is not None
    converted = pa.Table.from_arrays(columns, schema=expected.schema)
    assert same_arrays(converted, expected)
    # Not vacuous: NaN became null, strings kept several chunks.
    assert converted.column("mrr").null_count == 2
    assert converted.column("segment").num_chunks > 1


def test_every_column_of_a_longer_batch_converts_alike() -> None:
    rng = np.random.default_rng(0)
    n_rows = 5_000
    values = rng.normal(size=n_rows)
    values[rng.random(n_rows) < 0.1] = np.nan
    levels = np.array(["smb", "mid_market", "enterprise", None], dtype=object)
    chunks = [0, 1_000, 1_000, 3_500, n_rows]
    features = pa.table(
        {
            "score": _chunks(
                [pa.array(values[a:b], from_pandas=False) for a, b in itertools.pairwise(chunks)]
            ),
            "days": pa.array(rng.integers(0, 400, n_rows)),
            "segment": _chunks(
                [
                    pa.array(rng.choice(levels, b - a), pa.string())
                    for a, b in itertools.pairwise(chunks)
                ]
            ),
        }
    )
    expected = _pandas_round_trip(
        features, {"score": "numeric", "days": "numeric", "segment": "categorical"}
    )
    columns = convert_feature_columns(features, expected.schema)
    assert columns is not None
    assert same_arrays(pa.Table.from_arrays(columns, schema=expected.schema), expected)


@pytest.mark.parametrize(
    ("column", "target"),
    [
        (pa.array([decimal.Decimal("1.10")]), pa.float64()),  # pandas rounds it otherwise
        (pa.array([0], pa.date32()), pa.float64()),
        (pa.array([1.0], pa.float16()), pa.float64()),
        (pa.array(["1.5"]), pa.float64()),
        (pa.array([1]), pa.large_string()),  # pandas writes the number as text
        (pa.array(["a"]).dictionary_encode(), pa.large_string()),
        (pa.array(["a"], pa.string_view()), pa.large_string()),
        (pa.array(["a"]), pa.dictionary(pa.int8(), pa.large_string())),
        (pa.array([1.0]), pa.float32()),
    ],
)
def test_types_not_converted_exactly_are_refused(column: pa.Array, target: pa.DataType) -> None:
    features = pa.table({"feature": column})
    assert convert_feature_columns(features, pa.schema([("feature", target)])) is None


def test_a_column_missing_from_the_schema_is_refused() -> None:
    features = pa.table({"feature": [1.0], "other": [2.0]})
    assert convert_feature_columns(features, pa.schema([("feature", pa.float64())])) is None


def test_same_arrays_tells_chunks_nan_and_types_apart() -> None:
    one = pa.table({"x": pa.chunked_array([[1.0, 2.0]])})
    assert same_arrays(one, pa.table({"x": pa.chunked_array([[1.0, 2.0]])}))
    assert same_arrays(one, one.replace_schema_metadata({"pandas": "{}"}))
    assert not same_arrays(one, pa.table({"x": pa.chunked_array([[1.0], [2.0]])}))
    assert not same_arrays(one, pa.table({"x": pa.chunked_array([[1.0, None]])}))
    assert not same_arrays(one, pa.table({"x": pa.chunked_array([[1, 2]])}))
    with_nan = pa.table({"x": pa.array([np.nan], from_pandas=False)})
    assert not same_arrays(with_nan, with_nan)
