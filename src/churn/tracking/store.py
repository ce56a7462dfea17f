"""The MLflow tracking store: connection, experiment, quiet logging, and the pre-flight check.

Which stores ``churn train`` may use (decision): the default store, ``sqlite:///mlflow.db`` in
the working directory (used when ``MLFLOW_TRACKING_URI`` is unset or names exactly that), is
created on first use, so a fresh clone runs ``dvc repro`` with no set-up. Any other SQLite URI
must name an existing file unless ``train.create_tracking_store`` is true: a mistyped path would
otherwise create a new, empty registry with "no champion yet" and promote whatever was trained.
A store that cannot be written (read-only file or folder) or reached (HTTP server down) is a
:class:`TrackingStoreError` before any training starts; HTTP checks make one attempt with a short
timeout instead of MLflow's default of 7 retries with back-off (minutes for a dead address).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from churn.errors import ChurnError

if TYPE_CHECKING:
    from mlflow import MlflowClient


logger = logging.getLogger(__name__)


EXPERIMENT_NAME = "churn"


#: Seconds an HTTP store gets to answer the pre-flight check (loopback / any other host).
LOCAL_HTTP_TIMEOUT_SECONDS = 5


REMOTE_HTTP_TIMEOUT_SECONDS = 30


LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})


class TrackingStoreError(ChurnError):
    """The MLflow tracking store is missing, read-only or unreachable."""


#: Settings MLflow gets inside churn where the user has not set them: telemetry off, no
#: progress bars, and no ``pip install --dry-run`` (which asks the package index) should two
#: of a model's pip requirements name one package with different versions (churn pins each
#: package once, from the installed version). MLflow reads the telemetry switch once, when it
#: is first imported (with telemetry on it then creates its telemetry client and writes an
#: installation id into ``~/.config/mlflow``), so the first import needs these too
#: (:func:`import_mlflow`), not only the calls (:func:`quiet_mlflow`).
MLFLOW_ENVIRONMENT_DEFAULTS = MappingProxyType(
    {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK": "true",
    }
)


@contextlib.contextmanager
def environment_defaults(settings: Mapping[str, str]) -> Iterator[None]:
    """Set the variables of ``settings`` the user has not set, inside the block only.

    Not thread-safe, like any change to ``os.environ``: call it from the thread that runs the
    stage.
    """
    added = [name for name in settings if name not in os.environ]
    try:
        for name in added:
            os.environ[name] = settings[name]
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def mlflow_environment() -> contextlib.AbstractContextManager[None]:
    """Apply :data:`MLFLOW_ENVIRONMENT_DEFAULTS` inside the block (variables the user set stay)."""
    return environment_defaults(MLFLOW_ENVIRONMENT_DEFAULTS)


def import_mlflow() -> None:
    """Import MLflow with :data:`MLFLOW_ENVIRONMENT_DEFAULTS` in place (a no-op once imported).

    Every function of this package that imports MLflow calls this first, so that whichever
    runs first in a process imports MLflow with its telemetry off.
    """
    with mlflow_environment():
        import mlflow  # noqa: F401


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """Silence MLflow's warnings, INFO chatter and progress bars, and keep it offline.

    Environment defaults (:data:`MLFLOW_ENVIRONMENT_DEFAULTS`) apply only inside the block and
    only where the user has not set the variable.
    """
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with mlflow_environment(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"mlflow(\.|$)")
            yield
    finally:
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
    import_mlflow()
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri()
    # The registry follows the tracking URI unless MLFLOW_REGISTRY_URI is set. Not calling
    # set_registry_uri matters: it writes the variable into os.environ, where a later
    # connection to another store would pick it up.
    mlflow.set_tracking_uri(connection_uri(uri))
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


def connection_uri(uri: str) -> str:
    """Return ``uri`` with a relative SQLite path made absolute (other URIs unchanged).

    MLflow caches its stores by URI string (``functools.lru_cache`` in its store registries), and
    a cached SQLite engine keeps the file it first opened. A relative ``sqlite:///mlflow.db``
    used from two working directories in one process would then reach the first directory's
    database; handing MLflow absolute paths makes the cache key the file itself.

    Args:
        uri: A tracking or registry URI as configured.

    Returns:
        The URI to connect with.
    """
    path = sqlite_store_path(uri)
    if path is None or path.is_absolute():
        return uri
    query = uri.partition("?")[2]
    return f"sqlite:///{path.resolve()}" + (f"?{query}" if query else "")


def store_is_missing(uri: str) -> bool:
    """Tell whether ``uri`` names a SQLite store whose file does not exist.

    Connecting to such a URI would silently create an empty store instead of finding anything.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri.endswith(":memory:"):
        return False
    return not Path(uri.removeprefix(prefix)).exists()


