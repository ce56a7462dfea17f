"""A real, throwaway SQLite MLflow store per test (no mocks), made cheap by a template.

Creating MLflow's schema runs dozens of migrations (seconds, more on a busy machine); copying a
migrated empty database takes milliseconds. The template lives under the session's base
temporary directory, so it is migrated once per test session whichever module asks first.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from churn.tracking.store import quiet_mlflow


def ensure_template_db(base: Path) -> Path:
    """Return a migrated, empty MLflow SQLite database under ``base``, creating it once."""
    from mlflow import MlflowClient

    path = base / "mlflow-template" / "mlflow.db"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        building = path.with_suffix(".building")
        with quiet_mlflow():
            client = MlflowClient(tracking_uri=f"sqlite:///{building}")
            client.search_experiments()
            client.search_registered_models()
        building.rename(path)  # only a complete schema is ever visible as the template
    return path


@contextlib.contextmanager
def fresh_store(directory: Path, base: Path) -> Iterator[str]:
    """Use a new store in ``directory`` as ``MLFLOW_TRACKING_URI`` for the block.

    New experiments get their artifacts under ``directory / "mlartifacts"`` (the store's
    sibling, see :func:`churn.tracking.store.default_artifact_location`).

    Yields:
        The store's URI.
    """
    import mlflow

    database = directory / "mlflow.db"
    shutil.copyfile(ensure_template_db(base), database)
    uri = f"sqlite:///{database}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        try:
            yield uri
        finally:
            # MLflow keeps the URI in a module global: leave no pointer to this store behind.
            mlflow.set_tracking_uri(None)


def log_registered_churn_model(model_dir: Path, reasons: int, **options: Any) -> Any:
    """Log ``model_dir`` as the churn pyfunc in the active run and register it as ``churn``.

    Args:
        model_dir: A saved ChurnModel (or export) folder.
        reasons: Default reasons per customer.
        **options: ``signature`` for ``log_model``; anything else goes to
            :func:`churn.tracking.pyfunc.pyfunc_log_arguments` (``horizon_days``, ...).

    Returns:
        MLflow's ``ModelInfo``.
    """
    import mlflow

    from churn.tracking.pyfunc import pyfunc_log_arguments
    from churn.tracking.signature import pin_model_requirements

    signature = options.pop("signature", None)
    return mlflow.pyfunc.log_model(
        name="model",
        **pyfunc_log_arguments(model_dir, reasons, **options),
        registered_model_name="churn",
        pip_requirements=pin_model_requirements(),
        signature=signature,
    )
