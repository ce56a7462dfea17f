"""End-to-end: the real `dvc repro` on a small simulated data set, then `dvc exp run -S`.

Runs the repository's own dvc.yaml in a scratch git repository so the developer's workspace
is never touched. Slow (a couple of minutes): marked ``slow``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from support.scratch_project import GIT, build_scratch_project, run

pytestmark = pytest.mark.slow


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


def test_dvc_exp_run_with_a_changed_parameter(pipeline_repo):
    work, env = pipeline_repo
    run([*GIT, "add", "-A"], work, env)
    run([*GIT, "commit", "-qm", "after repro"], work, env)
    run([sys.executable, "-m", "dvc", "exp", "run", "-S", "train.learning_rate=0.1"], work, env)
    shown = run([sys.executable, "-m", "dvc", "exp", "show", "--json"], work, env)
    # Exactly one experiment, and it ran with the changed parameter.
    tried = [
        state["data"]["params"]["params.yaml"]["data"]["train"]["learning_rate"]
        for commit in json.loads(shown)
        for experiment in commit.get("experiments") or []
        for state in experiment["revs"]
    ]
    assert tried == [0.1]
