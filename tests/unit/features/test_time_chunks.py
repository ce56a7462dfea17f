"""The per-(customer, bucket) aggregation in time ranges (:mod:`churn.features.time_chunks`)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from support.synthetic import all_keys, make_tables

from churn.config import FeaturesConfig
from churn.features import time_chunks
from churn.features.build import build_features
from churn.features.common import (
    DAY_BUCKET,
    KEYS,
    bucketed_sql,
    build_bucket_grid,
    create_step,
    set_last_cutoff,
)
from churn.features.time_chunks import (
    MAX_READ_FACTOR,
    ChunkedBuckets,
    events_per_range,
    parse_memory_limit,
    plan_time_ranges,
)
from churn.io import read_time_statistics
from churn.sql import connect

CUTOFFS = pd.to_datetime(["2024-03-01", "2024-04-01", "2024-05-01", "2024-06-01"]).astype(
    "datetime64[us]"
)
WINDOWS = (7, 30)
SUMS = {
    "quantity": "coalesce(quantity, 1)",
    "logins": "CASE WHEN event_type = 'login' THEN coalesce(quantity, 1) END",
}
MAXES = {
    "last_event_at": "occurred_at",
    "last_login_at": "CASE WHEN event_type = 'login' THEN occurred_at END",
}
MINS = {"first_event_at": "occurred_at"}


def _events(seed: int, rows: int = 600) -> pd.DataFrame:
    """Events from before the grid to after the last cutoff, some at midnight (a bucket's first
    instant), whole quantities (every order of summing is exact), some missing."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01")
    seconds = rng.integers(0, 190 * 86_400, size=rows)
    seconds[::17] -= seconds[::17] % 86_400  # midnights
    return pd.DataFrame(
        {
            "customer_id": rng.integers(0, 9, size=rows).astype("int64"),
            "occurred_at": (start + pd.to_timedelta(seconds, unit="s")).astype("datetime64[us]"),
            "event_type": rng.choice(["login", "export", "view"], size=rows),
            "quantity": np.where(rng.random(rows) < 0.2, np.nan, rng.integers(1, 5, size=rows)),
        }
    )


def _write(events: pd.DataFrame, path: Path, *, ordered: bool, statistics: bool = True) -> Path:
    frame = events.sort_values("occurred_at", kind="stable") if ordered else events
    frame.to_parquet(path, index=False, row_group_size=10, write_statistics=statistics)
    return path


