"""Tests for churn.model.treeshap: FastTreeShap must equal LightGBM's pred_contrib (and shap's).

The reference is LightGBM itself (``booster.predict(X, pred_contrib=True)``), on many small
random models covering the split semantics that matter: NaN and zero handling per
missing_type, categorical sets (seen, unseen, negative, fractional and huge codes), repeated
features on a path, depth 1..8 and constant trees. A brute-force Shapley computation checks
the per-leaf table maths independently of LightGBM.
"""

from __future__ import annotations

import itertools
from math import factorial

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from support.small_boosters import draw_labels as _label
from support.small_boosters import train_small_booster as _train

from churn.model import treeshap
from churn.model.treeshap import (
    FastTreeShap,
    compute_contributions,
    explainer_for,
)
from churn.model.treeshap.tables import build_leaf_tables

TOLERANCE = 1e-9


def _assert_matches_lightgbm(booster: lgb.Booster, X: np.ndarray) -> np.ndarray:
    """Assert FastTreeShap (numba kernel, not a fallback) equals pred_contrib; return it."""
    explainer = FastTreeShap(booster)
    assert explainer.backend == "numba", explainer.fallback_reason
    ours = explainer.shap_values(X)
    reference = booster.predict(X, pred_contrib=True)
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=0, atol=TOLERANCE)
    # The prediction kernel walks the same trees: LightGBM's raw scores, bit for bit; and so
    # does the TreeSHAP kernel's own walk, which gives the same contributions beside them.
    expected_raw = booster.predict(X, raw_score=True).astype(np.float64)
    np.testing.assert_array_equal(explainer.predict_raw(X), expected_raw)
    both, raw = explainer.shap_values_and_raw(X)
    np.testing.assert_array_equal(raw, expected_raw)
    np.testing.assert_array_equal(both, ours)
    return ours


