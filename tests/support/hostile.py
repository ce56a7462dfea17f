"""Hostile inputs for security tests: files whose mere loading would run code."""

from __future__ import annotations

import pickle
from pathlib import Path


class _CreatesMarker:
    """Unpickling this object calls ``open(marker, "w")``: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def write_marker_pickle(path: str | Path, marker: str | Path) -> Path:
    """Write a pickle to ``path`` that creates ``marker`` if anything unpickles it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(_CreatesMarker(Path(marker))))
    return path
