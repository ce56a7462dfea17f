"""A family's rows by key, straight from its file: against a naive read of the whole file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churn.features.family_rows import FamilyRows, take_family_rows


def _family_file(path: Path, rows: int, row_group_size: int, prefix: str = "f") -> Path:
    """A family file as the stage writes it: ``_key`` 0..rows-1 in order, then its columns."""
    keys = np.arange(rows, dtype=np.int64)
    table = pa.table(
        {
            "_key": keys,
            "customer_id": keys % 7,
            f"{prefix}_count": (keys * 3).astype("float64"),
            f"{prefix}_text": pa.array([None if k % 5 == 0 else f"t{k}" for k in keys]),
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def _naive(path: Path, keys: np.ndarray, columns: list[str]) -> pd.DataFrame:
    whole = pd.read_parquet(path).set_index("_key")
    return whole.loc[keys, columns].reset_index(drop=True)


@pytest.mark.parametrize(
    "keys",
    [
        np.arange(0, 10),  # inside the first row group
        np.arange(8, 35),  # across three row groups
        np.arange(0, 100),  # the whole file
        np.array([57, 3, 3, 99, 0, 41]),  # any order, repeats: gathered
        np.array([12]),
    ],
)
def test_take_returns_the_rows_of_the_keys(tmp_path, keys: np.ndarray) -> None:
    path = _family_file(tmp_path / "family.parquet", rows=100, row_group_size=12)
    columns = ["f_text", "f_count"]
    taken = FamilyRows(path, columns).take(keys)
    assert taken.column_names == columns
    pd.testing.assert_frame_equal(taken.to_pandas(), _naive(path, keys, columns))


def test_ascending_batches_decode_each_row_group_once(tmp_path) -> None:
    path = _family_file(tmp_path / "family.parquet", rows=100, row_group_size=12)
    family = FamilyRows(path, ["f_count"])
    decoded: list[int] = []
    read = family._read
    family._read = lambda group: decoded.append(group) or read(group)  # type: ignore[method-assign]
    pieces = [family.take(np.arange(start, min(start + 7, 100))) for start in range(0, 100, 7)]
    assert decoded == list(range(9))  # 100 rows in groups of 12: nine groups, each once
    values = pa.concat_tables(pieces).column("f_count").to_numpy()
    np.testing.assert_array_equal(values, np.arange(100) * 3.0)


def test_empty_keys_give_the_columns_and_no_rows(tmp_path) -> None:
    path = _family_file(tmp_path / "family.parquet", rows=20, row_group_size=8)
    taken = FamilyRows(path, ["f_count", "f_text"]).take(np.array([], dtype=np.int64))
    assert taken.num_rows == 0
    assert taken.schema.names == ["f_count", "f_text"]
    assert taken.schema.field("f_count").type == pa.float64()


def test_keys_outside_the_file_are_refused(tmp_path) -> None:
    path = _family_file(tmp_path / "family.parquet", rows=20, row_group_size=8)
    with pytest.raises(ValueError, match=r"keys 5\.\.20 outside its 20 rows"):
        FamilyRows(path, ["f_count"]).take(np.array([5, 20]))


@pytest.mark.parametrize("keys", [np.arange(0, 6), np.array([4, 2])])
def test_a_file_not_one_row_per_key_in_order_is_refused(tmp_path, keys: np.ndarray) -> None:
    """Row i must hold key i; a file with a key missing (and another twice) breaks that."""
    path = tmp_path / "family.parquet"
    pq.write_table(pa.table({"_key": [0, 1, 1, 3, 4, 5], "f_count": [0.0] * 6}), path)
    with pytest.raises(ValueError, match="not one row per key in key order"):
        FamilyRows(path, ["f_count"]).take(keys)


def test_families_side_by_side_in_order(tmp_path) -> None:
    first = _family_file(tmp_path / "a.parquet", rows=30, row_group_size=8, prefix="a")
    second = _family_file(tmp_path / "b.parquet", rows=30, row_group_size=5, prefix="b")
    keys = np.array([29, 0, 14, 14])
    families = [FamilyRows(second, ["b_text"]), FamilyRows(first, ["a_count", "a_text"])]
    taken = take_family_rows(families, keys).to_pandas()
    expected = pd.concat(
        [_naive(second, keys, ["b_text"]), _naive(first, keys, ["a_count", "a_text"])], axis=1
    )
    pd.testing.assert_frame_equal(taken, expected)
