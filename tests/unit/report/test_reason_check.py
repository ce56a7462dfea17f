"""Tests for churn.report.reason_check and the agreement metrics sent to MLflow."""

from __future__ import annotations

from types import SimpleNamespace

from churn.model.evaluation import flatten_for_mlflow
from churn.report.reason_check import reason_agreement_block

CHECK = {
    "rows": 1224,
    "first_reason_family_agreement": 0.705,
    "top_family_agreement": 0.746,
    "chance_agreement": 0.508,
    "majority_family_baseline": 0.664,
    "majority_family": "usage",
}


def test_the_report_shows_agreement_chance_and_majority_baseline():
    html = reason_agreement_block(SimpleNamespace(metrics={"explanations": CHECK}))
    assert "Do the reasons name the true driver?" in html
    for share in ("70.5%", "74.6%", "50.8%", "66.4%"):
        assert share in html
    assert "most common true family is usage" in html and "1,224" in html


def test_no_truth_no_block():
    assert reason_agreement_block(SimpleNamespace(metrics={"explanations": {}})) == ""
    assert reason_agreement_block(SimpleNamespace(metrics=None)) == ""


def test_mlflow_gets_the_numbers_and_skips_the_family_name():
    flat = flatten_for_mlflow({"test": {"roc_auc": 0.87}, "explanations": CHECK})
    assert flat["eval_explanations_first_reason_family_agreement"] == 0.705
    assert flat["eval_explanations_majority_family_baseline"] == 0.664
    assert "eval_explanations_majority_family" not in flat
    assert flat["eval_test_roc_auc"] == 0.87
