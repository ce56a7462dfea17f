"""The ``churn label`` stage: read validated tables, build labels, check them, write them.

The label core reads three tables whole (``LABEL_TABLES``: the SQL joins subscriptions, their
changes and customers) and of every other table only timestamps: the data end looks at every
timestamp column and the history start at each event table's first event time. So the runner
hands the core :class:`ValidatedTables`, which reads those three once and, of any other table,
only its timestamp columns, from disk each time the core asks, keeping none of them: one event
table's timestamps are in memory at a time instead of every table whole (at 100k customers the
whole tables were 2.5 GB of the stage's peak, and they grow with customers x months).
"""

from __future__ import annotations

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
from churn.domain.modes import Mode, reference_date
from churn.errors import ChurnError, DataContractError
from churn.io import read_time_statistics, write_json, write_parquet
from churn.labels.build import build_entity_labels, build_labels, data_end
from churn.labels.plausibility import (
    check_label_plausibility,
    describe_cutoffs,
    find_implausible_cutoffs,
)
from churn.layout import table_file_name
from churn.sql import utc_timestamp

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

    def earliest_time(self, name: str, column: str) -> pd.Timestamp | None:
        """The earliest value of a time column (UTC; ``None`` without any): the smallest
        row-group minimum of the file's statistics (no row read), or the column read when a
        row group has none (:class:`churn.labels.build.EarliestTimes`). At a million customers
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
