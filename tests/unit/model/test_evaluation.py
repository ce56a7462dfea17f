"""Tests for churn.evaluate: oracle, segments, backtest, metrics.json and plot files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from support.mlflow_store import fresh_store
from support.tiny import TINY_CATALOG, make_feature_frame

from churn.config import Params, parse_params
from churn.errors import ModelError
from churn.model.artifact import write_manifest
from churn.model.baseline import save_baseline
from churn.model.evaluation import (
    check_model_below_oracle,
    compute_auc_standard_error,
    compute_oracle_probabilities,
    flatten_for_mlflow,
    run_rolling_backtest,
    summarize_segments,
)
from churn.model.fit import train_churn_models
from churn.stages.evaluate import run_evaluate
from churn.stages.simulate.engine import OFF_MARKER_FILE
from churn.stages.train import BASELINE_FILE, REGISTRY_FILE


def tiny_params(**evaluate) -> Params:
    return parse_params(
        {
            "label": {"horizon_days": 20, "grace_days": 5},
            "train": {"min_child_samples": 20, "n_estimators": 60, "num_threads": 1},
            "evaluate": {"backtest_cutoffs": 2, **evaluate},
        }
    )


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


def test_oracle_multiplies_monthly_survival_inside_the_horizon():
    truth = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b"],
            # Naive timestamps are read as UTC.
            "month_start": pd.to_datetime(
                ["2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01", "2024-01-01"]
            ),
            "churn_probability": [0.1, 0.2, 0.5, 0.9, 0.7],
        }
    )
    keys = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "zz"],
            "cutoff": [utc("2025-01-01"), utc("2025-02-01"), utc("2025-01-01"), utc("2025-01-01")],
        }
    )
    oracle = compute_oracle_probabilities(keys, truth, horizon_days=45)
    # a@Jan: [Jan 1, Feb 15) holds Jan and Feb; a@Feb: [Feb 1, Mar 18) holds Feb and Mar;
    # b has no month in its window; zz is not in the truth at all.
    np.testing.assert_allclose(oracle, [1 - 0.9 * 0.8, 1 - 0.8 * 0.5, 0.0, 0.0])


def test_oracle_equals_a_naive_loop_on_random_rows():
    rng = np.random.default_rng(3)
    months = pd.date_range("2024-01-01", periods=18, freq="MS", tz="UTC")
    truth = pd.DataFrame(
        {
            "customer_id": np.repeat(np.arange(30), len(months)),
            "month_start": np.tile(months, 30),
            "churn_probability": rng.uniform(0, 0.3, 30 * len(months)),
        }
    ).sample(frac=0.8, random_state=1)
    keys = pd.DataFrame(
        {
            "customer_id": rng.integers(0, 35, 200).astype(str),  # 30-34: not in the truth
            "cutoff": rng.choice(months[3:12], 200),
        }
    )
    expected = []
    for customer, cutoff in keys.itertuples(index=False):
        survival = 1.0
        for row in truth.itertuples(index=False):
            inside = cutoff <= row.month_start < cutoff + pd.Timedelta(days=75)
            if str(row.customer_id) == customer and inside:
                survival *= 1 - row.churn_probability
        expected.append(1 - survival)
    np.testing.assert_allclose(compute_oracle_probabilities(keys, truth, 75), expected)
    assert compute_oracle_probabilities(keys.iloc[:0], truth, 75).shape == (0,)


def test_oracle_window_end_is_exclusive():
    truth = pd.DataFrame(
        {
            "customer_id": ["a", "a"],
            "month_start": [utc("2025-01-01"), utc("2025-03-02")],
            "churn_probability": [0.25, 0.5],
        }
    )
    keys = pd.DataFrame({"customer_id": ["a"], "cutoff": [utc("2025-01-01")]})
    # 2025-01-01 + 60 days = 2025-03-02: that month starts exactly at the end and is outside.
    np.testing.assert_allclose(compute_oracle_probabilities(keys, truth, 60), [0.25])


def test_oracle_compares_instants_whatever_the_time_zone_or_its_absence():
    """A month start given in another zone, or naive (read as UTC), is the same instant."""
    instants = [utc("2025-01-01"), utc("2025-03-02")]
    truth = pd.DataFrame(
        {
            "customer_id": [7, 7],  # integer ids, as an export has them
            "month_start": pd.DatetimeIndex(instants).tz_convert("America/New_York"),
            "churn_probability": [0.25, 0.5],
        }
    )
    naive = pd.DataFrame({"customer_id": ["7"], "cutoff": [pd.Timestamp("2025-01-01")]})
    aware = naive.assign(cutoff=[utc("2025-01-01")])
    for keys in (naive, aware):
        np.testing.assert_allclose(compute_oracle_probabilities(keys, truth, 60), [0.25])
        np.testing.assert_allclose(compute_oracle_probabilities(keys, truth, 61), [1 - 0.75 * 0.5])


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


def test_backtest_retrains_per_cutoff_and_skips_thin_ones(features):
    entries, notes = run_rolling_backtest(features, TINY_CATALOG, tiny_params(backtest_cutoffs=3))
    assert [entry["cutoff"] for entry in entries] == ["2025-04-01", "2025-05-01", "2025-06-01"]
    # 2025-04-01 leaves validation at 03-01 and train at 01-01..02-01: enough rows here.
    for entry in entries:
        assert entry["n_test"] == 500
        assert 0.5 < entry["roc_auc"] <= 1.0
        assert {"pr_auc", "brier", "log_loss", "lift_top_decile", "baseline_roc_auc"} <= set(entry)
    assert notes == []
    params = tiny_params(backtest_cutoffs=2)
    strict = params.model_copy(
        update={"train": params.train.model_copy(update={"min_positives": 10_000})}
    )
    skipped, notes = run_rolling_backtest(features, TINY_CATALOG, strict)
    assert all("train.min_positives" in entry["skipped"] for entry in skipped)
    assert notes == ["backtest: 2 of 2 cutoff(s) skipped"]


def test_backtest_is_empty_in_entity_mode():
    frame = make_feature_frame(n_customers=100, n_cutoffs=1)
    entries, notes = run_rolling_backtest(frame, TINY_CATALOG, tiny_params())
    assert entries == [] and "entity" in notes[0]


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


def _rank_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Naive AUC: the share of (churner, non-churner) pairs ranked right (ties half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (pos.size * neg.size))


def test_auc_standard_error_matches_the_spread_of_resampled_aucs():
    rng = np.random.default_rng(0)
    aucs = []
    for _ in range(300):
        labels = np.r_[np.ones(40), np.zeros(160)].astype(int)
        scores = rng.normal(labels * 1.2, 1.0)
        aucs.append(_rank_auc(labels, scores))
    mean = float(np.mean(aucs))

    se = compute_auc_standard_error(mean, 40, 160)

    assert se == pytest.approx(float(np.std(aucs)), rel=0.2)
    assert np.isnan(compute_auc_standard_error(0.8, 0, 10))


def test_model_within_noise_of_the_oracle_passes_and_far_above_fails(model_dir):
    from churn.model.artifact import ChurnModel

    model = ChurnModel.load(model_dir)
    labels = np.r_[np.ones(100), np.zeros(900)].astype(int)
    se = compute_auc_standard_error(0.80, 100, 900)
    params = tiny_params()

    assert check_model_below_oracle(labels, 0.80 + 2.9 * se, 0.80, model, params) is None
    with pytest.raises(ModelError, match=r"beats the simulator oracle's 0\.800"):
        check_model_below_oracle(labels, 0.80 + 3.1 * se, 0.80, model, params)
