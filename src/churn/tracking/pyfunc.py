"""The MLflow pyfunc flavour of a churn model: one artifact that scores anywhere.

The registered model takes the feature frame (as produced by ``churn features``), or raw entity
rows holding the model's feature columns (see :func:`prepare_pyfunc_input`), and returns,
per row, the calibrated probability, revenue at risk, reasons and risk shares (see
:func:`churn.model.scoring.score_frame`), so a batch job, a notebook or a Spark UDF
(``mlflow.pyfunc.spark_udf``) all get the same answer from the same code. When the logged
directory holds a survival head (``churn train`` logs its export folder), the rows also get
``churn_probability_<H>d`` per horizon and ``next_decision_date``, the columns and values of
``churn score`` (:func:`churn.model.horizon_scoring.score_frame_with_head`); the primary horizon
and the model form travel as model config like the number of reasons.

It is logged as an MLflow *model from code* (:data:`MODEL_CODE_PATH`, see
:func:`pyfunc_log_arguments`): MLflow stores the small code file and the ChurnModel directory
(plain, checksummed data files) and no pickled Python object, so loading a logged model
unpickles nothing (no ``python_model.pkl``). The number of reasons travels as model config.

``risk_decile`` is not returned here: a decile is a property of a whole scored population, not of
a row, so the score stage (or the Spark job) adds it after scoring every row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from churn.tracking.store import mlflow_environment

# The class below derives from MLflow's, so MLflow is imported with this module: with churn's
# environment defaults (telemetry off) in case this is the process's first import of it.
with mlflow_environment():
    import mlflow.pyfunc

ARTIFACT_KEY = "churn_model"
REASONS_CONFIG_KEY = "reasons"
HORIZON_CONFIG_KEY = "horizon_days"
MODEL_FORM_CONFIG_KEY = "model_form"
DEFAULT_REASONS = 3
DEFAULT_HORIZON_DAYS = 60
DEFAULT_MODEL_FORM = "classifier"
MODEL_CODE_PATH = Path(__file__).with_name("pyfunc_model_code.py")
"""The models-from-code file MLflow logs and runs at load time (it only builds the wrapper)."""


class ChurnPyfuncModel(mlflow.pyfunc.PythonModel):
    """Wraps a saved :class:`churn.model.artifact.ChurnModel` directory (logged as an artifact)."""

    def __init__(self, reasons: int = DEFAULT_REASONS) -> None:
        self.reasons = reasons
        self.horizon_days = DEFAULT_HORIZON_DAYS
        self.model_form = DEFAULT_MODEL_FORM
        self._model = None
        self._head = None

    def load_context(self, context: Any) -> None:
        """Load the ChurnModel, and its survival head when logged, every file verified first."""
        from churn.model.artifact import ChurnModel
        from churn.model.survival import SurvivalHead, has_survival_head

        config = getattr(context, "model_config", None) or {}
        self.reasons = int(config.get(REASONS_CONFIG_KEY, self.reasons))
        self.horizon_days = int(config.get(HORIZON_CONFIG_KEY, self.horizon_days))
        self.model_form = str(config.get(MODEL_FORM_CONFIG_KEY, self.model_form))
        directory = context.artifacts[ARTIFACT_KEY]
        self._model = ChurnModel.load(directory)
        # A model logged before the head existed (or without one) scores as before.
        self._head = SurvivalHead.load(directory) if has_survival_head(directory) else None

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None):
        """Score a feature frame; ``params={"reasons": k}`` overrides the number of reasons."""
        from churn.model.horizon_scoring import score_frame_with_head

        reasons = int((params or {}).get("reasons", self.reasons))
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        model_input = prepare_pyfunc_input(
            model_input, self._model.feature_names, self._model.categorical_levels
        )
        return score_frame_with_head(
            self._model,
            self._head,
            model_input,
            reasons,
            primary_horizon=self.horizon_days,
            head_is_primary=self.model_form == "hazard",
        )


def prepare_pyfunc_input(
    frame: pd.DataFrame,
    feature_names: Sequence[str],
    categorical: Mapping[str, Any],
    scoring_date: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Return ``frame`` made scoreable: ids as text, a cutoff, numeric features as floats.

    Decisions for rows that come from another system rather than ``churn features``:

    * ``customer_id`` becomes text (``7001`` -> ``"7001"``); missing ids stay missing.
    * ``cutoff`` absent (or entirely missing) is filled with ``scoring_date``, by default today's
      UTC midnight: raw entity rows describe the customer as of now.
    * Numeric features of integer, boolean or text type are widened to ``float64``; integers
      beyond 2**53 would lose precision, which is irrelevant for feature values. Text that is
      not a number is an error (never silently turned into a missing value).

    Raises:
        ModelError: Naming the missing feature columns, or the non-numeric column with
            example rows and values.
    """
    from churn.errors import ModelError

    missing = [name for name in feature_names if name not in frame.columns]
    if missing:
        raise ModelError(f"the scoring rows lack the model's feature columns {missing}")
    frame = frame.copy()
    if "customer_id" in frame.columns:
        ids = frame["customer_id"]
        frame["customer_id"] = ids.astype("object").where(ids.isna(), ids.astype(str))
    if "cutoff" not in frame.columns or not frame["cutoff"].notna().any():
        when = scoring_date if scoring_date is not None else pd.Timestamp.now(tz="UTC").floor("D")
        frame["cutoff"] = pd.Series(when, index=frame.index, dtype="datetime64[us, UTC]")
    for name in feature_names:
        column = frame[name]
        if name in categorical or pd.api.types.is_float_dtype(column.dtype):
            continue
        converted = pd.to_numeric(column, errors="coerce").astype("float64")
        failed = column.notna() & converted.isna()
        if failed.any():
            examples = column[failed].head(3).tolist()
            rows = list(column.index[failed][:5])
            raise ModelError(
                f"feature column {name!r} must be numeric: {int(failed.sum())} rows are not "
                f"numbers (rows {rows}, values {examples}; dtype {column.dtype})"
            )
        frame[name] = converted
    return frame


def pyfunc_log_arguments(
    model_dir: str | Path,
    reasons: int,
    *,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    model_form: str = DEFAULT_MODEL_FORM,
) -> dict[str, Any]:
    """Return the ``mlflow.pyfunc.log_model``/``save_model`` arguments of a churn model.

    Args:
        model_dir: The saved ChurnModel directory (logged as the ``churn_model`` artifact);
            when it also holds a survival head (the export folder of ``churn train``), the
            pyfunc adds the horizon columns.
        reasons: Reasons per customer when the caller passes no ``reasons`` parameter.
        horizon_days: ``label.horizon_days``, the primary horizon (used with a head only).
        model_form: ``train.model_form``; ``hazard`` makes the head's primary horizon
            ``churn_probability`` and its reasons the reasons, as in ``churn score``.

    Returns:
        ``python_model`` (the code file's path, not an object, so nothing is pickled),
        ``artifacts`` and ``model_config``.
    """
    return {
        "python_model": str(MODEL_CODE_PATH),
        "artifacts": {ARTIFACT_KEY: str(model_dir)},
        "model_config": {
            REASONS_CONFIG_KEY: int(reasons),
            HORIZON_CONFIG_KEY: int(horizon_days),
            MODEL_FORM_CONFIG_KEY: str(model_form),
        },
    }
