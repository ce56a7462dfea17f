"""The data end of ingest without a full sort equals the rule's reference implementation."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from churn.domain.data_end import find_table_end
from churn.stages.ingest.ends import find_table_end_fast

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
