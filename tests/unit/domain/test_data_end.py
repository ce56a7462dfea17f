"""Tests for churn.domain.data_end: where a table's data ends, robust to stray rows."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pandas as pd

from churn.domain.data_end import (
    TableEnd,
    describe_end_mismatch,
    end_of_day,
    find_density_end,
    find_table_end,
)


def _daily(start: str, days: int, per_day: int = 3) -> pd.Series:
    base = pd.date_range(start, periods=days, freq="D", tz="UTC")
    return pd.Series(np.repeat(base, per_day) + pd.Timedelta(hours=9))


def _naive_end(values: pd.Series, gap_days: int) -> pd.Timestamp:
    """Reference: from the (lower) 99.9th percentile walk forward until a gap over the limit."""
    ordered = sorted(values)
    anchor = ordered[int(0.999 * (len(ordered) - 1) // 1)]
    days = sorted({v.normalize() for v in ordered})
    gaps = [b - a for a, b in itertools.pairwise(days)]
    median = pd.Series(gaps).median()
    limit = max(pd.Timedelta(days=gap_days), 10 * median)
    end = anchor
    for value in ordered:
        if value < anchor:
            continue
        if value - end > limit:
            break
        end = value
    return end


def test_single_stray_value_months_later_is_cut_off() -> None:
    bulk = _daily("2025-01-01", 150)
    stray = pd.Series([pd.Timestamp("2026-01-15T12:00", tz="UTC")])
    values = pd.concat([bulk, stray], ignore_index=True)

    end, reason = find_density_end(values, gap_days=30)

    assert end == bulk.max() == _naive_end(values, 30)
    assert "silent gap of" in reason and str(bulk.max().date()) in reason


def test_dense_data_ends_at_its_latest_value() -> None:
    values = _daily("2025-01-01", 90)

    end, reason = find_density_end(values.sample(frac=1.0, random_state=1), gap_days=30)

    assert end == values.max() == _naive_end(values, 30)
    assert reason == ""


def test_sparse_table_keeps_its_latest_rows() -> None:
    # A conversion every ~2 months: a 70-day gap is normal here, not a stray row.
    values = pd.Series(pd.date_range("2024-01-10", periods=8, freq="70D", tz="UTC"))

    end, _ = find_density_end(values, gap_days=30)

    assert end == values.max() == _naive_end(values, 30)


def test_naive_timestamps_and_missing_values() -> None:
    values = pd.Series([pd.Timestamp("2025-01-01"), pd.NaT, pd.Timestamp("2025-01-02")])
    assert find_density_end(values, 30)[0] == pd.Timestamp("2025-01-02", tz="UTC")
    assert find_density_end(pd.Series([pd.NaT], dtype="datetime64[us]"), 30) is None


def test_table_end_counts_stray_rows_on_the_event_time_only() -> None:
    bulk = _daily("2025-01-01", 120)
    occurred = pd.concat([bulk, pd.Series([pd.Timestamp("2025-11-01", tz="UTC")])])
    frame = pd.DataFrame({"customer_id": "a", "occurred_at": occurred.to_numpy()})

    table_end = find_table_end("usage_events", frame, gap_days=30)

    assert table_end is not None
    assert (table_end.column, table_end.stray_rows) == ("occurred_at", 1)
    assert table_end.end == bulk.max()
    assert table_end.last_seen == pd.Timestamp("2025-11-01", tz="UTC")
    assert find_table_end("usage_events", frame.iloc[:0], gap_days=30) is None


def test_explicit_end_includes_its_whole_day() -> None:
    frame = pd.DataFrame(
        {"occurred_at": pd.to_datetime(["2025-03-31T23:59:59Z", "2025-04-01T00:00:00Z"])}
    )

    table_end = find_table_end("usage_events", frame, 30, explicit=dt.date(2025, 3, 31))

    assert table_end is not None and table_end.stray_rows == 1
    assert table_end.end == end_of_day(dt.date(2025, 3, 31))
    assert "ingest.data_end" in table_end.reason


def test_tables_ending_apart_are_reported() -> None:
    def end(table: str, day: str) -> TableEnd:
        stamp = pd.Timestamp(day, tz="UTC")
        return TableEnd(table, "t", stamp, stamp, 0, "")

    apart = {
        "subscriptions": end("subscriptions", "2025-10-31"),
        "usage_events": end("usage_events", "2025-12-31"),
    }
    close = {
        "subscriptions": end("subscriptions", "2025-12-20"),
        "usage_events": end("usage_events", "2025-12-31"),
    }

    warning = describe_end_mismatch(apart, gap_days=30)

    assert warning is not None and "subscriptions 2025-10-31" in warning and "61 days" in warning
    assert describe_end_mismatch(close, gap_days=30) is None
    assert describe_end_mismatch({"usage_events": apart["usage_events"]}, 30) is None
