"""The simulator's mess (``churn.stages.simulate.mess``): ticket timestamps as ISO-8601 text.

The vectorised writer is checked against a naive reference, Python's ``datetime`` one row at a
time, on the edges of days, months, years, leap days and the epoch.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from churn.stages.simulate.arrays import _NAT
from churn.stages.simulate.mess import (
    _OFFSET_MINUTES,
    _TIMESTAMP_OFFSETS,
    _iso_strings,
    format_iso_seconds,
)

EPOCH = dt.datetime(1970, 1, 1)
SUFFIXES = ("Z", "+05:30", "")


def _naive_iso(seconds: int, suffix: str) -> str:
    """The reference: Python's datetime, one value at a time."""
    return (EPOCH + dt.timedelta(seconds=int(seconds))).strftime("%Y-%m-%dT%H:%M:%S") + suffix


def _seconds(*moments: str) -> np.ndarray:
    return np.array([int((dt.datetime.fromisoformat(m) - EPOCH).total_seconds()) for m in moments])


EDGES = _seconds(
    "1970-01-01T00:00:00",
    "1969-12-31T23:59:59",  # before the epoch: the day floors
    "2024-02-29T23:59:59",  # a leap day
    "2023-12-31T23:59:59",
    "2024-01-01T00:00:00",
    "1000-01-01T00:00:00",
    "9999-12-31T23:59:59",
    "2025-06-15T09:05:07",
)


def test_format_iso_seconds_matches_datetime_on_edges_and_every_suffix():
    suffix = np.arange(len(EDGES)) % len(SUFFIXES)
    missing = np.zeros(len(EDGES), dtype=bool)

    text = format_iso_seconds(EDGES, suffix, SUFFIXES, missing)

    expected = [_naive_iso(s, SUFFIXES[k]) for s, k in zip(EDGES, suffix, strict=True)]
    assert text.tolist() == expected
    assert text.dtype == "str"


def test_format_iso_seconds_leaves_missing_rows_missing():
    missing = np.array([False, True, False])
    seconds = np.where(missing, _NAT, EDGES[:3])  # whatever a missing row holds

    text = format_iso_seconds(seconds, np.array([0, 1, 2]), SUFFIXES, missing)

    assert text.isna().tolist() == [False, True, False]
    assert text[2] == _naive_iso(EDGES[2], "")


def test_format_iso_seconds_of_nothing_is_an_empty_text_series():
    empty = np.array([], dtype=np.int64)

    text = format_iso_seconds(empty, empty, SUFFIXES, empty.astype(bool))

    assert len(text) == 0 and text.dtype == "str"


def test_format_iso_seconds_refuses_years_of_five_digits():
    with pytest.raises(ValueError, match="between 1000 and 9999"):
        format_iso_seconds(np.array([253402300800]), np.array([0]), SUFFIXES, np.array([False]))


def test_ticket_times_are_local_times_with_their_offset_or_naive_utc():
    rng = np.random.default_rng(3)
    rows = 2_000
    seconds = rng.integers(1_600_000_000, 1_800_000_000, rows)
    seconds[rng.random(rows) < 0.1] = _NAT
    offset = rng.integers(0, len(_TIMESTAMP_OFFSETS), rows)
    naive = rng.random(rows) < 0.05

    text = _iso_strings(seconds, offset, naive)

    expected = [
        None if s == _NAT
        else _naive_iso(s, "") if plain
        else _naive_iso(s + 60 * _OFFSET_MINUTES[k], _TIMESTAMP_OFFSETS[k])
        for s, k, plain in zip(seconds, offset, naive, strict=True)
    ]
    assert [None if pd.isna(value) else value for value in text] == expected
    # Parsed back, every row with an offset names the original instant.
    with_offset = (seconds != _NAT) & ~naive
    parsed = pd.to_datetime(text[with_offset], format="ISO8601", utc=True)
    since_epoch = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    assert (since_epoch.to_numpy() == seconds[with_offset]).all()
