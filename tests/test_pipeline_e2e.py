"""End-to-end: the real `dvc repro` on a small simulated data set, then `dvc exp run -S`.

Runs the repository's own dvc.yaml in a scratch git repository so the developer's workspace
is never touched. Slow (a couple of minutes): marked ``slow``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    completed = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert completed.returncode == 0, (
        f"{' '.join(cmd)} failed ({completed.returncode})\n"
        f"--- stdout\n{completed.stdout[-6000:]}\n--- stderr\n{completed.stderr[-6000:]}"
    )
    return completed


@pytest.fixture(scope="module")
def pipeline_repo(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    work = tmp_path_factory.mktemp("e2e")
    for name in ("dvc.yaml", "pyproject.toml"):
        shutil.copy(REPO / name, work / name)
    shutil.copytree(REPO / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["simulate"].update(customers=1500, months=18, seed=11)
    params["evaluate"]["backtest_cutoffs"] = 2
    params["explain"]["sample_rows"] = 300
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (work / ".gitignore").write_text("/mlflow.db\n/mlartifacts/\n")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYSPARK_PYTHON"] = sys.executable
    env["TZ"] = "UTC"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    _run(["git", "init", "-q"], work, env)
    _run([sys.executable, "-m", "dvc", "init", "-q"], work, env)
    _run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], work, env)
    _run([*git, "add", "-A"], work, env)
    _run([*git, "commit", "-qm", "init"], work, env)
    _run([sys.executable, "-m", "dvc", "repro"], work, env)
    return work, env


def test_dvc_repro_runs_every_stage(pipeline_repo):
    work, _ = pipeline_repo
    for path in (
        "data/raw/customers.parquet",
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
    shown = _run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], work, env)
    assert "roc_auc" in shown.stdout
    _run([sys.executable, "-m", "dvc", "plots", "show", "-o", "dvc_plots"], work, env)
    assert (work / "dvc_plots" / "index.html").exists()


def test_dvc_exp_run_with_a_changed_parameter(pipeline_repo):
    work, env = pipeline_repo
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    _run([*git, "add", "-A"], work, env)
    _run([*git, "commit", "-qm", "after repro"], work, env)
    _run(
        [sys.executable, "-m", "dvc", "exp", "run", "-S", "train.learning_rate=0.1"], work, env
    )
    shown = _run([sys.executable, "-m", "dvc", "exp", "show", "--json"], work, env)
    assert "0.1" in shown.stdout
