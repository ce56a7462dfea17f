"""Tests for churn.domain.data_end: where a table's data ends, robust to stray rows."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pandas as pd
import pytest

from churn.domain import data_end
from churn.domain.data_end import (
    TableEnd,
    describe_end_mismatch,
    end_of_day,
    find_density_end,
    find_density_end_of_ticks,
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


# find_density_end_of_ticks: the same rule as find_density_end, on int64 ticks.

_UTC_US = pd.DatetimeTZDtype(unit="us", tz="UTC")


def _random_stamps(seed: int, n: int, stray: int, unit: str = "us") -> pd.Series:
    """``n`` times over a year from 2024 (5% missing), ``stray`` of them 200 days later."""
    rng = np.random.default_rng(seed)
    offsets = rng.integers(0, 365 * 86_400 * 10**6, size=n)
    if stray:
        offsets[rng.choice(n, size=stray, replace=False)] += 200 * 86_400 * 10**6
    base = pd.Timestamp("2024-01-01", tz="UTC")
    values = pd.Series(base + pd.to_timedelta(offsets, unit="us")).dt.as_unit(unit)
    return values.mask(rng.random(n) < 0.05)


def _ticks(stamps: pd.Series) -> tuple[np.ndarray, str]:
    present = stamps.dropna()
    return np.asarray(present.array.asi8), present.dt.unit


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("stray", [0, 3])
def test_density_end_of_ticks_equals_the_rule_in_every_unit(unit, stray) -> None:
    stamps = _random_stamps(1, 4_000, stray, unit)
    ticks, found_unit = _ticks(stamps)
    assert found_unit == unit

    found = find_density_end_of_ticks(ticks, unit, 30)

    assert found == find_density_end(stamps, 30)
    assert (found[1] != "") == (stray > 0)  # stray rows are found only when there are some


def test_density_end_of_ticks_before_1970_and_across_a_huge_span() -> None:
    # Negative epochs floor to the earlier midnight; a value 30,000 years on takes the hash path.
    values = pd.Series(
        pd.to_datetime(
            ["1969-12-30 23:00", "1969-12-31 01:00", "1970-01-01 00:30", "2400-01-01 00:00"],
            utc=True,
        )
    ).astype(_UTC_US)
    micros = np.asarray(values.array.asi8)
    far = np.append(micros, 11_000_000 * 86_400 * 10**6)
    far_values = pd.Series(far.astype("datetime64[us]")).dt.tz_localize("UTC")

    assert find_density_end_of_ticks(micros, "us", 30) == find_density_end(values, 30)
    assert find_density_end_of_ticks(micros[:3], "us", 1) == find_density_end(values.iloc[:3], 1)
    assert find_density_end_of_ticks(far, "us", 30) == find_density_end(far_values, 30)


def test_density_end_of_no_ticks_is_none() -> None:
    assert find_density_end_of_ticks(np.array([], dtype=np.int64), "us", 30) is None


@pytest.mark.parametrize("stray", [0, 3])
def test_days_counted_in_small_chunks_give_the_same_end(monkeypatch, stray) -> None:
    stamps = _random_stamps(5, 2_000, stray)
    ticks, unit = _ticks(stamps)
    expected = find_density_end(stamps, 30)
    monkeypatch.setattr(data_end, "_CHUNK", 7)  # many chunks, the last one short

    assert find_density_end_of_ticks(ticks, unit, 30) == expected


def test_ties_at_the_anchor_are_all_in_the_tail() -> None:
    # 100 equal times on each of 10 days, then one stray: the anchor (index 999 of 1001) is one
    # of the 100 ties on day 9, and the end is the last of them, not the stray.
    start = pd.Timestamp("2024-01-01", tz="UTC")
    stamps = pd.Series(
        [start + pd.Timedelta(days=d) for d in range(10) for _ in range(100)]
        + [start + pd.Timedelta(days=200)]
    ).astype(_UTC_US)
    ticks, unit = _ticks(stamps)

    found = find_density_end_of_ticks(ticks, unit, 30)

    assert found == find_density_end(stamps, 30)
    assert found[0] == start + pd.Timedelta(days=9)


def test_overwriting_the_ticks_gives_the_same_end_and_keeps_them() -> None:
    stamps = _random_stamps(6, 3_000, 2)
    ticks, unit = _ticks(stamps)
    copy = ticks.copy()

    found = find_density_end_of_ticks(copy, unit, 30, overwrite=True)

    assert found == find_density_end_of_ticks(ticks, unit, 30) == find_density_end(stamps, 30)
    assert sorted(copy) == sorted(ticks) and not np.array_equal(copy, ticks)  # reordered
    # Without overwrite the caller's values keep their order.
    before = ticks.copy()
    find_density_end_of_ticks(ticks, unit, 30)
    np.testing.assert_array_equal(ticks, before)