def _numeric_data(seed: int, n: int = 600, p: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    signal = 1.5 * X[:, 0] - X[:, 1] * X[:, 2] + np.sin(2 * X[:, 3])
    return X, _label(rng, signal)


@pytest.mark.parametrize("seed", range(8))
def test_numeric_models_match_pred_contrib(seed):
    X, y = _numeric_data(seed)
    rng = np.random.default_rng(100 + seed)
    booster = _train(
        X,
        y,
        num_leaves=int(rng.integers(2, 32)),
        max_depth=int(rng.integers(-1, 8)),
        objective=["binary", "regression"][seed % 2],
    )
    _assert_matches_lightgbm(booster, X[:300])


@pytest.mark.parametrize("seed", range(6))
def test_missing_values_match_pred_contrib(seed):
    """NaN in training (missing_type NaN) and NaN/inf/tiny values only at prediction time."""
    X, y = _numeric_data(seed)
    rng = np.random.default_rng(seed)
    X[rng.random(X.shape) < 0.2] = np.nan
    X[:, 5] = rng.normal(size=X.shape[0])  # never missing in training: missing_type None
    booster = _train(X, y, num_leaves=20)
    missing_types = {
        node["missing_type"]
        for tree in booster.dump_model()["tree_info"]
        for node in _internal_nodes(tree["tree_structure"])
    }
    assert missing_types == {"None", "NaN"}
    test = X[:300].copy()
    test[rng.random(test.shape) < 0.1] = np.nan
    odd = np.array([np.inf, -np.inf, 0.0, -0.0, 1e-40, -1e-40, 1e-35, 1e300])
    test[:40] = rng.choice(odd, size=(40, test.shape[1]))
    _assert_matches_lightgbm(booster, test)


@pytest.mark.parametrize("seed", range(6))
def test_zero_as_missing_matches_pred_contrib(seed):
    """Zero-heavy data with zero_as_missing: splits with missing_type Zero."""
    rng = np.random.default_rng(seed)
    n, p = 800, 5
    X = rng.poisson(0.6, size=(n, p)).astype(float) * rng.choice([-1.0, 1.0], size=(n, p))
    X[rng.random(X.shape) < 0.05] = np.nan
    y = _label(rng, X[:, 0] - np.nan_to_num(X[:, 1]) + 0.5 * (X[:, 2] == 0))
    booster = _train(X, y, zero_as_missing=True, num_leaves=12)
    assert any(
        node["missing_type"] == "Zero"
        for tree in booster.dump_model()["tree_info"]
        for node in _internal_nodes(tree["tree_structure"])
    )
    test = X[:300].copy()
    test[:20, :] = rng.choice([0.0, -0.0, 1e-36, np.nan, 2.0], size=(20, p))
    _assert_matches_lightgbm(booster, test)


@pytest.mark.parametrize("seed", range(6))
def test_categorical_features_match_pred_contrib(seed):
    """Few levels (one-vs-rest splits) and many levels (multi-word category bitsets)."""
    rng = np.random.default_rng(seed)
    n = 1500
    few = rng.integers(0, 4, n).astype(float)
    many = rng.integers(0, 70, n).astype(float)
    effect = rng.normal(size=70)
    numeric = rng.normal(size=n)
    few[rng.random(n) < 0.1] = np.nan
    signal = (few == 2) * 1.5 + effect[many.astype(int)] + numeric
    X = np.column_stack([few, many, numeric])
    booster = _train(
        X,
        _label(rng, signal),
        categorical=[0, 1],
        min_data_per_group=5,
        cat_smooth=1.0,
        max_cat_threshold=64,
        num_leaves=10,
    )
    category_sets = [
        [int(code) for code in str(node["threshold"]).split("||")]
        for tree in booster.dump_model()["tree_info"]
        for node in _internal_nodes(tree["tree_structure"])
        if node["decision_type"] == "=="
    ]
    assert max(max(codes) for codes in category_sets) >= 32  # multi-word category bitsets
    test = X[:300].copy()
    # Unseen, missing, negative, fractional and out-of-int-range codes, as LightGBM reads them.
    odd_codes = [np.nan, 4, 5, 100, -1, -0.5, 0.5, 1.9, 2.7, 1e10, -1e10, np.inf, 31, 32, 64, 2**31]
    test[:32, 0] = odd_codes * 2
    test[:32, 1] = rng.choice([np.nan, 70.0, 95.0, 31.0, 32.0, 64.0, -3.0], size=32)
    _assert_matches_lightgbm(booster, test)


@pytest.mark.parametrize("depth", range(1, 9))
def test_each_depth_matches_pred_contrib(depth):
    X, y = _numeric_data(depth, n=1500, p=10)
    booster = _train(X, y, max_depth=depth, num_leaves=min(2**depth, 64), rounds=15)
    _assert_matches_lightgbm(booster, X[:300])


def _internal_nodes(node: dict) -> list[dict]:
    if "split_index" not in node:
        return []
    return [node, *_internal_nodes(node["left_child"]), *_internal_nodes(node["right_child"])]


def _has_repeated_feature_on_a_path(node: dict, seen: tuple[int, ...] = ()) -> bool:
    if "split_index" not in node:
        return False
    feature = node["split_feature"]
    if feature in seen:
        return True
    seen = (*seen, feature)
    return _has_repeated_feature_on_a_path(
        node["left_child"], seen
    ) or _has_repeated_feature_on_a_path(node["right_child"], seen)


@pytest.mark.parametrize("seed", range(4))
def test_features_reused_on_a_path_match_pred_contrib(seed):
    """Two features and deep trees: paths split on the same feature several times."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-3, 3, size=(1000, 2))
    X[rng.random(X.shape) < 0.05] = np.nan
    y = _label(rng, 3 * np.sin(np.nan_to_num(X[:, 0]) * 2) + np.nan_to_num(X[:, 1]) ** 2 - 2)
    booster = _train(X, y, num_leaves=31, max_depth=8)
    trees = booster.dump_model()["tree_info"]
    assert any(_has_repeated_feature_on_a_path(tree["tree_structure"]) for tree in trees)
    _assert_matches_lightgbm(booster, X[:300])


def test_constant_trees_match_pred_contrib():
    """No split is possible: every tree is a single leaf, all in the base value."""
    X, y = _numeric_data(0, n=100)
    booster = _train(X, y, min_data_in_leaf=80, rounds=5)
    assert all(tree["num_leaves"] == 1 for tree in booster.dump_model()["tree_info"])
    values = _assert_matches_lightgbm(booster, X)
    np.testing.assert_array_equal(values[:, :-1], 0.0)


def test_mixed_constant_and_split_trees_match_pred_contrib():
    X, y = _numeric_data(1, n=400)
    # The first tree cannot split (single leaf); training continues with normal trees.
    first = _train(X, y, rounds=5, min_data_in_leaf=300)
    booster = lgb.train(
        {"objective": "binary", "min_data_in_leaf": 5, "verbose": -1, "num_threads": 1},
        lgb.Dataset(X, y),
        num_boost_round=3,
        init_model=first,
    )
    leaves = [tree["num_leaves"] for tree in booster.dump_model()["tree_info"]]
    assert leaves[0] == 1 and max(leaves) > 1
    _assert_matches_lightgbm(booster, X[:100])


def test_infinite_threshold_matches_pred_contrib():
    """A split "x <= inf" (NaN one way, all numbers the other) is dumped clamped to 1e300."""
    rng = np.random.default_rng(12)
    X = rng.normal(size=(600, 2))
    X[rng.random(600) < 0.3, 0] = np.nan
    y = _label(rng, 3 * np.isnan(X[:, 0]) - 1.5 + X[:, 1])
    booster = _train(X, y, num_leaves=4, rounds=10)
    thresholds = [
        node["threshold"]
        for tree in booster.dump_model()["tree_info"]
        for node in _internal_nodes(tree["tree_structure"])
    ]
    assert 1e300 in thresholds
    test = X[:200].copy()
    test[:50, 0] = rng.choice([np.inf, -np.inf, 1e300, 2e300, np.nan], size=50)
    _assert_matches_lightgbm(booster, test)


def test_contributions_add_up_to_raw_score():
    X, y = _numeric_data(3)
    X[::7, 2] = np.nan
    booster = _train(X, y, num_leaves=24)
    values = FastTreeShap(booster).shap_values(X)
    np.testing.assert_allclose(
        values.sum(axis=1), booster.predict(X, raw_score=True), rtol=0, atol=TOLERANCE
    )


def test_best_iteration_is_explained_like_predict():
    """Like booster.predict, the default explains the best iteration when one is recorded."""
    X, y = _numeric_data(4)
    booster = _train(X, y, rounds=20)
    booster.best_iteration = 7
    _assert_matches_lightgbm(booster, X[:200])
    np.testing.assert_array_equal(
        FastTreeShap(booster).shap_values_and_raw(X[:50])[1],
        booster.predict(X[:50], raw_score=True, num_iteration=7),
    )
    assert not np.allclose(
        FastTreeShap(booster).shap_values(X[:50]),
        FastTreeShap(booster, num_iteration=20).shap_values(X[:50]),
    )


def test_float32_input_and_empty_batch():
    X, y = _numeric_data(5)
    booster = _train(X, y)
    explainer = FastTreeShap(booster)
    X32 = X[:100].astype(np.float32)
    np.testing.assert_allclose(
        explainer.shap_values(X32), booster.predict(X32, pred_contrib=True), atol=TOLERANCE
    )
    assert explainer.shap_values(X[:0]).shape == (0, X.shape[1] + 1)
    _, raw = explainer.shap_values_and_raw(X32)
    np.testing.assert_array_equal(raw, booster.predict(X32, raw_score=True))
    assert [a.shape for a in explainer.shap_values_and_raw(X[:0])] == [(0, X.shape[1] + 1), (0,)]


@pytest.mark.parametrize("rows", [99, 100])
def test_contributions_and_raw_scores_equal_the_two_functions(monkeypatch, rows):
    # Below the kernel's size both come from LightGBM; at it, both from one kernel walk.
    X, y = _numeric_data(12)
    booster = _train(X, y, rounds=20)
    monkeypatch.setattr(treeshap.dispatch, "KERNEL_MIN_ROW_TREES", 20 * 100)
    matrix = X[:rows]
    contributions, base, raw = treeshap.compute_contributions_and_raw_scores(booster, matrix)
    alone, alone_base = compute_contributions(booster, matrix)
    np.testing.assert_array_equal(contributions, alone)
    np.testing.assert_array_equal(base, alone_base)
    np.testing.assert_array_equal(raw, treeshap.compute_raw_scores(booster, matrix))
    np.testing.assert_array_equal(raw, booster.predict(matrix, raw_score=True))
    assert (booster in treeshap.dispatch._CACHE) is (rows == 100)  # the kernel ran only at the size


def test_wrong_shape_is_a_clear_error():
    X, y = _numeric_data(6)
    explainer = FastTreeShap(_train(X, y, rounds=3))
    with pytest.raises(ValueError, match="6 columns"):
        explainer.shap_values(X[:, :5])
    with pytest.raises(ValueError, match="max_unique_depth"):
        FastTreeShap(_train(X, y, rounds=1), max_unique_depth=40)


def test_too_deep_paths_fall_back_to_lightgbm():
    X, y = _numeric_data(7)
    booster = _train(X, y, num_leaves=31)
    explainer = FastTreeShap(booster, max_unique_depth=2)
    assert explainer.backend == "lightgbm"
    assert "max_unique_depth=2" in (explainer.fallback_reason or "")
    np.testing.assert_array_equal(
        explainer.shap_values(X[:50]), booster.predict(X[:50], pred_contrib=True)
    )


def test_multiclass_falls_back_to_lightgbm():
    X, _ = _numeric_data(8)
    y = np.digitize(X[:, 0], [-0.5, 0.5])
    booster = _train(X, y, objective="multiclass", num_class=3, rounds=5)
    explainer = FastTreeShap(booster)
    assert explainer.backend == "lightgbm"
    assert explainer.shap_values(X[:20]).shape == (20, 3 * (X.shape[1] + 1))


def test_without_numba_falls_back_to_lightgbm(monkeypatch):
    X, y = _numeric_data(10)
    booster = _train(X, y, rounds=5)
    monkeypatch.setattr("churn.model.treeshap.explainer.numba_available", lambda: False)
    explainer = FastTreeShap(booster)
    assert explainer.backend == "lightgbm"
    np.testing.assert_array_equal(
        explainer.shap_values(X[:30]), booster.predict(X[:30], pred_contrib=True)
    )


@pytest.mark.filterwarnings(
    "ignore:The set_\\w+ function will be deprecated:PendingDeprecationWarning"
)
@pytest.mark.filterwarnings(
    "ignore:LightGBM binary classifier with TreeExplainer shap values output:UserWarning"
)
def test_matches_shap_tree_explainer():
    shap = pytest.importorskip("shap")
    rng = np.random.default_rng(11)
    X = rng.normal(size=(800, 5))
    X[:, 4] = rng.integers(0, 6, 800)
    X[rng.random(X.shape) < 0.1] = np.nan
    y = _label(rng, np.nan_to_num(X[:, 0]) + (X[:, 4] == 3))
    booster = _train(X, y, categorical=[4])
    explainer = shap.TreeExplainer(booster)
    reference = np.asarray(explainer.shap_values(X[:200]))
    ours = FastTreeShap(booster).shap_values(X[:200])
    np.testing.assert_allclose(ours[:, :-1], reference, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(ours[:, -1], explainer.expected_value, rtol=0, atol=TOLERANCE)


def _brute_force_leaf_shapley(covers: np.ndarray, value: float, satisfied: int) -> np.ndarray:
    """Shapley values of one leaf's path-dependent game, by enumerating every coalition."""
    d = covers.size

    def game(coalition: tuple[int, ...]) -> float:
        out = value
        for j in range(d):
            if j in coalition:
                out *= (satisfied >> j) & 1
            else:
                out *= covers[j]
        return out

    phi = np.zeros(d)
    for i in range(d):
        others = [j for j in range(d) if j != i]
        for size in range(d):
            weight = factorial(size) * factorial(d - size - 1) / factorial(d)
            for coalition in itertools.combinations(others, size):
                phi[i] += weight * (game((*coalition, i)) - game(coalition))
    return phi


@pytest.mark.parametrize("d", range(1, 6))
def testbuild_leaf_tables_equal_brute_force_shapley_values(d):
    rng = np.random.default_rng(d)
    covers = rng.uniform(0.05, 0.95, size=(3, d))
    values = rng.normal(size=3)
    tables = build_leaf_tables(covers, values)
    for leaf in range(3):
        for satisfied in range(1 << d):
            expected = _brute_force_leaf_shapley(covers[leaf], values[leaf], satisfied)
            for i in range(d):
                bit = 1 << i
                coef = (1 - covers[leaf, i]) / covers[leaf, i] if satisfied & bit else -1.0
                got = coef * tables[leaf, satisfied & ~bit]
                assert got == pytest.approx(expected[i], abs=1e-12)


def test_compute_contributions_matches_model_contributions(tiny_model, feature_frame):
    frame = feature_frame.copy()
    frame.loc[frame.index[:25], "acquisition_channel"] = "a_channel_never_seen"
    frame.loc[frame.index[25:50], "plan"] = pd.NA
    contributions, base = compute_contributions(tiny_model.booster, tiny_model.prepare(frame))
    expected_contributions, expected_base = tiny_model.contributions(frame)
    np.testing.assert_allclose(contributions, expected_contributions, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(base, expected_base, rtol=0, atol=TOLERANCE)
    assert contributions.shape == (len(frame), len(tiny_model.feature_names))


def test_explainer_is_cached_per_booster_and_rebuilt_after_training():
    X, y = _numeric_data(9)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1},
        lgb.Dataset(X, y),
        num_boost_round=5,
        keep_training_booster=True,
    )
    first = explainer_for(booster)
    assert explainer_for(booster) is first
    assert explainer_for(lgb.Booster(model_str=booster.model_to_string())) is not first
    booster.update()  # one more tree: the cached tables are stale
    second = explainer_for(booster)
    assert second is not first
    np.testing.assert_allclose(
        second.shap_values(X[:50]), booster.predict(X[:50], pred_contrib=True), atol=TOLERANCE
    )


def test_small_calls_use_pred_contrib_and_large_calls_the_kernel(monkeypatch):
    X, y = _numeric_data(11)
    booster = _train(X, y, rounds=20)
    threshold = 20 * 100  # rows x trees: 100 rows is the boundary
    monkeypatch.setattr(treeshap.dispatch, "KERNEL_MIN_ROW_TREES", threshold)
    assert treeshap.choose_backend(booster, 99) == "lightgbm"
    assert treeshap.choose_backend(booster, 100) == "numba"
    small = X[:99]
    contributions, base = compute_contributions(booster, small)
    # pred_contrib's own numbers, bit for bit: no kernel was involved.
    reference = booster.predict(small, pred_contrib=True)
    np.testing.assert_array_equal(contributions, reference[:, :-1])
    np.testing.assert_array_equal(base, reference[:, -1])
    assert booster not in treeshap.dispatch._CACHE  # the tables were never built
    large = X[:300]
    contributions, base = compute_contributions(booster, large)
    assert booster in treeshap.dispatch._CACHE
    kernel = explainer_for(booster).shap_values(large)
    np.testing.assert_array_equal(contributions, kernel[:, :-1])
    np.testing.assert_array_equal(base, kernel[:, -1])
