"""Attach plot files to the MLflow run of the model version they describe."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from churn.tracking.store import import_mlflow, store_is_missing, tracking_uri

logger = logging.getLogger(__name__)


MLFLOW_ARTIFACT_DIR = "explain"


def log_plots_to_mlflow(model_dir: Path, paths: list[Path]) -> str | None:
    """Attach PNGs to the training run named in ``model_dir/registry.json`` (key ``run_id``).

    Quietly does nothing without that file or key; a missing store or an MLflow failure is
    logged as a warning, not raised, since the files on disk are the stage's output.

    Returns:
        The run id logged to, or ``None``.
    """
    from churn.layout import REGISTRY_FILE

    registry = model_dir / REGISTRY_FILE
    if not registry.exists():
        return None
    try:
        run_id = json.loads(registry.read_text()).get("run_id")
    except (json.JSONDecodeError, AttributeError):
        logger.warning("%s is not a JSON object: plots not logged to MLflow", registry)
        return None
    if not run_id:
        return None
    uri = tracking_uri()
    if store_is_missing(uri):
        logger.warning("no MLflow store at %s: plots not logged to run %s", uri, run_id)
        return None
    import_mlflow()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from churn.tracking.store import connection_uri, quiet_mlflow

    with quiet_mlflow():
        try:
            client = MlflowClient(tracking_uri=connection_uri(uri))
            for path in paths:
                client.log_artifact(run_id, str(path), artifact_path=MLFLOW_ARTIFACT_DIR)
        except MlflowException as exc:
            logger.warning("plots not logged to MLflow run %s: %s", run_id, exc.message)
            return None
    return run_id
