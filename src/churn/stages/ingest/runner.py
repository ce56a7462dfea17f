"""The runner of ``churn ingest``: read the raw folder, validate, write the outputs."""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churn import io
from churn.config import DataSource, IngestConfig, Params
from churn.domain.contract import CONTRACT
from churn.domain.modes import reference_timestamp
from churn.errors import DataContractError
from churn.layout import table_file_name
from churn.stages.check_data import (
    EarlyLabelCounts,
    check_data,
    count_labels_early,
    write_data_check,
)
from churn.stages.ingest.batches import BatchedTable
from churn.stages.ingest.core import validate_tables
from churn.stages.ingest.files import (
    open_table_file,
    open_table_sinks,
    read_table_file,
    write_table_file,
)
from churn.stages.ingest.tables import IngestResult, table_mapping, table_specs
from churn.stages.ingest.workers import TableWorkers
from churn.stages.validated_tables import LABEL_TABLES, ValidatedTables

logger = logging.getLogger(__name__)


def _read_for_check(path: Path) -> pd.DataFrame:
    """A streamed table read back for the data check: its timestamps and its customer ids.

    Only for a table whose customer ids the reference check did not collect (the check's
    coverage needs them): reading 51M ids back cost more than validating them at 300k
    customers, their dictionaries growing with both rows and customers.
    """
    schema = pq.read_schema(path)
    columns = [f.name for f in schema if pa.types.is_timestamp(f.type)]
    dictionary = ["customer_id"] if "customer_id" in schema.names else []
    return pd.read_parquet(path, columns=dictionary + columns, read_dictionary=dictionary)


def _count_labels_meanwhile(
    params: Params,
    valid_dir: Path,
    early: list[EarlyLabelCounts | None],
    valid: Mapping[str, pd.DataFrame],
    streamed: Sequence[str],
) -> None:
    """Count the data check's labels of the tables validated here while a worker validates an
    event table (:func:`churn.stages.check_data.count_labels_early`; at a million customers
    the counts take about 10 s, and this process would otherwise wait); into ``early``."""
    names = [name for name in CONTRACT if name in valid or name in streamed]
    early.append(count_labels_early(ValidatedTables(valid_dir, names, frames=dict(valid)), params))


def read_raw_tables(
    raw_dir: Path, cfg: IngestConfig
) -> tuple[dict[str, pd.DataFrame], dict[str, Path]]:
    """Read the raw tables of ``cfg.mode`` that are present in ``raw_dir``.

    Returns:
        Table -> frame as read, and table -> the file it came from.

    Raises:
        DataContractError: If ``raw_dir`` does not exist, a table file cannot be read, or an
            explicit ``file`` resolves outside ``raw_dir`` (unless ``allow_outside_raw``).
    """
    return _collect_tables(raw_dir, cfg, read_table_file)  # type: ignore[return-value]


def open_raw_tables(
    raw_dir: Path, cfg: IngestConfig
) -> tuple[dict[str, pd.DataFrame | BatchedTable], dict[str, Path]]:
    """:func:`read_raw_tables`, but tables larger than ``cfg.batch_rows`` are opened for batches.

    Returns:
        Table -> frame as read or table read in batches, and table -> the file it came from.

    Raises:
        DataContractError: As :func:`read_raw_tables`.
    """
    return _collect_tables(raw_dir, cfg, partial(open_table_file, cfg=cfg))


def _collect_tables(
    raw_dir: Path, cfg: IngestConfig, open_file: Callable[[Path], pd.DataFrame | BatchedTable]
) -> tuple[dict[str, pd.DataFrame | BatchedTable], dict[str, Path]]:
    """Open every table of ``cfg.mode`` present in ``raw_dir`` with ``open_file``."""
    if not raw_dir.is_dir():
        raise DataContractError(f"raw directory {raw_dir} does not exist")
    tables: dict[str, pd.DataFrame | BatchedTable] = {}
    sources: dict[str, Path] = {}
    for name in table_specs(cfg.mode):
        path = io.find_table_file(
            raw_dir, name, table_mapping(cfg, name).file, allow_outside=cfg.allow_outside_raw
        )
        if path is None:
            continue
        try:
            tables[name] = open_file(path)
        except (ValueError, OSError) as exc:  # pyarrow and CSV parser errors subclass these
            raise DataContractError(f"cannot read table '{name}' from {path}: {exc}") from exc
        sources[name] = path
    return tables, sources


