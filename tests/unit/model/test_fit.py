"""Tests for churn.train's pure core: fit, calibration, guards, baseline, tuning (no MLflow)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support.tiny import TINY_CATALOG, make_feature_frame

from churn.config import TrainConfig, parse_params
from churn.errors import ModelError
from churn.model.artifact import ChurnModel
from churn.model.baseline import fit_baseline, predict_baseline
from churn.model.fit import (
    check_label_balance,
    find_dead_features,
    fit_and_score_validation,
    fit_churn_model,
    train_churn_models,
)
from churn.model.metrics import compute_brier, summarize_predictions
from churn.model.split import split_by_time
from churn.stages.train import build_train_report

FAST_TRAIN = {"min_child_samples": 20, "n_estimators": 120, "num_threads": 1}


def fast_params(**train):
    """Parameters for tiny monthly data: a 25-day label window, small fast trees."""
    return parse_params(
        {"label": {"horizon_days": 20, "grace_days": 5}, "train": {**FAST_TRAIN, **train}}
    )


def slices(frame, params):
    split = split_by_time(frame, params.train, params.label)
    return [frame.iloc[rows] for rows in (split.train, split.validation, split.test)]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_feature_frame(n_customers=500, n_cutoffs=5, seed=3)


def test_fit_learns_levels_on_train_and_typical_values_on_the_latest_labeled_cutoff(frame):
    params = fast_params()
    train, validation, _ = slices(frame, params)
    validation = validation.copy()
    validation.loc[validation.index[:5], "plan"] = "enterprise"  # a level train never saw
    model = fit_churn_model(train, validation, TINY_CATALOG, params.train)
    assert "enterprise" not in model.categorical_levels["plan"]
    # Naive reference: the rows of the latest cutoff among train and validation.
    both = pd.concat([train, validation])
    latest = both[both["cutoff"] == both["cutoff"].max()]
    assert latest["cutoff"].max() > train["cutoff"].min()
    assert model.typical_values["active_days_last_30d"] == latest["active_days_last_30d"].median()
    assert model.typical_values["plan"] == latest["plan"].mode().iloc[0]
    reference = model.metadata["reason_reference"]
    assert reference["rows"] == len(latest)
    assert reference["churn_rate"] == pytest.approx(latest["label"].mean())
    assert model.feature_names == tuple(TINY_CATALOG["name"])
    assert model.metadata["n_train"] == len(train)
    assert model.metadata["train_positives"] == int(train["label"].sum())
    assert 1 <= model.metadata["best_iteration"] <= params.train.n_estimators
    assert model.metadata["lgb_params"]["num_threads"] == 1


def test_fit_is_deterministic_and_survives_save_and_load(frame, tmp_path):
    params = fast_params()
    train, validation, test = slices(frame, params)
    first = fit_churn_model(train, validation, TINY_CATALOG, params.train)
    second = fit_churn_model(train, validation, TINY_CATALOG, params.train)
    np.testing.assert_array_equal(first.predict_proba(test), second.predict_proba(test))
    first.save(tmp_path / "model")
    loaded = ChurnModel.load(tmp_path / "model")
    np.testing.assert_allclose(loaded.predict_proba(test), first.predict_proba(test))


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibration_lowers_the_brier_score_of_a_skewed_model(frame, method):
    # scale_pos_weight=10 pushes raw scores up: the raw probabilities overstate churn. Early
    # stopping on AUC (ranking) lets the skew build up, as it would in a real weighted run.
    params = fast_params(scale_pos_weight=10.0, early_stopping_metric="auc", calibration=method)
    train, validation, test = slices(frame, params)
    model = fit_churn_model(train, validation, TINY_CATALOG, params.train)
    labels = test["label"].astype(float).to_numpy()
    raw = 1.0 / (1.0 + np.exp(-model.predict_raw(test)))
    calibrated = model.predict_proba(test)
    assert raw.mean() > 2 * labels.mean()  # the raw model really is miscalibrated
    assert compute_brier(labels, calibrated) < 0.8 * compute_brier(labels, raw)


def test_training_with_a_single_class_fails_clearly(frame):
    frame = frame.copy()
    frame["label"] = pd.array(np.zeros(len(frame), dtype="int8"), dtype="Int8")
    with pytest.raises(ModelError, match="single class"):
        train_churn_models(frame, TINY_CATALOG, fast_params())


def test_too_few_positives_fails_clearly(frame):
    with pytest.raises(ModelError, match=r"fewer than train.min_positives = 100000"):
        train_churn_models(frame, TINY_CATALOG, fast_params(min_positives=100_000))


def test_check_label_balance_names_the_slice():
    with pytest.raises(ModelError, match="validation rows hold a single class"):
        check_label_balance(np.ones(10), 1, "validation")
    check_label_balance(np.array([0, 1, 1]), 2, "training")


def test_leakage_guard_names_a_planted_copy_of_the_label(frame):
    rng = np.random.default_rng(0)
    leaky = frame.copy()
    noise = rng.normal(0, 0.3, len(frame))
    leaky["refund_flag_next_month"] = leaky["label"].astype(float) + noise
    catalog = pd.concat(
        [
            TINY_CATALOG,
            pd.DataFrame(
                [["refund_flag_next_month", "billing", "post_sale", "numeric", "", "refund flag"]],
                columns=TINY_CATALOG.columns,
            ),
        ],
        ignore_index=True,
    )
    with pytest.raises(
        ModelError, match=r"refund_flag_next_month \(AUC (0\.9[7-9]\d|1\.000)\)"
    ) as raised:
        train_churn_models(leaky, catalog, fast_params())
    assert "support_tickets_last_30d" not in str(raised.value)


def test_baseline_uses_train_statistics_and_tolerates_unseen_and_missing_levels(frame):
    params = fast_params()
    train, _, test = slices(frame, params)
    baseline = fit_baseline(train, TINY_CATALOG)
    nps = baseline.numeric.index("last_nps_score")
    assert baseline.medians[nps] == train["last_nps_score"].median()
    odd = test.head(20).copy()
    odd["plan"] = ["brand_new_plan"] * 10 + [pd.NA] * 10
    probabilities = predict_baseline(baseline, odd[list(reversed(odd.columns))])
    assert probabilities.shape == (20,) and np.all((probabilities > 0) & (probabilities < 1))
    with pytest.raises(ModelError, match="plan"):
        predict_baseline(baseline, odd.drop(columns=["plan"]))


def test_train_churn_models_reports_both_models_on_validation_and_test(frame):
    result = train_churn_models(frame, TINY_CATALOG, fast_params())
    assert set(result.metrics) == {"validation", "test", "baseline_validation", "baseline_test"}
    for block in result.metrics.values():
        assert set(block) == {"n", "positives", "roc_auc", "pr_auc", "brier", "log_loss"}
    assert result.metrics["test"]["roc_auc"] > 0.65
    assert result.metrics["baseline_test"]["roc_auc"] > 0.65
    assert list(result.test_predictions.columns) == [
        "customer_id",
        "cutoff",
        "label",
        "churn_probability",
        "raw_probability",
        "baseline_probability",
    ]
    assert len(result.test_predictions) == result.split.test.size
    assert result.model.metadata["test_cutoffs"] == ["2025-05-01"]
    assert result.importance["feature"].iloc[0] in {
        "support_tickets_last_30d",
        "active_days_last_30d",
    }
    assert result.trials == [] and result.tuned_params == {}


def test_validation_metrics_come_from_the_fit_and_equal_predicting_validation_again(frame):
    params = fast_params()
    result = train_churn_models(frame, TINY_CATALOG, params)
    validation = frame.iloc[result.split.validation]
    expected = summarize_predictions(
        validation["label"].to_numpy(dtype="int64"), result.model.predict_proba(validation)
    )

    assert result.metrics["validation"] == expected


def test_the_fit_returns_the_validation_rows_raw_scores_in_their_order(frame):
    params = fast_params()
    train, validation, _ = slices(frame, params)
    model, raw = fit_and_score_validation(train, validation, TINY_CATALOG, params.train)

    np.testing.assert_array_equal(raw, model.predict_raw(validation))
    assert raw.dtype == np.float64


def test_find_dead_features_names_all_missing_and_constant_columns():
    train = pd.DataFrame(
        {
            "all_missing": [np.nan, np.nan, np.nan],
            "constant": [2.0, 2.0, 2.0],
            "constant_text": ["a", "a", "a"],
            "value_or_missing": [1.0, np.nan, 1.0],
            "varying": [1.0, 2.0, 1.0],
        }
    )
    dead = find_dead_features(train, list(train.columns))
    assert set(dead) == {"all_missing", "constant", "constant_text"}
    assert dead["all_missing"] == "missing on all 3 training rows"
    assert dead["constant"] == "constant (2.0) on all 3 training rows"


@pytest.mark.parametrize(
    "values",
    [
        [0.0, -0.0, 0.0],
        [1, 1.0, 1],
        [1, "1", 1],
        ["a", "a", "b"],
        [2.0, 2.0, 2.5],
        [5, 5, 5],
        [4, 9, 4],
        [True, True, True],
        [np.nan, 3.0, 3.0],
    ],
)
@pytest.mark.parametrize("dtype", [None, "object", "category"])
def test_a_feature_is_constant_exactly_when_it_has_one_distinct_value(values, dtype):
    """Naive reference: no value missing and one distinct value among them, by a set."""
    column = pd.Series(values, dtype=dtype)
    distinct = {value for value in column.tolist() if not pd.isna(value)}
    expected = not column.isna().any() and len(distinct) == 1
    dead = find_dead_features(pd.DataFrame({"feature": column}), ["feature"])
    assert ("feature" in dead) == expected
    if expected:
        assert dead["feature"].startswith("constant (")


def test_dead_features_on_train_rows_are_left_out_of_the_model(frame, caplog):
    params = fast_params()
    train_rows = slices(frame, params)[0].index
    frame = frame.assign(usage_login_events_last_7d=np.nan, plan_is_paid=1.0)
    # Alive after training (validation/test) does not make a feature usable: train decides.
    frame.loc[~frame.index.isin(train_rows), "plan_is_paid"] = 0.0
    catalog = pd.concat(
        [
            TINY_CATALOG,
            TINY_CATALOG.iloc[[0]].assign(name="usage_login_events_last_7d"),
            TINY_CATALOG.iloc[[0]].assign(name="plan_is_paid"),
        ],
        ignore_index=True,
    )
    with caplog.at_level("WARNING", logger="churn.model.fit"):
        result = train_churn_models(frame, catalog, params)
    assert set(result.dropped_features) == {"usage_login_events_last_7d", "plan_is_paid"}
    assert result.dropped_features["usage_login_events_last_7d"].startswith("missing on all")
    assert result.dropped_features["plan_is_paid"].startswith("constant (1.0)")
    assert "usage_login_events_last_7d" not in result.model.feature_names
    assert "plan_is_paid" not in result.model.feature_names
    assert set(result.model.feature_names) == set(TINY_CATALOG["name"])
    assert result.model.metadata["dropped_features"] == result.dropped_features
    assert "usage_login_events_last_7d" not in result.feature_aucs
    assert "feature usage_login_events_last_7d left out of the model: missing on all" in (
        caplog.text
    )
    report = build_train_report(result, {}, allow_high_auc=False)
    assert set(report["dropped_features"]) == {"usage_login_events_last_7d", "plan_is_paid"}


def test_entity_mode_trains_on_a_single_cutoff_and_says_so():
    frame = make_feature_frame(n_customers=2000, n_cutoffs=1, seed=5)
    result = train_churn_models(frame, TINY_CATALOG, fast_params())
    assert result.split.mode == "entity"
    assert "stratified random split" in result.split.notes[0]
    assert result.model.metadata["split_mode"] == "entity"


def test_tuning_records_trials_and_fits_with_the_best_params(frame):
    params = fast_params(tuning={"enabled": True, "trials": 3})
    result = train_churn_models(frame, TINY_CATALOG, params)
    assert [trial["number"] for trial in result.trials] == [0, 1, 2]
    best = max(result.trials, key=lambda trial: trial["validation_pr_auc"])
    assert result.tuned_params == best["params"]
    assert result.model.metadata["tuned_params"] == best["params"]
    lgb_params = result.model.metadata["lgb_params"]
    assert lgb_params["num_leaves"] == best["params"]["num_leaves"]
    assert lgb_params["learning_rate"] == best["params"]["learning_rate"]


def test_scale_pos_weight_is_a_validated_knob():
    with pytest.raises(ValueError):
        TrainConfig(scale_pos_weight=0)


def test_a_plausible_model_is_not_marked_as_accepted(frame):
    result = train_churn_models(frame, TINY_CATALOG, fast_params())
    assert result.metrics["test"]["roc_auc"] < 0.97
    assert result.model.metadata["high_auc_accepted"] is False
