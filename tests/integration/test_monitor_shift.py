"""End to end: ``dvc repro`` on a small simulated world, with and without injected shifts.

Unshifted, the estimated ROC AUC of the backfilled cutoffs is within 0.02 of the realized one
on average and no shift-affected feature is flagged. With a price increase for the pro plan and
a support outage two months before the scoring cutoff, the monitor flags the affected
features at that first scoring cutoff, and once a horizon reaching into the shift closes
the calibration rule sees the extra churn.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.scratch_project import build_scratch_project

pytestmark = pytest.mark.slow

# No retention team: its contacts lower the hazard of the customers a shift hurts most, which
# blurs the calibration signal this test isolates (the team is tested in test_target*).
SIZE = {"customers": 4000, "months": 20, "seed": 5, "retention_actions": False}
SHIFTS = [
    {"kind": "price_increase", "plan": "pro", "from_month": 18, "size": 0.3},
    {"kind": "support_outage", "from_month": 18, "resolution_days_factor": 4.0},
]
PRICE_FEATURES = {"price_increases_last_30d", "price_increases_last_90d", "mrr_change_pct_90d",
                  "mrr_change_90d", "mrr_at_cutoff"}
SUPPORT_FEATURES = {"median_resolution_hours_last_90d"}
OVERRIDES = {
    "evaluate": {"backtest_cutoffs": 1},
    "explain": {"sample_rows": 200, "dependence_features": 1},
    "monitor": {"estimate_draws": 50},
}


def monitor_report(work: Path) -> dict:
    return json.loads((work / "reports" / "monitor.json").read_text())


@pytest.fixture(scope="module")
def unshifted(tmp_path_factory) -> dict:
    work, _ = build_scratch_project(tmp_path_factory.mktemp("plain"),
                                    {"simulate": SIZE, **OVERRIDES})
    assert (work / "data" / "monitor" / "history" / "scores").is_dir()
    assert "Model health" in (work / "reports" / "index.html").read_text()
    return monitor_report(work)


@pytest.fixture(scope="module")
def shifted(tmp_path_factory) -> dict:
    # Up to the monitor only: the stages after it (target, explain, report) run unshifted above.
    work, _ = build_scratch_project(tmp_path_factory.mktemp("shifted"),
                                    {"simulate": {**SIZE, "shifts": SHIFTS}, **OVERRIDES},
                                    stage="monitor")
    assert not (work / "reports" / "index.html").exists()
    return monitor_report(work)


def flagged(report: dict) -> set[str]:
    return {row["feature"] for row in report["flagged_features"]}


def test_estimates_match_realized_on_unshifted_data(unshifted: dict) -> None:
    comparison = unshifted["estimated_vs_realized"]
    assert comparison["cutoffs"] >= 2
    assert comparison["mean_absolute_difference"] < 0.02
    assert unshifted["status"] != "retrain", unshifted["reasons"]
    assert not flagged(unshifted) & (PRICE_FEATURES | SUPPORT_FEATURES)


def test_injected_shift_is_flagged_at_the_first_scoring_cutoff(shifted: dict) -> None:
    names = flagged(shifted)
    assert names & SUPPORT_FEATURES, shifted["flagged_features"]
    assert names & PRICE_FEATURES, shifted["flagged_features"]


def test_shifted_churn_breaks_the_calibration_once_labels_mature(shifted: dict) -> None:
    assert shifted["status"] in {"warn", "retrain"}
    assert "calibration" in {r["rule"] for r in shifted["reasons"]}, shifted["reasons"]
