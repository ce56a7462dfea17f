"""The MLflow pyfunc flavour of a churn model: one artifact that scores anywhere.

The registered model takes the feature frame (as produced by ``churn features``) and returns,
per row, the calibrated probability, revenue at risk, reasons and risk shares (see
:func:`churn.model.scoring.score_frame`), so a batch job, a notebook or a Spark UDF
(``mlflow.pyfunc.spark_udf``) all get the same answer from the same code.

``risk_decile`` is not returned here: a decile is a property of a whole scored population, not of
a row, so the score stage (or the Spark job) adds it after scoring every row.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd

ARTIFACT_KEY = "churn_model"


class ChurnPyfuncModel(mlflow.pyfunc.PythonModel):
    """Wraps a saved :class:`churn.model.artifact.ChurnModel` directory (logged as an artifact)."""

    def __init__(self, reasons: int = 3) -> None:
        self.reasons = reasons
        self._model = None

    def load_context(self, context: Any) -> None:
        """Load the ChurnModel from the artifact directory (checksum verified)."""
        from churn.model.artifact import ChurnModel

        self._model = ChurnModel.load(context.artifacts[ARTIFACT_KEY])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None):
        """Score a feature frame; ``params={"reasons": k}`` overrides the number of reasons."""
        from churn.model.scoring import score_frame

        reasons = int((params or {}).get("reasons", self.reasons))
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return score_frame(self._model, model_input, reasons=reasons)
