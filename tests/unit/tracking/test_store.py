"""Tests for churn.tracking.store: which tracking stores training may use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from churn.tracking.store import (
    DEFAULT_TRACKING_URI,
    TrackingStoreError,
    check_tracking_store,
    connection_uri,
    fail_fast_http,
    sqlite_store_path,
)


def test_default_store_is_allowed_in_a_fresh_clone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_tracking_store(DEFAULT_TRACKING_URI, create=False)
    assert not (tmp_path / "mlflow.db").exists()  # checking creates nothing


def test_explicit_missing_store_is_refused_unless_creation_is_asked_for(tmp_path):
    uri = f"sqlite:///{tmp_path / 'other.db'}"
    with pytest.raises(TrackingStoreError, match=r"train\.create_tracking_store") as raised:
        check_tracking_store(uri, create=False)
    assert str(tmp_path / "other.db") in str(raised.value)
    check_tracking_store(uri, create=True)
    assert not (tmp_path / "other.db").exists()


def test_a_store_in_a_missing_folder_cannot_be_created(tmp_path):
    uri = f"sqlite:///{tmp_path / 'nowhere' / 'mlflow.db'}"
    with pytest.raises(TrackingStoreError, match="does not exist"):
        check_tracking_store(uri, create=True)


def test_a_folder_is_not_a_store(tmp_path):
    (tmp_path / "mlflow.db").mkdir()
    with pytest.raises(TrackingStoreError, match="not a file"):
        check_tracking_store(f"sqlite:///{tmp_path / 'mlflow.db'}", create=False)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sqlite:///mlflow.db", Path("mlflow.db")),
        ("sqlite:////abs/store.db", Path("/abs/store.db")),
        ("sqlite:////abs/store.db?timeout=5", Path("/abs/store.db")),
        ("sqlite:///:memory:", None),
        ("http://127.0.0.1:5000", None),
        ("file:///tmp/mlruns", None),
    ],
)
def test_sqlite_store_path(uri, expected):
    assert sqlite_store_path(uri) == expected


@pytest.mark.parametrize(
    ("uri", "timeout"),
    [
        ("http://127.0.0.1:5000", "5"),
        ("http://localhost:5000", "5"),
        ("https://mlflow.example", "30"),
    ],
)
def test_fail_fast_http_sets_no_retries_and_a_short_timeout(uri, timeout, monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "77")  # the user's own value is kept
    with fail_fast_http(uri):
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "77"
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT")
    with fail_fast_http(uri):
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == timeout
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ


def test_connection_uri_makes_only_relative_sqlite_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert connection_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert connection_uri("sqlite:///mlflow.db?timeout=5").endswith("mlflow.db?timeout=5")
    assert connection_uri(f"sqlite:///{tmp_path}/x.db") == f"sqlite:///{tmp_path}/x.db"
    assert connection_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_the_default_store_follows_the_working_directory_within_one_process(
    tmp_path, monkeypatch
):
    # MLflow caches stores by URI string: with the relative default URI, a second project in
    # the same process would read the first project's database (a flaky gate test once did).
    from mlflow import MlflowClient

    from churn.tracking.store import quiet_mlflow

    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    with quiet_mlflow():
        monkeypatch.chdir(first)
        MlflowClient(tracking_uri=connection_uri("sqlite:///mlflow.db")).create_experiment("a")
        monkeypatch.chdir(second)
        client = MlflowClient(tracking_uri=connection_uri("sqlite:///mlflow.db"))
        assert client.get_experiment_by_name("a") is None
    assert (second / "mlflow.db").exists()


# MLflow turns telemetry off by itself under pytest, in CI and when asked (DO_NOT_TRACK, its
# own variables), so the processes below get a minimal environment, as a user's shell would.
_PASSED_VARIABLES = ("PATH", "HOME", "LANG", "PYTHONPATH", "TZ")

_REPORT_TELEMETRY = """
from mlflow.telemetry.client import get_telemetry_client
print("client" if get_telemetry_client() is not None else "none")
"""


def _run_in_a_user_shell(code: str, home: Path) -> tuple[str, bool]:
    """Run ``code`` in a fresh Python without the testing variables, in ``home`` (the default
    store's folder); return what it printed (last line) and whether MLflow wrote its
    installation id under ``home``."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k in _PASSED_VARIABLES}
    env["XDG_CONFIG_HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-c", code + _REPORT_TELEMETRY],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1], (home / "mlflow" / "telemetry.json").exists()


@pytest.mark.parametrize(
    "code",
    [
        "from churn.tracking.store import import_mlflow; import_mlflow()",
        # Entry points whose first statement used to import MLflow outside quiet_mlflow.
        "from churn.tracking.runs import connect_training_run; connect_training_run({})",
        "from churn.tracking.store import connect_tracking; connect_tracking()",
        "import churn.tracking.pyfunc",  # derives from MLflow's class: imports it with itself
    ],
    ids=["import_mlflow", "connect_training_run", "connect_tracking", "pyfunc_module"],
)
def test_mlflow_is_imported_with_its_telemetry_off(tmp_path, code):
    assert _run_in_a_user_shell(code, tmp_path) == ("none", False)


def test_a_plain_import_of_mlflow_would_turn_telemetry_on(tmp_path):
    # The control of the test above: in the same shell, MLflow imported on its own creates its
    # telemetry client and writes an installation id, so "none" above is churn's doing.
    assert _run_in_a_user_shell("import mlflow", tmp_path) == ("client", True)


def test_the_user_may_turn_mlflow_telemetry_on_and_the_defaults_are_undone_after(monkeypatch):
    from churn.tracking.store import MLFLOW_ENVIRONMENT_DEFAULTS, mlflow_environment

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    with mlflow_environment():
        assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "false"  # the user's choice wins
        assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
    assert "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ
    assert set(MLFLOW_ENVIRONMENT_DEFAULTS) == {
        "MLFLOW_DISABLE_TELEMETRY",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
        "MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK",
    }
