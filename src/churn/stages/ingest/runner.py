"""The runner of ``churn ingest``: read the raw folder, validate, write the outputs."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churn import io
from churn.background import BackgroundParquetWriter, prefetch
from churn.config import DataSource, IngestConfig, Params
from churn.domain.contract import CONTRACT
from churn.domain.modes import Mode, reference_timestamp
from churn.errors import DataContractError
from churn.layout import table_file_name
from churn.stages.check_data import check_data, write_data_check
from churn.stages.ingest.batches import BatchedTable
from churn.stages.ingest.core import validate_tables
from churn.stages.ingest.tables import IngestResult, table_mapping, table_specs
from churn.stages.validated_tables import LABEL_TABLES, ValidatedTables

logger = logging.getLogger(__name__)


def _read_table(path: Path) -> pd.DataFrame:
    """:func:`churn.io.read_frame`, reading Parquet on one thread.

    The same frame; Arrow's reader threads cost about 30% more CPU than they save wall time
    on a busy 2-core machine (issue #14, measured on 3.4M usage events).
    """
    if path.suffix.lower() == ".csv":
        return io.read_frame(path)
    return pd.read_parquet(path, use_threads=False)


def _dictionary_columns(columns: pd.Index, dtypes: pd.Series) -> list[str]:
    """The columns worth dictionary pages: all but timestamps (see :func:`_write_table`)."""
    return [
        str(c)
        for c, dtype in zip(columns, dtypes, strict=True)
        if not (isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype))
    ]


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    """:func:`churn.io.write_parquet` without dictionary pages for timestamp columns.

    Event times are nearly all distinct, so the writer's dictionary attempt on them is wasted
    work that it abandons: skipping it writes 17M usage events about 20% faster and the file
    comes out slightly smaller. Values, schema and pandas metadata are those ``write_parquet``
    writes.
    """
    dictionary = _dictionary_columns(frame.columns, frame.dtypes)
    with io.atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False, use_dictionary=dictionary)


class _ParquetBatches:
    """A Parquet table file read in batches of ``batch_rows`` (:class:`BatchedTable`)."""

    def __init__(self, path: Path, batch_rows: int) -> None:
        self.path, self.batch_rows = path, batch_rows
        file = pq.ParquetFile(path)
        schema = file.schema_arrow
        self.rows = file.metadata.num_rows
        self.columns = pd.Index(schema.names)
        self.float_columns = tuple(
            f.name for f in schema if pa.types.is_floating(f.type)
        )

    def __len__(self) -> int:
        return self.rows

    def batches(self, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        """Each batch as ``pd.read_parquet`` would give those rows (one reader thread).

        The next batch is read on a thread while this one is worked on
        (:func:`churn.background.prefetch`): decoding Parquet runs outside Python's lock. (CSV
        batches are not prefetched: making their Python text objects needs the lock.)
        """
        return prefetch(self._read_batches(columns), name=f"read:{self.path.name}")

    def _read_batches(self, columns: list[str] | None) -> Iterator[pd.DataFrame]:
        with pq.ParquetFile(self.path) as file:
            for batch in file.iter_batches(
                batch_size=self.batch_rows, columns=columns, use_threads=False
            ):
                yield pa.Table.from_batches([batch]).to_pandas()

    def take(self, positions: np.ndarray) -> pd.DataFrame:
        """The rows at ``positions`` (ascending), picked in Arrow before conversion to pandas.

        Every column is decoded on Arrow's threads: nothing else runs beside this pass (the
        1M usage events for 200k candidates: 14-16 s -> 7.5 s, 2026-12-06).
        """
        parts, start = [], 0
        with pq.ParquetFile(self.path) as file:
            schema = file.schema_arrow
            for batch in file.iter_batches(batch_size=self.batch_rows, use_threads=True):
                stop = start + batch.num_rows
                lo, hi = np.searchsorted(positions, [start, stop])
                if hi > lo:
                    parts.append(batch.take(pa.array(positions[lo:hi] - start)))
                start = stop
        return pa.Table.from_batches(parts, schema=schema).to_pandas()


class _CsvBatches:
    """A CSV table file read in batches of ``batch_rows`` (:class:`BatchedTable`)."""

    def __init__(self, path: Path, batch_rows: int, rows: int) -> None:
        self.path, self.batch_rows, self.rows = path, batch_rows, rows
        self.columns = pd.read_csv(path, dtype=str, nrows=0).columns
        self.float_columns: tuple[str, ...] = ()  # CSV columns are read as text

    def __len__(self) -> int:
        return self.rows

    def batches(self, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        """Each batch as ``churn.io.read_frame`` would give those rows (every column text)."""
        with pd.read_csv(
            self.path, dtype=str, keep_default_na=True, usecols=columns, chunksize=self.batch_rows
        ) as reader:
            for chunk in reader:
                yield chunk.reset_index(drop=True)

    def take(self, positions: np.ndarray) -> pd.DataFrame:
        """The rows at ``positions`` (ascending)."""
        parts, start = [], 0
        for chunk in self.batches():
            stop = start + len(chunk)
            lo, hi = np.searchsorted(positions, [start, stop])
            if hi > lo:
                parts.append(chunk.iloc[positions[lo:hi] - start])
            start = stop
        if not parts:
            return pd.read_csv(self.path, dtype=str, keep_default_na=True, nrows=0)
        return pd.concat(parts, ignore_index=True)


def _count_csv_rows(path: Path, batch_rows: int) -> int:
    """The data rows of a CSV file, as the parser counts them (quoted line breaks included)."""
    with pd.read_csv(path, dtype=str, usecols=[0], chunksize=max(batch_rows, 100_000)) as reader:
        return sum(len(chunk) for chunk in reader)


def _open_table(path: Path, cfg: IngestConfig) -> pd.DataFrame | BatchedTable:
    """Read a table whole, or open it for batches when it has more than ``cfg.batch_rows`` rows.

    Entity mode always reads whole: there the attribute types are inferred from all values.
    """
    if cfg.mode is not Mode.ENTITY and path.is_file():
        if path.suffix.lower() == ".csv":
            if path.stat().st_size > cfg.batch_rows:  # fewer bytes than rows: cannot be larger
                rows = _count_csv_rows(path, cfg.batch_rows)
                if rows > cfg.batch_rows:
                    return _CsvBatches(path, cfg.batch_rows, rows)
        else:
            table = _ParquetBatches(path, cfg.batch_rows)
            if len(table) > cfg.batch_rows:
                return table
    return _read_table(path)


class _ParquetSink:
    """Writes the batches of one output file (:class:`~churn.stages.ingest.batches.BatchSink`).

    The schema and pandas metadata are taken from the first batch; columns, dtypes and
    values are those :func:`_write_table` of the concatenated batches writes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer: BackgroundParquetWriter | None = None

    def write(self, frame: pd.DataFrame) -> None:
        """Append ``frame``'s rows."""
        table = io.frame_to_arrow(frame)
        if self.writer is None:
            dictionary = _dictionary_columns(frame.columns, frame.dtypes)
            # Encoded on a writer thread while the next batch is validated.
            self.writer = BackgroundParquetWriter(self.path, table.schema,
                                                  use_dictionary=dictionary)
        elif not table.schema.equals(self.writer.schema, check_metadata=False):
            table = table.cast(self.writer.schema)  # e.g. a batch of all-missing values
        self.writer.write_table(table)

    def close(self) -> None:
        """Complete the file."""
        if self.writer is not None:
            self.writer.close()


