"""An exported model directory as `churn train` writes it, from the training core (no MLflow)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from churn.config import Params, parse_params
from churn.model.artifact import write_manifest
from churn.model.baseline import save_baseline
from churn.model.fit import TrainResult, train_churn_models
from churn.stages.train import BASELINE_FILE
from support.tiny import TINY_CATALOG


def tiny_train_params() -> Params:
    """Parameters small enough for a test: few trees, one thread, a short backtest."""
    return parse_params(
        {
            "label": {"horizon_days": 20, "grace_days": 5},
            "train": {"min_child_samples": 20, "n_estimators": 60, "num_threads": 1},
            "evaluate": {"backtest_cutoffs": 2},
        }
    )


def export_model_dir(features: pd.DataFrame, directory: Path) -> TrainResult:
    """Train on ``features`` and write the model files, ``baseline.json`` and the manifest."""
    result = train_churn_models(features, TINY_CATALOG, tiny_train_params())
    result.model.save(directory)
    save_baseline(result.baseline, directory / BASELINE_FILE)
    write_manifest(directory)
    return result
