"""The gate holds: one model identity, no bypass, against real SQLite MLflow stores (no mocks).

Each case of issue 12 item 7 has one named test: a mistyped store, a refused challenger, two
racing trainings, a cloned project and a read-only store. The later stages (evaluate, explain,
score) are checked to describe the champion after a refused gate.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from support.mlflow_store import fresh_store
from support.tiny import TINY_CATALOG, make_feature_frame

from churn.config import GateConfig, Params, parse_params
from churn.model.artifact import ChurnModel
from churn.model.verification import MANIFEST_FILE
from churn.stages.evaluate import run_evaluate
from churn.stages.explain import run_explain
from churn.stages.train import REGISTRY_FILE, run_train
from churn.tracking.loading import load_model
from churn.tracking.registry import gate_model_version
from churn.tracking.store import TrackingStoreError, quiet_mlflow

REPO = Path(__file__).resolve().parents[2]


def gate_params(**train: Any) -> Params:
    """Small, fast parameters; ``train`` keys override (a stump loses the gate)."""
    return parse_params(
        {
            "label": {"horizon_days": 20, "grace_days": 5},
            "train": {"min_child_samples": 20, "n_estimators": 80, "num_threads": 1, **train},
            "evaluate": {"backtest_cutoffs": 0},
            "explain": {"sample_rows": 200, "dependence_features": 1},
        }
    )


STUMP = {"n_estimators": 1, "num_leaves": 2}


def train_project(root: Path, params: Params, features: pd.DataFrame) -> dict[str, Any]:
    """Run the train stage in a project folder laid out as in ``dvc.yaml``."""
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


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def file_bytes(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` by relative path, with its content."""
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@dataclass
class Refused:
    """A project where v1 is champion and a worse v2 was refused by the gate."""

    root: Path
    store: str
    features: pd.DataFrame
    champion_files: dict[str, bytes]
    record: dict[str, Any]