@contextlib.contextmanager
def _session(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    grid = build_bucket_grid(CUTOFFS, WINDOWS)
    keys = pd.DataFrame(
        [(c, t) for c in range(9) for t in CUTOFFS], columns=["customer_id", "cutoff"]
    )
    with contextlib.closing(connect(threads=2, memory_limit="256MB")) as con:
        con.register(DAY_BUCKET, grid.day_bucket)
        con.register("_keys_frame", keys)
        con.execute(f"CREATE TEMP TABLE {KEYS} AS SELECT * FROM _keys_frame")
        con.execute(f"CREATE TEMP VIEW usage_events AS SELECT * FROM read_parquet('{path}')")
        set_last_cutoff(con)
        yield con


def _table(con: duckdb.DuckDBPyConnection, name: str) -> pd.DataFrame:
    frame = con.execute(f"SELECT * FROM {name}").df()
    return frame.sort_values(["customer_id", "bucket_start"], ignore_index=True)


def _naive(events: pd.DataFrame) -> pd.DataFrame:
    """Reference: each grid event's bucket looked up by day, then a groupby; one prehistory row
    per customer with events before the grid (maxima and minima only)."""
    grid = build_bucket_grid(CUTOFFS, WINDOWS).day_bucket
    first, last = grid["day"].min(), CUTOFFS.max()
    day = events["occurred_at"].dt.floor("D")
    logins = events["event_type"] == "login"
    quantity = events["quantity"].fillna(1.0)
    frame = events.assign(
        quantity=quantity,
        logins=quantity.where(logins),
        last_event_at=events["occurred_at"],
        last_login_at=events["occurred_at"].where(logins),
    )
    inside = frame[(events["occurred_at"] >= first) & (events["occurred_at"] < last)]
    inside = inside.assign(day=day[inside.index]).merge(grid, on="day")
    rows = []
    for (customer, start), part in inside.groupby(["customer_id", "bucket_start"]):
        mask = 0
        for bit in part["day_bit"]:
            mask |= int(bit)
        rows.append(
            (
                customer,
                start,
                part["quantity"].sum(),
                part["logins"].sum(min_count=1),
                part["last_event_at"].max(),
                part["last_login_at"].max(),
                part["last_event_at"].min(),
                mask,
            )
        )
    for customer, part in frame[events["occurred_at"] < first].groupby("customer_id"):
        rows.append(
            (
                customer,
                pd.Timestamp.min,
                np.nan,
                np.nan,
                part["last_event_at"].max(),
                part["last_login_at"].max(),
                part["last_event_at"].min(),
                None,
            )
        )
    columns = ["customer_id", "bucket_start", *SUMS, *MAXES, *MINS, "day_mask"]
    return pd.DataFrame(rows, columns=columns)


def _compare(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    got = got.sort_values(["customer_id", "bucket_start"], ignore_index=True)
    expected = expected.sort_values(["customer_id", "bucket_start"], ignore_index=True)
    assert len(got) == len(expected) > 0
    assert got["customer_id"].tolist() == expected["customer_id"].tolist()
    starts = got["bucket_start"].where(got["bucket_start"] > pd.Timestamp("1900-01-01"))
    expected_starts = expected["bucket_start"].where(expected["day_mask"].notna())
    assert starts.tolist() == expected_starts.tolist()  # NaT for the prehistory rows
    for column in [*SUMS, *MAXES, *MINS]:
        pd.testing.assert_series_equal(
            got[column], expected[column], check_dtype=False, check_names=False, obj=column
        )

    def masks(frame: pd.DataFrame) -> list[int | None]:
        return [None if pd.isna(v) else int(v) for v in frame["day_mask"]]

    assert masks(got) == masks(expected)


@pytest.mark.parametrize("max_events", [60, 150, 250])
def test_time_ranges_give_the_rows_of_one_statement_and_of_a_naive_groupby(
    tmp_path: Path, max_events: int
) -> None:
    events = _events(seed=max_events)
    path = _write(events, tmp_path / "usage.parquet", ordered=True)
    step = ChunkedBuckets(
        "usage_events",
        "occurred_at",
        SUMS,
        MAXES,
        day_mask=True,
        path=path,
        max_events=max_events,
        mins=MINS,
    )
    with _session(path) as con:
        ranges = step.plan(con)
        assert ranges is not None and len(ranges) >= 2  # the ranges are exercised
        step(con, "chunked")
        whole = bucketed_sql("usage_events", "occurred_at", SUMS, MAXES, True, MINS)
        create_step(con, "whole", whole)
        chunked, whole = _table(con, "chunked"), _table(con, "whole")
    pd.testing.assert_frame_equal(chunked, whole)
    _compare(chunked, _naive(events))


def test_ranges_start_and_end_at_bucket_starts_and_cover_the_grid(tmp_path: Path) -> None:
    events = _events(seed=4, rows=2_000)
    statistics = read_time_statistics(
        _write(events, tmp_path / "e.parquet", ordered=True), "occurred_at"
    )
    assert statistics is not None and statistics["rows"].sum() == len(events)
    grid = build_bucket_grid(CUTOFFS, WINDOWS).day_bucket
    starts = np.unique(grid["bucket_start"])
    ranges = plan_time_ranges(statistics, starts, CUTOFFS.max(), max_events=300)
    assert ranges is not None and len(ranges) >= 3
    assert ranges[0][0] == starts[0] and ranges[-1][1] == CUTOFFS.max()
    for (_, stop), (start, _) in itertools.pairwise(ranges):
        assert stop == start and start in set(pd.DatetimeIndex(starts))
    # Too few events for two ranges: one statement.
    assert plan_time_ranges(statistics, starts, CUTOFFS.max(), max_events=len(events)) is None


def test_a_file_out_of_time_order_or_without_statistics_is_one_statement(tmp_path: Path) -> None:
    events = _events(seed=5, rows=2_000).sample(frac=1.0, random_state=5)
    starts = np.unique(build_bucket_grid(CUTOFFS, WINDOWS).day_bucket["bucket_start"])
    shuffled = read_time_statistics(
        _write(events, tmp_path / "s.parquet", ordered=False), "occurred_at"
    )
    assert shuffled is not None
    assert plan_time_ranges(shuffled, starts, CUTOFFS.max(), max_events=300) is None
    # The same rows in time order are split, within the read budget.
    ordered = read_time_statistics(
        _write(events, tmp_path / "o.parquet", ordered=True), "occurred_at"
    )
    assert plan_time_ranges(ordered, starts, CUTOFFS.max(), max_events=300) is not None
    assert MAX_READ_FACTOR < 2
    bare = _write(events, tmp_path / "n.parquet", ordered=True, statistics=False)
    assert read_time_statistics(bare, "occurred_at") is None
    assert read_time_statistics(tmp_path / "o.parquet", "no_such_column") is None
    with _session(bare) as con:  # and the step falls back to one statement
        assert (
            ChunkedBuckets("usage_events", "occurred_at", SUMS, path=bare, max_events=1).plan(con)
            is None
        )


def test_time_zone_aware_statistics_are_read_as_naive_utc(tmp_path: Path) -> None:
    events = _events(seed=6, rows=100)
    aware = events.assign(occurred_at=events["occurred_at"].dt.tz_localize("UTC"))
    statistics = read_time_statistics(
        _write(aware, tmp_path / "a.parquet", ordered=True), "occurred_at"
    )
    assert statistics is not None
    assert statistics["low"].min() == events["occurred_at"].min()
    assert statistics["high"].max() == events["occurred_at"].max()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4GB", 4 * 10**9),
        ("3.5 GiB", int(3.5 * 2**30)),
        ("500mb", 5 * 10**8),
        ("12", 12),
        ("1KiB", 1024),
        ("80%", None),
        ("lots", None),
        ("2 iB", None),
    ],
)
def test_memory_limits_are_read_in_bytes(text: str, expected: int | None) -> None:
    assert parse_memory_limit(text) == expected


