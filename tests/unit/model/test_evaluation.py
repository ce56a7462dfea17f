"""Tests for churn.model.evaluation and the evaluate stage: segments, metrics.json, plots."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from support.mlflow_store import fresh_store
from support.tiny import TINY_CATALOG, make_backtest_params, make_feature_frame

from churn.config import Params
from churn.model.artifact import write_manifest
from churn.model.baseline import save_baseline
from churn.model.evaluation import flatten_for_mlflow, summarize_segments
from churn.model.fit import train_churn_models
from churn.stages.evaluate import run_evaluate
from churn.stages.simulate.engine import OFF_MARKER_FILE
from churn.stages.train import BASELINE_FILE, REGISTRY_FILE


def tiny_params(**evaluate) -> Params:
    return make_backtest_params(evaluate={"backtest_cutoffs": 2, **evaluate})


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    return make_feature_frame(n_customers=500, n_cutoffs=6, seed=21)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, features) -> Path:
    """An exported model directory made by the training core (no MLflow)."""
    result = train_churn_models(features, TINY_CATALOG, tiny_params())
    directory = tmp_path_factory.mktemp("model") / "churn"
    result.model.save(directory)
    save_baseline(result.baseline, directory / BASELINE_FILE)
    write_manifest(directory)
    return directory


@pytest.fixture
def mlflow_store(tmp_path, tmp_path_factory) -> Iterator[str]:
    """A fresh real SQLite MLflow store, set as ``MLFLOW_TRACKING_URI``."""
    with fresh_store(tmp_path, tmp_path_factory.getbasetemp()) as uri:
        yield uri


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_segments_skip_single_class_levels_and_absent_columns():
    test = pd.DataFrame({"plan": ["a", "a", "b", "b", None, None]})
    predictions = pd.DataFrame(
        {
            "label": [0, 1, 1, 1, 0, 1],
            "churn_probability": [0.1, 0.9, 0.5, 0.6, 0.7, 0.2],
            "baseline_probability": [0.2, 0.3, 0.5, 0.5, 0.5, 0.5],
        }
    )
    segments, notes = summarize_segments(test, ["plan", "region"], predictions)
    assert segments == {
        "plan": {
            "a": {"n": 2, "positives": 1, "roc_auc": 1.0, "baseline_roc_auc": 1.0},
            "missing": {"n": 2, "positives": 1, "roc_auc": 0.0, "baseline_roc_auc": 0.5},
        }
    }
    assert any("plan=b" in note for note in notes)
    assert any("'region'" in note for note in notes)


def make_truth(features: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
    """A truth table whose hazard is high in the month of each churned row's cutoff."""
    rows = features.dropna(subset=["label"])
    return pd.DataFrame(
        {
            "customer_id": rows["customer_id"],
            "month_start": rows["cutoff"],
            "churn_probability": np.where(rows["label"].astype(int) == 1, 0.8, 0.02),
        }
    )


@pytest.fixture
def evaluated(tmp_path, features, model_dir, mlflow_store):
    """run_evaluate with truth, and a registry.json pointing at a real MLflow run."""
    client = MlflowClient(mlflow_store)
    experiment = client.create_experiment("churn-eval", artifact_location=str(tmp_path / "art"))
    run_id = client.create_run(experiment).info.run_id
    local_model = tmp_path / "model"
    local_model.mkdir()
    for path in model_dir.iterdir():
        (local_model / path.name).write_bytes(path.read_bytes())
    (local_model / REGISTRY_FILE).write_text(json.dumps({"run_id": run_id}))
    features_path = tmp_path / "features.parquet"
    features.to_parquet(features_path)
    truth_dir = tmp_path / "truth"
    truth_dir.mkdir()
    params = tiny_params()
    make_truth(features, params.label.horizon_days).to_parquet(
        truth_dir / "customer_months.parquet"
    )
    metrics = run_evaluate(
        params,
        features_path,
        local_model,
        truth_dir,
        tmp_path / "reports" / "metrics.json",
        tmp_path / "reports" / "plots",
    )
    return tmp_path / "reports", metrics, client, run_id


def test_evaluate_with_a_truth_folder_holding_only_the_simulator_off_marker(
    tmp_path, features, model_dir
):
    """data.source: files leaves only a marker in the truth folder: every metric but the oracle."""
    truth_dir = tmp_path / "truth"
    truth_dir.mkdir()
    (truth_dir / OFF_MARKER_FILE).write_text("simulator off")
    features_path = tmp_path / "features.parquet"
    features.to_parquet(features_path)

    metrics = run_evaluate(
        tiny_params(), features_path, model_dir, truth_dir, tmp_path / "metrics.json",
        tmp_path / "plots",
    )

    assert not [key for key in metrics["test"] if key.startswith("oracle")]
    assert 0.0 <= metrics["test"]["roc_auc"] <= 1.0
    assert metrics["baseline"]["test"]["roc_auc"] is not None
    assert (tmp_path / "plots" / "roc.csv").exists()


