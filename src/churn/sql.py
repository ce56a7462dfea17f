"""DuckDB helpers shared by the stages that compute in SQL (labels, features).

Time convention inside SQL: every timestamp is a *naive* ``TIMESTAMP`` holding UTC wall time
(microseconds). Validated tables carry ``datetime64[us, UTC]``; Spark's ``toPandas`` hands over
``[ns]``, sometimes naive. Normalising everything to one naive UTC type before registering keeps
interval arithmetic and ``date_trunc`` independent of DuckDB's session time zone and of ICU.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
import pandas as pd

US_PER_DAY = 86_400_000_000
US_PER_HOUR = 3_600_000_000


def connect(threads: int = 2, memory_limit: str = "8GB") -> duckdb.DuckDBPyConnection:
    """Open an in-memory DuckDB connection with bounded resources.

    Args:
        threads: Worker threads DuckDB may use.
        memory_limit: DuckDB memory limit, e.g. ``"8GB"``.

    Returns:
        A new connection; the caller closes it.
    """
    return duckdb.connect(
        database=":memory:",
        config={"threads": threads, "memory_limit": memory_limit},
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
