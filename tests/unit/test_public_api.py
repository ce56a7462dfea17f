"""The public API in churn/__init__.py: complete, lazy and free of heavy imports."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import churn

SRC = Path(churn.__file__).resolve().parents[1]


@pytest.mark.parametrize("name", churn.__all__)
def test_every_public_name_resolves_to_its_definition(name: str) -> None:
    value = getattr(churn, name)
    if name == "__version__":
        assert value == "0.1.0"
        return
    defining_module = importlib.import_module(churn._EXPORTS[name])
    assert value is getattr(defining_module, name)
    assert name in dir(churn)


def test_public_names_are_unique_and_not_submodule_names() -> None:
    assert len(churn.__all__) == len(set(churn.__all__))
    submodules = {path.stem for path in (SRC / "churn").iterdir() if path.name != "__init__.py"}
    assert not submodules & set(churn.__all__)


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'not_public'"):
        _ = churn.not_public


def test_submodules_still_import_through_the_package() -> None:
    # ``from churn import io`` must fall back to the submodule, not stop at __getattr__.
    code = "from churn import io, errors; print(io.__name__, errors.__name__)"
    shown = _run_python(code)
    assert shown.split() == ["churn.io", "churn.errors"]


def test_import_churn_loads_no_heavy_dependency_and_no_submodule() -> None:
    code = (
        "import json, sys; before = set(sys.modules); import churn; "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    loaded = set(json.loads(_run_python(code)))
    assert "churn" in loaded  # the probe really imported the package
    heavy = {"pandas", "numpy", "mlflow", "lightgbm", "duckdb", "sklearn", "pyarrow", "pydantic"}
    assert not {module.split(".")[0] for module in loaded} & heavy
    assert not {module for module in loaded if module.startswith("churn.")}


def test_first_access_loads_only_the_defining_module_chain() -> None:
    code = (
        "import json, sys, churn; churn.ChurnError; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('churn'))))"
    )
    assert json.loads(_run_python(code)) == ["churn", "churn.errors"]


def _run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter that imports churn from this tree; return stdout."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    "stage",
    ["simulate", "ingest", "label", "features", "report", "scoring_population", "check_data"],
)
def test_stages_that_load_no_model_import_no_model_library(stage: str) -> None:
    # Each stage runs in its own process under dvc repro: LightGBM (with the scikit-learn and
    # SciPy it pulls in) took 1 s of the features stage's start when a constant came from the
    # model library.
    code = (
        f"import json, sys; import churn.cli, churn.stages.{stage}; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    loaded = {module.split(".")[0] for module in json.loads(_run_python(code))}
    assert "churn" in loaded  # the probe really imported the stage
    assert not loaded & {"lightgbm", "sklearn", "scipy", "mlflow", "matplotlib", "shap"}
