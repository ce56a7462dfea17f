"""Where a model comes from: an exported directory or an MLflow model URI.

Scoring runs nightly with the champion (``models:/churn@champion``) or, without any registry,
with the directory ``churn train`` exports (``models/churn``). Either way the result is the same
:class:`churn.model.artifact.ChurnModel`, loaded from plain files with checksum verification: the
pyfunc's ``churn_model`` artifact *is* the exported directory, so no pickle is unpickled.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from churn.errors import ModelError
from churn.model.artifact import META_FILE, ChurnModel
from churn.tracking.store import store_is_missing, tracking_uri


def find_churn_model_dir(local: Path) -> Path:
    """Find the ChurnModel directory inside a downloaded MLflow model (or artifact folder)."""
    mlmodel = local / "MLmodel"
    if mlmodel.exists():
        import yaml

        from churn.tracking.pyfunc import ARTIFACT_KEY  # imports mlflow: only when MLflow is used

        flavor = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {})
        entry = flavor.get("python_function", {}).get("artifacts", {}).get(ARTIFACT_KEY, {})
        if entry.get("path") and (local / entry["path"] / META_FILE).exists():
            return local / entry["path"]
    if (local / META_FILE).exists():
        return local
    found = sorted(local.rglob(META_FILE))
    if not found:
        raise ModelError(f"the MLflow model holds no churn model ({META_FILE} not found)")
    return found[0].parent


def load_model(model_uri: str | Path) -> ChurnModel:
    """Load a ChurnModel from an exported directory or an MLflow model URI.

    Args:
        model_uri: An existing directory (``models/churn``), or an MLflow URI such as
            ``models:/churn@champion`` or ``runs:/<id>/model``, resolved against
            ``$MLFLOW_TRACKING_URI`` (default ``sqlite:///mlflow.db`` in the working directory).
            The pyfunc's ``churn_model`` artifact (the exported directory) is downloaded and
            loaded with checksum verification; no pickle is unpickled.

    Returns:
        The model.

    Raises:
        ModelError: If the directory or the registry entry (e.g. no champion yet) is missing;
            the message suggests scoring an exported directory instead.
    """
    text = str(model_uri)
    if Path(text).is_dir():
        return ChurnModel.load(text)
    hint = "to score without the registry, pass an exported model: --model models/churn"
    if ":/" not in text:
        raise ModelError(f"model directory not found: {text}; {hint}")
    store = tracking_uri()
    if store_is_missing(store):
        raise ModelError(f"no MLflow store at {store}, so {text} cannot be resolved; {hint}")
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from churn.tracking.store import quiet_mlflow

    registry = os.environ.get("MLFLOW_REGISTRY_URI") or store
    with tempfile.TemporaryDirectory(prefix="churn-model-") as tmp, quiet_mlflow():
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=text, dst_path=tmp, tracking_uri=store, registry_uri=registry
            )
        except MlflowException as exc:
            raise ModelError(
                f"cannot load {text} from MLflow ({store}): {exc.message}. Has a model been "
                f"trained and promoted to champion? {hint}"
            ) from None
        return ChurnModel.load(find_churn_model_dir(Path(local)))
