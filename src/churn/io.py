"""All disk I/O of the pipeline: atomic writes and table reads.

Stage cores never touch the disk; runners call these helpers. Every write goes to a temporary
path in the destination directory and is renamed into place, so a crash never leaves a
half-written output (rename is atomic on POSIX within one file system).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from churn.layout import table_file_name


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
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    tmp = tmp_dir / path.name
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            # Directories cannot be replaced atomically in one call: move the old one aside
            # first so that the window without a complete output is a single rename.
            old = tmp_dir / (path.name + ".old")
            os.replace(path, old)
            os.replace(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


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


def find_table_file(directory: str | Path, table: str, file: str | None = None) -> Path | None:
    """Locate a raw table file in ``directory``.

    Args:
        directory: Directory holding the tables.
        table: Contract table name.
        file: Explicit file name (from the column mapping), or ``None`` to look for
            ``<table>.parquet``, ``<table>.csv``, or a ``<table>/`` Parquet directory.

    Returns:
        The path, or ``None`` if the table is absent.
    """
    directory = Path(directory)
    if file is not None:
        candidate = directory / file
        return candidate if candidate.exists() else None
    for name in (table_file_name(table), f"{table}.csv", table):
        candidate = directory / name
        if candidate.exists():
            return candidate
    return None


def read_frame(path: str | Path) -> pd.DataFrame:
    """Read a Parquet file or directory, or a CSV file (all columns as read by pandas)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        # Read identifiers and timestamps as text; ingest coerces types and reports failures.
        return pd.read_csv(path, dtype=str, keep_default_na=True)
    return pd.read_parquet(path)


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
