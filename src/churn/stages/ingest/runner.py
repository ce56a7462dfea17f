"""The runner of ``churn ingest``: read the raw folder, validate, write the outputs."""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from churn import io
from churn.config import DataSource, IngestConfig, Params
from churn.domain.contract import CONTRACT
from churn.domain.modes import reference_timestamp
from churn.errors import DataContractError
from churn.layout import table_file_name
from churn.stages.check_data import check_data, write_data_check
from churn.stages.ingest.core import validate_tables
from churn.stages.ingest.tables import IngestResult, table_mapping, table_specs

logger = logging.getLogger(__name__)


def _read_table(path: Path) -> pd.DataFrame:
    """:func:`churn.io.read_frame`, reading Parquet on one thread.

    The same frame; Arrow's reader threads cost about 30% more CPU than they save wall time
    on a busy 2-core machine (issue #14, measured on 3.4M usage events).
    """
    if path.suffix.lower() == ".csv":
        return io.read_frame(path)
    return pd.read_parquet(path, use_threads=False)


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    """:func:`churn.io.write_parquet` without dictionary pages for timestamp columns.

    Event times are nearly all distinct, so the writer's dictionary attempt on them is wasted
    work that it abandons: skipping it writes 17M usage events about 20% faster and the file
    comes out slightly smaller. Values, schema and pandas metadata are those ``write_parquet``
    writes.
    """
    dictionary = [
        str(c)
        for c in frame.columns
        if not (
            isinstance(frame[c].dtype, pd.DatetimeTZDtype)
            or pd.api.types.is_datetime64_dtype(frame[c].dtype)
        )
    ]
    with io.atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False, use_dictionary=dictionary)


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
    if not raw_dir.is_dir():
        raise DataContractError(f"raw directory {raw_dir} does not exist")
    frames: dict[str, pd.DataFrame] = {}
    sources: dict[str, Path] = {}
    for name in table_specs(cfg.mode):
        path = io.find_table_file(
            raw_dir, name, table_mapping(cfg, name).file, allow_outside=cfg.allow_outside_raw
        )
        if path is None:
            continue
        try:
            frames[name] = _read_table(path)
        except (ValueError, OSError) as exc:  # pyarrow and CSV parser errors subclass these
            raise DataContractError(f"cannot read table '{name}' from {path}: {exc}") from exc
        sources[name] = path
    return frames, sources


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

    Everything is validated before anything is written, so a table-level error leaves the
    previous outputs untouched; the two output folders are then each swapped in whole
    (:func:`churn.io.atomic_directory`). Every present table gets a quarantine file, empty if
    no row was bad, so that the set of outputs does not depend on the data; files of tables no
    longer present are gone (the folders hold only what this run wrote).

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
    frames, sources = read_raw_tables(raw_dir, config)
    result = validate_tables(frames, config, as_of, customer_attributes=customer_attributes)
    report = copy.deepcopy(result.report)
    for name, path in sources.items():
        report["tables"][name]["source"] = str(path)

    # Each output folder is swapped in whole (a kill leaves the old set, and no staging folder
    # inside these DVC outputs); tables no longer in the input simply are not in the new set.
    with (
        io.atomic_directory(out_dir) as valid_staging,
        io.atomic_directory(quarantine_dir) as quarantine_staging,
    ):
        for name, frame in result.valid.items():
            _write_table(frame, valid_staging / table_file_name(name))
            _write_table(result.quarantine[name], quarantine_staging / table_file_name(name))
        for name in CONTRACT:
            if name not in result.valid and (out_dir / table_file_name(name)).exists():
                logger.info("table %s is no longer in the input: dropped from %s", name, out_dir)
    io.write_json(report, report_path)
    print_summary(report)
    log_data_ends(report)
    if params is not None and data_check_path is not None:
        check = check_data(result.valid, params, ingest_report=report)
        write_data_check(check, Path(data_check_path))
    return dataclasses.replace(result, report=report)
