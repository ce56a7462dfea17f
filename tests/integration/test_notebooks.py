"""The notebooks run top to bottom (jupytext -> nbclient) against a real pipeline run.

The pipeline runs once per module in a scratch project (see ``scratch_project``), small enough
to take a few minutes; the notebooks find it through ``CHURN_PROJECT_DIR``. Slow: marked
``slow``. The retraining notebook changes the scratch project (``dvc exp run``), so it runs
after the explanation notebook.
"""

from __future__ import annotations

import os
from pathlib import Path

import jupytext
import pytest
from mlflow import MlflowClient
from nbclient import NotebookClient
from nbformat import NotebookNode
from support.scratch_project import REPO, build_scratch_project, pipeline_env

pytestmark = pytest.mark.slow
NOTEBOOKS = REPO / "notebooks"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    work, _ = build_scratch_project(
        tmp_path_factory.mktemp("notebooks"),
        {
            "simulate": {"customers": 1200, "months": 18},
            "evaluate": {"backtest_cutoffs": 1},
            "explain": {"sample_rows": 300},
        },
    )
    return work


def _execute(name: str, project: Path, monkeypatch: pytest.MonkeyPatch) -> NotebookNode:
    """Execute a notebook in a fresh kernel with the pipeline's environment."""
    env = pipeline_env()
    for key in [k for k in os.environ if k not in env]:
        monkeypatch.delenv(key)  # stray MLFLOW_/DVC_ settings must not reach the kernel
    for key, value in {**env, "CHURN_PROJECT_DIR": str(project)}.items():
        monkeypatch.setenv(key, value)
    notebook = jupytext.read(NOTEBOOKS / name)
    client = NotebookClient(
        notebook,
        timeout=1200,
        kernel_name="python3",
        resources={"metadata": {"path": str(project)}},
    )
    client.execute()  # raises CellExecutionError with the cell and traceback on failure
    return notebook


def _text(notebook: NotebookNode) -> str:
    chunks = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            chunks.append(output.get("text", ""))
            chunks.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(chunks)


def _images(notebook: NotebookNode) -> int:
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )


def test_notebooks_are_percent_scripts_only():
    scripts = sorted(p.name for p in NOTEBOOKS.glob("*.py"))
    assert scripts == ["01_explain_customer_and_segment.py", "02_retraining_walkthrough.py"]
    for script in scripts:
        notebook = jupytext.read(NOTEBOOKS / script)
        assert notebook.metadata["jupytext"]["text_representation"]["format_name"] == "percent"
        assert notebook.metadata["kernelspec"]["name"] == "python3"


def test_explain_customer_and_segment(project, monkeypatch):
    notebook = _execute("01_explain_customer_and_segment.py", project, monkeypatch)
    text = _text(notebook)
    assert "customers scored at" in text
    assert "churn probability" in text and "\n  1. " in text  # the top customer, its reasons
    assert "next renewal date" not in text  # contract timing is never a reason (issue 13)
    assert "plan '" in text  # the segment
    # The survival head's horizons and next decision date, and the report's customer cards.
    assert "within 30 days" in text and "within 90 days" in text
    assert "next decision (renewal or billing date): " in text
    assert "3 customers most likely to churn" in text
    assert _images(notebook) == 2  # the waterfall and the segment chart


def test_retraining_walkthrough(project, monkeypatch):
    notebook = _execute("02_retraining_walkthrough.py", project, monkeypatch)
    text = _text(notebook)
    # The experiment's model is in the registry (champion or challenger) with its parameter.
    assert ", learning_rate 0.1, test PR AUC" in text
    assert "scoring uses models:/churn@champion" in text
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    versions = client.search_model_versions("name = 'churn'")
    assert len(versions) == 2  # the first run and the experiment
    assert set(client.get_registered_model("churn").aliases) <= {"champion", "challenger"}
