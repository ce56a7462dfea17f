"""Tests for churn.model.metrics: each metric against a naive reference written here, many seeds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from churn.model.metrics import (
    build_calibration_table,
    build_gains_curve,
    build_pr_curve,
    build_roc_curve,
    compute_brier,
    compute_capture,
    compute_ece,
    compute_lift,
    compute_log_loss,
    compute_median,
    compute_pr_auc,
    compute_revenue_capture,
    compute_roc_auc,
    count_top_rows,
    downsample_curve,
    make_jsonable,
    summarize_ranking,
)

SEEDS = range(8)


def make_predictions(seed: int, n: int = 300, ties: bool = False) -> tuple[np.ndarray, ...]:
    """Labels, probabilities (optionally rounded to force ties) and revenue for one seed."""
    rng = np.random.default_rng(seed)
    p = rng.beta(1.2, 5.0, n)
    if ties:
        p = np.round(p, 1)
    y = (rng.random(n) < p).astype(float)
    y[:2] = [0.0, 1.0]  # both classes always present
    revenue = rng.choice([49.0, 199.0, 799.0], n)
    return y, p, revenue


def naive_roc_auc(y, p) -> float:
    pos, neg = p[y == 1], p[y == 0]
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def naive_average_precision(y, p) -> float:
    # Sum over distinct thresholds (highest first) of recall gained x precision at it.
    total, previous_recall = 0.0, 0.0
    for t in sorted(set(p), reverse=True):
        chosen = p >= t
        recall = y[chosen].sum() / y.sum()
        total += (recall - previous_recall) * y[chosen].mean()
        previous_recall = recall
    return total


def naive_ece(y, p, bins) -> float:
    total = 0.0
    for b in range(bins):
        lower, upper = b / bins, (b + 1) / bins
        inside = [
            (pi, yi)
            for pi, yi in zip(p, y, strict=True)
            if lower <= pi < upper or (b == bins - 1 and pi == 1.0)
        ]
        if inside:
            mean_p = sum(pi for pi, _ in inside) / len(inside)
            mean_y = sum(yi for _, yi in inside) / len(inside)
            total += len(inside) / len(p) * abs(mean_p - mean_y)
    return total


def naive_top(y, p, fraction) -> tuple[float, int]:
    """Positives among the first k rows after sorting by score (no ties in the inputs)."""
    k = math.ceil(round(fraction * len(y), 9))
    ranked = sorted(zip(p, y, strict=True), key=lambda pair: -pair[0])
    return sum(label for _, label in ranked[:k]), k


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_and_pr_auc_match_naive_references(seed):
    y, p, _ = make_predictions(seed, n=150, ties=seed % 2 == 0)
    assert compute_roc_auc(y, p) == pytest.approx(naive_roc_auc(y, p))
    assert compute_pr_auc(y, p) == pytest.approx(naive_average_precision(y, p))


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_auc_equals_scikit_learn_on_large_tied_scores(seed):
    from sklearn.metrics import roc_auc_score

    y, p, _ = make_predictions(seed, n=20_000, ties=seed % 2 == 0)
    assert compute_roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), rel=0, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_auc_is_the_same_number_whatever_the_rows_order(seed):
    """Tied scores share a rank: reordering the rows changes no bit of the AUC, with few
    distinct scores (many ties) or many (sorted in blocks by NumPy's unstable sort)."""
    y, p, _ = make_predictions(seed, n=50_000, ties=seed % 2 == 0)
    expected = compute_roc_auc(y, p)
    for order in (np.random.default_rng(seed).permutation(len(y)), np.arange(len(y))[::-1]):
        assert compute_roc_auc(y[order], p[order]) == expected
    assert expected == pytest.approx(naive_roc_auc_by_counts(y, p), rel=0, abs=1e-12)


def naive_roc_auc_by_counts(y, p) -> float:
    """Naive reference for large inputs: for each distinct score, the churners it beats and
    ties, counted with Python integers (exact)."""
    pos = sorted(p[y == 1].tolist())
    neg = sorted(p[y == 0].tolist())
    wins, j = 0.0, 0
    below = {}
    for value in neg:
        below[value] = below.get(value, 0) + 1
    for a in pos:
        while j < len(neg) and neg[j] < a:
            j += 1
        wins += j + 0.5 * below.get(a, 0)
    return wins / (len(pos) * len(neg))


def test_roc_auc_refuses_missing_scores():
    with pytest.raises(ValueError, match="NaN"):
        compute_roc_auc([0, 1, 1], [0.1, np.nan, 0.3])


@pytest.mark.parametrize("seed", SEEDS)
def test_log_loss_and_brier_match_naive_references(seed):
    y, p, _ = make_predictions(seed)
    eps = 1e-15
    expected_log_loss = -sum(
        yi * math.log(min(max(pi, eps), 1 - eps))
        + (1 - yi) * math.log(1 - min(max(pi, eps), 1 - eps))
        for yi, pi in zip(y, p, strict=True)
    ) / len(y)
    expected_brier = sum((pi - yi) ** 2 for yi, pi in zip(y, p, strict=True)) / len(y)
    assert compute_log_loss(y, p) == pytest.approx(expected_log_loss)
    assert compute_brier(y, p) == pytest.approx(expected_brier)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("bins", [2, 10, 15])
def test_ece_matches_explicit_bin_loop(seed, bins):
    y, p, _ = make_predictions(seed)
    p[0] = 1.0  # the right edge belongs to the last bin
    assert compute_ece(y, p, bins) == pytest.approx(naive_ece(y, p, bins))


def test_calibration_table_of_a_hand_made_case():
    table = build_calibration_table([0, 1, 1, 0], [0.05, 0.15, 0.95, 1.0], bins=10)
    assert table["bin"].tolist() == [0, 1, 9]
    assert table["n"].tolist() == [1, 1, 2]
    assert table["fraction_positive"].tolist() == [0.0, 1.0, 0.5]
    assert table["mean_predicted"].tolist() == pytest.approx([0.05, 0.15, 0.975])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.2])
