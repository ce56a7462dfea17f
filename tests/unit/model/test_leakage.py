"""Tests for the label-leakage screen and guards (:mod:`churn.model.leakage`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support.tiny import TINY_CATALOG, make_feature_frame

from churn.config import TrainConfig, parse_params
from churn.errors import ModelError
from churn.model.leakage import (
    check_leakage,
    check_plausible_auc,
    compute_single_feature_aucs,
    is_contract_timing_feature,
    score_by_level_rate,
)
from churn.model.split import split_by_time


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_feature_frame(n_customers=500, n_cutoffs=5, seed=3)


def slices(frame: pd.DataFrame) -> list[pd.DataFrame]:
    """The (train, validation, test) slices of tiny monthly data (a 25-day label window)."""
    params = parse_params({"label": {"horizon_days": 20, "grace_days": 5}})
    split = split_by_time(frame, params.train, params.label)
    return [frame.iloc[rows] for rows in (split.train, split.validation, split.test)]


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


def test_single_feature_aucs_flip_inverse_features_and_score_categories(frame):
    train, _, test = slices(frame)
    test = test.copy()
    test["active_days_last_30d"] = -test["active_days_last_30d"]  # same signal, reversed sign
    aucs = compute_single_feature_aucs(train, test, TINY_CATALOG)
    assert set(aucs) == set(TINY_CATALOG["name"])
    assert all(0.5 <= auc <= 1.0 for auc in aucs.values())
    assert aucs["support_tickets_last_30d"] > 0.6
    assert aucs["acquisition_channel"] > 0.5  # paid search churns more: rates carry signal


def test_single_feature_aucs_are_the_same_scored_in_threads(frame):
    train, _, test = slices(frame)
    serial = compute_single_feature_aucs(train, test, TINY_CATALOG)
    threaded = compute_single_feature_aucs(train, test, TINY_CATALOG, threads=2)
    assert list(threaded.items()) == list(serial.items())  # same values, catalog order
    assert len(serial) > 2 and len(set(serial.values())) > 2


def test_single_feature_aucs_fill_missing_test_values_with_the_train_median(frame):
    from sklearn.metrics import roc_auc_score

    train, _, test = slices(frame)
    train, test = train.copy(), test.copy()
    test.loc[test.index[::3], "active_days_last_30d"] = np.nan
    train["support_tickets_last_30d"] = np.nan  # no median: its missing test values become 0
    test.loc[test.index[::4], "support_tickets_last_30d"] = np.nan
    aucs = compute_single_feature_aucs(train, test, TINY_CATALOG)
    labels = test["label"].to_numpy()

    def by_hand(name: str, fill: float) -> float:
        auc = roc_auc_score(labels, test[name].fillna(fill).to_numpy())
        return max(auc, 1.0 - auc)

    median = float(np.median(train["active_days_last_30d"].dropna()))
    assert aucs["active_days_last_30d"] == pytest.approx(by_hand("active_days_last_30d", median))
    assert aucs["active_days_last_30d"] != pytest.approx(by_hand("active_days_last_30d", 0.0))
    assert aucs["support_tickets_last_30d"] == pytest.approx(
        by_hand("support_tickets_last_30d", 0.0)
    )


def _level_rates_by_hand(train_values, train_labels, test_values):
    """Naive reference: a dict of per-level lists of labels, missing and unseen -> overall."""
    by_level: dict = {}
    for value, label in zip(train_values, train_labels, strict=True):
        if not pd.isna(value):
            by_level.setdefault(value, []).append(label)
    overall = sum(train_labels) / len(train_labels)
    return np.array(
        [
            overall
            if pd.isna(value) or value not in by_level
            else sum(by_level[value]) / len(by_level[value])
            for value in test_values
        ]
    )


@pytest.mark.parametrize(
    "train_values, test_values",
    [
        # Text with missing values (None and NaN) and a level only the test rows have.
        (["a", "b", None, "a", "c", "b", "a", np.nan], ["a", "c", "d", None, "b", np.nan]),
        # Integer codes, as third-party exports carry them.
        ([3, 7, 7, 3, 11, 3, 7, 11], [7, 11, 5, 3, 3, 7]),
        # Categories that differ between the slices.
        (
            pd.Categorical(["x", "y", "x", None, "y", "z", "x", "x"]),
            pd.Categorical(["y", "w", None, "x", "z", "x"], categories=["w", "x", "y", "z"]),
        ),
        # Arrow-backed text (the features file's strings).
        (
            pd.array(["p", "q", "p", None, "q", "q", "p", "r"], dtype="string[pyarrow]"),
            pd.array(["r", "s", "p", None, "q", "q"], dtype="string[pyarrow]"),
        ),
    ],
    ids=["text", "integer codes", "categories", "arrow text"],
)
def test_level_rates_equal_a_per_level_mean(train_values, test_values):
    labels = np.array([1, 0, 1, 1, 0, 0, 1, 0])
    ours = score_by_level_rate(pd.Series(train_values), labels, pd.Series(test_values))
    expected = _level_rates_by_hand(list(train_values), list(labels), list(test_values))
    np.testing.assert_array_equal(ours, expected)
    assert len(set(ours)) >= 3  # several levels' own rates, not only the overall one


def test_level_rates_of_a_feature_missing_in_training_are_the_overall_rate():
    labels = np.array([1, 0, 0, 0])
    ours = score_by_level_rate(
        pd.Series([None] * 4, dtype="object"), labels, pd.Series(["a", None])
    )
    np.testing.assert_array_equal(ours, [0.25, 0.25])
