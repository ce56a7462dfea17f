"""Atomic outputs: a file or a folder of files appears whole or not at all.

Every write goes to a temporary path in the destination's parent directory and is renamed into
place, so a crash never leaves a half-written output (rename is atomic on POSIX within one file
system). A stage writing several files that belong together writes them into one staging
folder and swaps it in whole (:func:`atomic_directory`), so a kill leaves either the old set or
the new one.

Staging paths are named ``.<name>.churn-tmp-<pid>-<random>``; one left behind by a killed run
(its process is gone) is removed the next time anything is written to ``<name>``. They are
created beside the output, never inside it, so a DVC output directory never holds one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Collection, Iterator
from pathlib import Path

from churn.errors import ChurnError

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
