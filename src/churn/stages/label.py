"""The ``churn label`` stage: read validated tables, build labels, check them, write them.

The label core reads three tables whole (``LABEL_TABLES``: the SQL joins subscriptions, their
changes and customers) and of every other table only timestamps: the data end looks at every
timestamp column and the history start at each event table's first event time. So the runner
hands the core :class:`ValidatedTables`, which reads those three once and, of any other table,
only its timestamp columns, from disk each time the core asks, keeping none of them (at 100k
customers the whole tables were 2.5 GB of the stage's peak, and they grow with customers x
months). It also answers the two questions itself, so that no event table is read at all
when its files have row-group statistics and microsecond times (ingest writes both): the first
event time from the statistics
(:meth:`ValidatedTables.earliest_time`) and each table's data end in DuckDB
(:meth:`ValidatedTables.density_end`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churn.config import Params
from churn.console import log_table
from churn.domain.contract import CONTRACT
from churn.domain.data_end import anchor_position, find_density_end_of_parts
from churn.domain.modes import Mode, reference_date
from churn.errors import ChurnError, DataContractError
from churn.io import read_time_statistics, write_json, write_parquet
from churn.labels.build import build_entity_labels, build_labels
from churn.labels.plausibility import (
    check_label_plausibility,
    describe_cutoffs,
    find_implausible_cutoffs,
)
from churn.labels.schedule import data_end, find_frame_end
from churn.layout import table_file_name
from churn.sql import connect, epoch_micros, quote_ident, quote_literal, utc_timestamp

logger = logging.getLogger(__name__)

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
    """The validated tables in a folder, read as the label core asks for them.

    :data:`LABEL_TABLES` are read whole on first access and kept. Any other table is read each
    time it is asked for and not kept, and only its timestamp columns (plus the contract's event
    time column, whatever its type): that is all of it the core reads.

    Args:
        directory: Folder of validated ``<table>.parquet`` files.
        names: Table names to offer (absent files are not in the mapping).
    """

    def __init__(self, directory: Path, names: list[str] | tuple[str, ...]) -> None:
        self._paths = {
            name: path
            for name in names
            if (path := Path(directory) / table_file_name(name)).exists()
        }
        self._kept: dict[str, pd.DataFrame] = {}

    def __getitem__(self, name: str) -> pd.DataFrame:
        path = self._paths[name]  # KeyError for a table that is not there, as for a dict
        if name in LABEL_TABLES:
            if name not in self._kept:
                self._kept[name] = pd.read_parquet(path)
            return self._kept[name]
        event_time = CONTRACT[name].event_time if name in CONTRACT else None
        schema = pq.read_schema(path)
        stamps = [field.name for field in schema if pa.types.is_timestamp(field.type)]
        if event_time in schema.names and event_time not in stamps:
            return pd.read_parquet(path, columns=[*stamps, event_time])
        return pd.DataFrame({stamp: _read_timestamps(path, schema.field(stamp))
                             for stamp in stamps})

    def __contains__(self, name: object) -> bool:
        # Mapping's default would read the table just to answer.
        return name in self._paths

    def density_end(
        self, name: str, gap_days: int, until: Mapping[str, pd.Timestamp]
    ) -> pd.Timestamp | None:
        """The end of the data of table ``name`` by the density rule, found in DuckDB
        (:class:`churn.labels.schedule.DensityEnds`): the rule reads only the number of values,
        their distinct days and the values from the anchor on (0.1% of them), so nothing is
        read into pandas (:func:`find_file_density_end`). A file with a timestamp column
        that is not in microseconds is read and searched as a frame."""
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
        statistics = read_time_statistics(self._paths[name], column)
        if statistics is not None:
            return None if statistics.empty else utc_timestamp(statistics["low"].min())
        stamps = self[name][column]
        return utc_timestamp(stamps.min()) if stamps.notna().any() else None

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


def run_label(
    params: Params, validated_dir: Path, out_path: Path, report_path: Path | None = None
) -> dict[str, Any]:
    """Read validated tables, build and check labels, log a summary and write them atomically.

    The report (``reports/labels.json``) is written even when the labels are implausible, so
    that the failing cutoffs can be inspected; the labels file is then not written.

    Args:
        params: All parameters (``ingest.mode`` picks events or entity mode; ``ingest.as_of``,
            ``ingest.data_end`` and ``ingest.data_end_gap_days`` fix the end of the data).
        validated_dir: Directory of validated tables.
        out_path: Labels Parquet file.
        report_path: JSON report: data end, horizon, grace and per cutoff the population,
            churners, churn rate and why it is unlabeled; ``None``: no report.

    Returns:
        The report.

    Raises:
        DataContractError: If a required table or column is missing, or a labeled cutoff's
            churn rate is implausible (see
            :func:`churn.labels.plausibility.find_implausible_cutoffs`).
        EmptyPopulationError: If no customer is in any population.
    """
    tables = ValidatedTables(validated_dir, list(CONTRACT))
    end = None
    # As in ingest: no as_of means the run date (paid-through ends after it are not data).
    as_of = reference_date(params.ingest.as_of)
    if params.ingest.mode is Mode.ENTITY:
        if "customers" not in tables:
            raise DataContractError(f"entity mode: no customers table in {validated_dir}")
        labels = build_entity_labels(tables["customers"], params.ingest.label_column, as_of)
        logger.info("entity mode: one cutoff (%s) for %d customers", as_of, len(labels))
    else:
        if not tables:
            raise DataContractError(f"no validated tables in {validated_dir}")
        try:
            end = data_end(
                tables,
                gap_days=params.ingest.data_end_gap_days,
                explicit=params.ingest.data_end,
                as_of=as_of,
            )
        except ChurnError:
            end = None  # build_labels raises the clearer error (missing or empty table)
        labels = build_labels(tables, params.label, end)
    cutoffs = describe_cutoffs(labels, params.label, end)
    log_table(
        logger,
        f"labels: {len(labels):,} rows over {len(cutoffs)} cutoff(s); data end "
        f"{'-' if end is None else end.date()}",
        ["cutoff", "population", "churned", "churn rate"],
        [
            (
                row["cutoff"],
                f"{row['population']:,}",
                f"{row['churners']:,}" if row["labeled"] else "-",
                f"{row['churn_rate']:.2%}"
                if row["labeled"]
                else f"unobserved (scoring): {row['unlabeled_reason']}",
            )
            for row in cutoffs
        ],
    )
    problems = find_implausible_cutoffs(cutoffs, params.label)
    report = {
        "mode": params.ingest.mode,
        "data_end": None if end is None else end.isoformat(),
        "horizon_days": params.label.horizon_days,
        "grace_days": params.label.grace_days,
        "max_churn_rate": params.label.max_churn_rate,
        "max_rate_ratio": params.label.max_rate_ratio,
        "rows": len(labels),
        "labeled_cutoffs": sum(1 for row in cutoffs if row["labeled"]),
        "problems": problems,
        "cutoffs": cutoffs,
    }
    if report_path is not None:
        write_json(report, Path(report_path))
    check_label_plausibility(cutoffs, params.label)  # after the report, which explains a stop
    write_parquet(labels, out_path)
    logger.info("wrote %s", out_path)
    return report
