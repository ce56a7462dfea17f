"""Tests for churn.tracking.artifacts: plots attached to the training run, from a helper process."""

from __future__ import annotations

import json
import logging
import multiprocessing
from pathlib import Path

import pytest
from support.mlflow_store import fresh_store

from churn.tracking.artifacts import (
    MLFLOW_ARTIFACT_DIR,
    find_logging_target,
    plot_logger,
)
from churn.tracking.store import connect_tracking, quiet_mlflow


def _model_dir_naming(root: Path, run_id: str) -> Path:
    model_dir = root / "model"
    model_dir.mkdir()
    (model_dir / "registry.json").write_text(json.dumps({"run_id": run_id}))
    return model_dir


def _plots(root: Path, count: int = 2) -> list[Path]:
    paths = []
    for i in range(count):
        path = root / f"plot_{i}.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes([i]))
        paths.append(path)
    return paths


def _logged_files(uri: str, run_id: str) -> set[str]:
    from mlflow import MlflowClient

    with quiet_mlflow():
        artifacts = MlflowClient(uri).list_artifacts(run_id, MLFLOW_ARTIFACT_DIR)
    return {artifact.path.split("/")[-1] for artifact in artifacts}


@pytest.fixture
def store_with_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    with fresh_store(root, tmp_path_factory.getbasetemp()) as uri, quiet_mlflow():
        client, experiment_id = connect_tracking()
        run_id = client.create_run(experiment_id).info.run_id
        yield root, uri, run_id


def test_the_helper_logs_the_plots_to_the_run(store_with_run):
    root, uri, run_id = store_with_run
    model_dir, plots = _model_dir_naming(root, run_id), _plots(root)
    with plot_logger(model_dir) as log:
        assert log(plots) == run_id
    assert _logged_files(uri, run_id) == {"plot_0.png", "plot_1.png"}
    assert not multiprocessing.active_children()


def test_an_unknown_run_is_a_warning_not_an_error(store_with_run, caplog):
    root, _, _ = store_with_run
    model_dir = _model_dir_naming(root, "0" * 32)
    with caplog.at_level(logging.WARNING), plot_logger(model_dir) as log:
        assert log(_plots(root)) is None
    assert "plots not logged to MLflow run " + "0" * 32 in caplog.text


def test_a_dead_helper_is_a_warning_and_the_stage_goes_on(store_with_run, caplog):
    root, _, run_id = store_with_run
    model_dir = _model_dir_naming(root, run_id)
    with caplog.at_level(logging.WARNING), plot_logger(model_dir) as log:
        (helper,) = multiprocessing.active_children()
        helper.kill()
        helper.join()
        assert log(_plots(root)) is None
    assert "the helper process stopped" in caplog.text


def test_an_error_before_the_plots_stops_the_helper(store_with_run):
    root, uri, run_id = store_with_run
    model_dir = _model_dir_naming(root, run_id)
    with pytest.raises(RuntimeError, match="drawing failed"), plot_logger(model_dir):
        assert len(multiprocessing.active_children()) == 1
        raise RuntimeError("drawing failed")
    assert not multiprocessing.active_children()
    assert _logged_files(uri, run_id) == set()


def test_no_run_to_log_to_starts_no_helper(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'absent.db'}")
    (tmp_path / "model").mkdir()
    assert find_logging_target(tmp_path / "model") is None  # no registry.json
    model_dir = tmp_path / "named"
    model_dir.mkdir()
    (model_dir / "registry.json").write_text(json.dumps({"run_id": "abc"}))
    with plot_logger(model_dir) as log:  # the store does not exist
        assert not multiprocessing.active_children()
        assert log(_plots(tmp_path)) is None
    assert not (tmp_path / "absent.db").exists()
