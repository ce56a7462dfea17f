"""Tests for churn.io: atomic writes never leave half-written outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from churn.errors import ChurnError, DataContractError
from churn.io import (
    RETIRED_MARK,
    STAGING_MARK,
    atomic_directory,
    atomic_path,
    find_filtered_positions,
    find_table_file,
    frame_to_arrow,
    read_frame,
    read_frame_keys,
    read_frame_positions,
    read_frame_rows,
    read_latest_rows,
    read_parquet_frame,
    read_parquet_row_groups,
    remove_stale_staging,
    write_json,
    write_parquet,
)


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


# --------------------------------------------------------------------------------------------
# Outputs as one unit, stale staging, paths that stay inside
# --------------------------------------------------------------------------------------------


class KilledMidWriteError(RuntimeError):
    """Stands in for a kill between two writes of one output set."""


def _names(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_atomic_directory_swaps_the_whole_set_in(tmp_path):
    out = tmp_path / "scores"
    with atomic_directory(out) as staging:
        (staging / "a.txt").write_text("1")
        (staging / "b.txt").write_text("1")
    with atomic_directory(out) as staging:
        (staging / "a.txt").write_text("2")
    assert _names(out) == ["a.txt"] and (out / "a.txt").read_text() == "2"
    assert _names(tmp_path) == ["scores"]


def test_atomic_directory_keeps_the_old_set_when_the_write_fails(tmp_path):
    out = tmp_path / "scores"
    with atomic_directory(out) as staging:
        (staging / "scores.txt").write_text("old")
        (staging / "contributions.txt").write_text("old")
    with pytest.raises(KilledMidWriteError), atomic_directory(out) as staging:
        (staging / "contributions.txt").write_text("new")
        raise KilledMidWriteError
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        "scores.txt": "old",
        "contributions.txt": "old",
    }
    assert _names(tmp_path) == ["scores"]


def test_atomic_directory_carries_other_files_over_when_asked(tmp_path):
    out = tmp_path / "scores"
    out.mkdir()
    (out / "history.txt").write_text("kept")
    (out / "changes.txt").write_text("stale")
    with atomic_directory(out, keep_existing=True, skip={"changes.txt"}) as staging:
        (staging / "scores.txt").write_text("new")
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        "history.txt": "kept",
        "scores.txt": "new",
    }


def test_atomic_directory_refuses_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ChurnError, match="working directory"), atomic_directory("."):
        pass
    with pytest.raises(ChurnError, match="working directory"), atomic_directory(tmp_path.parent):
        pass


def _dead_pid() -> int:
    """A process id that is certainly not running (a finished child)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_staging_of_a_killed_run_is_removed_at_the_next_write(tmp_path):
    out = tmp_path / "explain"
    stale = tmp_path / f".explain{STAGING_MARK}{_dead_pid()}-abcd1234"
    stale.mkdir()
    (stale / "half.png").write_text("half")
    other = tmp_path / ".unrelated"
    other.mkdir()
    live = tmp_path / f".explain{STAGING_MARK}{os.getpid()}-live0000"  # a run still going
    live.mkdir()
    with atomic_directory(out) as staging:
        (staging / "a.csv").write_text("x")
    assert not stale.exists() and other.exists() and live.exists()
    assert _names(out) == ["a.csv"]


def test_a_run_killed_between_the_two_renames_gets_its_old_set_back(tmp_path):
    out = tmp_path / "explain"
    retired = tmp_path / f".explain{RETIRED_MARK}{_dead_pid()}-abcd1234"
    retired.mkdir()
    (retired / "old.csv").write_text("old")
    assert remove_stale_staging(out) == []
    assert _names(out) == ["old.csv"] and not retired.exists()


def test_single_file_writes_clean_up_their_stale_staging_too(tmp_path):
    stale = tmp_path / f".roc.csv{STAGING_MARK}{_dead_pid()}-abcd1234"
    stale.mkdir()
    write_json({"v": 1}, tmp_path / "roc.csv")
    assert _names(tmp_path) == ["roc.csv"]


@pytest.mark.parametrize("file", ["../outside.csv", "sub/../../outside.csv"])
def test_a_table_file_escaping_the_raw_folder_is_refused(tmp_path, file):
    raw = tmp_path / "raw"
    (raw / "sub").mkdir(parents=True)
    (tmp_path / "outside.csv").write_text("customer_id\n1\n")
    with pytest.raises(DataContractError, match="outside the raw folder"):
        find_table_file(raw, "customers", file)
    assert find_table_file(raw, "customers", file, allow_outside=True) is not None


