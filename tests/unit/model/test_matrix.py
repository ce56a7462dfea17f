"""fill_columns writes what a plain column-by-column loop writes, in any layout and shape."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.model import matrix as matrix_module
from churn.model.matrix import fill_columns, gather_of, number_source, slice_of


def _naive_fill(columns: list[np.ndarray], order: str = "C", dtype: str = "float64") -> np.ndarray:
    out = np.empty((len(columns[0]), len(columns)), order=order, dtype=dtype)
    for j, values in enumerate(columns):
        out[:, j] = values
    return out


def _columns(rows: int, width: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    columns = [rng.normal(size=rows) for _ in range(width)]
    columns[0][::7] = np.nan  # missing values travel as they are
    return columns


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks and blocks small enough that a tiny matrix crosses several, with ragged ends."""
    monkeypatch.setattr(matrix_module, "CHUNK_ROWS", 10)
    monkeypatch.setattr(matrix_module, "BLOCK_ROWS", 4)


@pytest.mark.parametrize(
    ("rows", "width"),
    [(0, 3), (1, 1), (5, 40), (20, 3), (37, 17), (64, 33)],
)
def test_fill_columns_equals_a_column_loop_across_chunks_and_blocks(
    small_chunks, rows: int, width: int
) -> None:
    columns = _columns(rows, width) if rows else [np.empty(0)] * width
    out = np.full((rows, width), -1.0)
    filled = fill_columns(out, [slice_of(values) for values in columns])
    assert filled is out
    np.testing.assert_array_equal(out, _naive_fill(columns) if rows else out)
    assert out.flags.c_contiguous


def test_gathered_columns_equal_indexing_every_column(small_chunks) -> None:
    rng = np.random.default_rng(4)
    columns = _columns(30, 6, seed=4)
    positions = rng.integers(0, 30, 47)  # unsorted, repeated, longer than the column
    out = fill_columns(np.empty((47, 6)), [gather_of(c, positions) for c in columns])
    np.testing.assert_array_equal(out, _naive_fill([c[positions] for c in columns]))


def test_fill_columns_casts_as_numpy_assigns_into_float32(small_chunks) -> None:
    columns = _columns(23, 5, seed=5)
    columns[1] = columns[1] * 1e-3 + 1 / 3  # values float32 cannot hold exactly
    out = fill_columns(np.empty((23, 5), dtype="float32"), [slice_of(c) for c in columns])
    np.testing.assert_array_equal(out, np.column_stack(columns).astype("float32"))


def test_fill_columns_fills_a_block_of_a_larger_matrix_only(small_chunks) -> None:
    columns = _columns(10, 3, seed=1)
    design = np.zeros((10, 6))
    fill_columns(design[:, 1:4], [slice_of(c) for c in columns])
    np.testing.assert_array_equal(design[:, 1:4], _naive_fill(columns))
    assert not design[:, [0, 4, 5]].any()  # the cells around the block are untouched


def test_fill_columns_writes_a_column_major_matrix_in_place(small_chunks) -> None:
    columns = _columns(29, 4, seed=2)
    out = np.empty((29, 4), order="F")
    fill_columns(out, [slice_of(c) for c in columns])
    np.testing.assert_array_equal(out, _naive_fill(columns, order="F"))
    assert out.flags.f_contiguous


def test_fill_columns_reads_each_chunk_of_each_column_once_in_order(small_chunks) -> None:
    columns = _columns(23, 3, seed=3)
    read: list[tuple[int, int, int]] = []

    def source(j: int):
        def read_rows(start: int, stop: int) -> np.ndarray:
            read.append((j, start, stop))
            return columns[j][start:stop]

        return read_rows

    fill_columns(np.empty((23, 3)), [source(j) for j in range(3)])
    chunks = [(0, 10), (10, 20), (20, 23)]
    assert read == [(j, start, stop) for start, stop in chunks for j in range(3)]


def test_fill_columns_refuses_a_column_of_the_wrong_length(small_chunks) -> None:
    sources = [slice_of(np.zeros(25)), lambda start, stop: np.zeros(stop - start - 1)]
    with pytest.raises(ValueError, match=r"column 1 gave shape \(9,\) for rows 0-10 of 25"):
        fill_columns(np.empty((25, 2)), sources)


def test_fill_columns_refuses_a_source_count_other_than_the_width() -> None:
    with pytest.raises(ValueError, match="2 column sources for a matrix of 3 columns"):
        fill_columns(np.empty((5, 3)), [slice_of(np.zeros(5))] * 2)


def test_fill_columns_lets_a_reader_error_through_and_stops_reading(small_chunks) -> None:
    read: list[int] = []

    def source(j: int):
        def read_rows(start: int, stop: int) -> np.ndarray:
            read.append(j)
            if j == 2:
                raise KeyError("no such column")
            return np.zeros(stop - start)

        return read_rows

    with pytest.raises(KeyError, match="no such column"):
        fill_columns(np.empty((25, 6)), [source(j) for j in range(6)])
    assert read == [0, 1, 2]


@pytest.mark.parametrize(
    "values",
    [
        np.array([3, -2, 2**53 + 1, 0], dtype="int64"),  # the cast rounds the last bit
        np.array([7, 0, 255, 1], dtype="uint8"),
        np.array([True, False, True, True]),
        np.array([0.1, np.nan, -2.5, 1e30], dtype="float32"),
        np.array([0.1, np.nan, -2.5, 1e300]),
    ],
    ids=["int64", "uint8", "bool", "float32", "float64"],
)
def test_number_source_reads_numpy_numbers_as_their_float64_conversion(values) -> None:
    column = pd.Series(values, index=[10, 11, 12, 13])
    positions = np.array([3, 0, 0, 2])
    whole, gathered = number_source(column, None), number_source(column, positions)
    assert whole is not None and gathered is not None
    expected = column.to_numpy(dtype=np.float64)
    np.testing.assert_array_equal(fill_columns(np.empty((4, 1)), [whole])[:, 0], expected)
    np.testing.assert_array_equal(
        fill_columns(np.empty((4, 1)), [gathered])[:, 0], expected[positions]
    )


@pytest.mark.parametrize(
    "column",
    [
        pd.Series([1, None, 3], dtype="Int64"),
        pd.Series(["1", "2", "x"], dtype=object),
        pd.Series([1.0, None, 2.0], dtype="float64[pyarrow]"),
        pd.Series(pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01"])),
    ],
    ids=["nullable", "object", "arrow", "datetime"],
)
def test_number_source_leaves_other_dtypes_to_the_caller(column) -> None:
    assert number_source(column, None) is None
