"""Tests for churn.io: atomic writes never leave half-written outputs."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from churn.io import atomic_path, find_table_file, read_frame, write_json, write_parquet


def test_write_parquet_round_trip_and_no_temp_left(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    write_parquet(frame, tmp_path / "out" / "t.parquet")
    pd.testing.assert_frame_equal(read_frame(tmp_path / "out" / "t.parquet"), frame)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["t.parquet"]


def test_failed_write_keeps_previous_file(tmp_path):
    target = tmp_path / "scores.json"
    write_json({"v": 1}, target)

    class InterruptedWriteError(RuntimeError):
        pass

    with pytest.raises(InterruptedWriteError), atomic_path(target) as tmp:
        tmp.write_text('{"v": 2, "half')
        raise InterruptedWriteError
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["scores.json"]


def test_directory_outputs_are_replaced_whole(tmp_path):
    target = tmp_path / "model"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "old.txt").write_text("old")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_find_table_file_prefers_explicit_name(tmp_path):
    (tmp_path / "customers.csv").write_text("customer_id\n1\n")
    (tmp_path / "crm.csv").write_text("id\n1\n")
    assert find_table_file(tmp_path, "customers").name == "customers.csv"
    assert find_table_file(tmp_path, "customers", "crm.csv").name == "crm.csv"
    assert find_table_file(tmp_path, "support_tickets") is None
    assert find_table_file(tmp_path, "customers", "missing.csv") is None


def test_csv_is_read_as_text(tmp_path):
    (tmp_path / "t.csv").write_text("customer_id,mrr\n007,10.5\n")
    frame = read_frame(tmp_path / "t.csv")
    assert frame.loc[0, "customer_id"] == "007"
