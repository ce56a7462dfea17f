"""Tests for churn.tracking and run_train against a real SQLite MLflow store (no mocks)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from support.mlflow_store import fresh_store
from support.tiny import TINY_CATALOG, make_feature_frame

from churn.config import Params, parse_params
from churn.layout import BASELINE_FILE
from churn.model.artifact import ChurnModel
from churn.model.gate import is_better
from churn.stages.train import download_champion_export, run_train
from churn.tracking.loading import find_churn_model_dir
from churn.tracking.runs import (
    connect_training_run,
    flatten_params,
    log_run_metrics,
    read_dvc_md5,
)
from churn.tracking.signature import build_model_signature, pin_model_requirements
from churn.tracking.store import default_artifact_location, quiet_mlflow

FEATURES_MD5 = "0123456789abcdef0123456789abcdef"


def tiny_params(**train: Any) -> Params:
    return parse_params(
        {
            "label": {"horizon_days": 20, "grace_days": 5},
            "train": {"min_child_samples": 20, "n_estimators": 80, "num_threads": 1, **train},
        }
    )


def train_into(root: Path, params: Params, features: pd.DataFrame) -> dict[str, Any]:
    """Write features and catalog under ``root`` and run the train stage there."""
    (root / "reports").mkdir(parents=True, exist_ok=True)
    features.to_parquet(root / "features.parquet")
    TINY_CATALOG.to_csv(root / "reports" / "feature_catalog.csv", index=False)
    return run_train(
        params,
        root / "features.parquet",
        root / "models" / "churn",
        root / "reports" / "train.json",
        root / "reports" / "feature_catalog.csv",
        challenger_dir=root / "models" / "challenger",
        model_record_path=root / "reports" / "model.json",
    )


def _aliases(store: str) -> dict[str, str]:
    aliases = MlflowClient(store).get_registered_model("churn").aliases
    return {alias: str(version) for alias, version in aliases.items()}


@dataclass
class Trained:
    root: Path
    store: str
    client: MlflowClient
    report: dict[str, Any]
    features: pd.DataFrame
    commit: str

    @property
    def run_id(self) -> str:
        return self.report["registry"]["run_id"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Iterator[Trained]:
    """One training run in a throwaway git repository with a dvc.lock, logged to a real store."""
    root = tmp_path_factory.mktemp("trained")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    (root / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  features:\n    cmd: churn features\n    outs:\n"
        f"    - path: features.parquet\n      hash: md5\n      md5: {FEATURES_MD5}\n"
    )
    subprocess.run([*git, "add", "dvc.lock"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=root, check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()
    features = make_feature_frame(n_customers=400, n_cutoffs=5, seed=11)
    with (
        fresh_store(root, tmp_path_factory.getbasetemp()) as store,
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.chdir(root)
        report = train_into(root, tiny_params(tuning={"enabled": True, "trials": 2}), features)
        yield Trained(root, store, MlflowClient(store), report, features, commit)


@pytest.fixture
def mlflow_store(tmp_path, tmp_path_factory) -> Iterator[str]:
    """A fresh real SQLite MLflow store, set as ``MLFLOW_TRACKING_URI``."""
    with fresh_store(tmp_path, tmp_path_factory.getbasetemp()) as uri:
        yield uri


def test_run_logs_params_metrics_and_lineage_tags(trained):
    run = trained.client.get_run(trained.run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["learning_rate"] == "0.05"
    assert params["gate.metric"] == "pr_auc"
    assert params["label.horizon_days"] == "20"
    for part in ("validation", "test", "baseline_validation", "baseline_test"):
        for name in ("roc_auc", "pr_auc", "brier", "log_loss"):
            assert f"{part}_{name}" in metrics
    assert metrics["test_roc_auc"] == pytest.approx(trained.report["metrics"]["test"]["roc_auc"])
    assert tags["git_commit"] == trained.commit
    assert tags["git_dirty"] == "False"
    assert tags["dvc_features_md5"] == FEATURES_MD5
    assert tags["split_mode"] == "time"
    assert tags["gate_outcome"] == "first_model"
    assert tags["model_alias"] == "champion"
    assert "allow_high_auc" not in tags
    assert trained.report["high_auc_accepted"] is False


def test_each_tuning_trial_is_a_nested_run(trained):
    trials = trained.client.search_runs(
        [trained.client.get_run(trained.run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{trained.run_id}'",
    )
    assert sorted(run.info.run_name for run in trials) == ["trial-0", "trial-1"]
    for run in trials:
        assert {"learning_rate", "num_leaves", "max_depth"} <= set(run.data.params)
        assert "validation_pr_auc" in run.data.metrics
    tuned = trained.report["tuned_params"]
    params = trained.client.get_run(trained.run_id).data.params
    assert params["tuned.num_leaves"] == str(tuned["num_leaves"])


def test_run_records_each_slice_as_a_dataset_input_with_a_digest(trained):
    inputs = trained.client.get_run(trained.run_id).inputs.dataset_inputs
    by_context = {
        next(t.value for t in item.tags if t.key == "mlflow.data.context"): item.dataset
        for item in inputs
    }
    assert set(by_context) == {"training", "validation", "test"}
    sizes = trained.report["split"]["sizes"]
    for context, size_key in (
        ("training", "train"),
        ("validation", "validation"),
        ("test", "test"),
    ):
        dataset = by_context[context]
        assert dataset.digest
        assert dataset.name == f"features_{context}"
        assert json.loads(dataset.profile)["num_rows"] == sizes[size_key]
    assert len({d.digest for d in by_context.values()}) == 3


def test_run_artifacts_include_catalog_plots_and_the_registered_model(trained, tmp_path):
    artifacts = {item.path for item in trained.client.list_artifacts(trained.run_id)}
    assert {"feature_catalog.csv", "calibration.png", "feature_importance.csv", "split.json"} <= (
        artifacts
    )
    version = trained.client.get_model_version("churn", "1")
    assert version.run_id == trained.run_id
    assert _aliases(trained.store) == {"champion": "1"}
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri="models:/churn/1", dst_path=str(tmp_path), tracking_uri=trained.store
        )
    )
    # The pyfunc's churn_model artifact is the export folder (classifier, baseline, head),
    # logged once: not again on the run.
    assert (find_churn_model_dir(local) / "model.txt").exists()
    assert (find_churn_model_dir(local) / BASELINE_FILE).exists()
    assert "export" not in artifacts
    requirements = (local / "requirements.txt").read_text().split()
    assert requirements == pin_model_requirements()
    signature = mlflow.models.Model.load(str(local)).signature
    assert {"customer_id", "cutoff", "plan"} <= set(signature.inputs.input_names())
    assert "churn_probability" in signature.outputs.input_names()


def test_export_dir_holds_model_baseline_and_registry_record(trained):
    model_dir = trained.root / "models" / "churn"
    files = {"model.txt", "churn_model.json", "catalog.csv", "baseline.json", "registry.json"}
    assert files | {"manifest.json"} == {path.name for path in model_dir.iterdir()}
    # Every file the directory holds is vouched for by the manifest, the baseline included.
    assert set(json.loads((model_dir / "manifest.json").read_text())["files"]) == files
    registry = json.loads((model_dir / "registry.json").read_text())
    assert registry["run_id"] == trained.run_id
    assert registry["model_version"] == "1"
    assert registry["alias"] == "champion"
    assert registry["model_uri"] == "models:/churn/1"
    report = json.loads((trained.root / "reports" / "train.json").read_text())
    assert report["registry"]["gate"]["outcome"] == "first_model"
    assert report["split"]["sizes"]["test"] == 400
    model = ChurnModel.load(model_dir)
    assert model.metadata["n_test"] == 400


def test_registered_pyfunc_scores_like_the_exported_model(trained):
    rows = trained.features.drop(columns=["label"]).tail(25)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", trained.store)
        with quiet_mlflow():
            scored = mlflow.pyfunc.load_model("models:/churn@champion").predict(rows)
    exported = ChurnModel.load(trained.root / "models" / "churn")
    np.testing.assert_allclose(scored["churn_probability"], exported.predict_proba(rows))


def test_gate_keeps_the_champion_when_a_worse_model_arrives(mlflow_store, tmp_path):
    features = make_feature_frame(n_customers=400, n_cutoffs=5, seed=12)
    first = train_into(tmp_path, tiny_params(), features)
    assert first["registry"]["alias"] == "champion"
    # One stump: it ranks customers on a single split, clearly worse than the real model.
    worse = train_into(tmp_path, tiny_params(n_estimators=1, num_leaves=2), features)
    gate = worse["registry"]["gate"]
    assert gate["outcome"] == "rejected"
    assert gate["new_score"] < gate["champion_score"]
    assert "does not beat champion v1" in gate["reason"]
    assert _aliases(mlflow_store) == {"champion": "1", "challenger": "2"}
    run = MlflowClient(mlflow_store).get_run(worse["registry"]["run_id"])
    assert run.data.tags["gate_outcome"] == "rejected"
    assert "does not beat" in run.data.tags["gate_reason"]
    champion = json.loads((tmp_path / "models" / "churn" / "registry.json").read_text())
    assert (champion["alias"], champion["model_version"]) == ("champion", "1")
    challenger = json.loads((tmp_path / "models" / "challenger" / "registry.json").read_text())
    assert (challenger["alias"], challenger["model_version"]) == ("challenger", "2")


def test_gate_promotes_when_the_champion_cannot_score_the_current_features(mlflow_store, tmp_path):
    features = make_feature_frame(n_customers=400, n_cutoffs=5, seed=13)
    train_into(tmp_path, tiny_params(), features)
    report = train_into(tmp_path, tiny_params(), features.drop(columns=["last_nps_score"]))
    gate = report["registry"]["gate"]
    assert gate["outcome"] == "incomparable"
    assert "last_nps_score" in gate["reason"]
    assert _aliases(mlflow_store) == {"champion": "2"}


@pytest.mark.parametrize(
    ("new", "old", "metric", "margin", "expected"),
    [
        (0.30, 0.20, "pr_auc", 0.0, True),
        (0.20, 0.20, "pr_auc", 0.0, False),  # a tie is not an improvement
        (0.25, 0.20, "roc_auc", 0.05, False),  # must beat by MORE than the margin
        (0.26, 0.20, "roc_auc", 0.05, True),
        (0.08, 0.10, "brier", 0.0, True),  # lower is better
        (0.12, 0.10, "log_loss", 0.0, False),
        (float("nan"), 0.10, "pr_auc", 0.0, False),
    ],
)
def test_is_better_respects_direction_and_margin(new, old, metric, margin, expected):
    assert is_better(new, old, metric, margin) is expected


def test_read_dvc_md5_matches_the_features_out(tmp_path):
    (tmp_path / "data").mkdir()
    features = tmp_path / "data" / "features.parquet"
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  label:\n    outs:\n    - path: data/labels.parquet\n"
        "      md5: aaa\n  features:\n    outs:\n    - path: data/features.parquet\n"
        "      md5: bbb\n"
    )
    assert read_dvc_md5(features) == "bbb"
    assert read_dvc_md5(tmp_path / "data" / "other.parquet") is None


def test_default_artifact_location_sits_beside_a_sqlite_store(tmp_path):
    location = default_artifact_location(f"sqlite:///{tmp_path}/mlflow.db")
    assert location == (tmp_path / "mlartifacts").as_uri()
    assert default_artifact_location("http://mlflow.example.com") is None


def test_flatten_params_joins_nested_keys():
    assert flatten_params({"a": 1, "gate": {"metric": "pr_auc", "x": {"y": None}}}) == {
        "a": "1",
        "gate.metric": "pr_auc",
        "gate.x.y": "None",
    }


def test_signature_falls_back_to_documented_columns_when_scoring_fails(tiny_model, monkeypatch):
    import churn.model.scoring

    def broken(*args, **kwargs):
        raise RuntimeError("not ready")

    monkeypatch.setattr(churn.model.scoring, "score_frame", broken)
    example = make_feature_frame(n_customers=5, n_cutoffs=1).drop(columns=["label"])
    outputs = build_model_signature(tiny_model, example, reasons=2).outputs.input_names()
    assert outputs[:5] == [
        "customer_id",
        "cutoff",
        "churn_probability",
        "mrr",
        "expected_revenue_at_risk",
    ]
    assert "reason_2_text" in outputs and "reason_3_text" not in outputs
    assert {"risk_share_support", "risk_share_pre_sale", "risk_share_post_sale"} <= set(outputs)


def test_connecting_to_a_training_run_never_creates_a_store_or_fails(
    tmp_path, monkeypatch, caplog
):
    missing = tmp_path / "nowhere.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{missing}")
    with caplog.at_level(logging.WARNING):
        assert connect_training_run({"run_id": "abc"}) is None
    assert not missing.exists()
    assert "not logged" in caplog.text
    assert connect_training_run({}) is None
    assert log_run_metrics(None, {"eval_test_roc_auc": 0.8}) is False


def test_run_metrics_to_an_unknown_run_are_a_warning(mlflow_store, caplog):
    run = connect_training_run({"run_id": "0" * 32})
    assert run is not None  # the store exists; the run is looked up when logging
    with caplog.at_level(logging.WARNING):
        assert log_run_metrics(run, {"eval_test_roc_auc": 0.8}) is False
    assert "not logged" in caplog.text


def test_run_metrics_land_on_the_run_and_skip_missing_values(mlflow_store):
    client = MlflowClient(mlflow_store)
    experiment = client.create_experiment("evaluation")
    run_id = client.create_run(experiment).info.run_id
    run = connect_training_run({"run_id": run_id})
    metrics = {"eval_test_roc_auc": 0.8, "eval_test_lift": float("nan"), "eval_none": None}
    assert log_run_metrics(run, metrics) is True
    assert client.get_run(run_id).data.metrics == {"eval_test_roc_auc": 0.8}


def test_quiet_mlflow_restores_environment_and_log_levels(monkeypatch):
    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true")  # the user's choice wins
    level = logging.getLogger("mlflow").level
    with quiet_mlflow():
        assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
        assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "true"
        assert logging.getLogger("mlflow").level == logging.ERROR
    assert "MLFLOW_DISABLE_TELEMETRY" not in os.environ
    assert logging.getLogger("mlflow").level == level


def test_signature_declares_the_reasons_parameter(tiny_model):
    example = make_feature_frame(n_customers=5, n_cutoffs=1).drop(columns=["label"])
    signature = build_model_signature(tiny_model, example, reasons=3)
    specs = {spec.name: spec for spec in signature.params.params}
    assert specs["reasons"].default == 3
    assert "reason_3_text" in signature.outputs.input_names()


def test_an_accepted_too_good_model_is_tagged_on_the_run(mlflow_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    features = make_feature_frame(n_customers=400, n_cutoffs=5, seed=11)
    # A ceiling the tiny frame's honest signal passes stands in for a known-easy problem.
    params = tiny_params(max_plausible_auc=0.6, allow_high_auc=True)

    report = train_into(tmp_path, params, features)

    assert report["metrics"]["test"]["roc_auc"] > 0.6
    assert report["allow_high_auc"] is True and report["high_auc_accepted"] is True
    run = MlflowClient(mlflow_store).get_run(report["registry"]["run_id"])
    assert run.data.tags["allow_high_auc"] == "true"


def test_the_champion_export_comes_back_from_its_registered_model(trained, tmp_path):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", trained.store)
        record = json.loads((trained.root / "models" / "churn" / "registry.json").read_text())
        restored = download_champion_export(record, tmp_path / "champion")
    exported = trained.root / "models" / "churn"
    names = {path.name for path in restored.iterdir()}
    assert names == {path.name for path in exported.iterdir()} - {"registry.json"}
    for name in names - {"manifest.json"}:  # the export's manifest also signs registry.json
        assert (restored / name).read_bytes() == (exported / name).read_bytes(), name


def test_a_champion_logged_the_old_way_is_exported_from_its_run_artifact(mlflow_store, tmp_path):
    """Before the export was the pyfunc's artifact, the model held only the ChurnModel files
    and the run held the export under ``export/``: such a champion must still come back."""
    from churn.model.baseline import save_baseline
    from churn.model.fit import train_churn_models
    from churn.model.verification import write_manifest
    from churn.tracking.pyfunc import pyfunc_log_arguments
    from churn.tracking.store import connect_tracking

    features = make_feature_frame(n_customers=300, n_cutoffs=5, seed=14)
    result = train_churn_models(features, TINY_CATALOG, tiny_params())
    result.model.save(tmp_path / "model_only")
    export = tmp_path / "export"
    result.model.save(export)
    save_baseline(result.baseline, export / "baseline.json")
    write_manifest(export)
    with quiet_mlflow():
        _, experiment_id = connect_tracking()
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_artifacts(str(export), artifact_path="export")
            info = mlflow.pyfunc.log_model(
                name="model",
                **pyfunc_log_arguments(tmp_path / "model_only", reasons=2),
                registered_model_name="churn",
                pip_requirements=pin_model_requirements(),
            )
    champion = {
        "run_id": run.info.run_id,
        "model_version": str(info.registered_model_version),
        "model_uri": f"models:/churn/{info.registered_model_version}",
    }
    restored = download_champion_export(champion, tmp_path / "champion")
    assert (restored / "baseline.json").read_bytes() == (export / "baseline.json").read_bytes()
    assert (restored / "model.txt").read_bytes() == (export / "model.txt").read_bytes()