def test_a_range_holds_the_memory_limit_over_the_bytes_per_event() -> None:
    assert events_per_range("4GB") == 4 * 10**9 // time_chunks.BYTES_PER_EVENT == 40_000_000
    assert events_per_range("12") == 1  # never below one event
    assert events_per_range("80%") is None  # unreadable: one statement


def test_usage_features_are_the_same_with_the_events_in_time_ranges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole usage family on Parquet files, third-party shaped ids (integers), split into
    ranges of a few events against one statement."""
    paths = {}
    tables = make_tables(7, n_customers=30)
    for name, frame in tables.items():
        paths[name] = tmp_path / f"{name}.parquet"
        frame = frame.assign(customer_id=frame["customer_id"].str[1:].astype("int64"))
        if name == "usage_events":
            frame = frame.sort_values("occurred_at", kind="stable")
        frame.to_parquet(paths[name], index=False, row_group_size=8)
    population = all_keys(make_tables(7, n_customers=30))
    population["customer_id"] = population["customer_id"].str[1:].astype("int64")
    cfg = FeaturesConfig(windows_days=(7, 30, 90))
    whole = build_features(paths, population, cfg).frame
    planned: list[int] = []
    plan = ChunkedBuckets.plan

    def counting_plan(self: ChunkedBuckets, con: duckdb.DuckDBPyConnection):
        ranges = plan(self, con)
        planned.append(0 if ranges is None else len(ranges))
        return ranges

    monkeypatch.setattr(ChunkedBuckets, "plan", counting_plan)
    # Under the default 4 GB, about a quarter of the events a range.
    bytes_per_event = 4 * 10**9 // max(len(tables["usage_events"]) // 4, 1)
    monkeypatch.setattr(time_chunks, "BYTES_PER_EVENT", bytes_per_event)
    chunked = build_features(paths, population, cfg).frame
    assert planned and planned[0] >= 2
    pd.testing.assert_frame_equal(chunked, whole)
