"""All disk I/O of the pipeline: atomic writes and table reads.

Stage cores never touch the disk; runners call these helpers. Every write goes to a temporary
path in the destination's parent directory and is renamed into place, so a crash never leaves a
half-written output (rename is atomic on POSIX within one file system). A stage writing several
files that belong together writes them into one staging folder and swaps it in whole
(:func:`atomic_directory`), so a kill leaves either the old set or the new one.

Staging paths are named ``.<name>.churn-tmp-<pid>-<random>``; one left behind by a killed run
(its process is gone) is removed the next time anything is written to ``<name>``. They are
created beside the output, never inside it, so a DVC output directory never holds one.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import warnings
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churn.errors import ChurnError, DataContractError
from churn.layout import table_file_name

if TYPE_CHECKING:
    import pyarrow as pa

STAGING_MARK = ".churn-tmp-"
RETIRED_MARK = ".churn-old-"


def _process_is_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _staging_pid(entry: Path, name: str, mark: str) -> int | None:
    """The process id in a staging name of ``name``, or ``None`` if it is not one."""
    prefix = f".{name}{mark}"
    if not entry.name.startswith(prefix):
        return None
    pid_text = entry.name[len(prefix) :].split("-", 1)[0]
    return int(pid_text) if pid_text.isdigit() else None


def remove_stale_staging(path: str | Path) -> list[Path]:
    """Remove staging paths of ``path`` left by killed runs; restore a retired output if needed.

    A run killed between moving the old output aside and moving the new one in leaves no
    ``path`` but a retired copy (``.<name>.churn-old-<pid>-...``): that old set is put back, so
    the reader sees the old outputs rather than none.

    Returns:
        The staging paths removed.
    """
    path = Path(path)
    parent, name = path.parent, path.name
    if not parent.is_dir():
        return []
    removed: list[Path] = []
    for entry in sorted(parent.iterdir()):
        for mark in (STAGING_MARK, RETIRED_MARK):
            pid = _staging_pid(entry, name, mark)
            if pid is None or _process_is_alive(pid):
                continue
            if mark == RETIRED_MARK and not path.exists() and not path.is_symlink():
                os.replace(entry, path)
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _new_staging_name(path: Path, mark: str) -> Path:
    return path.parent / f".{path.name}{mark}{os.getpid()}-{secrets.token_hex(4)}"


def _swap_in(staged: Path, path: Path) -> None:
    """Rename ``staged`` onto ``path``; a directory already there is retired, then removed."""
    if path.is_dir() and not path.is_symlink():
        # Directories cannot be replaced atomically in one call: move the old one aside
        # first so that the window without a complete output is a single rename (and a kill
        # inside it is repaired by remove_stale_staging).
        retired = _new_staging_name(path, RETIRED_MARK)
        os.replace(path, retired)
        os.replace(staged, path)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staged, path)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; on success rename it onto ``path``.

    Works for files and directories. On error the temporary path is removed and ``path`` is
    left as it was.

    Args:
        path: Final destination.

    Yields:
        The temporary path to write to (it does not exist yet).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path)
    tmp_dir = _new_staging_name(path, STAGING_MARK)
    tmp_dir.mkdir()
    tmp = tmp_dir / path.name
    try:
        yield tmp
        _swap_in(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(
    path: str | Path, *, keep_existing: bool = False, skip: Collection[str] = ()
) -> Iterator[Path]:
    """Yield a staging folder beside ``path``; on success swap it in whole as ``path``.

    Use it for outputs made of several files that must match (scores and their contributions,
    an explanation folder): a kill or an exception before the end leaves ``path`` exactly as it
    was, the staging folder is removed (or, after a kill, at the next run).

    Args:
        path: The output directory. It must not be the working directory or one of its
            parents (the swap renames it).
        keep_existing: Copy the files already in ``path`` into the staging folder first, for an
            output folder that accumulates files (DVC ``persist``); otherwise the new folder
            holds only what the caller writes.
        skip: Top-level names not copied by ``keep_existing`` (the files about to be replaced).

    Yields:
        The staging directory (it exists and is empty unless ``keep_existing``).

    Raises:
        ChurnError: If ``path`` is the working directory, one of its parents, or a file.
    """
    path = Path(path)
    resolved = path.resolve()
    if resolved == Path.cwd().resolve() or Path.cwd().resolve().is_relative_to(resolved):
        raise ChurnError(
            f"cannot replace {path} as one unit: it holds the working directory; write the "
            "outputs into a folder of their own (e.g. data/scores/scores.parquet)"
        )
    if path.exists() and not path.is_dir():
        raise ChurnError(f"{path} is a file, but a folder of outputs is to be written there")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path)
    staging = _new_staging_name(path, STAGING_MARK)
    staging.mkdir()
    try:
        if keep_existing and path.is_dir():
            for entry in path.iterdir():
                if entry.name in skip or STAGING_MARK in entry.name:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.copytree(entry, staging / entry.name, symlinks=True)
                else:
                    shutil.copy2(entry, staging / entry.name, follow_symlinks=False)
        yield staging
        _swap_in(staging, path)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def frame_to_arrow(frame: pd.DataFrame, schema: pa.Schema | None = None) -> pa.Table:
    """``frame`` as Arrow, exactly as ``DataFrame.to_parquet(index=False)`` converts it.

    For the writers that append a table part by part (the simulator's months, ingest's batches,
    the features stage's output). pyarrow < 26 reads time-zone columns through
    ``Series.values``, which pandas 3.1 deprecates; pandas' own ``to_parquet`` silences that one
    warning around the same call (pandas GH#68426, apache/arrow#51302), and so does this. The
    values are converted correctly either way.

    Args:
        frame: The rows to convert (its index is not kept).
        schema: The Arrow schema to convert to (default: inferred, as ``to_parquet`` does).
    """
    import pyarrow as pa
    from pandas.errors import Pandas4Warning

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            r"Series\.values returning an ndarray that drops timezone information",
            Pandas4Warning,
        )
        return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def write_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    """Write ``frame`` to a Parquet file atomically (no index)."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_table(frame: pd.DataFrame, path: str | Path, fmt: str = "parquet") -> None:
    """Write ``frame`` atomically as Parquet or CSV."""
    if fmt == "csv":
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
    else:
        write_parquet(frame, path)


def write_json(payload: Any, path: str | Path) -> None:
    """Write ``payload`` as indented JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def write_text(text: str, path: str | Path) -> None:
    """Write ``text`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def find_table_file(
    directory: str | Path,
    table: str,
    file: str | None = None,
    *,
    allow_outside: bool = False,
) -> Path | None:
    """Locate a raw table file in ``directory``.

    Args:
        directory: Directory holding the tables.
        table: Contract table name.
        file: Explicit file name (from the column mapping), or ``None`` to look for
            ``<table>.parquet``, ``<table>.csv``, or a ``<table>/`` Parquet directory.
        allow_outside: Accept an explicit ``file`` that resolves outside ``directory`` (an
            absolute path, ``..``, a symlink leading out). Off by default: a configuration
            value must not be able to read any file the process can.

    Returns:
        The path, or ``None`` if the table is absent.

    Raises:
        DataContractError: If ``file`` resolves outside ``directory`` and that is not allowed.
    """
    directory = Path(directory)
    if file is not None:
        candidate = directory / file
        if not allow_outside:
            root = directory.resolve()
            if Path(file).is_absolute() or not candidate.resolve().is_relative_to(root):
                raise DataContractError(
                    f"ingest.tables.{table}.file {file!r} resolves to {candidate.resolve()}, "
                    f"outside the raw folder {root} (absolute paths, '..' and symlinks leading "
                    "out are refused); set ingest.allow_outside_raw: true to allow it"
                )
        return candidate if candidate.exists() else None
    for name in (table_file_name(table), f"{table}.csv", table):
        candidate = directory / name
        # A default name is not checked for symlinks: DVC's symlink cache links raw files
        # into .dvc/cache, and the name itself was not chosen by configuration.
        if candidate.exists():
            return candidate
    return None


#: ``pyarrow.Table.to_pandas`` options of :func:`read_parquet_frame`: each column is freed from
#: the Arrow table once converted and kept as its own block, so the table and the frame never
#: exist whole at once.
_LEAN_CONVERSION: Mapping[str, bool] = MappingProxyType(
    {"self_destruct": True, "split_blocks": True}
)


def release_arrow_memory() -> None:
    """Hand the memory pyarrow has freed but still caches back to the operating system.

    Reading Parquet into pandas decodes the file into Arrow buffers and converts them into the
    frame's arrays; Arrow's allocator (mimalloc here) keeps the freed decoding buffers for a
    while for its own reuse, and nothing else in the process (NumPy allocates with ``malloc``)
    can use them. Reading the 100k features file (an 886 MB frame) left 2.27 GB resident, 1.10
    GB after this call (2026-12-03).
    """
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def read_parquet_frame(
    path: str | Path,
    columns: Sequence[str] | None = None,
    filters: list[tuple[str, str, Any]] | None = None,
) -> pd.DataFrame:
    """Read a Parquet file or directory into pandas without holding it twice: every large read.

    A single file read without ``filters`` is read row group by row group
    (:func:`read_parquet_row_groups`): its float columns (most of a features file) are decoded
    straight into arrays of their final size, so no second copy of them ever exists; the 100k
    features file (886 MB as a frame) peaked at 1.41-1.44 GB over the process's start with the
    column-by-column conversion below and at 1.03-1.05 GB this way (2026-12-03, measured side
    by side). With ``filters``, a single file's filter columns are read first, the filter is
    evaluated on them (:func:`find_filtered_positions`) and only the matching rows are then
    read that way: pyarrow's filtered read held the filtered table beside the frame (the 100k
    backtest refit's read peaked 1.4x the frame). Other reads (a directory) are converted
    column by column, each
    column freed from the Arrow table once it is converted (``self_destruct``) and kept as its
    own block (``split_blocks``: numbers without missing values are handed over without a
    copy). Either way pyarrow's cached memory is released afterwards
    (:func:`release_arrow_memory`), and values, dtypes and index are those ``pd.read_parquet``
    gives.

    Args:
        path: A Parquet file or directory.
        columns: Columns to read (all when ``None``).
        filters: pyarrow row filters (``[(column, op, value), ...]``, all must hold); rows that
            fail them are never converted.
    """
    frame = None
    if Path(path).is_file():
        positions = None if filters is None else find_filtered_positions(path, filters)
        if filters is None or positions is not None:
            frame = read_parquet_row_groups(path, columns, positions)
    if frame is None:
        frame = pd.read_parquet(
            path, columns=columns, filters=filters, to_pandas_kwargs=dict(_LEAN_CONVERSION)
        )
    release_arrow_memory()
    return frame


def find_filtered_positions(
    path: str | Path, filters: list[tuple[str, str, Any]]
) -> np.ndarray | None:
    """Return the positions of the rows of a Parquet file that pass pyarrow row ``filters``.

    Only the filter columns are read, and the filter is pyarrow's own expression
    (``pq.filters_to_expression``), so the rows are those ``pd.read_parquet(path,
    filters=filters)`` keeps, in file order.

    Returns:
        The positions (increasing), or ``None`` for filters this does not take (not a flat
        list of ``(column, op, value)`` conditions, or a column not in the file): the caller
        then leaves them to pyarrow, with its usual result or error.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not filters or not all(isinstance(f, tuple) and len(f) == 3 for f in filters):
        return None
    names = list(dict.fromkeys(str(f[0]) for f in filters))
    schema = pq.read_schema(path)
    if not set(names) <= set(schema.names):
        return None
    table = pq.read_table(path, columns=names)
    position = "__position__"
    while position in names:
        position += "_"
    table = table.append_column(position, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    kept = table.filter(pq.filters_to_expression(filters)).column(position)
    return kept.to_numpy()


def read_parquet_row_groups(
    path: str | Path,
    columns: Sequence[str] | None = None,
    positions: np.ndarray | None = None,
) -> pd.DataFrame | None:
    """Read one Parquet file row group by row group, floats straight into their final arrays.

    Each float column whose pandas dtype is a NumPy float (what ``pd.read_parquet`` would give:
    missing values become NaN) gets one array of the length read, filled from each row group
    as it is decoded; the other columns (text, timestamps, integers, nullable dtypes) are kept
    as Arrow chunks and converted together at the end with the file's pandas metadata, so they
    get exactly the dtypes a whole-file read gives. The columns stay separate blocks (pandas'
    copy-on-write frame from a dict of arrays does not copy them).

    Args:
        path: A Parquet file.
        columns: Columns to read (all when ``None``), in the order given (as ``pd.read_parquet``).
        positions: Read only these rows (0-based positions in the file, increasing, no
            repeats); row groups holding none of them are not decoded. The frame then has a
            fresh ``RangeIndex``, and a column whose dtype depends on its values (integers with
            missing values become floats) gets the dtype of the rows read.

    Returns:
        The frame, or ``None`` when the file stores a pandas index other than a range (e.g. a
        named index column): the caller then reads it whole.

    Raises:
        ValueError: If ``positions`` are not increasing or fall outside the file.
    """
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    schema = parquet.schema_arrow
    names = list(schema.names) if columns is None else list(columns)
    # Unknown or repeated columns: left to pandas (its usual error or behaviour).
    if len(set(names)) != len(names) or len(set(schema.names)) != len(schema.names):
        return None
    if not set(names) <= set(schema.names):
        return None
    fields = [schema.field(name) for name in names]
    metadata = schema.metadata or {}
    pandas_metadata = json.loads(metadata.get(b"pandas", b"{}") or b"{}")
    index_columns = pandas_metadata.get("index_columns", [])
    if any(not isinstance(entry, dict) or entry.get("kind") != "range" for entry in index_columns):
        return None
    # The dtypes a whole-file read gives, from the empty table with the same metadata.
    subset_schema = pa.schema(fields, metadata=schema.metadata)
    dtypes = subset_schema.empty_table().to_pandas().dtypes
    total = parquet.metadata.num_rows
    if positions is not None:
        positions = np.asarray(positions, dtype=np.int64)
        if positions.size and (
            positions[0] < 0 or positions[-1] >= total or np.any(np.diff(positions) <= 0)
        ):
            raise ValueError(
                f"positions must increase within the {total} rows of {path} (no repeats)"
            )
    rows = total if positions is None else len(positions)
    floats = {
        field.name: np.empty(rows, dtype=dtypes[field.name])
        for field in fields
        if pa.types.is_floating(field.type)
        and isinstance(dtypes[field.name], np.dtype)
        and dtypes[field.name].kind == "f"
    }
    chunks: dict[str, list[pa.Array]] = {f.name: [] for f in fields if f.name not in floats}
    start = 0  # where the next rows go in the arrays
    first = 0  # the file position of the row group's first row
    for group in range(parquet.num_row_groups):
        size = parquet.metadata.row_group(group).num_rows
        wanted = None
        if positions is not None:
            low, high = np.searchsorted(positions, [first, first + size])
            wanted = positions[low:high] - first
            first += size
            if not wanted.size:
                continue
        table = parquet.read_row_group(group, columns=names)
        if wanted is not None and wanted.size < table.num_rows:
            if wanted[-1] - wanted[0] + 1 == wanted.size:
                # A run of rows (one cutoff of a file written cutoff by cutoff): a zero-copy
                # slice instead of a gather of every column.
                table = table.slice(int(wanted[0]), int(wanted.size))
            else:
                table = table.take(pa.array(wanted))
        stop = start + table.num_rows
        for name, values in floats.items():
            values[start:stop] = table.column(name).to_numpy()
        for name, kept in chunks.items():
            kept.extend(table.column(name).chunks)
        start = stop
        del table
    others = pa.Table.from_arrays(
        [pa.chunked_array(chunks[f.name], type=f.type) for f in fields if f.name in chunks],
        schema=pa.schema([f for f in fields if f.name in chunks], metadata=schema.metadata),
    )
    converted = others.to_pandas(**_LEAN_CONVERSION)
    index = pd.RangeIndex(rows)
    if index_columns and positions is None:
        entry = index_columns[0]
        index = pd.RangeIndex(entry["start"], entry["stop"], entry["step"], name=entry["name"])
        if len(index) != rows:
            return None
    # Arrays, not Series: a Series would be aligned on its own index.
    by_name = {**{name: converted[name].array for name in converted.columns}, **floats}
    return pd.DataFrame(
        {name: by_name[name] for name in names}, index=index, columns=pd.Index(names), copy=False
    )


def read_frame_positions(
    path: str | Path, positions: np.ndarray, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Read only the rows at ``positions`` (0-based, increasing) of a Parquet file.

    What ``read_frame(path).iloc[positions].reset_index(drop=True)`` gives, without the other
    rows ever being in memory (:func:`read_parquet_row_groups`), except that a column whose
    dtype depends on its values gets the dtype of the rows read. A file storing an index
    column is read whole and then sliced.
    """
    frame = read_parquet_row_groups(path, columns, positions)
    if frame is None:
        whole = read_parquet_frame(path, columns)
        frame = whole.iloc[np.asarray(positions, dtype=np.int64)].reset_index(drop=True)
    release_arrow_memory()
    return frame


def read_frame(path: str | Path) -> pd.DataFrame:
    """Read a Parquet file or directory (:func:`read_parquet_frame`), or a CSV file (all
    columns as text)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        # Read identifiers and timestamps as text; ingest coerces types and reports failures.
        return pd.read_csv(path, dtype=str, keep_default_na=True)
    return read_parquet_frame(path)


def read_frame_rows(path: str | Path, values: Mapping[str, Iterable[object]]) -> pd.DataFrame:
    """Read only the rows of a Parquet file whose columns hold one of the given values.

    Every condition must hold (``{"cutoff": [c1, c2], "customer_id": ids}`` keeps the rows at
    one of those cutoffs *and* of one of those customers). The whole file never exists in
    memory: from a single file the filtered columns are read first and then only the matching
    rows (:func:`read_frame_positions`, about 1.05x their size at the peak); a directory is
    filtered by pyarrow batch by batch (about 1.4x). The rows come back in file order with
    the same dtypes as :func:`read_frame` gives, on a fresh ``RangeIndex``.

    Args:
        path: A Parquet file or directory.
        values: Column -> the values to keep (at least one column).

    Raises:
        ValueError: If no column is given, or a column's values cannot be compared with the
            values given (text against numbers, say): an error, never an empty result.
    """
    wanted = {column: list(dict.fromkeys(kept)) for column, kept in values.items()}
    if not wanted:
        raise ValueError("read_frame_rows needs at least one column to filter on")
    if not Path(path).is_file():
        filters = [(column, "in", kept) for column, kept in wanted.items()]
        return read_parquet_frame(path, filters=filters).reset_index(drop=True)
    stored = read_parquet_frame(path, columns=list(wanted))
    keep = np.ones(len(stored), dtype=bool)
    for column, kept in wanted.items():
        given = pd.Series(kept)
        if len(given) and not _comparable(stored[column], given):
            raise ValueError(
                f"{path}: column {column!r} ({stored[column].dtype}) cannot be compared with "
                f"the values asked for ({given.dtype})"
            )
        keep &= stored[column].isin(given).to_numpy(dtype=bool)
    return read_frame_positions(path, np.flatnonzero(keep))


def _comparable(stored: pd.Series, given: pd.Series) -> bool:
    """Whether values of ``given`` can equal values of ``stored``: both times (with a time zone
    or both without), both numbers, both booleans, or both anything else (text)."""
    return _value_kind(stored) == _value_kind(given)


def read_frame_keys(path: str | Path, keys: pd.DataFrame) -> pd.DataFrame:
    """Read only the rows of a Parquet file whose key columns equal one row of ``keys``.

    Unlike :func:`read_frame_rows`, whose conditions hold column by column (all rows of the
    given customers at any of the given cutoffs), this matches whole keys: the target stage
    wanted 41k (customer, cutoff) pairs at 100k customers and the column-by-column filter read
    375k rows. The matching rows' positions are found by a DuckDB semi-join of the file's key
    columns with ``keys`` (at 1M customers, 414k (customer, month, play) keys among the
    retention truth's rows took 1.8 s, where reading the key columns into pandas and merging
    took over 30 s), then only those rows are read (:func:`read_frame_positions`); they come
    back in file order on a fresh ``RangeIndex``. Missing key values match each other, as in a
    pandas merge. A key column stored with another kind of type than in ``keys`` (integer ids
    against their text) is matched as text.

    Args:
        path: A Parquet file (a directory is read whole, then matched).
        keys: The wanted keys, one column per key column (repeats are fine).
    """
    columns = list(keys.columns)
    if not Path(path).is_file():
        return _match_keys(read_parquet_frame(path), keys).reset_index(drop=True)
    positions = _find_key_positions(Path(path), keys.drop_duplicates().reset_index(drop=True))
    if positions is None:  # key types DuckDB would compare otherwise than pandas
        stored = read_parquet_frame(path, columns=columns)
        positions = np.sort(_match_keys(stored, keys).index.to_numpy(dtype=np.int64))
    return read_frame_positions(path, positions)


def _find_key_positions(path: Path, keys: pd.DataFrame) -> np.ndarray | None:
    """Positions (increasing) of the file's rows whose key columns equal a row of ``keys``.

    ``None`` when a key column holds times with a time zone on one side only (pandas never
    matches those; DuckDB would, in its session's zone): the caller matches in pandas.
    """
    import duckdb
    import pyarrow.parquet as pq

    stored = pq.read_schema(path).empty_table().select(list(keys.columns)).to_pandas()
    conditions = []
    for name in keys.columns:
        stored_kind, given_kind = _value_kind(stored[name]), _value_kind(keys[name])
        column = '"' + str(name).replace('"', '""') + '"'
        if stored_kind == given_kind:
            left, right = f"t.{column}", f"w.{column}"
        elif stored_kind[0] == given_kind[0] == "time":
            return None
        else:  # integer ids against their text, say: both as text, as _match_keys does
            left, right = f"CAST(t.{column} AS VARCHAR)", f"CAST(w.{column} AS VARCHAR)"
        conditions.append(f"{left} IS NOT DISTINCT FROM {right}")
    wanted = frame_to_arrow(keys)
    connection = duckdb.connect(config={"threads": os.cpu_count() or 1})
    try:
        connection.register("wanted", wanted)
        found = connection.execute(
            "SELECT t.file_row_number FROM read_parquet(?, file_row_number = true) t "
            f"SEMI JOIN wanted w ON {' AND '.join(conditions)} ORDER BY 1",
            [str(path)],
        ).fetchnumpy()["file_row_number"]
    finally:
        connection.close()
    return np.asarray(found, dtype=np.int64)


def _value_kind(series: pd.Series) -> tuple[str, bool]:
    """``(kind, zoned)`` of a column: ``time`` (zoned or not), ``bool``, ``number`` or
    ``other`` (text); categories count as their categories' kind."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        dtype = dtype.categories.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "time", getattr(dtype, "tz", None) is not None
    if pd.api.types.is_bool_dtype(dtype):
        return "bool", False
    if pd.api.types.is_numeric_dtype(dtype):
        return "number", False
    return "other", False


def _match_keys(frame: pd.DataFrame, keys: pd.DataFrame) -> pd.DataFrame:
    """Return the rows of ``frame`` (its index kept) whose key columns equal a row of ``keys``."""
    columns = list(keys.columns)
    left, right = frame[columns], keys.drop_duplicates()
    differing = [c for c in columns if left[c].dtype != right[c].dtype]
    if differing:
        left = left.assign(**{c: left[c].astype(str) for c in differing})
        right = right.assign(**{c: right[c].astype(str) for c in differing})
    hits = left.reset_index(names="_churn_row").merge(right, on=columns, how="inner")
    return frame.loc[hits["_churn_row"].to_numpy()]


def read_latest_rows(path: str | Path, column: str = "cutoff") -> pd.DataFrame:
    """Read only the rows of a Parquet file whose ``column`` holds its latest value.

    The column alone is scanned for its maximum, then :func:`read_frame_rows` reads those rows.
    A file without ``column``, or with no value in it, is read whole (:func:`read_frame`).
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    dataset = ds.dataset(str(path), format="parquet")
    if column not in dataset.schema.names:
        return read_frame(path)
    latest = pc.max(dataset.to_table(columns=[column])[column]).as_py()
    if latest is None:
        return read_frame(path)
    return read_frame_rows(path, {column: [latest]})


def read_tables(
    directory: str | Path, names: list[str] | tuple[str, ...]
) -> dict[str, pd.DataFrame]:
    """Read the validated tables present in ``directory`` (``<name>.parquet``).

    Absent tables are simply not in the result; callers decide whether that is an error.
    """
    directory = Path(directory)
    out: dict[str, pd.DataFrame] = {}
    for name in names:
        path = directory / table_file_name(name)
        if path.exists():
            out[name] = pd.read_parquet(path)
    return out
