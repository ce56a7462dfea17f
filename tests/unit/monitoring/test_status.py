"""The status rules: thresholds, severity order and the exit decision."""

from __future__ import annotations

import pandas as pd

from churn.monitoring.status import (
    StatusThresholds,
    check_auc,
    check_calibration,
    check_feature_drift,
    check_score_drift,
    decide_status,
    flag_features,
    reaches,
)

T = StatusThresholds()


def drift(psis: list[float], missing_change: float = 0.0, unseen: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({
        "feature": [f"f{i}" for i in range(len(psis))],
        "psi": psis,
        "missing_rate_reference": 0.0,
        "missing_rate_current": missing_change,
        "missing_rate_change": missing_change,
        "unseen_share": unseen,
    })


def test_no_finding_is_ok() -> None:
    decision = decide_status(check_feature_drift(drift([0.01, 0.05]), T))
    assert decision.status == "ok" and decision.reasons() == []


def test_one_drifted_feature_warns_and_three_strong_ones_ask_for_a_retrain() -> None:
    assert decide_status(check_feature_drift(drift([0.3, 0.01]), T)).status == "warn"
    decision = decide_status(check_feature_drift(drift([0.3, 0.4, 0.5]), T))
    assert decision.status == "retrain"
    assert decision.findings[0].rule == "drifted_features"


def test_missing_rate_and_unseen_categories_warn() -> None:
    assert decide_status(check_feature_drift(drift([0.0], missing_change=0.2), T)).status == "warn"
    assert decide_status(check_feature_drift(drift([0.0], unseen=0.06), T)).status == "warn"


def test_score_drift_levels() -> None:
    assert check_score_drift(0.05, T) == []
    assert check_score_drift(0.15, T)[0].level == "warn"
    assert check_score_drift(0.3, T)[0].level == "retrain"


def test_auc_drop_levels_and_missing_reference() -> None:
    assert check_auc(0.86, 0.87, "estimated", T) == []
    assert check_auc(0.83, 0.87, "realized", T)[0].level == "warn"
    assert check_auc(0.80, 0.87, "realized", T)[0].rule == "realized_auc"
    assert check_auc(0.80, 0.87, "realized", T)[0].level == "retrain"
    assert check_auc(0.5, None, "estimated", T) == []


def test_reaches_orders_levels() -> None:
    assert reaches("retrain", "retrain") and reaches("retrain", "warn")
    assert reaches("warn", "warn") and not reaches("warn", "retrain")
    assert not reaches("ok", "warn")


def test_features_the_model_barely_uses_raise_no_finding() -> None:
    table = drift([0.5, 0.5, 0.5])
    importance = {"f0": 0.5, "f1": 0.005, "f2": 0.0}
    findings = check_feature_drift(table, T, importance)
    assert [f.subject for f in findings] == ["f0"]
    assert decide_status(findings).status == "warn"  # one strong feature, not three
    assert decide_status(check_feature_drift(table, T)).status == "retrain"


def test_flagged_features_list_every_fired_rule_with_its_importance() -> None:
    table = drift([0.5, 0.01, 0.3], missing_change=0.0)
    table.loc[1, "missing_rate_change"] = 0.3
    flagged = flag_features(table, T, {"f0": 0.5, "f1": 0.2, "f2": 0.001})
    assert flagged["feature"].tolist() == ["f0", "f1", "f2"]
    assert flagged["counts_for_status"].tolist() == [True, True, False]
    assert flag_features(drift([0.01]), T).empty


def test_calibration_rule_uses_the_binomial_standard_error() -> None:
    # n = 2600, p = 0.055: se = sqrt(0.055 * 0.945 / 2600) = 0.00447.
    assert check_calibration(0.0752, 0.0552, 2600, T)[0].rule == "calibration"  # z = +4.5
    assert check_calibration(0.0489, 0.0569, 2472, T) == []  # z = -1.7: sampling noise
    assert check_calibration(0.02, 0.05, 2000, T)[0].level == "warn"  # z = -6.2
    assert check_calibration(float("nan"), 0.05, 100, T) == []
    assert check_calibration(0.1, 0.05, 0, T) == []
