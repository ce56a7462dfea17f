"""Tests for churn.model.treeshap's raw scores: the numba prediction kernel must equal
LightGBM's ``predict(raw_score=True)`` bit for bit, and be used only where it pays."""

from __future__ import annotations

import numpy as np
from support.small_boosters import draw_labels as _label
from support.small_boosters import train_small_booster as _train

from churn.model import treeshap
from churn.model.treeshap import FastTreeShap, compute_raw_scores


def test_raw_scores_span_several_blocks_bit_for_bit():
    # More rows than one work item of the prediction kernel, the last block partial, with
    # missing values, zeros and a categorical column: each row sums its trees in order.
    rng = np.random.default_rng(21)
    X = rng.normal(size=(2600, 5))
    X[:, 4] = rng.integers(0, 9, size=2600)
    X[rng.random(2600) < 0.1, 1] = np.nan
    X[rng.random(2600) < 0.1, 2] = 0.0
    y = _label(rng, X[:, 0] + (X[:, 4] % 3 == 0) - np.nan_to_num(X[:, 1]))
    booster = _train(X, y, rounds=40, categorical=[4])
    test = X.copy()
    test[:30, 4] = rng.choice([-1.0, 2.7, 1e10, np.nan, 40.0], size=30)
    assert len(test) > treeshap.DEFAULT_PREDICT_BLOCK_ROWS
    np.testing.assert_array_equal(
        FastTreeShap(booster).predict_raw(test), booster.predict(test, raw_score=True)
    )
    assert FastTreeShap(booster).predict_raw(test[:0]).shape == (0,)


def test_float32_and_strided_matrices_are_scored_slice_by_slice_bit_for_bit(monkeypatch):
    # A float32 matrix (the survival head's person-periods) and a strided float64 view are
    # converted a few rows at a time: several slices, the last one partial, the same scores.
    rng = np.random.default_rng(22)
    X = rng.normal(size=(2500, 4)).astype(np.float32)
    X[rng.random(2500) < 0.1, 1] = np.nan
    y = _label(rng, X[:, 0] - np.nan_to_num(X[:, 1]))
    booster = _train(X.astype(np.float64), y, rounds=30)
    explainer = FastTreeShap(booster)
    seen: list[int] = []
    kernel = treeshap.get_predict_kernel()

    def counting(rows, *args):
        seen.append(len(rows))
        return kernel(rows, *args)

    monkeypatch.setattr(treeshap.explainer, "PREDICT_CONVERT_ROWS", 1000)
    monkeypatch.setattr(treeshap.explainer, "get_predict_kernel", lambda: counting)
    np.testing.assert_array_equal(explainer.predict_raw(X), booster.predict(X, raw_score=True))
    assert seen == [1000, 1000, 500]
    strided = np.asfortranarray(X.astype(np.float64))
    np.testing.assert_array_equal(
        explainer.predict_raw(strided), booster.predict(strided, raw_score=True)
    )
    assert seen[3:] == [1000, 1000, 500]
    seen.clear()
    contiguous = X.astype(np.float64)  # already what the kernel reads: one call, no copy
    np.testing.assert_array_equal(
        explainer.predict_raw(contiguous), booster.predict(contiguous, raw_score=True)
    )
    assert seen == [2500]


def test_raw_scores_use_the_kernel_only_for_large_calls(monkeypatch, tiny_model, feature_frame):
    booster = tiny_model.booster
    reference = booster.predict(tiny_model.prepare(feature_frame), raw_score=True)
    # Below the threshold LightGBM answers and no tables are built.
    monkeypatch.setattr(treeshap.dispatch, "PREDICT_KERNEL_MIN_ROW_TREES", 10**12)
    treeshap.dispatch._CACHE.pop(booster, None)
    np.testing.assert_array_equal(tiny_model.predict_raw(feature_frame), reference)
    assert booster not in treeshap.dispatch._CACHE
    # Above it the kernel answers, with the same numbers.
    monkeypatch.setattr(treeshap.dispatch, "PREDICT_KERNEL_MIN_ROW_TREES", 1)
    np.testing.assert_array_equal(tiny_model.predict_raw(feature_frame), reference)
    assert booster in treeshap.dispatch._CACHE
    np.testing.assert_array_equal(
        compute_raw_scores(booster, tiny_model.prepare(feature_frame)), reference
    )


def test_a_batch_takes_the_backend_of_its_population(monkeypatch, tiny_model, feature_frame):
    # A batch too small for the kernel on its own is walked by it when its population is
    # large enough (the compilation is paid once for the population), with the same numbers.
    booster = tiny_model.booster
    batch = tiny_model.prepare(feature_frame.head(5))
    reference = booster.predict(batch, raw_score=True)
    monkeypatch.setattr(treeshap.dispatch, "PREDICT_KERNEL_MIN_ROW_TREES", 6 * booster.num_trees())
    treeshap.dispatch._CACHE.pop(booster, None)
    np.testing.assert_array_equal(compute_raw_scores(booster, batch), reference)
    np.testing.assert_array_equal(compute_raw_scores(booster, batch, population_rows=4), reference)
    assert booster not in treeshap.dispatch._CACHE  # 5 rows (or a population of 4 < 5): LightGBM
    np.testing.assert_array_equal(compute_raw_scores(booster, batch, population_rows=6), reference)
    assert booster in treeshap.dispatch._CACHE
