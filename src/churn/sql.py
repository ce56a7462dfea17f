"""DuckDB helpers shared by the stages that compute in SQL (labels, features), and the time rules.

One time representation, decided here:

* **In pandas, from ingest on**, every timestamp is ``datetime64[us, UTC]``
  (:data:`churn.domain.contract.TIMESTAMP_DTYPE`): validated tables, labels, features and scores.
  Ingest converts raw text and naive values once (``ingest.input_timezone``); no later stage
  localises or converts frame columns.
* **In DuckDB**, every timestamp is a *naive* ``TIMESTAMP`` holding UTC wall time
  (microseconds), which keeps interval arithmetic and ``date_trunc`` independent of DuckDB's
  session time zone and of ICU. Frames cross the boundary through one pair of helpers:
  :func:`normalize_timestamps` (column-wise :func:`to_naive_utc`) on the way in, :func:`to_utc`
  on the way out. Spark's ``toPandas`` may hand over naive ``[ns]`` values; naive means UTC.
* **Single values** (a configured date, a column's maximum) become a UTC ``pd.Timestamp`` with
  :func:`utc_timestamp`; dates become midnight UTC with :func:`utc_midnight`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from types import MappingProxyType

import duckdb
import pandas as pd

US_PER_DAY = 86_400_000_000
US_PER_HOUR = 3_600_000_000


#: Settings of every DuckDB connection churn opens: DuckDB never downloads an extension, nor
#: loads one on demand (by default it fetches a known extension a query needs from the
#: network). What churn uses is built into the wheel (parquet, json, icu), so a query needing
#: anything else fails with DuckDB's error instead of reaching out. ``churn.io.partial``
#: repeats these two keys (a sibling layer, it cannot import this module).
OFFLINE_SETTINGS = MappingProxyType(
    {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
)


def connect(threads: int = 2, memory_limit: str = "8GB") -> duckdb.DuckDBPyConnection:
    """Open an in-memory DuckDB connection with bounded resources, offline
    (:data:`OFFLINE_SETTINGS`).

    Args:
        threads: Worker threads DuckDB may use.
        memory_limit: DuckDB memory limit, e.g. ``"8GB"``.

    Returns:
        A new connection; the caller closes it.
    """
    return duckdb.connect(
        database=":memory:",
        config={"threads": threads, "memory_limit": memory_limit, **OFFLINE_SETTINGS},
    )


def to_naive_utc(values: pd.Series) -> pd.Series:
    """Return ``values`` as naive ``datetime64[us]`` holding UTC wall time.

    Naive input is taken to be UTC already (validated tables are UTC; Spark sessions are pinned
    to UTC).
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    if values.dtype != "datetime64[us]":
        values = values.astype("datetime64[us]")
    return values


def to_utc(values: pd.Series) -> pd.Series:
    """Return naive UTC timestamps as ``datetime64[us, UTC]`` (the validated-table type)."""
    return to_naive_utc(values).dt.tz_localize("UTC")


def utc_timestamp(value: pd.Timestamp | dt.datetime | dt.date | str) -> pd.Timestamp:
    """Return one value as a UTC ``pd.Timestamp``; a naive value is read as UTC wall time."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def epoch_micros(value: pd.Timestamp | dt.datetime | dt.date | str) -> int:
    """Return one value as microseconds since the epoch in UTC (naive read as UTC), as DuckDB's
    ``epoch_us`` reads a column: the literal to compare it with."""
    return int((utc_timestamp(value) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1))


def utc_midnight(day: dt.date) -> pd.Timestamp:
    """Return midnight UTC at the start of ``day``, in microseconds (a cutoff)."""
    return pd.Timestamp(day).tz_localize("UTC").as_unit("us")


def normalize_timestamps(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with every datetime column converted by :func:`to_naive_utc`.

    Other columns are shared with the input, not copied (pandas copy-on-write).
    """
    converted = {
        name: to_naive_utc(frame[name])
        for name in frame.columns
        if pd.api.types.is_datetime64_any_dtype(frame[name].dtype)
    }
    return frame.assign(**converted) if converted else frame


def register_frames(con: duckdb.DuckDBPyConnection, frames: Mapping[str, pd.DataFrame]) -> None:
    """Register each frame as a view named by its key (zero-copy scan of the pandas data)."""
    for name, frame in frames.items():
        con.register(name, frame)


def fetch_frame(con: duckdb.DuckDBPyConnection, query: str) -> pd.DataFrame:
    """Run ``query`` and return the result as a pandas frame.

    Goes through Arrow: in DuckDB 2.0 with pandas 3.1, ``.df()`` raises a pandas deprecation
    warning (``inplace``), and Arrow maps VARCHAR to pandas ``str`` and DOUBLE to float64.
    """
    return con.sql(query).to_arrow_table().to_pandas()


def fetch_scalar(con: duckdb.DuckDBPyConnection, query: str) -> object:
    """Run ``query`` and return the first column of its single row.

    Uses ``fetchall``: DuckDB 2.0 results stream, and a partly read ``fetchone()`` result keeps
    the connection busy until it is completed.
    """
    return con.execute(query).fetchall()[0][0]


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (column or table name)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """Quote a string as an SQL literal."""
    return "'" + value.replace("'", "''") + "'"


def days_between(start: str, end: str) -> str:
    """SQL for the fractional number of days from ``start`` to ``end`` (exact microseconds)."""
    return f"((epoch_us({end}) - epoch_us({start})) / {US_PER_DAY}.0)"


def hours_between(start: str, end: str) -> str:
    """SQL for the fractional number of hours from ``start`` to ``end``."""
    return f"((epoch_us({end}) - epoch_us({start})) / {US_PER_HOUR}.0)"
