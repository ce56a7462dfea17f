"""churn: point-in-time churn prediction for subscription businesses.

The public API, for notebooks, scripts and other packages::

    import churn

    params = churn.load_params("params.yaml")
    tables = churn.simulate(params.simulate).tables
    model = churn.load_model("models:/churn@champion")

Every name in ``__all__`` is loaded on first use (module ``__getattr__``), so ``import churn``
imports nothing but this file: no pandas, MLflow or LightGBM, and no side effects. The
sub-packages stay importable as before; anything not listed here is internal and may move.
The API sits outside the import layers (pyproject.toml, ``[tool.importlinter]``): it names
modules by string, and no module of the package imports it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> module defining it. Grouped the way the pipeline runs.
_EXPORTS: dict[str, str] = {
    # Parameters (params.yaml) and the sections library calls take.
    "load_params": "churn.config",
    "Params": "churn.config",
    "LabelConfig": "churn.config",
    "FeaturesConfig": "churn.config",
    "TrainConfig": "churn.config",
    # Data: simulate, read and validate the raw tables.
    "simulate": "churn.stages.simulate.engine",
    "read_raw_tables": "churn.stages.ingest",
    "validate_tables": "churn.stages.ingest",
    # Labels and features at point-in-time cutoffs.
    "build_cutoffs": "churn.labels.schedule",
    "build_labels": "churn.labels.build",
    "active_population": "churn.labels.build",
    "build_features": "churn.features.build",
    "compute_features": "churn.stages.features",
    # The model: train, load, score.
    "train_churn_models": "churn.model.fit",
    "ChurnModel": "churn.model.artifact",
    "load_model": "churn.tracking.loading",
    "score_frame": "churn.model.scoring",
    "finalize_scores": "churn.model.scoring",
    # Reading what the pipeline wrote (the report stage's inputs).
    "load_report_inputs": "churn.report.inputs",
    "with_segments": "churn.report.data",
    # Errors.
    "ChurnError": "churn.errors",
    "ConfigError": "churn.config",
    "DataContractError": "churn.errors",
    "EmptyPopulationError": "churn.errors",
    "ModelError": "churn.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Import the module defining public ``name`` on first access and cache the object.

    Raises:
        AttributeError: ``name`` is not public API (also how ``from churn import io`` falls
            back to importing the submodule).
    """
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the module's attributes including the not yet loaded public names."""
    return sorted(set(globals()) | set(__all__))