@pytest.fixture(scope="module")
def refused(tmp_path_factory) -> Iterator[Refused]:
    root = tmp_path_factory.mktemp("refused")
    features = make_feature_frame(n_customers=400, n_cutoffs=5, seed=21)
    with (
        fresh_store(root, tmp_path_factory.getbasetemp()) as store,
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.chdir(root)
        first = train_project(root, gate_params(), features)
        assert first["registry"]["promoted"] is True
        champion_files = file_bytes(root / "models" / "churn")
        second = train_project(root, gate_params(**STUMP), features)
        assert second["registry"]["gate"]["outcome"] == "rejected"
        yield Refused(
            root, store, features, champion_files, read_json(root / "reports" / "model.json")
        )


def test_mistyped_tracking_uri_refuses_to_train(tmp_path, tmp_path_factory, monkeypatch):
    features = make_feature_frame(n_customers=400, n_cutoffs=5, seed=22)
    with fresh_store(tmp_path, tmp_path_factory.getbasetemp()) as store:
        typo = tmp_path / "mlfow.db"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{typo}")
        with pytest.raises(TrackingStoreError) as raised:
            train_project(tmp_path, gate_params(), features)
        message = str(raised.value)
        assert str(typo) in message and "train.create_tracking_store" in message
        assert not typo.exists()  # no new, empty registry was created
        assert not (tmp_path / "models").exists()
        assert not (tmp_path / "reports" / "model.json").exists()
        assert MlflowClient(store).search_registered_models() == []


def test_refused_challenger_does_not_replace_exported_champion(refused):
    champion_dir = refused.root / "models" / "churn"
    assert file_bytes(champion_dir) == refused.champion_files
    assert read_json(champion_dir / REGISTRY_FILE)["model_version"] == "1"
    challenger_dir = refused.root / "models" / "challenger"
    challenger = read_json(challenger_dir / REGISTRY_FILE)
    assert (challenger["model_version"], challenger["alias"]) == ("2", "challenger")
    # The refused stump is there for inspection, and it is not the champion's model.
    assert ChurnModel.load(challenger_dir).metadata["best_iteration"] == 1
    assert ChurnModel.load(champion_dir).metadata["best_iteration"] > 1
    assert refused.record["version"] == "1"
    assert refused.record["promoted"] is False
    assert refused.record["trained_version"] == refused.record["challenger_version"] == "2"


def test_missing_champion_export_is_restored_from_the_registry(refused, tmp_path, monkeypatch):
    # dvc repro deletes a stage's outputs before running it: the champion must come back from
    # the registry, the same files, when the next model is refused too.
    project = tmp_path / "project"
    shutil.copytree(refused.root, project)
    shutil.rmtree(project / "models" / "churn")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    monkeypatch.chdir(project)
    report = train_project(project, gate_params(**STUMP), refused.features)
    assert report["registry"]["gate"]["outcome"] == "rejected"
    restored = file_bytes(project / "models" / "churn")
    original = dict(refused.champion_files)
    assert (
        read_json(project / "models" / "churn" / REGISTRY_FILE)["run_id"]
        == json.loads(original.pop(REGISTRY_FILE))["run_id"]
    )
    restored.pop(REGISTRY_FILE)
    # The manifest signs registry.json too (whose store path differs in the copy): every other
    # entry must be the same checksum, and every other file the same bytes.
    restored_manifest = json.loads(restored.pop(MANIFEST_FILE))["files"]
    original_manifest = json.loads(original.pop(MANIFEST_FILE))["files"]
    assert set(restored_manifest) == set(original_manifest) >= {REGISTRY_FILE, "model.txt"}
    restored_manifest.pop(REGISTRY_FILE)
    original_manifest.pop(REGISTRY_FILE)
    assert restored_manifest == original_manifest
    assert restored == original


def test_later_stages_describe_the_champion_after_a_refused_gate(refused, monkeypatch):
    root = refused.root
    monkeypatch.setenv("MLFLOW_TRACKING_URI", refused.store)
    monkeypatch.chdir(root)
    champion_run = refused.record["run_id"]
    challenger_run = refused.record["trained_run_id"]
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    model_dir = _option(stages["train"]["cmd"], "--model-dir")
    # Every later stage reads the directory train exports the champion to.
    assert _option(stages["evaluate"]["cmd"], "--model-dir") == model_dir
    assert _option(stages["explain"]["cmd"], "--model-dir") == model_dir
    assert _option(stages["score"]["cmd"], "--model") == model_dir
    assert model_dir == "models/churn"

    metrics = run_evaluate(
        gate_params(),
        root / "features.parquet",
        root / model_dir,
        None,
        root / "reports" / "metrics.json",
        root / "reports" / "plots",
    )
    client = MlflowClient(refused.store)
    champion_metrics = client.get_run(champion_run).data.metrics
    assert champion_metrics["eval_test_roc_auc"] == pytest.approx(metrics["test"]["roc_auc"])
    assert "eval_test_roc_auc" not in client.get_run(challenger_run).data.metrics

    summary = run_explain(
        gate_params(), root / "features.parquet", root / model_dir, root / "reports" / "explain"
    )
    assert summary["mlflow_run_id"] == champion_run

    rows = refused.features.drop(columns=["label"]).tail(50)
    scored = load_model(root / model_dir).predict_proba(rows)
    with quiet_mlflow():
        champion = load_model("models:/churn@champion").predict_proba(rows)
        challenger = load_model("models:/churn/2").predict_proba(rows)
    np.testing.assert_allclose(scored, champion)
    assert not np.allclose(scored, challenger)


def _option(cmd: str, name: str) -> str:
    words = cmd.split()
    return words[words.index(name) + 1]


def test_concurrent_trains_promote_at_most_one(tmp_path, tmp_path_factory, monkeypatch):
    features = make_feature_frame(n_customers=400, n_cutoffs=5, seed=23)
    with fresh_store(tmp_path, tmp_path_factory.getbasetemp()) as store:
        monkeypatch.chdir(tmp_path)
        report = train_project(tmp_path, gate_params(**STUMP), features)  # v1: a weak champion
        client = MlflowClient(store)
        first = client.get_model_version("churn", "1")
        with quiet_mlflow():
            racers = [
                str(client.create_model_version("churn", first.source, first.run_id).version)
                for _ in range(2)
            ]
        split = report["split"]["sizes"]
        test = features.tail(split["test"])
        # Both challengers rank the test rows perfectly: each beats the stump on its own.
        perfect = np.where(test["label"].to_numpy() == 1, 0.9, 0.1)
        barrier = threading.Barrier(len(racers))
        decisions: dict[str, Any] = {}
        failures: list[BaseException] = []

        def race(version: str) -> None:
            try:
                barrier.wait(timeout=60)
                decisions[version] = gate_model_version(
                    MlflowClient(store), "churn", version, test, perfect, GateConfig(), store
                )
            except BaseException as exc:  # surfaced below: a thread cannot fail the test
                failures.append(exc)

        threads = [threading.Thread(target=race, args=(version,)) for version in racers]
        # quiet_mlflow saves and restores process-wide state (warning filters, log levels):
        # held here around both threads, their own nested uses cannot leave it changed.
        with quiet_mlflow():
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)
        assert not failures, failures
        over_v1 = [v for v, d in decisions.items() if d.promoted and d.champion_version == "1"]
        assert len(over_v1) == 1
        first = over_v1[0]
        second = next(v for v in racers if v != first)
        # The second was gated against the first's result, not against the stale champion v1
        # (the first holds a copy of the stump, so the second beats it again).
        assert decisions[second].champion_version == first
        assert decisions[second].outcome == "promoted"
        aliases = {k: str(v) for k, v in client.get_registered_model("churn").aliases.items()}
        assert aliases["champion"] == decisions[second].champion_after == second


