"""Load a repository script that is not part of the package (benchmarks/, pipelines/)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_script(relative_path: str) -> ModuleType:
    """Import the script at ``relative_path`` (from the repository root) as a module.

    Args:
        relative_path: e.g. ``"benchmarks/bench_pipeline.py"``.

    Returns:
        The executed module, named after the file.
    """
    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
