"""fill_columns writes what a plain column-by-column loop writes, in any layout and shape."""

from __future__ import annotations

import numpy as np
import pytest

from churn.model import matrix as matrix_module
from churn.model.matrix import fill_columns


def _naive_fill(columns: list[np.ndarray], order: str = "C") -> np.ndarray:
    out = np.empty((len(columns[0]), len(columns)), order=order)
    for j, values in enumerate(columns):
        out[:, j] = values
    return out


def _columns(rows: int, width: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    columns = [rng.normal(size=rows) for _ in range(width)]
    columns[0][::7] = np.nan  # missing values travel as they are
    return columns


@pytest.mark.parametrize(
    ("rows", "width"),
    [(0, 3), (1, 1), (5, 40), (20, 3), (37, 17), (64, 33)],
)
def test_fill_columns_equals_a_column_loop_across_blocks_and_groups(
    monkeypatch: pytest.MonkeyPatch, rows: int, width: int
) -> None:
    # Small blocks and groups so that a tiny matrix crosses several of each, with ragged ends.
    monkeypatch.setattr(matrix_module, "BLOCK_ROWS", 4)
    monkeypatch.setattr(matrix_module, "COLUMN_GROUP", 5)
    columns = _columns(rows, width) if rows else [np.empty(0)] * width
    out = np.full((rows, width), -1.0)
    filled = fill_columns(out, lambda j: columns[j])
    assert filled is out
    np.testing.assert_array_equal(out, _naive_fill(columns) if rows else out)
    assert out.flags.c_contiguous


def test_fill_columns_fills_a_block_of_a_larger_matrix_only(monkeypatch) -> None:
    monkeypatch.setattr(matrix_module, "BLOCK_ROWS", 3)
    monkeypatch.setattr(matrix_module, "COLUMN_GROUP", 2)
    columns = _columns(10, 3, seed=1)
    design = np.zeros((10, 6))
    fill_columns(design[:, 1:4], lambda j: columns[j])
    np.testing.assert_array_equal(design[:, 1:4], _naive_fill(columns))
    assert not design[:, [0, 4, 5]].any()  # the cells around the block are untouched


def test_fill_columns_writes_a_column_major_matrix_in_place(monkeypatch) -> None:
    monkeypatch.setattr(matrix_module, "BLOCK_ROWS", 2)
    columns = _columns(9, 4, seed=2)
    out = np.empty((9, 4), order="F")
    fill_columns(out, lambda j: columns[j])
    np.testing.assert_array_equal(out, _naive_fill(columns, order="F"))
    assert out.flags.f_contiguous


def test_fill_columns_reads_each_column_once_in_order(monkeypatch) -> None:
    monkeypatch.setattr(matrix_module, "BLOCK_ROWS", 2)
    monkeypatch.setattr(matrix_module, "COLUMN_GROUP", 3)
    columns = _columns(7, 8, seed=3)
    read: list[int] = []

    def read_column(j: int) -> np.ndarray:
        read.append(j)
        return columns[j]

    fill_columns(np.empty((7, 8)), read_column)
    assert read == list(range(8))


def test_fill_columns_refuses_a_column_of_the_wrong_length(monkeypatch) -> None:
    monkeypatch.setattr(matrix_module, "BLOCK_ROWS", 2)
    with pytest.raises(ValueError, match="column 1 has shape \\(4,\\), the matrix 5 rows"):
        fill_columns(np.empty((5, 2)), lambda j: np.zeros(5 if j == 0 else 4))


def test_fill_columns_lets_a_reader_error_through_and_stops_reading(monkeypatch) -> None:
    monkeypatch.setattr(matrix_module, "BLOCK_ROWS", 2)
    read: list[int] = []

    def read_column(j: int) -> np.ndarray:
        read.append(j)
        if j == 2:
            raise KeyError("no such column")
        return np.zeros(5)

    with pytest.raises(KeyError, match="no such column"):
        fill_columns(np.empty((5, 6)), read_column)
    assert read == [0, 1, 2]
