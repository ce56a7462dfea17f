"""End-to-end: the real `dvc repro` on a small simulated data set, the notebooks against it,
then `dvc exp run -S` from the retraining notebook.

Runs the repository's own dvc.yaml in a scratch git repository so the developer's workspace
is never touched. One pipeline run serves every test of the module (it is the slow part); the
notebooks find it through ``CHURN_PROJECT_DIR`` and run top to bottom (jupytext -> nbclient).
The retraining notebook changes the project (``dvc exp run``), so it runs last. Slow (a few
minutes): marked ``slow``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import jupytext
import pandas as pd
import pytest
from mlflow import MlflowClient
from nbclient import NotebookClient
from nbformat import NotebookNode
from support.scratch_project import REPO, build_scratch_project, pipeline_env, run

pytestmark = pytest.mark.slow
NOTEBOOKS = REPO / "notebooks"


@pytest.fixture(scope="module")
def pipeline_repo(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    return build_scratch_project(
        tmp_path_factory.mktemp("e2e"),
        {
            "simulate": {"customers": 1500, "months": 18, "seed": 11},
            "evaluate": {"backtest_cutoffs": 2},
            "explain": {"sample_rows": 300},
        },
    )


def test_dvc_repro_runs_every_stage(pipeline_repo):
    work, _ = pipeline_repo
    for path in (
        "data/simulated/raw/customers.parquet",
        "data/simulated/truth/customer_months.parquet",
        "data/validated/subscriptions.parquet",
        "data/labels/labels.parquet",
        "data/features/features.parquet",
        "models/churn/model.txt",
        "reports/metrics.json",
        "reports/plots/roc.csv",
        "data/scores/scores.parquet",
        "reports/index.html",
        "dvc.lock",
    ):
        assert (work / path).exists(), path
    metrics = json.loads((work / "reports/metrics.json").read_text())
    for key in ("roc_auc", "pr_auc", "brier", "ece", "lift_top_decile", "oracle_roc_auc"):
        assert key in metrics["test"], key
    assert "roc_auc" in metrics["baseline"]["test"]
    scores = pd.read_parquet(work / "data/scores/scores.parquet")
    assert len(scores) > 0
    assert scores["churn_probability"].between(0, 1).all()
    assert set(scores["risk_decile"].unique()) <= set(range(1, 11))


def test_dvc_metrics_and_plots_show(pipeline_repo):
    work, env = pipeline_repo
    shown = run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], work, env)
    # dvc reads the workspace's metrics file: its test ROC AUC is the one in the file.
    written = json.loads((work / "reports/metrics.json").read_text())["test"]["roc_auc"]
    assert written in [
        ((revision.get("data") or {}).get("reports/metrics.json") or {})
        .get("data", {})
        .get("test", {})
        .get("roc_auc")
        for revision in json.loads(shown).values()
    ]
    run([sys.executable, "-m", "dvc", "plots", "show", "-o", "dvc_plots"], work, env)
    assert (work / "dvc_plots" / "index.html").exists()


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


def test_explain_customer_and_segment(pipeline_repo, monkeypatch):
    notebook = _execute("01_explain_customer_and_segment.py", pipeline_repo[0], monkeypatch)
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


def test_retraining_walkthrough_runs_one_experiment_with_the_changed_parameter(
    pipeline_repo, monkeypatch
):
    work, env = pipeline_repo
    notebook = _execute("02_retraining_walkthrough.py", work, monkeypatch)
    text = _text(notebook)
    # The experiment's model is in the registry (champion or challenger) with its parameter.
    assert ", learning_rate 0.1, test PR AUC" in text
    assert "scoring uses models:/churn@champion" in text
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    versions = client.search_model_versions("name = 'churn'")
    assert len(versions) == 2  # the first run and the experiment
    assert set(client.get_registered_model("churn").aliases) <= {"champion", "challenger"}
    # DVC recorded exactly one experiment, and it ran with the changed parameter.
    shown = run([sys.executable, "-m", "dvc", "exp", "show", "--json"], work, env)
    tried = [
        state["data"]["params"]["params.yaml"]["data"]["train"]["learning_rate"]
        for commit in json.loads(shown)
        for experiment in commit.get("experiments") or []
        for state in experiment["revs"]
    ]
    assert tried == [0.1]
