"""The MLflow tracking store: connection, experiment, quiet logging."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient


logger = logging.getLogger(__name__)


EXPERIMENT_NAME = "churn"


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """Silence MLflow's warnings, INFO chatter and progress bars, and keep it offline.

    Environment defaults (telemetry off, no progress bars) apply only inside the block and only
    where the user has not set the variable.
    """
    defaults = {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    added = [name for name in defaults if name not in os.environ]
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [logger.level for logger in loggers]
    try:
        for name in added:
            os.environ[name] = defaults[name]
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"mlflow(\.|$)")
            yield
    finally:
        for name in added:
            os.environ.pop(name, None)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def default_artifact_location(tracking_uri: str) -> str | None:
    """Return ``mlartifacts/`` beside a SQLite store's file, or ``None`` for other stores."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix) or tracking_uri.endswith(":memory:"):
        return None
    return (Path(tracking_uri.removeprefix(prefix)).resolve().parent / "mlartifacts").as_uri()


def connect_tracking(experiment_name: str = EXPERIMENT_NAME) -> tuple[MlflowClient, str]:
    """Point MLflow at the store and return a client and the experiment id (created if new)."""
    import mlflow
    from mlflow import MlflowClient

    from churn.tracking.store import tracking_uri

    uri = tracking_uri()
    # The registry follows the tracking URI unless MLFLOW_REGISTRY_URI is set. Not calling
    # set_registry_uri matters: it writes the variable into os.environ, where a later
    # connection to another store would pick it up.
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return client, client.create_experiment(
            experiment_name, artifact_location=default_artifact_location(uri)
        )
    if experiment.lifecycle_stage == "deleted":
        logger.warning("experiment %r was deleted; restoring it", experiment_name)
        client.restore_experiment(experiment.experiment_id)
    return client, experiment.experiment_id



DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def tracking_uri() -> str:
    """Return the MLflow tracking URI: ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def store_is_missing(uri: str) -> bool:
    """Tell whether ``uri`` names a SQLite store whose file does not exist.

    Connecting to such a URI would silently create an empty store instead of finding anything.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri.endswith(":memory:"):
        return False
    return not Path(uri.removeprefix(prefix)).exists()
