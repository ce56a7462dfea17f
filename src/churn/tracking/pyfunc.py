"""The MLflow pyfunc flavour of a churn model: one artifact that scores anywhere.

The registered model takes the feature frame (as produced by ``churn features``) and returns,
per row, the calibrated probability, revenue at risk, reasons and risk shares (see
:func:`churn.model.scoring.score_frame`), so a batch job, a notebook or a Spark UDF
(``mlflow.pyfunc.spark_udf``) all get the same answer from the same code.

It is logged as an MLflow *model from code* (:data:`MODEL_CODE_PATH`, see
:func:`pyfunc_log_arguments`): MLflow stores the small code file and the ChurnModel directory
(plain, checksummed data files) and no pickled Python object, so loading a logged model
unpickles nothing (no ``python_model.pkl``). The number of reasons travels as model config.

``risk_decile`` is not returned here: a decile is a property of a whole scored population, not of
a row, so the score stage (or the Spark job) adds it after scoring every row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

ARTIFACT_KEY = "churn_model"
REASONS_CONFIG_KEY = "reasons"
DEFAULT_REASONS = 3
MODEL_CODE_PATH = Path(__file__).with_name("pyfunc_model_code.py")
"""The models-from-code file MLflow logs and runs at load time (it only builds the wrapper)."""


class ChurnPyfuncModel(mlflow.pyfunc.PythonModel):
    """Wraps a saved :class:`churn.model.artifact.ChurnModel` directory (logged as an artifact)."""

    def __init__(self, reasons: int = DEFAULT_REASONS) -> None:
        self.reasons = reasons
        self._model = None

    def load_context(self, context: Any) -> None:
        """Load the ChurnModel from the artifact directory (every file verified first)."""
        from churn.model.artifact import ChurnModel

        config = getattr(context, "model_config", None) or {}
        self.reasons = int(config.get(REASONS_CONFIG_KEY, self.reasons))
        self._model = ChurnModel.load(context.artifacts[ARTIFACT_KEY])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None):
        """Score a feature frame; ``params={"reasons": k}`` overrides the number of reasons."""
        from churn.model.scoring import score_frame

        reasons = int((params or {}).get("reasons", self.reasons))
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return score_frame(self._model, model_input, reasons=reasons)


def pyfunc_log_arguments(model_dir: str | Path, reasons: int) -> dict[str, Any]:
    """Return the ``mlflow.pyfunc.log_model``/``save_model`` arguments of a churn model.

    Args:
        model_dir: The saved ChurnModel directory (logged as the ``churn_model`` artifact).
        reasons: Reasons per customer when the caller passes no ``reasons`` parameter.

    Returns:
        ``python_model`` (the code file's path, not an object, so nothing is pickled),
        ``artifacts`` and ``model_config``.
    """
    return {
        "python_model": str(MODEL_CODE_PATH),
        "artifacts": {ARTIFACT_KEY: str(model_dir)},
        "model_config": {REASONS_CONFIG_KEY: int(reasons)},
    }
