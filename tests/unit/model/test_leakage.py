"""Tests for the label-leakage guards (:mod:`churn.model.leakage`)."""

from __future__ import annotations

import pandas as pd
import pytest

from churn.config import TrainConfig
from churn.errors import ModelError
from churn.model.leakage import check_leakage, check_plausible_auc, is_contract_timing_feature


def test_leakage_on_a_contract_timing_feature_points_at_the_labels():
    families = {"days_to_renewal": "billing", "support_tickets_last_30d": "support"}

    with pytest.raises(ModelError, match=r"subscriptions\.ended_at holds real end dates") as raised:
        check_leakage({"days_to_renewal": 0.99, "support_tickets_last_30d": 0.6}, 0.97, families)
    assert "days_to_renewal (AUC 0.990)" in str(raised.value)

    with pytest.raises(ModelError) as other:
        check_leakage({"refund_flag": 0.99}, 0.97, {"refund_flag": "support"})
    assert "labels are wrong" not in str(other.value)
    assert is_contract_timing_feature("tenure_days") and not is_contract_timing_feature("plan")


def test_plausibility_ceiling_on_validation_or_test_auc():
    importance = pd.DataFrame({"feature": ["a", "b", "c"], "gain": [1.0, 6.0, 3.0]})
    cfg = TrainConfig()
    plausible = {"validation": {"roc_auc": 0.90}, "test": {"roc_auc": 0.97}}
    assert check_plausible_auc(plausible, importance, cfg) is False

    too_good = {"validation": {"roc_auc": 0.975}, "test": {"roc_auc": 0.90}}
    with pytest.raises(ModelError) as raised:
        check_plausible_auc(too_good, importance, cfg)
    message = str(raised.value)
    assert "validation ROC AUC 0.975" in message and "test ROC AUC" not in message
    assert "b (60% of gain), c (30% of gain), a (10% of gain)" in message

    assert check_plausible_auc(too_good, importance, TrainConfig(allow_high_auc=True)) is True
