"""Tests for churn.validation.text: raw cells rendered for a few rows as for the whole column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.validation.coerce import to_text
from churn.validation.text import RawText, collect_format_witnesses, find_format_witnesses

UNITS = ("s", "ms", "us", "ns")
UNITS_PER_DAY = {"s": 86_400, "ms": 86_400 * 10**3, "us": 86_400 * 10**6, "ns": 86_400 * 10**9}


def _stamps(rng: np.random.Generator, unit: str, n: int) -> np.ndarray:
    """Midnights, with a few values moved off midnight and off whole seconds."""
    day = UNITS_PER_DAY[unit]
    values = pd.Timestamp("2025-01-01").as_unit(unit)._value + rng.integers(0, 90, n) * day
    values[rng.integers(0, n)] += day // 24  # one value at 01:00
    if rng.random() < 0.7 and unit != "s":
        values[rng.integers(0, n)] += 1  # one value with a fraction of a second
    return values.astype(f"M8[{unit}]")


def test_a_midnight_row_of_a_column_with_times_keeps_the_time():
    column = pd.Series(pd.to_datetime(["2025-01-01", "2025-01-02 10:00:00"], format="ISO8601"))
    raw = RawText(pd.DataFrame({"at": column}))

    assert to_text(column.iloc[[0]]).tolist() == ["2025-01-01"]  # alone, pandas drops it
    assert raw.cell("at", 0) == to_text(column).iloc[0] == "2025-01-01 00:00:00"


@pytest.mark.parametrize("tz", [None, "UTC", "Europe/Berlin"])
@pytest.mark.parametrize("unit", UNITS)
def test_rows_render_as_with_their_whole_column(tz, unit):
    rng = np.random.default_rng(UNITS.index(unit))
    column = pd.Series(_stamps(rng, unit, 60))
    column[5] = pd.NaT
    if tz is not None:
        column = column.dt.tz_localize(tz)
    frame = pd.DataFrame({"at": column, "n": rng.random(60), "s": ["x"] * 59 + [None]})
    expected = pd.DataFrame({c: to_text(frame[c]) for c in frame.columns})
    raw = RawText(frame)

    for _ in range(30):
        rows = rng.choice(60, rng.integers(0, 6), replace=False)
        pd.testing.assert_frame_equal(
            raw.rows(rows), expected.iloc[rows].set_axis(pd.Index(rows)), check_index_type=False
        )


def test_witnesses_are_the_first_value_at_each_finer_resolution():
    column = pd.Series(
        pd.to_datetime(
            [
                "2025-01-01",
                "2025-01-02 03:00",
                "2025-01-03 00:00:00.5",
                "2025-01-04 00:00:00.000007",
            ],
            format="ISO8601",
        ).as_unit("ns")
    )

    # off midnight: row 1; not whole micro-, milli- and seconds: rows 3, 3 and 2.
    assert find_format_witnesses(column).tolist() == [1, 2, 3]


@pytest.mark.parametrize("seed", range(8))
def test_witnesses_match_a_naive_search_of_every_resolution(seed):
    rng = np.random.default_rng(seed)
    n = 300
    # Mostly midnights, then values at whole seconds, milli-, micro- and nanoseconds, in a
    # random order; some missing.
    day = 86_400 * 10**9
    resolution = rng.choice([day, 10**9, 10**6, 10**3, 1], n, p=[0.6, 0.2, 0.1, 0.07, 0.03])
    nanos = rng.integers(0, 400, n) * day + rng.integers(1, day, n) // resolution * resolution
    column = pd.Series(pd.to_datetime(nanos, unit="ns"))
    column[rng.random(n) < 0.1] = pd.NaT
    stamps = column.array.asi8
    present = column.notna().to_numpy()

    expected = set()
    for modulus in (day, 10**9, 10**6, 10**3):
        off = [i for i in range(n) if present[i] and stamps[i] % modulus != 0]
        if off:
            expected.add(off[0])
    assert find_format_witnesses(column).tolist() == sorted(expected)


@pytest.mark.parametrize("tz", [None, "UTC"])
def test_batches_render_with_the_witnesses_of_their_whole_column(tz):
    rng = np.random.default_rng(11)
    column = pd.Series(_stamps(rng, "us", 90))
    column[40] = column[40] + pd.Timedelta(microseconds=3)  # the finest value, in batch 2
    if tz is not None:
        column = column.dt.tz_localize(tz)
    frame = pd.DataFrame({"at": column, "n": np.arange(90)})
    expected = to_text(frame["at"])
    found: dict[str, pd.Series] = {}
    for start in range(0, 90, 30):
        found = collect_format_witnesses(
            found, frame.iloc[start : start + 30].reset_index(drop=True)
        )

    for start in range(0, 90, 30):
        batch = frame.iloc[start : start + 30].reset_index(drop=True)
        shown = RawText(batch, found).column("at", np.arange(30))
        assert shown.tolist() == expected.iloc[start : start + 30].tolist()
    alone = RawText(frame.iloc[:30].reset_index(drop=True)).column("at", np.arange(30))
    assert alone.tolist() != expected.iloc[:30].tolist()  # the batch alone loses the digits
    assert len(found["at"]) <= 4 and "n" not in found
