"""Tests for the time helpers of churn.sql: one representation, one boundary with DuckDB."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from churn.domain.contract import COLUMN_DTYPES, TIMESTAMP_DTYPE
from churn.sql import (
    connect,
    epoch_micros,
    fetch_frame,
    normalize_timestamps,
    to_utc,
    utc_midnight,
    utc_timestamp,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-03-01 10:30", "2025-03-01T10:30:00Z"),  # naive: read as UTC wall time
        (pd.Timestamp("2025-03-01 10:30", tz="Europe/Berlin"), "2025-03-01T09:30:00Z"),
        (dt.date(2025, 3, 1), "2025-03-01T00:00:00Z"),
        (
            dt.datetime(2025, 3, 1, 23, 59, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
            "2025-03-02T04:59:00Z",
        ),
    ],
)
def test_utc_timestamp(value, expected):
    stamp = utc_timestamp(value)
    assert stamp == pd.Timestamp(expected) and str(stamp.tz) == "UTC"


@pytest.mark.parametrize(
    "value",
    [
        "2025-03-01 10:30:00.000007",  # naive: read as UTC
        pd.Timestamp("2025-03-01 10:30", tz="Europe/Berlin"),
        pd.Timestamp("1969-12-31 23:59:59.999999", tz="UTC"),  # before the epoch
        dt.date(2025, 3, 1),
    ],
)
def test_epoch_micros_equals_duckdb_epoch_us(value):
    stamp = utc_timestamp(value)
    with connect() as con:
        # DuckDB reads the same instant from a UTC timestamp column with epoch_us.
        expected = con.execute(
            "SELECT epoch_us(?::TIMESTAMPTZ)", [stamp.to_pydatetime()]
        ).fetchone()[0]
    assert epoch_micros(value) == expected
    assert pd.Timestamp(epoch_micros(value), unit="us", tz="UTC") == stamp


def test_utc_midnight_is_a_microsecond_cutoff():
    stamp = utc_midnight(dt.date(2025, 3, 1))
    assert stamp == pd.Timestamp("2025-03-01T00:00:00Z") and stamp.unit == "us"


def test_frames_cross_the_duckdb_boundary_unchanged():
    stamps = pd.Series(
        pd.to_datetime(
            ["2024-03-31 01:30", None, "2025-10-26 02:15:00.000001"], utc=True, format="ISO8601"
        ),
        dtype=TIMESTAMP_DTYPE,
    )
    frame = pd.DataFrame({"seen_at": stamps, "n": [1, 2, 3]})
    con = connect(threads=1)
    try:
        con.register("t", normalize_timestamps(frame))
        back = fetch_frame(con, "SELECT seen_at, seen_at + INTERVAL 1 DAY AS next_day FROM t")
    finally:
        con.close()
    pd.testing.assert_series_equal(to_utc(back["seen_at"]), stamps, check_names=False)
    expected_next = stamps + pd.Timedelta(days=1)
    pd.testing.assert_series_equal(to_utc(back["next_day"]), expected_next, check_names=False)


def test_validated_timestamp_dtype_is_the_one_time_representation():
    assert COLUMN_DTYPES["timestamp"] == TIMESTAMP_DTYPE
    assert pd.DatetimeTZDtype(unit="us", tz="UTC") == TIMESTAMP_DTYPE


def test_connections_never_fetch_or_load_extensions(tmp_path):
    from churn.sql import connect

    con = connect(threads=1, memory_limit="1GB")
    try:
        settings = con.execute(
            "SELECT current_setting('autoinstall_known_extensions'), "
            "current_setting('autoload_known_extensions')"
        ).fetchall()
        assert settings == [(False, False)]
        # What churn needs is built in: a Parquet round trip works with both off.
        path = str(tmp_path / "t.parquet")
        con.execute(f"COPY (SELECT 1 AS a) TO '{path}' (FORMAT PARQUET)")
        assert con.execute(f"SELECT a FROM read_parquet('{path}')").fetchall() == [(1,)]
    finally:
        con.close()