def test_an_absolute_table_file_is_refused_even_inside(tmp_path):
    (tmp_path / "customers.csv").write_text("customer_id\n1\n")
    with pytest.raises(DataContractError, match="allow_outside_raw"):
        find_table_file(tmp_path, "customers", str(tmp_path / "customers.csv"))


def test_a_symlink_leading_out_of_the_raw_folder_is_refused(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (tmp_path / "secret.csv").write_text("customer_id\n1\n")
    (raw / "crm.csv").symlink_to(tmp_path / "secret.csv")
    (raw / "inside.csv").write_text("customer_id\n1\n")
    (raw / "alias.csv").symlink_to(raw / "inside.csv")
    with pytest.raises(DataContractError, match=r"secret\.csv"):
        find_table_file(raw, "customers", "crm.csv")
    assert find_table_file(raw, "customers", "alias.csv") == raw / "alias.csv"
    (raw / "sub").mkdir()
    assert find_table_file(raw, "customers", "sub/../inside.csv") is not None


def test_read_frame_rows_keeps_the_rows_a_naive_filter_keeps_with_the_same_dtypes(tmp_path):
    cutoffs = pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01"], utc=True)
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "a", "b", "c"] * 2,
            "cutoff": list(cutoffs[[0, 0, 0, 1, 1, 1]]) + list(cutoffs[[2, 2, 2, 0, 1, 2]]),
            "plan": pd.Categorical(["x", "y", None, "x", "y", "x"] * 2),
            "label": pd.array([1, 0, None, 0, 1, 0] * 2, dtype="Int8"),
            "tickets": [0.5, 1.5, None, 2.0, 3.0, 4.0] * 2,
        }
    )
    write_parquet(frame, tmp_path / "f.parquet")
    wanted = {"customer_id": ["c", "a", "a"], "cutoff": [cutoffs[0], cutoffs[2]]}
    got = read_frame_rows(tmp_path / "f.parquet", wanted)
    naive = frame[frame["customer_id"].isin(["a", "c"]) & frame["cutoff"].isin(wanted["cutoff"])]
    pd.testing.assert_frame_equal(got, naive.reset_index(drop=True))
    assert len(got) == 6
    one = read_frame_rows(tmp_path / "f.parquet", {"cutoff": [cutoffs[1]]})
    pd.testing.assert_frame_equal(one, frame[frame["cutoff"] == cutoffs[1]].reset_index(drop=True))
    with pytest.raises(ValueError, match="at least one column"):
        read_frame_rows(tmp_path / "f.parquet", {})


def test_read_latest_rows_keeps_the_latest_cutoff_or_reads_everything(tmp_path):
    cutoffs = pd.to_datetime(["2025-03-01", "2025-01-01", "2025-03-01", "2025-02-01"], utc=True)
    frame = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "cutoff": cutoffs,
                          "x": [1.0, 2.0, None, 4.0]})
    write_parquet(frame, tmp_path / "f.parquet")
    latest = frame[frame["cutoff"] == frame["cutoff"].max()].reset_index(drop=True)
    pd.testing.assert_frame_equal(read_latest_rows(tmp_path / "f.parquet"), latest)
    write_parquet(frame.drop(columns="cutoff"), tmp_path / "entity.parquet")
    pd.testing.assert_frame_equal(read_latest_rows(tmp_path / "entity.parquet"),
                                  frame.drop(columns="cutoff"))
    empty = frame.assign(cutoff=pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us, UTC]"))
    write_parquet(empty, tmp_path / "none.parquet")
    pd.testing.assert_frame_equal(read_latest_rows(tmp_path / "none.parquet"), empty)


def _mixed_frame(rows: int = 23) -> pd.DataFrame:
    """Every kind of column the pipeline writes, with missing values in each nullable one."""
    import numpy as np

    rng = np.random.default_rng(3)
    floats = rng.normal(size=rows)
    floats[::4] = np.nan
    return pd.DataFrame(
        {
            "customer_id": [f"c{i % 7}" for i in range(rows)],
            "cutoff": pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(np.arange(rows), "D"),
            "label": pd.array([None if i % 5 == 0 else i % 2 for i in range(rows)], dtype="Int8"),
            "plan": pd.Categorical([None if i % 6 == 0 else "ab"[i % 2] for i in range(rows)]),
            "tickets": floats,
            "score": rng.random(rows).astype("float32"),
            "logins": np.arange(rows, dtype="int64"),
            "flag": np.arange(rows) % 3 == 0,
        }
    )