def sqlite_store_path(uri: str) -> Path | None:
    """Return the database file a ``sqlite:///`` URI names, or ``None`` for other stores."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri.endswith(":memory:"):
        return None
    return Path(uri.removeprefix(prefix).split("?", 1)[0])


def is_default_store(uri: str) -> bool:
    """Tell whether ``uri`` is the project-local default store, ``sqlite:///mlflow.db``."""
    return uri == DEFAULT_TRACKING_URI


@contextlib.contextmanager
def fail_fast_http(uri: str) -> Iterator[None]:
    """Make MLflow's HTTP calls inside the block give up quickly on a dead server.

    One attempt (no retries) and a short timeout, shorter for a loopback address, where a
    server that does not answer at once is not running. Variables the user set are kept.
    """
    from urllib.parse import urlparse

    host = (urlparse(uri).hostname or "").lower()
    local = host in LOCAL_HOSTS or host.startswith("127.")
    timeout = LOCAL_HTTP_TIMEOUT_SECONDS if local else REMOTE_HTTP_TIMEOUT_SECONDS
    settings = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout)}
    with environment_defaults(settings):
        yield


def check_tracking_store(uri: str, *, create: bool) -> None:
    """Refuse a tracking store that training could not use, before any work starts.

    Args:
        uri: The tracking URI (see :func:`tracking_uri`).
        create: Whether a missing SQLite file may be created (``train.create_tracking_store``);
            the default store is always created when missing (see the module docstring).

    Raises:
        TrackingStoreError: If the SQLite file is missing (and may not be created), its file or
            folder is not writable, or an HTTP store does not answer.
    """
    path = sqlite_store_path(uri)
    if path is not None:
        _check_sqlite_store(uri, path, create=create or is_default_store(uri))
    elif uri.startswith(("http://", "https://")):
        _check_http_store(uri)


def _check_sqlite_store(uri: str, path: Path, *, create: bool) -> None:
    folder = path.parent
    if not path.exists():
        if not create:
            raise TrackingStoreError(
                f"no MLflow tracking store at {path} (MLFLOW_TRACKING_URI={uri}); training "
                "refuses to create a new, empty registry there, where the gate would find no "
                "champion. Check the URI for a typo, or set train.create_tracking_store: true "
                "in params.yaml to start a new store."
            )
        if not folder.is_dir():
            raise TrackingStoreError(
                f"cannot create the MLflow tracking store {path}: folder {folder} does not exist"
            )
    elif not path.is_file():
        raise TrackingStoreError(f"MLflow tracking store {path} is not a file")
    elif not os.access(path, os.R_OK | os.W_OK):
        raise TrackingStoreError(
            f"MLflow tracking store {path} is read-only; training must register the model "
            "and set its alias there. Make it writable or point MLFLOW_TRACKING_URI elsewhere."
        )
    # SQLite writes its journal beside the database, and the gate its lock file.
    if not os.access(folder, os.W_OK | os.X_OK):
        raise TrackingStoreError(
            f"the folder {folder.resolve()} of the MLflow tracking store {path} is read-only; "
            "SQLite must write its journal there"
        )


def _check_http_store(uri: str) -> None:
    import_mlflow()
    from mlflow import MlflowClient

    with quiet_mlflow(), fail_fast_http(uri):
        try:
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        except Exception as exc:  # refused, timed out, HTTP error: each means "cannot train"
            raise TrackingStoreError(
                f"the MLflow tracking server {uri} cannot be reached: "
                f"{type(exc).__name__}: {str(exc)[:300]}"
            ) from None
