"""The files of ``churn ingest``: raw tables read whole or in batches, outputs written.

Shared by the runner (:mod:`~churn.stages.ingest.runner`) and the worker processes that
validate a large table beside it (:mod:`~churn.stages.ingest.workers`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churn import io
from churn.background import BackgroundParquetWriter, prefetch
from churn.config import IngestConfig
from churn.domain.modes import Mode
from churn.errors import DataContractError
from churn.layout import table_file_name
from churn.stages.ingest.batches import BatchedTable


def read_table_file(path: Path) -> pd.DataFrame:
    """:func:`churn.io.read_frame`, reading Parquet on one thread.

    The same frame; Arrow's reader threads cost about 30% more CPU than they save wall time
    on a busy 2-core machine (issue #14, measured on 3.4M usage events).
    """
    if path.suffix.lower() == ".csv":
        return io.read_frame(path)
    return pd.read_parquet(path, use_threads=False)


def find_dictionary_columns(columns: pd.Index, dtypes: pd.Series) -> list[str]:
    """The columns worth dictionary pages: all but timestamps (see :func:`write_table_file`)."""
    return [
        str(c)
        for c, dtype in zip(columns, dtypes, strict=True)
        if not (isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype))
    ]


def write_table_file(frame: pd.DataFrame, path: Path) -> None:
    """:func:`churn.io.write_parquet` without dictionary pages for timestamp columns.

    Event times are nearly all distinct, so the writer's dictionary attempt on them is wasted
    work that it abandons: skipping it writes 17M usage events about 20% faster and the file
    comes out slightly smaller. Values, schema and pandas metadata are those ``write_parquet``
    writes.
    """
    dictionary = find_dictionary_columns(frame.columns, frame.dtypes)
    with io.atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False, use_dictionary=dictionary)


class ParquetBatches:
    """A Parquet table file read in batches of ``batch_rows`` (:class:`BatchedTable`)."""

    def __init__(self, path: Path, batch_rows: int) -> None:
        self.path, self.batch_rows = path, batch_rows
        file = pq.ParquetFile(path)
        schema = file.schema_arrow
        self.rows = file.metadata.num_rows
        self.columns = pd.Index(schema.names)
        self.float_columns = tuple(f.name for f in schema if pa.types.is_floating(f.type))

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

        Every column is decoded on Arrow's threads: nothing else of this table runs beside
        this pass (the 1M usage events for 200k candidates: 14-16 s -> 7.5 s, 2026-12-06).
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


class CsvBatches:
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


def count_csv_rows(path: Path, batch_rows: int) -> int:
    """The data rows of a CSV file, as the parser counts them (quoted line breaks included)."""
    with pd.read_csv(path, dtype=str, usecols=[0], chunksize=max(batch_rows, 100_000)) as reader:
        return sum(len(chunk) for chunk in reader)


def open_table_file(path: Path, cfg: IngestConfig) -> pd.DataFrame | BatchedTable:
    """Read a table whole, or open it for batches when it has more than ``cfg.batch_rows`` rows.

    Entity mode always reads whole: there the attribute types are inferred from all values.
    """
    if cfg.mode is not Mode.ENTITY and path.is_file():
        if path.suffix.lower() == ".csv":
            if path.stat().st_size > cfg.batch_rows:  # fewer bytes than rows: cannot be larger
                rows = count_csv_rows(path, cfg.batch_rows)
                if rows > cfg.batch_rows:
                    return CsvBatches(path, cfg.batch_rows, rows)
        else:
            table = ParquetBatches(path, cfg.batch_rows)
            if len(table) > cfg.batch_rows:
                return table
    return read_table_file(path)


def open_batched_table(path: Path, batch_rows: int, rows: int) -> BatchedTable:
    """Open a table file for batches again, as :func:`open_table_file` opened it.

    For a worker process (:mod:`~churn.stages.ingest.workers`): ``rows`` is the count the
    first opening found, so a CSV file is not counted twice.

    Raises:
        DataContractError: If the file no longer has ``rows`` rows (it changed meanwhile).
    """
    table: BatchedTable
    if path.suffix.lower() == ".csv":
        table = CsvBatches(path, batch_rows, rows)
    else:
        table = ParquetBatches(path, batch_rows)
    if len(table) != rows:
        raise DataContractError(
            f"raw file {path} changed while it was validated: {len(table)} rows, {rows} before"
        )
    return table


class ParquetSink:
    """Writes the batches of one output file (:class:`~churn.stages.ingest.batches.BatchSink`).

    The schema and pandas metadata are taken from the first batch; columns, dtypes and
    values are those :func:`write_table_file` of the concatenated batches writes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer: BackgroundParquetWriter | None = None

    def write(self, frame: pd.DataFrame) -> None:
        """Append ``frame``'s rows."""
        table = io.frame_to_arrow(frame)
        if self.writer is None:
            dictionary = find_dictionary_columns(frame.columns, frame.dtypes)
            # Encoded on a writer thread while the next batch is validated.
            self.writer = BackgroundParquetWriter(
                self.path, table.schema, use_dictionary=dictionary
            )
        elif not table.schema.equals(self.writer.schema, check_metadata=False):
            table = table.cast(self.writer.schema)  # e.g. a batch of all-missing values
        self.writer.write_table(table)

    def close(self) -> None:
        """Complete the file."""
        if self.writer is not None:
            self.writer.close()


@contextlib.contextmanager
def open_table_sinks(
    valid_dir: Path, quarantine_dir: Path, name: str
) -> Iterator[tuple[ParquetSink, ParquetSink]]:
    """The sinks of one batched table's valid and quarantined rows, each in a temporary file
    renamed into place when the table is done (never a half-written file)."""
    file = table_file_name(name)
    with (
        io.atomic_path(valid_dir / file) as valid_tmp,
        io.atomic_path(quarantine_dir / file) as quarantine_tmp,
    ):
        sinks = ParquetSink(valid_tmp), ParquetSink(quarantine_tmp)
        try:
            yield sinks
        finally:
            for sink in sinks:
                sink.close()