@pytest.mark.parametrize("columns", [None, ["tickets", "customer_id", "score"], ["label"]])
def test_row_group_reads_equal_a_whole_file_read(tmp_path, columns):
    import pyarrow.parquet as pq

    frame = _mixed_frame()
    path = tmp_path / "f.parquet"
    # Row groups of 5 rows: the float arrays are filled from five groups, one partial.
    frame.to_parquet(path, index=False, row_group_size=5)
    assert pq.ParquetFile(path).num_row_groups == 5
    expected = pd.read_parquet(path, columns=columns)
    got = read_parquet_row_groups(path, columns)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert list(got.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(read_parquet_frame(path, columns), expected, check_exact=True)


def test_row_group_reads_fill_floats_in_place_and_keep_a_range_index(tmp_path):
    import numpy as np

    frame = _mixed_frame().set_index(pd.RangeIndex(10, 56, 2, name="row"))
    path = tmp_path / "f.parquet"
    frame.to_parquet(path, row_group_size=4)  # the range index is kept in the metadata
    got = read_parquet_row_groups(path)
    pd.testing.assert_frame_equal(got, pd.read_parquet(path), check_exact=True)
    assert got.index.equals(frame.index) and got.index.name == "row"
    # Each float column is its own array (no consolidated block to copy into).
    assert got._mgr.nblocks == got.shape[1]
    assert np.isnan(got["tickets"].to_numpy()[::4]).all()


def test_row_group_reads_leave_stored_indexes_and_empty_files_right(tmp_path):
    frame = _mixed_frame().set_index("customer_id")
    path = tmp_path / "indexed.parquet"
    frame.to_parquet(path)
    assert read_parquet_row_groups(path) is None  # a stored index column: read whole instead
    pd.testing.assert_frame_equal(read_parquet_frame(path), pd.read_parquet(path))
    empty = _mixed_frame().iloc[:0]
    write_parquet(empty, tmp_path / "empty.parquet")
    pd.testing.assert_frame_equal(
        read_parquet_row_groups(tmp_path / "empty.parquet"),
        pd.read_parquet(tmp_path / "empty.parquet"),
    )
    with pytest.raises(Exception, match="nope"):
        read_parquet_frame(tmp_path / "empty.parquet", columns=["nope"])


def test_reading_positions_gives_the_rows_of_a_whole_read_and_skips_other_row_groups(
    tmp_path, monkeypatch
):
    import numpy as np
    import pyarrow.parquet as pq

    frame = _mixed_frame(rows=40)
    path = tmp_path / "f.parquet"
    frame.to_parquet(path, index=False, row_group_size=8)  # five row groups
    whole = read_frame(path)
    decoded: list[int] = []
    read_group = pq.ParquetFile.read_row_group

    def counting(self, group, *args, **kwargs):
        decoded.append(group)
        return read_group(self, group, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counting)
    positions = np.array([0, 3, 7, 8, 30, 39])  # nothing in rows 9-29: groups 2 and 3 unread
    got = read_frame_positions(path, positions)
    naive = whole.iloc[positions].reset_index(drop=True)
    # Nullable and float columns keep their dtypes; "label" holds a missing value in these rows.
    pd.testing.assert_frame_equal(got, naive, check_exact=True)
    assert decoded == [0, 1, 3, 4]
    columns = ["tickets", "customer_id"]
    expected = naive[columns].iloc[2:4].reset_index(drop=True)
    pd.testing.assert_frame_equal(read_frame_positions(path, positions[2:4], columns), expected)
    assert len(read_frame_positions(path, np.array([], dtype=int))) == 0
    for wrong in ([3, 2], [1, 1], [40], [-1]):
        with pytest.raises(ValueError, match="positions must increase"):
            read_frame_positions(path, np.array(wrong))
    # A stored index column: read whole, then the rows taken.
    frame.set_index("customer_id").to_parquet(tmp_path / "indexed.parquet")
    indexed = read_frame_positions(tmp_path / "indexed.parquet", positions)
    stored = pd.read_parquet(tmp_path / "indexed.parquet")
    pd.testing.assert_frame_equal(indexed, stored.iloc[positions].reset_index(drop=True))


def test_reading_runs_of_positions_slices_row_groups_and_gives_the_same_rows(
    tmp_path, monkeypatch
):
    """Runs of rows inside row groups (one cutoff of a file written cutoff by cutoff) are
    sliced, scattered rows gathered; both give the rows of a whole read."""
    import numpy as np
    import pyarrow as pa

    frame = _mixed_frame(rows=40)
    path = tmp_path / "f.parquet"
    frame.to_parquet(path, index=False, row_group_size=8)
    whole = read_frame(path)
    gathered: list[int] = []
    to_arrow = pa.array

    def counting(values, *args, **kwargs):  # the gather's row numbers go through pa.array
        if isinstance(values, np.ndarray) and values.dtype == np.int64:
            gathered.append(values.tolist())
        return to_arrow(values, *args, **kwargs)

    monkeypatch.setattr(pa, "array", counting)
    # Rows 2-5 (inside group 0), 6-13 (the end of group 0 and the start of group 1),
    # 16-23 (group 2 whole), 25, 27 and 28 (scattered in group 3).
    positions = np.array([2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, *range(16, 24), 25, 27, 28])
    got = read_frame_positions(path, positions)
    pd.testing.assert_frame_equal(got, whole.iloc[positions].reset_index(drop=True),
                                  check_exact=True)
    assert gathered == [[1, 3, 4]]  # only group 3's scattered rows were gathered


@pytest.mark.parametrize(
    "filters",
    [
        [("cutoff", "<=", pd.Timestamp("2025-01-20", tz="UTC"))],
        [("customer_id", "in", ["c1", "c4"]), ("logins", ">", 5)],
        [("label", "==", 1)],
        [("plan", "in", ["a"])],
        [("tickets", "<", 0.0)],
        [("logins", ">", 100)],
    ],
    ids=["timestamps", "text-and-integers", "nullable", "categorical", "floats", "no-row"],
)
def test_filtered_reads_keep_the_rows_and_dtypes_of_pyarrows_filtered_read(tmp_path, filters):
    """A single file's filter is evaluated on its filter columns, then only those rows are
    read: the frame of ``pd.read_parquet(filters=...)``, checked against a naive mask too."""
    import numpy as np

    frame = _mixed_frame(rows=40)
    path = tmp_path / "f.parquet"
    frame.to_parquet(path, index=False, row_group_size=8)
    positions = find_filtered_positions(path, filters)
    naive = np.ones(len(frame), dtype=bool)
    for column, op, value in filters:
        values = frame[column]
        test = {
            "<=": lambda v, x=value: v <= x,
            "<": lambda v, x=value: v < x,
            ">": lambda v, x=value: v > x,
            "==": lambda v, x=value: v == x,
            "in": lambda v, x=value: v.isin(x),
        }[op](values)
        naive &= test.fillna(False).to_numpy(dtype=bool)
    np.testing.assert_array_equal(positions, np.flatnonzero(naive))
    for columns in (None, ["tickets", "customer_id", "label"]):
        expected = pd.read_parquet(path, columns=columns, filters=filters)
        got = read_parquet_frame(path, columns=columns, filters=filters)
        pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_filters_the_positions_do_not_take_go_to_pyarrow(tmp_path):
    frame = _mixed_frame(rows=12)
    path = tmp_path / "f.parquet"
    frame.to_parquet(path, index=False)
    either = [[("logins", "<", 3)], [("logins", ">", 9)]]  # a disjunction
    assert find_filtered_positions(path, either) is None
    pd.testing.assert_frame_equal(
        read_parquet_frame(path, filters=either), pd.read_parquet(path, filters=either)
    )
    assert find_filtered_positions(path, [("nope", "==", 1)]) is None
    with pytest.raises(Exception, match="nope"):
        read_parquet_frame(path, filters=[("nope", "==", 1)])
    # A stored index column: pyarrow's filtered read, index kept.
    frame.set_index("customer_id").to_parquet(tmp_path / "indexed.parquet")
    kept = [("logins", ">=", 6)]
    pd.testing.assert_frame_equal(
        read_parquet_frame(tmp_path / "indexed.parquet", filters=kept),
        pd.read_parquet(tmp_path / "indexed.parquet", filters=kept),
    )


@pytest.mark.parametrize("key_ids", ["same", "text"])
def test_reading_keys_gives_the_rows_of_whole_keys_only(tmp_path, key_ids):
    """Integer ids (an export) asked for as integers or as their text; the column-by-column
    filter would also return customer 3 at the first cutoff and 5 at the second."""
    cutoffs = pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01"], utc=True)
    frame = pd.DataFrame(
        {
            "customer_id": [3, 5, 7] * 3,
            "cutoff": cutoffs.repeat(3),
            "label": pd.array([1, 0, None] * 3, dtype="Int8"),
            "tickets": [float(i) for i in range(9)],
        }
    )
    frame.to_parquet(tmp_path / "f.parquet", index=False, row_group_size=2)
    keys = pd.DataFrame(
        {"customer_id": [5, 3, 5, 9], "cutoff": cutoffs[[0, 1, 0, 0]]}  # a repeat, an unknown
    )
    if key_ids == "text":
        keys["customer_id"] = keys["customer_id"].astype(str)
    got = read_frame_keys(tmp_path / "f.parquet", keys)
    # Naive reference: each row checked against every key, as text.
    wanted = {(str(c), t) for c, t in zip(keys["customer_id"], keys["cutoff"], strict=True)}
    naive = frame[
        [(str(c), t) in wanted for c, t in zip(frame["customer_id"], frame["cutoff"], strict=True)]
    ].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, naive)
    assert list(got["customer_id"]) == [5, 3]
    # A directory (a dataset of parts) gives the same rows.
    folder = tmp_path / "parts"
    folder.mkdir()
    frame.iloc[:4].to_parquet(folder / "part-0.parquet", index=False)
    frame.iloc[4:].to_parquet(folder / "part-1.parquet", index=False)
    pd.testing.assert_frame_equal(read_frame_keys(folder, keys), naive)


