"""The MLflow model signature and pinned requirements of the pyfunc."""

from __future__ import annotations

import logging
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pandas as pd

from churn.domain.families import PHASES

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

    from churn.model.artifact import ChurnModel

logger = logging.getLogger(__name__)


# What the pyfunc needs at load time. churn itself must be installed where the model is served:
# it is not on PyPI, and listing it would pull an unrelated package of the same name.
MODEL_REQUIREMENTS = ("mlflow", "lightgbm", "numpy", "pandas", "pyarrow", "scikit-learn")


INPUT_EXAMPLE_ROWS = 5


def pin_model_requirements() -> list[str]:
    """Return ``name==installed version`` for the packages the pyfunc needs."""
    return [f"{name}=={metadata.version(name)}" for name in MODEL_REQUIREMENTS]


def _mlflow_type(dtype: Any) -> str:
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "long"
    if pd.api.types.is_numeric_dtype(dtype):
        return "double"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "string"


def _fallback_output_columns(model: ChurnModel, reasons: int) -> list[tuple[str, str]]:
    columns = [("customer_id", "string"), ("cutoff", "datetime")]
    columns += [(c, "double") for c in ("churn_probability", "mrr", "expected_revenue_at_risk")]
    for i in range(1, reasons + 1):
        columns += [
            (f"reason_{i}_feature", "string"),
            (f"reason_{i}_value", "string"),
            (f"reason_{i}_contribution", "double"),
            (f"reason_{i}_text", "string"),
        ]
    groups = [*sorted(set(model.catalog.get("family", []))), *PHASES]
    return columns + [(f"risk_share_{group}", "double") for group in groups]


def build_model_signature(model: ChurnModel, example: pd.DataFrame, reasons: int) -> ModelSignature:
    """Describe the pyfunc's input (the features frame) and output (the score frame).

    ``cutoff`` is declared ``any`` and optional: MLflow's ``datetime`` type rejects
    time-zone-aware values, the features frame's cutoffs are UTC-aware by contract, and raw
    entity rows have none (the pyfunc fills the scoring date). ``customer_id`` and numeric
    features are declared ``any`` so integer columns are accepted and widened to floats in
    ``predict``. The output schema comes from
    running :func:`churn.model.scoring.score_frame` on ``example``; if that fails (for instance
    while the score stage is being built) it is written out by hand from the documented columns.
    """
    from churn.tracking.store import import_mlflow

    import_mlflow()
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType, ParamSchema, ParamSpec

    # Raw entity rows from another system carry integer ids and integer counts, and no cutoff:
    # MLflow refuses int64 for a ``double`` column ("Can not safely convert int64 to float64"),
    # so ids and numeric features are declared ``any`` and converted (with errors naming the
    # column) by :func:`churn.tracking.pyfunc.prepare_pyfunc_input`; a missing cutoff is filled
    # with the scoring date there. Missing feature columns are still refused by MLflow by name.
    inputs = [ColSpec(AnyType(), "customer_id"), ColSpec(AnyType(), "cutoff", required=False)]
    inputs += [
        ColSpec("string" if name in model.categorical_levels else AnyType(), name)
        for name in model.feature_names
    ]
    try:
        from churn.model.scoring import score_frame

        scored = score_frame(model, example, reasons=reasons)
        outputs = [(str(name), _mlflow_type(dtype)) for name, dtype in scored.dtypes.items()]
    except Exception as exc:  # any failure here must not block training
        logger.warning("output schema written by hand: score_frame failed on the example (%s)", exc)
        outputs = _fallback_output_columns(model, reasons)
    # Declaring the parameter lets callers of the registered model ask for more or fewer
    # reasons (predict(..., params={"reasons": k})); MLflow drops undeclared params.
    return ModelSignature(
        inputs=Schema(inputs),
        outputs=Schema([ColSpec(kind, name) for name, kind in outputs]),
        params=ParamSchema([ParamSpec("reasons", "long", reasons)]),
    )