def print_summary(report: Mapping[str, Any]) -> None:
    """Print a table of rows in / valid / quarantined and the top rules per table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"churn ingest (as of {report['as_of']}, {report['mode']} mode)")
    table.add_column("table")
    for header in ("rows in", "valid", "quarantined"):
        table.add_column(header, justify="right")
    table.add_column("top rules", overflow="fold")
    for name, info in report["tables"].items():
        if not info["present"]:
            table.add_row(name, "-", "-", "-", "absent")
            continue
        top = ", ".join(f"{r} ({v['count']})" for r, v in list(info["rules"].items())[:3])
        table.add_row(
            name,
            f"{info['rows_in']:,}",
            f"{info['rows_valid']:,}",
            f"{info['rows_quarantined']:,}",
            top or "-",
        )
    Console().print(table)


def log_data_ends(report: Mapping[str, Any]) -> None:
    """Log per table the last date seen, its data end and stray rows (the report's time ranges)."""
    from churn.console import log_table

    rows = [
        (
            name,
            info["time_range"]["last_seen"][:10],
            info["time_range"]["data_end"][:10],
            f"{info['time_range']['stray_rows']:,}",
        )
        for name, info in report["tables"].items()
        if info.get("present") and info.get("time_range")
    ]
    log_table(logger, "data end per table", ["table", "last date seen", "data end", "stray"], rows)


def choose_raw_dir(source: DataSource, files_dir: Path, simulated_dir: Path | None) -> Path:
    """Return the raw folder ``data.source`` selects.

    Both folders are declared dependencies of the stage (``dvc.yaml``); only one is read.
    Without ``simulated_dir`` (a caller passing a single folder, as before ``data.source``
    existed) ``files_dir`` is read whatever the source says.

    Args:
        source: ``data.source``: ``"files"`` (the user's folder) or ``"simulator"``.
        files_dir: The user's folder of CSV or Parquet files (``data/raw``).
        simulated_dir: The simulate stage's tables (``data/simulated/raw``), or ``None``.

    Returns:
        The folder to read the raw tables from.
    """
    if source == "simulator" and simulated_dir is not None:
        return Path(simulated_dir)
    return Path(files_dir)


def run_ingest(
    config: IngestConfig,
    raw_dir: Path,
    out_dir: Path,
    quarantine_dir: Path,
    report_path: Path,
    *,
    customer_attributes: Mapping[str, str] | None = None,
    params: Params | None = None,
    data_check_path: Path | None = None,
) -> IngestResult:
    """Validate the raw tables and write valid tables, quarantine files and the report.

    Everything is validated before any output is replaced, so a table-level error leaves the
    previous outputs untouched; the two output folders are then each swapped in whole
    (:func:`churn.io.atomic_directory`). Tables with more rows than ``config.batch_rows``
    (events mode) are validated in batches and written batch by batch into the staging
    folders (:mod:`~churn.stages.ingest.batches`; the same files as whole). Every present
    table gets a quarantine file, empty if no row was bad, so that the set of outputs does not
    depend on the data; files of tables no longer present are gone (the folders hold only
    what this run wrote).

    Args:
        config: The ``ingest`` section of the parameters.
        raw_dir: Directory with the raw tables (CSV or Parquet).
        out_dir: Directory for ``<table>.parquet`` validated tables.
        quarantine_dir: Directory for ``<table>.parquet`` quarantined rows.
        report_path: JSON report.
        customer_attributes: ``features.customer_attributes`` (extra customer columns kept).
        params: All parameters, for the data check (cutoff schedule, families); with
            ``data_check_path``.
        data_check_path: Where to write the data check of the valid tables
            (:func:`churn.stages.check_data.check_data`), after the tables; ``None`` (or no
            ``params``): not written.

    Returns:
        The validation result, its report completed with the source file of each table.

    Raises:
        DataContractError: See :func:`validate_tables`; also for an unreadable input.
    """
    raw_dir, out_dir, quarantine_dir = Path(raw_dir), Path(out_dir), Path(quarantine_dir)
    as_of = reference_timestamp(config.as_of)
    frames, sources = open_raw_tables(raw_dir, config)

    # Each output folder is swapped in whole (a kill leaves the old set, and no staging folder
    # inside these DVC outputs); tables no longer in the input simply are not in the new set.
    # Tables read in batches are written into the staging folders as they are validated; an
    # error (a table with too many bad rows, say) discards the staging folders.
    # The largest table read in batches may be validated in a worker process meanwhile
    # (ingest.workers); leaving TableWorkers stops it before a failed run's staging goes.
    rows = {name: len(table) for name, table in frames.items() if isinstance(table, BatchedTable)}
    early: list[EarlyLabelCounts | None] = []
    with (
        io.atomic_directory(out_dir) as valid_staging,
        io.atomic_directory(quarantine_dir) as quarantine_staging,
        TableWorkers(
            config, sources, rows, valid_staging, quarantine_staging, customer_attributes
        ) as workers,
    ):
        result = validate_tables(
            frames,
            config,
            as_of,
            customer_attributes=customer_attributes,
            open_sinks=partial(open_table_sinks, valid_staging, quarantine_staging),
            start_elsewhere=workers.start,
            while_waiting=(
                None
                if params is None or data_check_path is None
                else partial(_count_labels_meanwhile, params, valid_staging, early)
            ),
        )
        for name, frame in result.valid.items():
            write_table_file(frame, valid_staging / table_file_name(name))
            write_table_file(result.quarantine[name], quarantine_staging / table_file_name(name))
        for name in CONTRACT:
            present = name in result.valid or name in result.streamed
            if not present and (out_dir / table_file_name(name)).exists():
                logger.info("table %s is no longer in the input: dropped from %s", name, out_dir)
    report = copy.deepcopy(result.report)
    for name, path in sources.items():
        report["tables"][name]["source"] = str(path)
    io.write_json(report, report_path)
    print_summary(report)
    log_data_ends(report)
    if params is not None and data_check_path is not None:
        # The tables validated in memory are handed over; the streamed ones are answered from
        # their files (rows and time ranges from the footers, data ends in DuckDB), read only
        # for what the footers cannot say: a label table whole, a table's customer ids when
        # the reference check did not collect them (at 1M customers reading the streamed
        # times back and searching their end in NumPy took 9.2 s).
        referenced = result.referenced_customers
        frames = dict(result.valid)
        for name in result.streamed:
            if name not in referenced and name not in LABEL_TABLES:
                frames[name] = _read_for_check(out_dir / table_file_name(name))
        names = [name for name in CONTRACT if name in frames or name in result.streamed]
        tables = ValidatedTables(out_dir, names, frames=frames)
        check = check_data(
            tables,
            params,
            ingest_report=report,
            referenced_customers=referenced,
            early_label_counts=early[0] if early else None,
        )
        write_data_check(check, Path(data_check_path))
    return dataclasses.replace(result, report=report)
