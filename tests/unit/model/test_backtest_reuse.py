"""Tests for the backtest's reuse of the exported model (no refit of what train fitted)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from support.tiny import TINY_CATALOG, make_backtest_params, make_feature_frame

from churn.model.backtest import (
    is_backtest_fit,
    refit_backtest_cutoff,
    run_rolling_backtest,
    score_exported_cutoffs,
    select_backtest_cutoffs,
    split_backtest_cutoff,
    split_backtest_cutoffs,
)
from churn.model.baseline import predict_baseline
from churn.model.evaluation import evaluate_models
from churn.model.fit import train_churn_models
from churn.model.split import split_by_time, take_rows


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    return make_feature_frame(n_customers=400, n_cutoffs=6, seed=5)


@pytest.fixture(scope="module")
def trained(features):
    result = train_churn_models(features, TINY_CATALOG, make_backtest_params())
    return result.model, result.baseline


def test_the_last_backtest_cutoff_is_the_trained_fit(features, trained):
    params = make_backtest_params()
    cutoffs, _ = select_backtest_cutoffs(features, params)
    fits = [
        is_backtest_fit(trained[0], split_backtest_cutoff(features, params, c)[0], params)
        for c in cutoffs
    ]
    assert fits == [False, False, True]


def test_a_changed_parameter_or_split_is_not_the_trained_fit(features, trained):
    last = select_backtest_cutoffs(features, make_backtest_params())[0][-1]
    for changed in ({"learning_rate": 0.2}, {"n_estimators": 61}, {"calibration": "isotonic"}):
        other = make_backtest_params(**changed)
        split = split_backtest_cutoff(features, other, last)[0]
        assert not is_backtest_fit(trained[0], split, other), changed
    wider = make_backtest_params(validation_cutoffs=2)
    split = split_backtest_cutoff(features, wider, last)[0]
    assert not is_backtest_fit(trained[0], split, wider)
    # The thread count does not change a deterministic fit.
    threads = make_backtest_params(num_threads=2)
    split = split_backtest_cutoff(features, threads, last)[0]
    assert is_backtest_fit(trained[0], split, threads)


def test_splits_made_once_give_the_same_plan_and_a_failed_split_is_none(features, trained):
    params = make_backtest_params()
    cutoffs, _ = select_backtest_cutoffs(features, params)
    splits = split_backtest_cutoffs(features, params, cutoffs)
    for cutoff, split in splits.items():
        assert split is not None
        np.testing.assert_array_equal(
            split.test, split_backtest_cutoff(features, params, cutoff)[0].test
        )
    given = score_exported_cutoffs(features, params, fitted=trained, splits=splits)
    made = score_exported_cutoffs(features, params, fitted=trained)
    assert given.entries == made.entries and given.pending == made.pending
    # The given splits are the ones used: without the last one's, it is refitted.
    assert score_exported_cutoffs(
        features, params, fitted=trained, splits={**splits, cutoffs[-1]: None}
    ).pending == cutoffs
    # The second cutoff leaves no training cutoff (one for validation, one for test).
    second = pd.Timestamp(sorted(features["cutoff"].unique())[1])
    assert split_backtest_cutoffs(features, params, [second]) == {second: None}


def test_reusing_the_exported_model_gives_the_refit_entries(features, trained):
    params = make_backtest_params()
    refitted, notes = run_rolling_backtest(features, TINY_CATALOG, params)
    asked: list[list[str]] = []

    def refit(cutoffs):
        asked.append([f"{c:%Y-%m-%d}" for c in cutoffs])
        return [refit_backtest_cutoff(features, TINY_CATALOG, params, c) for c in cutoffs]

    reused, reused_notes = run_rolling_backtest(
        features, TINY_CATALOG, params, fitted=trained, refit=refit
    )
    # Only the two earlier cutoffs are refitted; the last one is scored with the trained model.
    assert asked == [[entry["cutoff"] for entry in refitted[:2]]]
    assert reused == refitted
    assert reused_notes == notes == []


def test_the_exported_cutoffs_scores_are_kept_and_reused_by_the_evaluation(features, trained):
    params = make_backtest_params()
    plan = score_exported_cutoffs(features, params, fitted=trained)
    last = select_backtest_cutoffs(features, params)[0][-1]
    assert list(plan.scored) == [last]
    scored = plan.scored[last]
    test = take_rows(features, scored.positions)
    assert set(test["cutoff"]) == {last}
    np.testing.assert_array_equal(scored.raw, trained[0].predict_raw(test))
    np.testing.assert_array_equal(scored.baseline, predict_baseline(trained[1], test))

    # The evaluation's test rows are the exported cutoff's: the kept scores give the same
    # metrics and predictions as predicting again.
    split = split_by_time(features, params.train, params.label, mode=params.ingest.mode)
    np.testing.assert_array_equal(split.test, scored.positions)
    fresh = evaluate_models(features, *trained, params)
    reused = evaluate_models(features, *trained, params, known=plan.scored.values())
    assert reused.metrics == fresh.metrics
    pd.testing.assert_frame_equal(reused.predictions, fresh.predictions)
    # They are what the evaluation uses (changed scores change its metrics) ...
    bent = replace(scored, raw=-scored.raw)
    assert evaluate_models(features, *trained, params, known=[bent]).metrics != fresh.metrics
    # ... but only for exactly these rows in this order.
    moved = replace(bent, positions=scored.positions[::-1].copy())
    assert evaluate_models(features, *trained, params, known=[moved]).metrics == fresh.metrics