@contextlib.contextmanager
def _open_sinks(
    valid_dir: Path, quarantine_dir: Path, name: str
) -> Iterator[tuple[_ParquetSink, _ParquetSink]]:
    """The sinks of one batched table's valid and quarantined rows, each in a temporary file
    renamed into place when the table is done (never a half-written file)."""
    file = table_file_name(name)
    with io.atomic_path(valid_dir / file) as valid_tmp, io.atomic_path(
        quarantine_dir / file
    ) as quarantine_tmp:
        sinks = _ParquetSink(valid_tmp), _ParquetSink(quarantine_tmp)
        try:
            yield sinks
        finally:
            for sink in sinks:
                sink.close()


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
    return _collect_tables(raw_dir, cfg, _read_table)  # type: ignore[return-value]


def open_raw_tables(
    raw_dir: Path, cfg: IngestConfig
) -> tuple[dict[str, pd.DataFrame | BatchedTable], dict[str, Path]]:
    """:func:`read_raw_tables`, but tables larger than ``cfg.batch_rows`` are opened for batches.

    Returns:
        Table -> frame as read or table read in batches, and table -> the file it came from.

    Raises:
        DataContractError: As :func:`read_raw_tables`.
    """
    return _collect_tables(raw_dir, cfg, partial(_open_table, cfg=cfg))


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
    with (
        io.atomic_directory(out_dir) as valid_staging,
        io.atomic_directory(quarantine_dir) as quarantine_staging,
    ):
        result = validate_tables(
            frames,
            config,
            as_of,
            customer_attributes=customer_attributes,
            open_sinks=partial(_open_sinks, valid_staging, quarantine_staging),
        )
        for name, frame in result.valid.items():
            _write_table(frame, valid_staging / table_file_name(name))
            _write_table(result.quarantine[name], quarantine_staging / table_file_name(name))
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
        check = check_data(tables, params, ingest_report=report, referenced_customers=referenced)
        write_data_check(check, Path(data_check_path))
    return dataclasses.replace(result, report=report)
