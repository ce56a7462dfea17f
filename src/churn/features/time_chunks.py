"""Aggregating a big event file per (customer, bucket) one time range at a time.

:func:`churn.features.common.bucketed_sql` groups every event of the grid by (customer,
bucket) in one statement. At a million customers (170M usage events) that aggregation holds
more state than DuckDB's default 4 GB limit and spills: 54 s against 37 s with 12 GB, while
the same table built in four or eight time ranges took 36-37 s under 4 GB (2026-12-06,
docs/benchmarks-log.md).

A range ``[a, b)`` starts and ends at bucket starts, so every bucket lies whole in one range
and the ranges' rows together are exactly the one statement's rows (each bucket's sums, maxima
and day mask come from the same events). The prehistory rows (per customer, before the grid)
are one more statement. Ranges pay only when a range's filter skips most of the file: DuckDB
skips a Parquet row group whose time statistics lie outside the range, so a file in time order
(as exports and our simulator usually write events) is read about once in all, but a file in
any other order would be read once per range. :func:`plan_time_ranges` therefore reads the
row groups' statistics first and splits only when the ranges would read at most
:data:`MAX_READ_FACTOR` times the grid's rows; otherwise, for a small file, or without
statistics, the grid is one statement (and the prehistory another).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from churn.features.common import (
    DAY_BUCKET,
    LAST_CUTOFF,
    grid_buckets_sql,
    prehistory_sql,
)
from churn.io import read_time_statistics
from churn.sql import fetch_scalar

BYTES_PER_EVENT = 100
"""Events per range: the DuckDB memory limit over this ("4GB": 40M events a range)."""

MAX_READ_FACTOR = 1.25
"""Split only when the ranges together read at most this many times the grid's rows."""

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parse_memory_limit(text: str) -> int | None:
    """Return a DuckDB memory limit such as ``"4GB"`` or ``"3.5 GiB"`` in bytes.

    ``None`` for what this cannot read as a size (a percentage of the machine, say): the
    caller then does not split.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B)?\s*", text.upper())
    if match is None or match.group(2) in ("IB",):
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2) or ""])


def events_per_range(memory_limit: str) -> int | None:
    """Return the events one range may hold under a DuckDB memory limit (``"4GB"``: 40M).

    ``None`` when :func:`parse_memory_limit` cannot read the limit: one statement.
    """
    limit = parse_memory_limit(memory_limit)
    return None if limit is None else max(limit // BYTES_PER_EVENT, 1)


def plan_time_ranges(
    statistics: pd.DataFrame,
    bucket_starts: Sequence[pd.Timestamp] | np.ndarray,
    end: pd.Timestamp,
    max_events: int,
) -> list[tuple[pd.Timestamp, pd.Timestamp]] | None:
    """Split the grid ``[bucket_starts[0], end)`` into ranges of about ``max_events`` events.

    Args:
        statistics: :func:`read_time_statistics` of the event file.
        bucket_starts: The grid's bucket starts (sorted); ranges begin and end at them.
        end: The end of the grid (the last cutoff).
        max_events: Events one range may hold.

    Returns:
        ``[(start, stop), ...]`` covering the grid without gaps or overlaps, or ``None`` for one
        statement: the grid's row groups hold at most ``max_events`` rows, the grid has no
        bucket start to split at, or the ranges would read more than :data:`MAX_READ_FACTOR`
        times the grid's rows (a file not in time order).
    """
    starts = pd.DatetimeIndex(np.sort(np.asarray(bucket_starts, dtype="datetime64[us]")))
    if len(starts) < 2 or max_events < 1:
        return None
    first, end = starts[0], pd.Timestamp(end)
    low, high = statistics["low"].to_numpy(), statistics["high"].to_numpy()
    rows = statistics["rows"].to_numpy()

    def rows_read(start: pd.Timestamp, stop: pd.Timestamp) -> int:
        # A row group is read when its [low, high] meets [start, stop).
        return int(rows[(high >= start.to_datetime64()) & (low < stop.to_datetime64())].sum())

    in_grid = rows_read(first, end)
    pieces = math.ceil(in_grid / max_events)
    if pieces < 2:
        return None
    inner = starts[(starts > first) & (starts < end)]
    # Cut at the bucket starts nearest to evenly spaced times.
    targets = [first + (end - first) * (piece / pieces) for piece in range(1, pieces)]
    cuts = (
        sorted({inner[np.abs((inner - target).total_seconds()).argmin()] for target in targets})
        if len(inner)
        else []
    )
    if not cuts:
        return None
    bounds = [first, *cuts, end]
    ranges = list(itertools.pairwise(bounds))
    if sum(rows_read(a, b) for a, b in ranges) > MAX_READ_FACTOR * in_grid:
        return None
    return ranges


@dataclass(frozen=True)
class ChunkedBuckets:
    """A family step: :func:`~churn.features.common.bucketed_sql` built in time ranges.

    Called with the session's connection and the step's table name, it creates that table with
    the same rows as ``bucketed_sql(source, time_column, sums, maxes, day_mask, mins)`` (see the
    module docstring for when it splits).

    Attributes:
        source: The table's name in the session (a view of ``path``).
        time_column: Its time column.
        sums: Output column -> per-row SQL expression to sum.
        maxes: Output column -> per-row SQL expression to take the maximum of.
        day_mask: Also output ``day_mask``.
        path: The Parquet file behind ``source``; ``None`` (an in-memory table): one statement.
        max_events: Events per range; ``None``: one statement.
        mins: Output column -> per-row SQL expression to take the minimum of.
    """

    source: str
    time_column: str
    sums: Mapping[str, str]
    maxes: Mapping[str, str] = field(default_factory=dict)
    day_mask: bool = False
    path: Path | None = None
    max_events: int | None = None
    mins: Mapping[str, str] = field(default_factory=dict)

    def __call__(self, con: duckdb.DuckDBPyConnection, name: str) -> None:
        # The grid's buckets range by range (one range, the whole grid, without a plan), then
        # the prehistory rows: the parts bucketed_sql joins with UNION ALL, as statements.
        ranges = self.plan(con)
        bounds: list[tuple[str, str] | None] = (
            [None] if ranges is None else [(_timestamp(a), _timestamp(b)) for a, b in ranges]
        )
        for number, time_range in enumerate(bounds):
            sql = grid_buckets_sql(
                self.source,
                self.time_column,
                self.sums,
                self.maxes,
                self.day_mask,
                time_range,
                mins=self.mins,
            )
            if number == 0:
                con.execute(f"CREATE TEMP TABLE {name} AS {sql}")
            else:
                con.execute(f"INSERT INTO {name} BY NAME {sql}")
        if self.maxes or self.mins:
            con.execute(
                f"INSERT INTO {name} BY NAME "
                + prehistory_sql(
                    self.source,
                    self.time_column,
                    self.sums,
                    self.maxes,
                    self.day_mask,
                    mins=self.mins,
                )
            )

    def plan(
        self, con: duckdb.DuckDBPyConnection
    ) -> list[tuple[pd.Timestamp, pd.Timestamp]] | None:
        """The time ranges this step will use in the session (``None``: one statement)."""
        if self.path is None or self.max_events is None:
            return None
        statistics = read_time_statistics(self.path, self.time_column)
        end = fetch_scalar(con, f"SELECT getvariable('{LAST_CUTOFF}')")
        if statistics is None or end is None:
            return None
        starts = con.sql(f"SELECT DISTINCT bucket_start FROM {DAY_BUCKET} ORDER BY 1")
        bucket_starts = starts.to_arrow_table().column(0).to_numpy()
        return plan_time_ranges(statistics, bucket_starts, pd.Timestamp(end), self.max_events)


def _timestamp(value: pd.Timestamp) -> str:
    return f"TIMESTAMP '{pd.Timestamp(value).isoformat(sep=' ')}'"
