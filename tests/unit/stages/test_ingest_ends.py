"""The data end of ingest without a full sort equals the rule's reference implementation."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from churn.domain.data_end import find_density_end, find_table_end
from churn.stages.ingest import ends
from churn.stages.ingest.ends import find_density_end_fast, find_table_end_fast

UTC_US = pd.DatetimeTZDtype(unit="us", tz="UTC")


def _stamps(values: list[str | None]) -> pd.Series:
    return pd.Series(pd.to_datetime(values, utc=True)).astype(UTC_US)


def _random_stamps(seed: int, n: int, stray: int, start: str = "2024-01-01") -> pd.Series:
    rng = np.random.default_rng(seed)
    base = pd.Timestamp(start, tz="UTC")
    offsets = rng.integers(0, 365 * 86_400 * 10**6, size=n)
    if stray:  # a few rows long after the rest
        offsets[rng.choice(n, size=stray, replace=False)] += 200 * 86_400 * 10**6
    values = pd.Series(base + pd.to_timedelta(offsets, unit="us")).astype(UTC_US)
    missing = rng.random(n) < 0.05
    return values.mask(missing)


def _reference(stamps: pd.Series, rows: np.ndarray, gap_days: int, explicit=None):
    frame = pd.DataFrame({"occurred_at": stamps}).loc[rows]
    return find_table_end("usage_events", frame, gap_days, explicit=explicit)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("stray", [0, 3])
def test_table_end_equals_the_reference(seed, stray):
    stamps = _random_stamps(seed, 5_000, stray)
    rows = np.random.default_rng(seed + 10).random(len(stamps)) < 0.9

    fast = find_table_end_fast("usage_events", "occurred_at", stamps, rows, gap_days=30)

    assert fast == _reference(stamps, rows, 30)
    assert (fast.stray_rows > 0) == (stray > 0)  # the stray rows are found when there are some


def test_explicit_data_end_equals_the_reference():
    stamps = _random_stamps(5, 2_000, 0)
    rows = np.ones(len(stamps), dtype=bool)
    day = dt.date(2024, 6, 30)

    fast = find_table_end_fast("usage_events", "occurred_at", stamps, rows, 30, explicit=day)

    assert fast == _reference(stamps, rows, 30, explicit=day)
    assert fast.stray_rows > 0


def test_no_considered_time_gives_none():
    stamps = _stamps(["2025-01-01", None, "2025-02-01"])

    assert find_table_end_fast("t", "c", stamps, np.array([False, True, False]), 30) is None


def test_density_end_matches_before_1970_and_across_a_huge_span():
    # Negative epochs floor to the earlier midnight; a value 30,000 years on takes the hash path.
    values = _stamps(
        ["1969-12-30 23:00", "1969-12-31 01:00", "1970-01-01 00:30", "2400-01-01 00:00"]
    )
    micros = np.asarray(values.array.asi8)

    far = np.append(micros, 11_000_000 * 86_400 * 10**6)  # 30,000 years on: hashed days
    far_values = pd.Series(far.astype("datetime64[us]")).dt.tz_localize("UTC")

    assert find_density_end_fast(micros, 30) == find_density_end(values, 30)
    assert find_density_end_fast(micros[:3], 1) == find_density_end(values.iloc[:3], 1)
    assert find_density_end_fast(far, 30) == find_density_end(far_values, 30)


def test_density_end_of_nothing_is_none():
    assert find_density_end_fast(np.array([], dtype=np.int64), 30) is None


@pytest.mark.parametrize("stray", [0, 3])
def test_days_counted_in_small_chunks_give_the_same_end(monkeypatch, stray):
    stamps = _random_stamps(5, 2_000, stray)
    micros = np.asarray(stamps.dropna().array.asi8)
    expected = find_density_end(stamps.dropna(), 30)
    monkeypatch.setattr(ends, "_CHUNK", 7)  # many chunks, the last one short

    assert find_density_end_fast(micros, 30) == expected


def test_overwriting_the_values_gives_the_same_end_and_keeps_them():
    stamps = _random_stamps(6, 3_000, 2)
    micros = np.asarray(stamps.dropna().array.asi8)
    copy = micros.copy()

    found = find_density_end_fast(copy, 30, overwrite=True)

    assert found == find_density_end_fast(micros, 30) == find_density_end(stamps.dropna(), 30)
    assert sorted(copy) == sorted(micros) and not np.array_equal(copy, micros)  # reordered
