# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Retraining walkthrough: change a parameter, compare runs, let the gate decide
#
# 1. `dvc exp run -S train.learning_rate=...` retrains with one parameter changed; DVC re-runs
#    only the stages that depend on it (train, then evaluate, score, explain, report).
# 2. Every training run is in MLflow with its parameters, metrics and data version; we compare
#    them with `MlflowClient.search_runs`.
# 3. Each new model is registered; the gate gives it the `champion` alias only if it beats the
#    current champion on the same test rows, otherwise `challenger`. Scoring always uses
#    `models:/churn@champion`, so a worse model never reaches the nightly scores.
#
# Set `CHURN_PROJECT_DIR` to use another project (default: the repository this notebook lives
# in). The experiment's results stay in the workspace, as with any `dvc exp run`; `dvc exp show`
# lists it and `git checkout params.yaml dvc.lock && dvc checkout` returns to the committed
# state. The MLflow registry is not versioned by git: the gate's decision stands.

# %%
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml
from mlflow import MlflowClient


def find_project() -> Path:
    """Return $CHURN_PROJECT_DIR, else the nearest directory upwards holding dvc.yaml."""
    if os.environ.get("CHURN_PROJECT_DIR"):
        return Path(os.environ["CHURN_PROJECT_DIR"]).resolve()
    for directory in (Path.cwd(), *Path.cwd().parents):
        if (directory / "dvc.yaml").exists():
            return directory
    raise FileNotFoundError("no dvc.yaml above the working directory; set CHURN_PROJECT_DIR")


def stage_option(stage: str, option: str) -> str:
    """Return what dvc.yaml passes to ``churn <stage>`` as ``--<option>``.

    dvc.yaml is the only home of paths, so the notebook reads them there instead of repeating
    them; file names inside an output directory come from :mod:`churn.layout`.
    """
    stages = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]
    words = shlex.split(stages[stage]["cmd"])
    return words[words.index(f"--{option}") + 1]


def stage_path(stage: str, option: str) -> Path:
    """Return the path dvc.yaml passes to ``churn <stage>`` as ``--<option>``, in the project."""
    return PROJECT / stage_option(stage, option)


PROJECT = find_project()
LEARNING_RATE = 0.1  # the parameter we try; params.yaml holds the current value
# DVC stages call `churn`: make this interpreter's environment the one they run in.
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def dvc(*args: str) -> str:
    """Run a dvc command in the project and return its output (raising with it on failure)."""
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=PROJECT,
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"dvc {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


client = MlflowClient(tracking_uri=f"sqlite:///{PROJECT / 'mlflow.db'}")
aliases_before = dict(client.get_registered_model("churn").aliases)
print("registry before:", aliases_before)

# %% [markdown]
# ## 1. Run an experiment with one parameter changed

# %%
output = dvc("exp", "run", "-S", f"train.learning_rate={LEARNING_RATE}")
print(output[-1500:])
# `!` marks a metric the commit does not hold (outputs not committed yet).
print(
    dvc(
        "exp",
        "show",
        "--no-pager",
        "--md",
        "--drop",
        ".*",
        "--keep",
        r"Experiment|Created|train\.learning_rate|test\.(roc_auc|pr_auc|lift_top_decile)$",
    )
)

# %% [markdown]
# ## 2. Compare the training runs in MLflow

# %%
experiment = client.get_experiment_by_name("churn")
runs = client.search_runs(
    [experiment.experiment_id],
    filter_string="attributes.status = 'FINISHED'",
    order_by=["attributes.start_time DESC"],
    max_results=20,
)
runs = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]  # no tuning trials
comparison = pd.DataFrame(
    {
        "run": run.info.run_id[:8],
        "version": run.data.tags.get("registered_model_version"),
        "learning_rate": float(run.data.params["learning_rate"]),
        "test_pr_auc": run.data.metrics.get("test_pr_auc"),
        "test_roc_auc": run.data.metrics.get("test_roc_auc"),
        "baseline_test_pr_auc": run.data.metrics.get("baseline_test_pr_auc"),
        "gate": run.data.tags.get("gate_outcome"),
        "data (dvc md5)": (run.data.tags.get("dvc_features_md5") or "")[:10],
    }
    for run in runs
)
comparison.round(4)

# %% [markdown]
# ## 3. What the gate decided
#
# The training run records the decision in `reports/model.json` (and as run tags): which
# version it trained, whether the gate promoted it, and the champion every later stage uses.

# %%
decision = json.loads(stage_path("train", "model-record").read_text())
print(
    f"version {decision['trained_version']}: {decision['gate_outcome']} "
    f"({decision['gate_reason']}); later stages use champion v{decision['version']}"
)
aliases = dict(client.get_registered_model("churn").aliases)
for alias, version in sorted(aliases.items()):
    run = client.get_run(client.get_model_version("churn", version).run_id)
    print(
        f"@{alias}: version {version}, learning_rate {run.data.params['learning_rate']}, "
        f"test PR AUC {run.data.metrics['test_pr_auc']:.4f}"
    )

# %% [markdown]
# Whatever the outcome, scoring follows `@champion`: a rejected model only becomes
# `@challenger`, and the champion stays in place.

# %%
newest = comparison.iloc[0]
# The registry gives alias versions as numbers, the run tag as text: compare them as text.
champion_version = str(aliases["champion"])
if newest["gate"] == "rejected":
    assert champion_version != str(newest["version"]), "a rejected model must not be champion"
else:
    assert champion_version == str(newest["version"]), "a promoted model must be champion"
print(f"scoring uses models:/churn@champion = version {champion_version}")
