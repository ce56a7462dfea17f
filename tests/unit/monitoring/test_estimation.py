"""Confidence-based estimates against a naive pair count and constructed calibrated data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from churn.monitoring.estimation import (
    compute_auc_from_ranks,
    estimate_lift,
    estimate_performance,
    estimate_roc_auc,
)


def naive_expected_auc(p: np.ndarray) -> float:
    """Expected concordant pairs over expected pairs, by a double loop over customers."""
    concordant = pairs = 0.0
    for i in range(p.size):
        for j in range(p.size):
            if i == j:
                continue
            weight = p[i] * (1 - p[j])
            pairs += weight
            if p[i] > p[j]:
                concordant += weight
            elif p[i] == p[j]:
                concordant += weight / 2
    return concordant / pairs


@pytest.mark.parametrize("seed", range(10))
def test_expected_auc_matches_naive_pair_count(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.choice([0.05, 0.1, 0.3, 0.6, 0.9], size=40) if seed % 2 else rng.beta(1, 5, 40)
    assert estimate_roc_auc(p) == pytest.approx(naive_expected_auc(p), rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_expected_lift_matches_naive_top_decile(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.beta(1, 8, 200)  # no ties: the top 20 rows are plain
    top = np.sort(p)[::-1][:20]
    assert estimate_lift(p) == pytest.approx(top.mean() / p.mean())


def test_lift_shares_a_boundary_tie_pro_rata() -> None:
    p = np.array([0.5, 0.2, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1,
                  0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])  # k = 2: 0.5 and one of two 0.2
    assert estimate_lift(p) == pytest.approx(((0.5 + 0.2) / 2) / p.mean())


def test_auc_from_ranks_equals_sklearn_per_draw() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, 60).astype(float)  # heavy ties
    labels = rng.random((7, 60)) < 0.3
    from scipy.stats import rankdata

    got = compute_auc_from_ranks(rankdata(scores), labels)
    for row, value in zip(labels, got, strict=True):
        assert value == pytest.approx(roc_auc_score(row, scores))


def test_estimates_track_realized_metrics_on_calibrated_data() -> None:
    """Labels drawn from the probabilities: the estimate is unbiased for the realized AUC."""
    rng = np.random.default_rng(11)
    differences, covered = [], 0
    for _ in range(30):
        p = rng.beta(0.6, 8, 3000)
        y = rng.random(p.size) < p
        est = estimate_performance(p, draws=100, seed=int(rng.integers(1e9)))
        realized = roc_auc_score(y, p)
        differences.append(est.roc_auc - realized)
        low, high = est.band["roc_auc"]
        covered += low <= realized <= high
        assert est.churn_rate == pytest.approx(p.mean())
    assert abs(np.mean(differences)) < 0.01
    assert covered >= 22  # a 90% band covers about 27 of 30


def test_estimates_are_wrong_when_calibration_breaks() -> None:
    """Concept drift (labels no longer follow p) is what realized performance catches."""
    rng = np.random.default_rng(5)
    p = rng.beta(0.6, 8, 3000)
    y = rng.random(p.size) < rng.permutation(p)  # labels unrelated to the ranking
    assert estimate_roc_auc(p) - roc_auc_score(y, p) > 0.15


def test_band_is_reproducible_and_empty_input_is_nan() -> None:
    p = np.linspace(0.01, 0.5, 500)
    assert estimate_performance(p, seed=1).band == estimate_performance(p, seed=1).band
    empty = estimate_performance(np.array([]))
    assert empty.rows == 0 and math.isnan(empty.roc_auc) and empty.band == {}
