"""Reliability: nothing that comes in runs code. No load path unpickles anything.

A crafted pickle whose unpickling would create a marker file is planted in every artifact
location (the exported model directory, the baseline, the MLflow model and its artifact folder);
every way of loading a model runs, and the marker never appears.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from support.exported import export_model_dir, tiny_train_params
from support.hostile import write_marker_pickle
from support.mlflow_store import fresh_store
from support.tiny import make_feature_frame

from churn.errors import ModelError
from churn.model.artifact import ChurnModel
from churn.model.baseline import load_baseline
from churn.stages.evaluate import run_evaluate
from churn.stages.train import BASELINE_FILE
from churn.tracking.loading import load_model
from churn.tracking.pyfunc import pyfunc_log_arguments
from churn.tracking.store import connect_tracking, quiet_mlflow

REPO = Path(__file__).resolve().parents[2]
PICKLE_NAMES = ("baseline.joblib", "python_model.pkl", "model.pkl", "churn_model.pkl")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("no-pickle")
    features = make_feature_frame(n_customers=300, n_cutoffs=5, seed=4)
    export_model_dir(features, root / "churn")
    features.to_parquet(root / "features.parquet")
    return root


def plant_pickles(directory: Path, marker: Path) -> list[Path]:
    """Put a marker pickle under every conventional pickle name in ``directory``."""
    return [write_marker_pickle(directory / name, marker) for name in PICKLE_NAMES]


def test_evaluate_never_unpickles_a_planted_baseline(exported, tmp_path):
    model_dir = tmp_path / "churn"
    shutil.copytree(exported / "churn", model_dir)
    marker = tmp_path / "pickle-ran"
    plant_pickles(model_dir, marker)
    metrics = run_evaluate(
        tiny_train_params(),
        exported / "features.parquet",
        model_dir,
        None,
        tmp_path / "metrics.json",
        tmp_path / "plots",
    )
    assert 0.5 < metrics["baseline"]["test"]["roc_auc"] <= 1.0
    assert not marker.exists()


def test_a_pickle_in_place_of_the_baseline_json_is_refused_unread(exported, tmp_path):
    model_dir = tmp_path / "churn"
    shutil.copytree(exported / "churn", model_dir)
    marker = tmp_path / "pickle-ran"
    write_marker_pickle(model_dir / BASELINE_FILE, marker)
    with pytest.raises(ModelError, match=f"checksum mismatch for .*{BASELINE_FILE}"):
        run_evaluate(
            tiny_train_params(),
            exported / "features.parquet",
            model_dir,
            None,
            tmp_path / "metrics.json",
            tmp_path / "plots",
        )
    with pytest.raises(ModelError, match="not valid JSON"):
        load_baseline(model_dir / BASELINE_FILE)  # even unverified, JSON is all it reads
    assert not marker.exists()
    assert not (tmp_path / "metrics.json").exists()


def test_mlflow_model_and_artifact_folder_pickles_are_never_loaded(
    exported, tmp_path, tmp_path_factory, monkeypatch
):
    import mlflow
    import mlflow.artifacts

    from churn.spark.scoring import _resolve_churn_model_dir

    marker = tmp_path / "pickle-ran"
    features = make_feature_frame(n_customers=60, n_cutoffs=1, seed=5)
    with fresh_store(tmp_path, tmp_path_factory.getbasetemp()) as uri, quiet_mlflow():
        _, experiment_id = connect_tracking()
        with mlflow.start_run(experiment_id=experiment_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                **pyfunc_log_arguments(exported / "churn", reasons=2),
                registered_model_name="churn",
                pip_requirements=[],
            )
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        stored = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=tmp_path / "d"))
        assert not list(stored.rglob("*.pkl"))  # logged from code: no pickle at all
        # Plant pickles in the store's own model folder and its churn_model artifact folder.
        store_dirs = [p.parent for p in (tmp_path / "mlartifacts").rglob("MLmodel")]
        assert store_dirs
        for directory in store_dirs:
            plant_pickles(directory, marker)
            plant_pickles(directory / "artifacts" / "churn_model", marker)
        want = ChurnModel.load(exported / "churn").predict_proba(features)
        np.testing.assert_array_equal(load_model("models:/churn/1").predict_proba(features), want)
        pyfunc = mlflow.pyfunc.load_model("models:/churn/1")
        scored = pyfunc.predict(features)
        np.testing.assert_allclose(scored["churn_probability"], want, rtol=0, atol=1e-12)
        spark_dir = _resolve_churn_model_dir("models:/churn/1", tmp_path / "spark")
        ChurnModel.load(spark_dir)
    assert not marker.exists()


def test_no_unpickling_call_exists_in_src_or_pipelines():
    pattern = re.compile(r"pickle\.load|joblib\.load|cloudpickle")
    found = [
        f"{path.relative_to(REPO)}:{number}"
        for folder in ("src", "pipelines")
        for path in sorted((REPO / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []
    assert pattern.search("x = joblib.load(p)")  # the scan itself can fail