def test_lift_capture_and_revenue_capture_match_sorting(seed, fraction):
    y, p, revenue = make_predictions(seed, n=257)
    positives_top, k = naive_top(y, p, fraction)
    assert compute_capture(y, p, fraction) == pytest.approx(positives_top / y.sum())
    assert compute_lift(y, p, fraction) == pytest.approx((positives_top / k) / y.mean())
    ranked = sorted(zip(p, y, revenue, strict=True), key=lambda row: -row[0])
    churned_top = sum(r for _, label, r in ranked[:k] if label == 1)
    churned_all = sum(r for _, label, r in ranked if label == 1)
    assert compute_revenue_capture(y, p, revenue, fraction) == pytest.approx(
        churned_top / churned_all
    )


@pytest.mark.parametrize("seed", range(3))
def test_ties_at_the_boundary_count_their_expected_share(seed):
    # Reference: average over many random orders of the tied rows.
    y, p, _ = make_predictions(seed, n=200, ties=True)
    rng = np.random.default_rng(seed)
    k = count_top_rows(len(y), 0.1)
    draws = []
    for _ in range(3000):
        order = np.lexsort((rng.random(len(y)), -p))
        draws.append(y[order[:k]].sum() / y.sum())
    assert compute_capture(y, p, 0.1) == pytest.approx(np.mean(draws), abs=0.01)


def test_ties_make_ranking_metrics_independent_of_row_order():
    y, p, _ = make_predictions(1, n=200, ties=True)
    reversed_ = compute_lift(y[::-1], p[::-1], 0.1)
    assert compute_lift(y, p, 0.1) == pytest.approx(reversed_)


def test_count_top_rows_is_the_smallest_k_covering_the_fraction():
    assert count_top_rows(1230, 0.1) == 123
    assert count_top_rows(1234, 0.1) == 124
    assert count_top_rows(5, 0.05) == 1
    with pytest.raises(ValueError):
        count_top_rows(10, 0.0)


def test_undefined_metrics_are_nan_not_errors():
    assert math.isnan(compute_roc_auc([1, 1], [0.2, 0.3]))
    assert math.isnan(compute_pr_auc([0, 0], [0.2, 0.3]))
    assert math.isnan(compute_lift([0, 0], [0.2, 0.3], 0.5))


@pytest.mark.parametrize("seed", range(3))
def test_curves_have_the_right_ends_and_shapes(seed):
    y, p, _ = make_predictions(seed, ties=True)
    roc = build_roc_curve(y, p)
    assert list(roc.columns) == ["fpr", "tpr"]
    assert roc.iloc[-1].tolist() == [1.0, 1.0]
    pr = build_pr_curve(y, p)
    assert list(pr.columns) == ["recall", "precision"]
    assert pr["recall"].is_monotonic_increasing
    gains = build_gains_curve(y, p)
    assert gains.iloc[0].tolist() == [0.0, 0.0]
    assert gains.iloc[-1].tolist() == [1.0, 1.0]
    # One point per distinct score: tied rows enter the contacted group together.
    assert len(gains) == len(set(p)) + 1


def test_downsample_keeps_ends_and_caps_points():
    curve = pd.DataFrame({"x": np.arange(2000), "y": np.arange(2000) ** 2})
    small = downsample_curve(curve, 500)
    assert len(small) <= 500
    assert small.iloc[0].tolist() == [0, 0]
    assert small.iloc[-1].tolist() == [1999, 1999**2]
    assert len(downsample_curve(curve.head(10), 500)) == 10


def test_summarize_ranking_keys_and_percent_labels():
    y, p, revenue = make_predictions(0)
    summary = summarize_ranking(y, p, bins=10, top_fractions=(0.05, 0.1, 0.2), revenue=revenue)
    assert set(summary["lift_at"]) == {"5", "10", "20"}
    assert summary["lift_at"]["10"] == pytest.approx(summary["lift_top_decile"])
    assert summary["capture_at"]["10"] == pytest.approx(summary["capture_top_decile"])
    assert summarize_ranking(y, p, bins=10, top_fractions=())["revenue_capture_top_decile"] is None


def test_make_jsonable_turns_nan_into_null_and_numpy_into_python():
    payload = {"a": np.float64("nan"), "b": [np.int64(3), math.inf], "c": {"d": np.float32(0.5)}}
    assert make_jsonable(payload) == {"a": None, "b": [3, None], "c": {"d": 0.5}}


@pytest.mark.parametrize(
    "values",
    [
        [3.0, np.nan, 1.0, 2.0],
        [4.0, 1.0, np.nan, 2.0, 3.0],  # even count: the mean of the two middle values
        [0.1, 0.7, 0.2, 0.9],
        [np.nan, np.nan],
        [5.0],
        [-0.0, 0.0, 1e30, 1e30],
    ],
)
@pytest.mark.parametrize("dtype", ["float64", "float32", "Float64"])
def test_the_median_of_the_values_present_equals_a_sorted_reference(values, dtype):
    column = pd.Series(values, dtype=dtype)
    present = sorted(float(v) for v in column.dropna())
    middle = len(present) // 2
    if not present:
        assert math.isnan(compute_median(column))
        return
    if len(present) % 2:
        expected = present[middle]
    else:  # the two middle values averaged in the column's own precision
        pair = np.array(
            present[middle - 1 : middle + 1], dtype="float32" if dtype == "float32" else "float64"
        )
        expected = float(pair.mean())
    assert compute_median(column) == expected
    assert compute_median(column) == float(column.median())
