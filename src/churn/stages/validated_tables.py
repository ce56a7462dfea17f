"""The validated tables in a folder, for stages that read little of them.

The label core reads three tables whole (:data:`LABEL_TABLES`: the SQL joins subscriptions,
their changes and customers) and of every other table only timestamps: the data end looks at
every timestamp column and the history start at each event table's first event time. The data
check of ``churn ingest`` also wants each table's rows and first and last event time.
:class:`ValidatedTables` reads the three once and, of any other table, only its timestamp
columns, from disk each time it is asked, keeping none of them (at 100k customers the whole
tables were 2.5 GB of the label stage's peak, and they grow with customers x months). It also
answers the questions itself, so that no event table is read at all when its files have
row-group statistics and microsecond times (ingest writes both): the first and last event
time from the statistics (:meth:`ValidatedTables.earliest_time`,
:meth:`ValidatedTables.time_range`), the rows from the footer
(:meth:`ValidatedTables.row_count`) and each table's data end in DuckDB
(:meth:`ValidatedTables.density_end`).

Tables the caller already holds (ingest keeps the small ones it validated in memory) are
handed over as ``frames`` and answered from those.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churn.domain.contract import CONTRACT
from churn.domain.data_end import anchor_position, find_density_end_of_parts
from churn.io import read_time_statistics
from churn.labels.schedule import find_frame_end
from churn.layout import table_file_name
from churn.sql import connect, epoch_micros, quote_ident, quote_literal, utc_timestamp

LABEL_TABLES = ("subscriptions", "subscription_changes", "customers")
"""Tables the label core reads whole; of the others it reads only timestamp columns."""


def _read_timestamps(path: Path, field: pa.Field) -> pd.Series:
    """One timestamp column of a Parquet file, read row group by row group into one array.

    Same values and dtype as ``pd.read_parquet`` gives, without holding the Arrow table and
    its pandas copy at once (at 1M customers the usage timestamps are 170M values, 1.4 GB).
    """
    file = pq.ParquetFile(path)
    unit, tz = field.type.unit, field.type.tz
    values = np.empty(file.metadata.num_rows, dtype=f"datetime64[{unit}]")
    start = 0
    for group in range(file.num_row_groups):
        chunk = file.read_row_group(group, columns=[field.name]).column(0)
        # Missing values become NaT; tz-aware values come out as UTC wall time.
        values[start : start + len(chunk)] = chunk.to_numpy()
        start += len(chunk)
    column = pd.Series(values, name=field.name)
    return column.dt.tz_localize("UTC").dt.tz_convert(tz) if tz is not None else column


def find_file_density_end(
    path: Path, columns: list[str], gap_days: int, until: Mapping[str, pd.Timestamp]
) -> tuple[pd.Timestamp, str] | None:
    """:func:`churn.domain.data_end.find_density_end` of a Parquet file's timestamp columns,
    stacked, computed in DuckDB.

    Two statements: the distinct UTC days with their counts, then the values from the
    anchor's day on, among which the anchor is found by its position (the counts say how many
    values come before that day). At a million customers the usage events' 170M times took
    12 s to read and 11 s to search in NumPy.

    Args:
        path: The Parquet file.
        columns: Its timestamp columns in microseconds (naive ones are read as UTC).
        gap_days: See :func:`~churn.domain.data_end.find_density_end`.
        until: Columns whose values after the given time (UTC) are left out, as
            :func:`churn.labels.schedule.data_end` leaves out paid-through ends.

    Returns:
        ``(end, reason)`` as :func:`~churn.domain.data_end.find_density_end`; ``None`` without
        a value.
    """
    parts = []
    for column in columns:
        # epoch_us reads naive values as UTC and aware ones in UTC, whatever the session zone.
        where = f"{quote_ident(column)} IS NOT NULL"
        if column in until:
            where += f" AND epoch_us({quote_ident(column)}) <= {epoch_micros(until[column])}"
        parts.append(f"SELECT epoch_us({quote_ident(column)}) AS v FROM _file WHERE {where}")
    stacked = " UNION ALL ".join(parts)
    with contextlib.closing(connect()) as con:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"CREATE VIEW _file AS SELECT * FROM read_parquet({quote_literal(str(path))})")
        # date_trunc floors (a time before 1970 belongs to the earlier midnight).
        days = con.execute(
            f"SELECT epoch_us(date_trunc('day', make_timestamp(v))), count(*) FROM ({stacked}) "
            "GROUP BY 1"
        ).fetchnumpy()
        day_ticks, counts = (np.asarray(values, dtype=np.int64) for values in days.values())
        total = int(counts.sum())
        if total == 0:
            return None
        order = np.argsort(day_ticks)
        day_ticks, counts = day_ticks[order], counts[order]
        # The anchor's day is the first whose running count passes the anchor's position; the
        # values from that day on hold the tail, and those before it are counted, so the
        # anchor is found among them (a top-N of the latest values took 7 s at 1M customers).
        anchor = anchor_position(total)
        running = np.cumsum(counts)
        day = int(np.searchsorted(running, anchor, side="right"))
        before = int(running[day - 1]) if day else 0
        late = con.execute(
            f"SELECT v FROM ({stacked}) WHERE v >= {int(day_ticks[day])}"
        ).fetchnumpy()
    late_ticks = np.sort(np.asarray(next(iter(late.values())), dtype=np.int64))
    return find_density_end_of_parts(day_ticks, late_ticks[anchor - before :], "us", gap_days)


class ValidatedTables(Mapping[str, pd.DataFrame]):
    """The validated tables in a folder, read as the label core and the data check ask.

    :data:`LABEL_TABLES` are read whole on first access and kept. Any other table is read each
    time it is asked for and not kept, and only its timestamp columns (plus the contract's event
    time column, whatever its type): that is all of it the label core reads. A table in
    ``frames`` is that frame, whether or not the folder holds its file.

    Args:
        directory: Folder of validated ``<table>.parquet`` files.
        names: Table names to offer (absent files are not in the mapping unless in ``frames``).
        frames: Tables already in memory, by name (each must be among ``names``).
    """

    def __init__(
        self,
        directory: Path,
        names: list[str] | tuple[str, ...],
        frames: Mapping[str, pd.DataFrame] | None = None,
    ) -> None:
        self._frames = dict(frames or {})
        self._names = [
            name
            for name in names
            if name in self._frames or (Path(directory) / table_file_name(name)).exists()
        ]
        self._paths = {name: Path(directory) / table_file_name(name) for name in self._names}
        self._kept: dict[str, pd.DataFrame] = {}

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name in self._frames:
            return self._frames[name]
        if name not in self._names:
            raise KeyError(name)  # a table that is not there, as for a dict
        path = self._paths[name]
        if name in LABEL_TABLES:
            if name not in self._kept:
                self._kept[name] = pd.read_parquet(path)
            return self._kept[name]
        event_time = CONTRACT[name].event_time if name in CONTRACT else None
        schema = pq.read_schema(path)
        stamps = [field.name for field in schema if pa.types.is_timestamp(field.type)]
        if event_time in schema.names and event_time not in stamps:
            return pd.read_parquet(path, columns=[*stamps, event_time])
        return pd.DataFrame(
            {stamp: _read_timestamps(path, schema.field(stamp)) for stamp in stamps}
        )

    def __contains__(self, name: object) -> bool:
        # Mapping's default would read the table just to answer.
        return name in self._names

    def density_end(
        self, name: str, gap_days: int, until: Mapping[str, pd.Timestamp]
    ) -> pd.Timestamp | None:
        """The end of the data of table ``name`` by the density rule, found in DuckDB
        (:class:`churn.labels.schedule.DensityEnds`): the rule reads only the number of values,
        their distinct days and the values from the anchor on (0.1% of them), so nothing is
        read into pandas (:func:`find_file_density_end`). A frame, or a file with a timestamp
        column that is not in microseconds, is searched as a frame."""
        if name in self._frames:
            return find_frame_end(self._frames[name], gap_days, until)
        path = self._paths[name]
        fields = [field for field in pq.read_schema(path) if pa.types.is_timestamp(field.type)]
        if not fields:
            return None
        if any(field.type.unit != "us" for field in fields):
            return find_frame_end(self[name], gap_days, until)
        found = find_file_density_end(path, [field.name for field in fields], gap_days, until)
        return None if found is None else found[0]

    def earliest_time(self, name: str, column: str) -> pd.Timestamp | None:
        """The earliest value of a time column (UTC; ``None`` without any): the smallest
        row-group minimum of the file's statistics (no row read), or the column read when a
        row group has none (:class:`churn.labels.schedule.EarliestTimes`). At a million customers
        reading the usage events' times a second time for this took 4.9 s."""
        found = self.time_range(name, column)
        if found is None:
            raise KeyError(f"{name} has no column {column}")
        return found[0]

    def time_range(
        self, name: str, column: str
    ) -> tuple[pd.Timestamp | None, pd.Timestamp | None] | None:
        """The first and last value of a time column (UTC; ``None`` without any value).

        From the file's row-group statistics when the column is a timestamp and every row
        group has them (exact for timestamps: Parquet does not truncate them); else from the
        column's values, read or held.

        Returns:
            ``(first, last)``, or ``None`` when the table has no such column.
        """
        if name in self._frames:
            if column not in self._frames[name].columns:
                return None
        else:
            schema = pq.read_schema(self._paths[name])
            if column not in schema.names:
                return None
            if pa.types.is_timestamp(schema.field(column).type):
                statistics = read_time_statistics(self._paths[name], column)
                if statistics is not None:
                    if statistics.empty:
                        return None, None
                    return (
                        utc_timestamp(statistics["low"].min()),
                        utc_timestamp(statistics["high"].max()),
                    )
        stamps = self[name][column].dropna()
        if stamps.empty:
            return None, None
        return utc_timestamp(stamps.min()), utc_timestamp(stamps.max())

    def row_count(self, name: str) -> int:
        """The table's rows: the frame's, or the file footer's (no row read)."""
        if name in self._frames:
            return len(self._frames[name])
        if name not in self._names:
            raise KeyError(name)
        return pq.ParquetFile(self._paths[name]).metadata.num_rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)