def test_reading_keys_matches_like_a_naive_check_on_random_keys(tmp_path):
    """Three key columns (text with gaps, zoned months, plays) in many row groups; the keys
    asked for repeat, include unknown ones and a missing id, which matches missing ids (as a
    pandas merge does), and come as nanoseconds where the file stores microseconds."""
    rng = np.random.default_rng(3)
    n = 3000
    months = pd.date_range("2025-01-01", periods=6, freq="MS", tz="UTC").as_unit("us")
    ids = rng.integers(0, 200, n).astype(str).astype(object)
    ids[rng.random(n) < 0.02] = None
    frame = pd.DataFrame(
        {
            "customer_id": pd.array(ids, dtype="str"),
            "month_start": months[rng.integers(0, 6, n)],
            "play": pd.array(rng.choice(["call", "discount", "training"], n), dtype="str"),
            "value": np.arange(n, dtype=np.float32),
        }
    )
    path = tmp_path / "truth.parquet"
    frame.to_parquet(path, index=False, row_group_size=250)
    asked = frame.iloc[rng.integers(0, n, 500), :3]
    unknown = pd.DataFrame({"customer_id": ["999", "998"], "month_start": months[:2],
                            "play": ["call", "call"]}).astype({"customer_id": "str",
                                                              "play": "str"})
    keys = pd.concat([asked, asked.iloc[:50], unknown], ignore_index=True)
    keys["month_start"] = keys["month_start"].dt.as_unit("ns")
    got = read_frame_keys(path, keys)

    def key(row: tuple) -> tuple:
        return tuple("<missing>" if pd.isna(v) else v for v in row)

    wanted = {key(row) for row in keys.itertuples(index=False)}
    naive = frame[[key(row) in wanted for row in frame.iloc[:, :3].itertuples(index=False)]]
    assert frame["customer_id"].isna().any() and got["customer_id"].isna().any()
    pd.testing.assert_frame_equal(got, naive.reset_index(drop=True))


