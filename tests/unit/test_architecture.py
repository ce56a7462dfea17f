"""The import architecture: the import-linter contracts hold and no churn modules form a cycle.

The contracts live in pyproject.toml (``[tool.importlinter]``) and run through the real
``lint-imports`` command against this tree's ``src``. The cycle check reads every ``import``
statement with ``ast``, including imports inside functions and under ``TYPE_CHECKING``
(a cycle there still couples the modules). Importing ``churn.a.b`` is counted as an edge to
``churn.a.b`` only, not to the packages above it, whose ``__init__`` files import nothing.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

import churn

ROOT = Path(__file__).resolve().parents[2]
SRC = Path(churn.__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def run_lint_imports(src: Path) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` with this repository's contracts on the ``churn`` under ``src``."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(PYPROJECT)],
        capture_output=True,
        text=True,
        check=False,
        cwd=src,
        env={"PYTHONPATH": str(src), "PATH": f"{LINT_IMPORTS.parent}:/usr/bin:/bin"},
        timeout=120,
    )


def module_files(src: Path) -> dict[str, Path]:
    """Return dotted module name -> file for every module of the ``churn`` package."""
    modules = {}
    for path in sorted((src / "churn").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_churn_modules(module: str, path: Path, known: Iterable[str]) -> set[str]:
    """Return the churn modules ``module`` imports anywhere in its file (functions included).

    ``from churn.a import b`` counts as importing ``churn.a.b`` when that is a module, else
    ``churn.a``; relative imports are resolved against the module's package.
    """
    known = set(known)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                imported.add(candidate if candidate in known else source)
    return {name for name in imported if name.split(".")[0] == "churn" and name != module}


def build_import_graph(src: Path) -> dict[str, set[str]]:
    """Return module -> churn modules it imports, for the ``churn`` package under ``src``."""
    files = module_files(src)
    return {module: imported_churn_modules(module, path, files) for module, path in files.items()}


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[set[str]]:
    """Return the strongly connected components with more than one module (Tarjan, iterative).

    Edges to names that are not keys of ``graph`` are ignored.
    """
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[set[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = lowlink[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in graph:
                    continue
                if successor not in index:
                    index[successor] = lowlink[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(graph[successor])))
                    break
                if successor in on_stack:
                    lowlink[node] = min(lowlink[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    lowlink[parent] = min(lowlink[parent], lowlink[node])
                if lowlink[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        cycles.append(component)
    return cycles


def test_import_contracts_are_kept() -> None:
    contracts = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    assert {contract["id"] for contract in contracts} == {
        "layers",
        "libraries-independent",
        "treeshap-leaf",
    }

    result = run_lint_imports(SRC)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(contracts)} kept, 0 broken." in result.stdout


def test_contracts_catch_upward_sideways_and_leaf_imports_inside_functions(
    tmp_path: Path,
) -> None:
    shutil.copytree(SRC / "churn", tmp_path / "churn", ignore=shutil.ignore_patterns("*.pyc"))
    violations = {
        "errors.py": "from churn.cli import app",  # bottom layer importing the top
        "model/split.py": "from churn.labels.build import build_labels",  # library -> library
        "model/treeshap/tables.py": "from churn.errors import ModelError",  # the leaf imports churn
    }
    for relative, statement in violations.items():
        path = tmp_path / "churn" / relative
        path.write_text(path.read_text() + f"\n\ndef _violation():\n    {statement}\n")

    result = run_lint_imports(tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Contracts: 0 kept, 3 broken." in result.stdout
    assert "churn.errors is not allowed to import churn.cli" in result.stdout
    assert "churn.model is not allowed to import churn.labels" in result.stdout
    assert "churn.model.treeshap is not allowed to import churn.errors" in result.stdout


def test_a_new_top_level_module_needs_a_layer(tmp_path: Path) -> None:
    shutil.copytree(SRC / "churn", tmp_path / "churn", ignore=shutil.ignore_patterns("*.pyc"))
    (tmp_path / "churn" / "unplaced.py").write_text('"""A module nobody gave a layer."""\n')

    result = run_lint_imports(tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "churn.unplaced" in result.stdout


def test_no_import_cycles_among_churn_modules() -> None:
    graph = build_import_graph(SRC)
    # The scanner sees module-level and function-level imports (else it would prove nothing).
    assert "churn.config" in graph["churn.cli"]
    assert "churn.tracking.runs" in graph["churn.stages.train"]  # imported inside run_train

    assert find_cycles(graph) == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"a"}}, [{"a", "b"}]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [{"a", "b", "c"}]),
        ({"a": {"b", "x"}, "b": set(), "c": {"d"}, "d": {"c"}}, [{"c", "d"}]),
    ],
)
def test_find_cycles_on_small_graphs(graph: dict[str, set[str]], expected: list[set[str]]) -> None:
    assert sorted(map(sorted, find_cycles(graph))) == sorted(map(sorted, expected))


def test_scanner_resolves_relative_and_from_package_imports(tmp_path: Path) -> None:
    package = tmp_path / "churn"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "io.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "a.py").write_text(
        "from . import b\nfrom .. import io\n\ndef later():\n    from churn.sub.b import thing\n"
    )
    (package / "sub" / "b.py").write_text("import churn.sub.a\nimport pandas\n")

    graph = build_import_graph(tmp_path)

    assert graph["churn.sub.a"] == {"churn.sub.b", "churn.io"}
    assert graph["churn.sub.b"] == {"churn.sub.a"}
    assert find_cycles(graph) == [{"churn.sub.a", "churn.sub.b"}]
