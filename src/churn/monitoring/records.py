"""The health record of one scoring (a history entry) and the summary of a drift table."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from churn.monitoring.estimation import EstimatedPerformance
from churn.monitoring.history import Source, summarize_score_distribution
from churn.monitoring.status import StatusThresholds


def summarize_drift(drift: pd.DataFrame | None, t: StatusThresholds) -> dict[str, Any]:
    """Return the headline numbers of a feature drift table (``None``: no feature values)."""
    if drift is None or drift.empty:
        return {"features": 0, "max_psi": None, "warn": 0, "strong": 0, "top": []}
    top = drift.head(5)
    return {
        "features": len(drift),
        "max_psi": float(drift["psi"].max()),
        "warn": int((drift["psi"] >= t.psi_warn).sum()),
        "strong": int((drift["psi"] >= t.psi_retrain).sum()),
        "top": [{"feature": r.feature, "psi": float(r.psi)} for r in top.itertuples()],
    }


def build_entry_record(
    *,
    cutoff: pd.Timestamp,
    model_version: str,
    source: Source,
    probabilities: np.ndarray,
    estimated: EstimatedPerformance,
    score_psi: float,
    drift: pd.DataFrame | None,
    thresholds: StatusThresholds,
) -> dict[str, Any]:
    """Return the JSON health record of one scoring: distribution, estimate and drift."""
    return {
        "cutoff": f"{pd.Timestamp(cutoff):%Y-%m-%d}",
        "model_version": str(model_version),
        "source": source,
        "rows": len(probabilities),
        "score_distribution": summarize_score_distribution(probabilities),
        "score_psi": None if math.isnan(score_psi) else float(score_psi),
        "estimated": estimated.to_dict(),
        "drift": summarize_drift(drift, thresholds),
    }