def test_reading_keys_of_zoned_times_with_naive_ones_matches_as_pandas_does(tmp_path):
    """A zoned cutoff asked for without its zone matches nothing (as text, like a merge after
    casting), instead of DuckDB reading the naive time in its session's zone."""
    frame = pd.DataFrame({"customer_id": ["a", "b"],
                          "cutoff": pd.to_datetime(["2025-01-01", "2025-02-01"], utc=True)})
    frame.to_parquet(tmp_path / "f.parquet", index=False)
    naive_keys = pd.DataFrame({"customer_id": ["a"],
                               "cutoff": pd.to_datetime(["2025-01-01"])})
    assert read_frame_keys(tmp_path / "f.parquet", naive_keys).empty
    zoned_keys = naive_keys.assign(cutoff=naive_keys["cutoff"].dt.tz_localize("UTC"))
    assert list(read_frame_keys(tmp_path / "f.parquet", zoned_keys)["customer_id"]) == ["a"]


def test_reading_rows_by_values_of_another_kind_is_an_error_not_an_empty_frame(tmp_path):
    frame = pd.DataFrame(
        {
            "customer_id": [3, 5, 7],
            "cutoff": pd.to_datetime(["2025-01-01"] * 3, utc=True),
            "plan": pd.Categorical(["a", "b", "a"]),
        }
    )
    write_parquet(frame, tmp_path / "f.parquet")
    with pytest.raises(ValueError, match=r"'customer_id'.*cannot be compared"):
        read_frame_rows(tmp_path / "f.parquet", {"customer_id": ["3", "5"]})
    with pytest.raises(ValueError, match=r"'cutoff'.*cannot be compared"):
        read_frame_rows(tmp_path / "f.parquet", {"cutoff": [pd.Timestamp("2025-01-01")]})
    both = read_frame_rows(tmp_path / "f.parquet", {"customer_id": [5, 7], "plan": ["a"]})
    pd.testing.assert_frame_equal(both, frame.iloc[[2]].reset_index(drop=True))
    assert read_frame_rows(tmp_path / "f.parquet", {"customer_id": []}).empty


