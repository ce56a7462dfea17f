"""The health record of one scoring (a history entry), the summary of a drift table, and the
per-cutoff rows of the monitor report (estimated against realized performance)."""

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


def summarize_by_cutoff(
    records: list[dict[str, Any]], realized: pd.DataFrame, version: str
) -> list[dict[str, Any]]:
    """Return one row per health record of a run: estimated and (when closed) realized metrics.

    Args:
        records: The run's entry records (:func:`build_entry_record`).
        realized: Realized performance per ``model_version`` and ``cutoff``.
        version: The model version whose realized rows are joined.
    """
    mine = realized[realized["model_version"] == version] if len(realized) else realized
    closed = {
        f"{pd.Timestamp(c):%Y-%m-%d}": r
        for c, r in zip(mine.get("cutoff", []), mine.to_dict(orient="records"), strict=True)
    }
    rows = []
    for record in sorted(records, key=lambda r: r["cutoff"]):
        done = closed.get(record["cutoff"])
        rows.append(
            {
                "cutoff": record["cutoff"],
                "source": record["source"],
                "rows": record["rows"],
                "score_psi": record["score_psi"],
                "max_feature_psi": record["drift"]["max_psi"],
                "features_over_warn": record["drift"]["warn"],
                "score_mean": record["score_distribution"]["mean"],
                "score_q10": record["score_distribution"]["q10"],
                "score_q50": record["score_distribution"]["q50"],
                "score_q90": record["score_distribution"]["q90"],
                "estimated_roc_auc": record["estimated"]["roc_auc"],
                "estimated_roc_auc_band": record["estimated"]["band"].get("roc_auc"),
                "estimated_churn_rate": record["estimated"]["churn_rate"],
                "estimated_lift_top_decile": record["estimated"]["lift_top_decile"],
                "realized_roc_auc": None if done is None else done["roc_auc"],
                "realized_churn_rate": None if done is None else done["churn_rate"],
                "realized_lift_top_decile": None if done is None else done["lift_top_decile"],
                "realized_calibration_error": None if done is None else done["calibration_error"],
            }
        )
    return rows


def compare_estimated_to_realized(by_cutoff: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the mean estimated-minus-realized ROC AUC over cutoffs where both exist."""
    pairs = [
        (r["estimated_roc_auc"], r["realized_roc_auc"])
        for r in by_cutoff
        if r["realized_roc_auc"] is not None and not np.isnan(r["realized_roc_auc"])
    ]
    if not pairs:
        return {"cutoffs": 0, "mean_difference": None, "mean_absolute_difference": None}
    diff = np.array([e - r for e, r in pairs])
    return {
        "cutoffs": len(pairs),
        "mean_difference": float(diff.mean()),
        "mean_absolute_difference": float(np.abs(diff).mean()),
    }
