"""The bucketed sums of :mod:`churn.features.common`, against a naive reference."""

from __future__ import annotations

import contextlib

import pandas as pd

from churn.features.common import (
    DAY_BUCKET,
    KEYS,
    bucketed_sql,
    build_bucket_grid,
    set_last_cutoff,
)
from churn.sql import connect

CUTOFFS = [pd.Timestamp("2024-03-01"), pd.Timestamp("2024-04-01")]
WINDOWS = [7, 30]


def _events() -> pd.DataFrame:
    """Customer 1 has rows before the grid, in it and after the last cutoff; 2 only before."""
    return pd.DataFrame(
        {
            "customer_id": [1, 1, 1, 1, 1, 2, 2],
            "occurred_at": pd.to_datetime(
                [
                    "2023-12-30 08:00",
                    "2024-01-30 23:59:59.999999",  # before the grid (Jan 31)
                    "2024-01-31 00:00",
                    "2024-03-29 10:00",  # in the grid
                    "2024-04-01 00:00",  # at the last cutoff: in the future of every cutoff
                    "2023-06-01 12:00",
                    "2024-01-02 00:00",
                ],
                format="ISO8601",
            ).astype("datetime64[us]"),
            "quantity": [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
        }
    )


def _run(sql: str, events: pd.DataFrame) -> pd.DataFrame:
    grid = build_bucket_grid(CUTOFFS, WINDOWS)
    keys = pd.DataFrame({"customer_id": [1, 1, 2, 2], "cutoff": CUTOFFS * 2}).astype(
        {"cutoff": "datetime64[us]"}
    )
    with contextlib.closing(connect(threads=1, memory_limit="256MB")) as con:
        con.register(DAY_BUCKET, grid.day_bucket)
        con.register(KEYS, keys)
        con.register("events", events)
        set_last_cutoff(con)
        # The history's bucket starts at -infinity, which pandas cannot hold: flagged instead.
        return con.execute(
            "SELECT * EXCLUDE (bucket_start), isinf(bucket_start) AS history, "
            "CASE WHEN NOT isinf(bucket_start) THEN bucket_start END AS bucket_start "
            f"FROM ({sql}) ORDER BY customer_id, bucket_start NULLS FIRST"
        ).df()


def _naive_buckets(events: pd.DataFrame) -> pd.DataFrame:
    """Each row's bucket by a plain search of the grid's day table, then sums per bucket."""
    grid = build_bucket_grid(CUTOFFS, WINDOWS).day_bucket
    first = grid["day"].min()
    rows = events[events["occurred_at"] < max(CUTOFFS)]
    grid_rows = rows[rows["occurred_at"] >= first]
    day = grid_rows["occurred_at"].dt.floor("D")
    start = day.map(dict(zip(grid["day"], grid["bucket_start"], strict=True)))
    return (
        grid_rows.assign(bucket_start=start.to_numpy())
        .groupby(["customer_id", "bucket_start"], as_index=False)
        .agg(quantity=("quantity", "sum"), last_at=("occurred_at", "max"))
    )


def test_grid_rows_are_summed_per_bucket_and_history_keeps_only_its_latest_time() -> None:
    events = _events()
    got = _run(
        bucketed_sql("events", "occurred_at", {"quantity": "quantity"}, {"last_at": "occurred_at"}),
        events,
    )
    history = got[got["history"]]
    in_grid = got[~got["history"]].reset_index(drop=True)
    expected = _naive_buckets(events)
    pd.testing.assert_frame_equal(
        in_grid[["customer_id", "bucket_start", "quantity", "last_at"]].astype(
            {"customer_id": "int64", "bucket_start": "datetime64[us]", "last_at": "datetime64[us]"}
        ),
        expected.astype({"bucket_start": "datetime64[us]", "last_at": "datetime64[us]"}),
        check_dtype=False,
    )
    # One history row per customer with a row before the grid: the latest time, no sums.
    assert history["customer_id"].tolist() == [1, 2]
    assert history["last_at"].tolist() == [
        pd.Timestamp("2024-01-30 23:59:59.999999"),
        pd.Timestamp("2024-01-02 00:00"),
    ]
    assert history["quantity"].isna().all()


def test_without_maxima_the_history_before_the_grid_is_left_out() -> None:
    events = _events()
    got = _run(bucketed_sql("events", "occurred_at", {"quantity": "quantity"}), events)
    expected = _naive_buckets(events).drop(columns="last_at")
    assert not got["history"].any()
    pd.testing.assert_frame_equal(
        got[["customer_id", "bucket_start", "quantity"]].astype(
            {"customer_id": "int64", "bucket_start": "datetime64[us]"}
        ),
        expected.astype({"bucket_start": "datetime64[us]"}),
        check_dtype=False,
    )