def test_frame_to_arrow_converts_as_to_parquet_does_without_the_timezone_warning(tmp_path):
    """Warnings are errors here: a time-zone column must convert silently, to the schema (and
    pandas metadata) that to_parquet writes."""
    frame = pd.DataFrame(
        {
            "event_time": pd.to_datetime(["2025-01-01 10:00", None], utc=True),
            "customer_id": pd.array(["a", "b"], dtype="str"),
            "seats": pd.array([1, None], dtype="Int64"),
        },
        index=[5, 9],
    )
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    written = pq.read_schema(tmp_path / "t.parquet")
    table = frame_to_arrow(frame)
    assert table.schema.equals(written, check_metadata=True)
    assert table.num_rows == 2
    again = frame_to_arrow(frame.iloc[:1], table.schema)
    assert again.schema.equals(table.schema, check_metadata=False)


def test_key_lookups_open_duckdb_offline(tmp_path, monkeypatch):
    # read_frame_keys opens its own DuckDB connection (churn.io cannot use churn.sql.connect):
    # it must be as offline as the others (churn.sql.OFFLINE_SETTINGS).
    import duckdb

    from churn.sql import OFFLINE_SETTINGS

    configs: list[dict] = []
    real_connect = duckdb.connect

    def recording_connect(*args, **kwargs):
        configs.append(dict(kwargs.get("config", {})))
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(duckdb, "connect", recording_connect)
    frame = pd.DataFrame({"customer_id": ["a", "b"], "tickets": [1.0, 2.0]})
    frame.to_parquet(tmp_path / "f.parquet", index=False)
    got = read_frame_keys(tmp_path / "f.parquet", pd.DataFrame({"customer_id": ["b"]}))
    assert got["tickets"].tolist() == [2.0]
    assert configs, "no DuckDB connection was opened"
    assert all({k: c.get(k) for k in OFFLINE_SETTINGS} == dict(OFFLINE_SETTINGS) for c in configs)


@pytest.mark.parametrize("arrow_type", ["float64", "float32"])
def test_float_columns_are_copied_as_arrow_converts_them(arrow_type):
    """Naive reference: each value in Python, a missing one as NaN. Chunks sliced at an
    offset, several chunks, all missing, no missing, and a NaN stored as a value."""
    import numpy as np
    import pyarrow as pa

    from churn.io.row_groups import copy_float_column

    first = pa.array([1.5, None, -0.0, float("nan"), 7.25, None, 3.0], type=arrow_type)
    column = pa.chunked_array(
        [
            first.slice(1, 5),  # an offset into the buffers and the validity bitmap
            pa.array([None, None], type=arrow_type),
            pa.array([], type=arrow_type),
            pa.array([2.0, 4.0, 8.0], type=arrow_type),
            pa.array([None] * 11 + [6.5], type=arrow_type),  # a bitmap over two bytes
        ]
    )
    expected = np.array(
        [np.nan if value is None else value for value in column.to_pylist()],
        dtype=np.dtype(arrow_type),
    )
    out = np.full(len(column), 99.0, dtype=np.dtype(arrow_type))
    copy_float_column(column, out)
    np.testing.assert_array_equal(out, expected)
    assert np.signbit(out[1])  # -0.0 kept as it is
    # A column of another float type than its destination is converted by Arrow.
    wide = np.zeros(len(column))
    copy_float_column(column, wide)
    np.testing.assert_array_equal(wide, expected.astype(np.float64))
    with pytest.raises(ValueError, match="copied into"):
        copy_float_column(column, np.zeros(len(column) + 1, dtype=np.dtype(arrow_type)))