def test_metrics_json_has_every_required_key(evaluated):
    reports, returned, _, _ = evaluated
    metrics = json.loads((reports / "metrics.json").read_text())
    assert metrics == returned
    test = metrics["test"]
    for key in (
        "roc_auc",
        "pr_auc",
        "brier",
        "ece",
        "log_loss",
        "lift_top_decile",
        "capture_top_decile",
        "revenue_capture_top_decile",
        "oracle_roc_auc",
        "oracle_lift_top_decile",
        "roc_auc_ratio_to_oracle",
        "raw_roc_auc",
        "raw_pr_auc",
    ):
        assert isinstance(test[key], float), key
    assert set(test["lift_at"]) == {"5", "10", "20"}
    assert test["roc_auc_ratio_to_oracle"] == pytest.approx(
        test["roc_auc"] / test["oracle_roc_auc"]
    )
    assert test["oracle_roc_auc"] > test["roc_auc"]  # the truth here is nearly the label
    assert {"roc_auc", "pr_auc", "brier", "ece", "lift_top_decile"} <= set(
        metrics["baseline"]["test"]
    )
    assert set(metrics["segments"]) == {"plan", "acquisition_channel"}
    assert set(metrics["segments"]["plan"]) == {"starter", "pro", "business"}
    assert metrics["segments"]["plan"]["pro"]["roc_auc"] > 0.5
    assert [entry["cutoff"] for entry in metrics["backtest"]] == ["2025-05-01", "2025-06-01"]
    assert metrics["split"] == {"mode": "time", "test_cutoffs": ["2025-06-01"], "n_test": 500}
    assert any("billing_period" in note for note in metrics["notes"])


def test_plot_files_and_test_predictions_are_written(evaluated):
    reports, _, _, _ = evaluated
    plots = reports / "plots"
    expected = {
        "roc.csv": ["fpr", "tpr"],
        "precision_recall.csv": ["recall", "precision"],
        "calibration.csv": ["mean_predicted", "fraction_positive"],
        "gains.csv": ["fraction_customers", "fraction_churners_captured"],
    }
    for name, columns in expected.items():
        table = pd.read_csv(plots / name)
        assert list(table.columns) == columns
        assert 2 <= len(table) <= 500
    predictions = pd.read_parquet(plots / "test_predictions.parquet")
    assert list(predictions.columns) == [
        "customer_id",
        "cutoff",
        "label",
        "churn_probability",
        "baseline_probability",
        "oracle_probability",
    ]
    assert len(predictions) == 500
    assert predictions["cutoff"].dt.tz is not None


def test_evaluation_metrics_land_on_the_training_run(evaluated):
    _, metrics, client, run_id = evaluated
    logged = client.get_run(run_id).data.metrics
    assert logged["eval_test_roc_auc"] == pytest.approx(metrics["test"]["roc_auc"])
    assert logged["eval_test_lift_at_10"] == pytest.approx(metrics["test"]["lift_at"]["10"])
    assert logged["eval_baseline_test_pr_auc"] == pytest.approx(
        metrics["baseline"]["test"]["pr_auc"]
    )
    assert "eval_test_oracle_roc_auc" in logged


def test_flatten_for_mlflow_keeps_numbers_of_test_blocks_only():
    flat = flatten_for_mlflow(
        {
            "test": {"roc_auc": 0.8, "lift_at": {"5": 3.0}, "revenue_capture_top_decile": None},
            "baseline": {"test": {"roc_auc": 0.7}},
            "segments": {"plan": {"pro": {"roc_auc": 0.9}}},
        }
    )
    assert flat == {
        "eval_test_roc_auc": 0.8,
        "eval_test_lift_at_5": 3.0,
        "eval_baseline_test_roc_auc": 0.7,
    }


def test_evaluate_without_truth_or_registry_still_writes_everything(tmp_path, features, model_dir):
    features_path = tmp_path / "features.parquet"
    features.to_parquet(features_path)
    metrics = run_evaluate(
        tiny_params(backtest_cutoffs=0),
        features_path,
        model_dir,
        tmp_path / "no-truth",
        tmp_path / "metrics.json",
        tmp_path / "plots",
    )
    assert "oracle_roc_auc" not in metrics["test"]
    assert metrics["backtest"] == []
    assert (tmp_path / "plots" / "roc.csv").exists()


def test_without_memory_for_workers_the_fits_run_here_with_the_numbers_of_workers(
    tmp_path, features, model_dir, monkeypatch, caplog
):
    """Two threads ask for two fit workers; with no memory free for them the backtest's refits
    run in the stage's process, one LightGBM thread each, and give the workers' numbers."""
    import churn.stages.evaluate as evaluate_stage

    features_path = tmp_path / "features.parquet"
    features.to_parquet(features_path)
    params = make_backtest_params(evaluate={"backtest_cutoffs": 3}, num_threads=2)

    def evaluate(folder: str) -> dict:
        return run_evaluate(
            params, features_path, model_dir, None, tmp_path / folder / "m.json", tmp_path / folder
        )

    with_workers = evaluate("workers")
    monkeypatch.setattr(evaluate_stage, "read_available_memory", lambda: 0)
    with caplog.at_level("WARNING", logger="churn.stages.fit_workers"):
        in_process = evaluate("in_process")
    assert "one after another in process" in caplog.text
    refitted = [entry for entry in with_workers["backtest"] if "roc_auc" in entry]
    assert len(refitted) >= 2
    assert in_process["backtest"] == with_workers["backtest"]
    assert in_process["test"] == with_workers["test"]
