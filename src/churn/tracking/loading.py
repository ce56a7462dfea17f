"""Where a model comes from: an exported directory or an MLflow model URI.

Scoring runs nightly with the champion (``models:/churn@champion``) or, without any registry,
with the directory ``churn train`` exports (``models/churn``). Either way the result is the same
:class:`churn.model.artifact.ChurnModel`, loaded from plain files with checksum verification: the
pyfunc's ``churn_model`` artifact *is* the exported directory, so no pickle is unpickled.

Artifacts belong to the project whose store is in use (decision): MLflow records absolute
artifact locations (``file:///<project>/mlartifacts/...``), so a copied or moved project would
load the original folder's files, or fail once it is gone. A ``models:/`` or ``runs:/`` URI is
therefore resolved to its recorded location and, when that lies under another folder's
``mlartifacts/`` root, re-rooted at the current SQLite store's own ``mlartifacts/`` (see
:func:`relocate_artifact_uri`). Other artifact roots (S3, a custom shared folder) are used as
recorded.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from churn.errors import ModelError
from churn.model.artifact import META_FILE, ChurnModel
from churn.tracking.store import (
    connection_uri,
    default_artifact_location,
    import_mlflow,
    store_is_missing,
    tracking_uri,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient


#: ``models:/<name>@<alias>`` or ``models:/<name>/<version>``, optionally with a sub-path.
MODEL_URI_PATTERN = re.compile(
    r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))(?P<rest>/.*)?$"
)


#: ``runs:/<run id>/<path>``.
RUN_URI_PATTERN = re.compile(r"^runs:/(?P<run_id>[^/]+)(?P<rest>/.*)?$")


#: Folder name of churn's artifact root beside a SQLite store (see ``default_artifact_location``).
ARTIFACT_ROOT_NAME = "mlartifacts"


def find_churn_model_dir(local: Path) -> Path:
    """Find the ChurnModel directory inside a downloaded MLflow model (or artifact folder)."""
    mlmodel = local / "MLmodel"
    if mlmodel.exists():
        import yaml

        import_mlflow()
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


def relocate_artifact_uri(uri: str, recorded_root: str, store: str) -> str:
    """Re-root ``uri`` from the artifact root it was recorded under to the current store's.

    Args:
        uri: An artifact location as MLflow recorded it.
        recorded_root: The artifact root of the experiment it was logged to.
        store: The tracking URI in use.

    Returns:
        ``uri`` under ``mlartifacts/`` beside the current SQLite store when ``recorded_root`` is
        another folder's ``mlartifacts/`` (a copied or moved project), else ``uri`` unchanged.
    """
    current = default_artifact_location(store)
    root = recorded_root.rstrip("/")
    if current is None or not root.startswith("file:") or root == current:
        return uri
    if Path(urlparse(root).path).name != ARTIFACT_ROOT_NAME or not uri.startswith(f"{root}/"):
        return uri
    return current + uri[len(root) :]


def resolve_artifact_uri(client: MlflowClient, model_uri: str, store: str) -> str:
    """Return where this project's copy of a ``models:/`` or ``runs:/`` URI's files lives.

    Aliases are resolved here (``get_model_version_by_alias``), so the answer names one
    version. Other URIs are returned unchanged for MLflow to resolve.
    """
    model = MODEL_URI_PATTERN.match(model_uri)
    run = RUN_URI_PATTERN.match(model_uri)
    if model:
        name, alias = model["name"], model["alias"]
        if alias:
            version = client.get_model_version_by_alias(name, alias)
        else:
            version = client.get_model_version(name, model["version"])
        location = client.get_model_version_download_uri(name, str(version.version))
        run_id, rest = version.run_id, model["rest"] or ""
    elif run:
        run_id, rest = run["run_id"], run["rest"] or ""
        location = client.get_run(run_id).info.artifact_uri
    else:
        return model_uri
    if not run_id:
        return location + rest
    experiment = client.get_experiment(client.get_run(run_id).info.experiment_id)
    return relocate_artifact_uri(location, experiment.artifact_location, store) + rest


def download_artifacts(model_uri: str, dst_path: Path) -> Path:
    """Download a ``models:/``/``runs:/`` URI's files from this project's store into a folder.

    Raises:
        ModelError: If the store, the registry entry or the files are missing.
    """
    hint = "to score without the registry, pass an exported model: --model models/churn"
    store = tracking_uri()
    if store_is_missing(store):
        raise ModelError(f"no MLflow store at {store}, so {model_uri} cannot be resolved; {hint}")
    import_mlflow()
    import mlflow.artifacts
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from churn.tracking.store import quiet_mlflow

    registry = os.environ.get("MLFLOW_REGISTRY_URI") or store
    with quiet_mlflow():
        try:
            client = MlflowClient(
                tracking_uri=connection_uri(store), registry_uri=connection_uri(registry)
            )
            location = resolve_artifact_uri(client, model_uri, store)
        except MlflowException as exc:
            raise ModelError(
                f"cannot load {model_uri} from MLflow ({store}): {exc.message}. Has a model "
                f"been trained and promoted to champion? {hint}"
            ) from None
        if location.startswith("file:") and not Path(urlparse(location).path).exists():
            raise ModelError(
                f"the files of {model_uri} are missing from this project's store: {location} "
                f"does not exist (was the project copied without {ARTIFACT_ROOT_NAME}/?); {hint}"
            )
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=location, dst_path=str(dst_path), tracking_uri=connection_uri(store)
            )
        except (MlflowException, OSError) as exc:
            raise ModelError(f"cannot download {model_uri} from {location}: {exc}") from None
    return Path(local)


def load_model(model_uri: str | Path) -> ChurnModel:
    """Load a ChurnModel from an exported directory or an MLflow model URI.

    Args:
        model_uri: An existing directory (``models/churn``), or an MLflow URI such as
            ``models:/churn@champion``, ``models:/churn/5`` or ``runs:/<id>/model``, resolved
            against ``$MLFLOW_TRACKING_URI`` (default ``sqlite:///mlflow.db`` in the working
            directory) and read from this project's artifact folder (see the module docstring).
            The pyfunc's ``churn_model`` artifact (the exported directory) is downloaded and
            loaded with checksum verification; no pickle is unpickled.

    Returns:
        The model.

    Raises:
        ModelError: If the directory or the registry entry (e.g. no champion yet) is missing;
            the message suggests scoring an exported directory instead.
    """
    with open_model_folder(model_uri) as folder:
        return ChurnModel.load(folder)


@contextmanager
def open_model_folder(model_uri: str | Path) -> Iterator[Path]:
    """Yield a local folder holding the model's exported files, for as long as it is needed.

    An existing directory is yielded as is. An MLflow URI is downloaded into a temporary folder
    removed on exit, and its ``churn_model`` artifact (the whole export folder: classifier,
    baseline and, when trained, the survival head) is yielded, so that scoring from the
    registry gives the same columns as scoring the exported directory.

    Args:
        model_uri: As for :func:`load_model`.

    Raises:
        ModelError: As for :func:`load_model`.
    """
    text = str(model_uri)
    if Path(text).is_dir():
        yield Path(text)
        return
    if ":/" not in text:
        raise ModelError(
            f"model directory not found: {text}; to score without the registry, pass an "
            "exported model: --model models/churn"
        )
    with tempfile.TemporaryDirectory(prefix="churn-model-") as tmp:
        yield find_churn_model_dir(download_artifacts(text, Path(tmp)))
