"""The monitor report's per-cutoff rows and the estimated-against-realized summary."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from churn.monitoring.records import compare_estimated_to_realized, summarize_by_cutoff


def _record(cutoff: str, source: str, estimated_auc: float) -> dict:
    return {
        "cutoff": cutoff,
        "source": source,
        "rows": 10,
        "score_psi": 0.01,
        "drift": {"max_psi": 0.02, "warn": 0},
        "score_distribution": {"mean": 0.1, "q10": 0.01, "q50": 0.05, "q90": 0.3},
        "estimated": {
            "roc_auc": estimated_auc,
            "band": {"roc_auc": [estimated_auc - 0.01, estimated_auc + 0.01]},
            "churn_rate": 0.1,
            "lift_top_decile": 3.0,
        },
    }


def test_rows_come_in_cutoff_order_with_the_versions_realized_metrics_only() -> None:
    records = [
        _record("2025-03-01", "scored", 0.80),
        _record("2025-01-01", "backfilled", 0.82),
        _record("2025-02-01", "backfilled", 0.81),
    ]
    realized = pd.DataFrame(
        {
            "model_version": ["1", "2", "2"],
            "cutoff": pd.to_datetime(["2025-01-01", "2025-01-01", "2025-02-01"], utc=True),
            "roc_auc": [0.5, 0.79, 0.83],
            "churn_rate": [0.2, 0.11, 0.09],
            "lift_top_decile": [1.0, 2.9, 3.1],
            "calibration_error": [0.1, 0.01, 0.02],
        }
    )
    rows = summarize_by_cutoff(records, realized, "2")
    assert [r["cutoff"] for r in rows] == ["2025-01-01", "2025-02-01", "2025-03-01"]
    assert [r["realized_roc_auc"] for r in rows] == [0.79, 0.83, None]  # version 1's 0.5 unused
    assert rows[0]["estimated_roc_auc_band"] == records[1]["estimated"]["band"]["roc_auc"]
    assert rows[2]["source"] == "scored"


def test_comparison_averages_over_the_cutoffs_with_both_numbers() -> None:
    rows = [
        {"estimated_roc_auc": 0.80, "realized_roc_auc": 0.78},
        {"estimated_roc_auc": 0.81, "realized_roc_auc": 0.84},
        {"estimated_roc_auc": 0.82, "realized_roc_auc": None},
        {"estimated_roc_auc": 0.83, "realized_roc_auc": math.nan},
    ]
    differences = [0.80 - 0.78, 0.81 - 0.84]
    summary = compare_estimated_to_realized(rows)
    assert summary["cutoffs"] == 2
    assert summary["mean_difference"] == pytest.approx(sum(differences) / 2)
    assert summary["mean_absolute_difference"] == pytest.approx(
        sum(abs(d) for d in differences) / 2
    )
    assert compare_estimated_to_realized(rows[2:])["mean_difference"] is None
