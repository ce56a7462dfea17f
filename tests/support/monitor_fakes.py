"""A fake ``reports/monitor.json`` shaped as ``churn monitor`` writes it, for report tests."""

from __future__ import annotations

from typing import Any


def drift_row(feature: str, kind: str, psi: float, missing_before: float = 0.0,
              missing_now: float = 0.0) -> dict[str, Any]:
    """Return one drift table row (churn.monitoring.drift.DRIFT_COLUMNS)."""
    return {"feature": feature, "kind": kind, "psi": psi, "js_distance": psi / 2,
            "missing_rate_reference": missing_before, "missing_rate_current": missing_now,
            "missing_rate_change": missing_now - missing_before, "unseen_share": 0.0,
            "rows_current": 10}


def make_monitor_record(features: tuple[str, ...] = ("tickets", "csat", "plan")
                        ) -> dict[str, Any]:
    """Return a monitor report with a warn status, three drift rows and five cutoffs."""
    psis = (0.4, 0.12, 0.01)
    drift = [drift_row(name, "numeric", psi, 0.1 if psi == 0.12 else 0.0,
                       0.2 if psi == 0.12 else 0.0) for name, psi in zip(features, psis,
                                                                       strict=True)]
    by_cutoff = [
        {"cutoff": f"2025-0{m}-01", "source": "backfilled", "score_mean": 0.06,
         "score_q10": 0.01, "score_q50": 0.04, "score_q90": 0.15, "estimated_roc_auc": 0.85,
         "estimated_roc_auc_band": [0.83, 0.87], "realized_roc_auc": 0.84 if m < 4 else None}
        for m in range(1, 6)
    ]
    return {
        "status": "warn", "cutoff": "2025-06-01", "model_version": "3",
        "reasons": [{"level": "warn", "rule": "feature_psi", "subject": features[0],
                     "message": f"{features[0]}: PSI 0.400 >= 0.1"}],
        "current": {"score_psi": 0.05, "estimated": {"roc_auc": 0.85, "churn_rate": 0.06,
                                                      "band": {"roc_auc": [0.83, 0.87]}}},
        "reference": {"roc_auc": 0.87}, "thresholds": {"psi_warn": 0.1},
        "drift": drift, "by_cutoff": by_cutoff,
        "estimated_vs_realized": {"cutoffs": 3, "mean_difference": 0.01,
                                  "mean_absolute_difference": 0.01},
    }