def test_cloned_project_scores_with_its_own_model(tmp_path, tmp_path_factory, monkeypatch):
    original = tmp_path / "original"
    original.mkdir()
    features = make_feature_frame(n_customers=400, n_cutoffs=5, seed=24)
    with fresh_store(original, tmp_path_factory.getbasetemp()):
        monkeypatch.chdir(original)
        train_project(original, gate_params(), features)
    clone = tmp_path / "clone"
    shutil.copytree(original, clone)
    monkeypatch.chdir(clone)
    shutil.rmtree(original)
    # The clone uses its own default store, sqlite:///mlflow.db in the working directory.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    rows = features.drop(columns=["label"]).tail(40)
    with quiet_mlflow():
        champion = load_model("models:/churn@champion")
    exported = ChurnModel.load(clone / "models" / "churn")
    np.testing.assert_allclose(champion.predict_proba(rows), exported.predict_proba(rows))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run_train_cli(project: Path, uri: str, *, drop_root_override: bool) -> tuple[int, str, float]:
    """Run ``churn train`` in a subprocess; as root, without the power to ignore file modes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = uri
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    env["COLUMNS"] = "1000"  # no wrapping of the error message
    command = [
        sys.executable,
        "-m",
        "churn",
        "train",
        "--features",
        str(project / "features.parquet"),
        "--catalog",
        str(project / "catalog.csv"),
        "--model-dir",
        str(project / "models" / "churn"),
        "--challenger-dir",
        str(project / "models" / "challenger"),
        "--model-record",
        str(project / "model.json"),
        "--report",
        str(project / "train.json"),
        "--params",
        str(REPO / "params.yaml"),
    ]
    if drop_root_override:
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    return done.returncode, done.stdout + done.stderr, time.perf_counter() - started


@pytest.mark.parametrize("read_only", ["database", "folder"])
def test_read_only_store_is_a_clear_error(read_only, tmp_path, tmp_path_factory):
    is_root = os.geteuid() == 0
    if is_root and shutil.which("setpriv") is None:
        pytest.skip("root ignores file modes, and setpriv is not available to drop that power")
    with fresh_store(tmp_path, tmp_path_factory.getbasetemp()) as store:
        pass
    database = tmp_path / "mlflow.db"
    target = database if read_only == "database" else tmp_path
    mode = target.stat().st_mode
    target.chmod(0o444 if read_only == "database" else 0o555)
    try:
        code, output, seconds = _run_train_cli(tmp_path, store, drop_root_override=is_root)
    finally:
        target.chmod(mode)
    assert code == 2, output
    assert "read-only" in output and str(database.name) in output
    assert "Traceback" not in output
    assert seconds < 60
    assert not (tmp_path / "model.json").exists()


def test_unreachable_tracking_server_is_a_clear_error_at_once(tmp_path, monkeypatch):
    uri = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    features = make_feature_frame(n_customers=100, n_cutoffs=3, seed=25)
    started = time.perf_counter()
    with pytest.raises(TrackingStoreError, match="cannot be reached") as raised:
        train_project(tmp_path, gate_params(), features)
    assert uri in str(raised.value)
    assert time.perf_counter() - started < 30  # MLflow's default retries take minutes
    assert not (tmp_path / "models").exists()
