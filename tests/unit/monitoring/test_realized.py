"""Realized performance joins labels of closed horizons only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from churn.monitoring.realized import (
    compute_calibration_error,
    compute_realized_performance,
    join_closed_labels,
    select_closed_cutoffs,
)

UTC = "UTC"


def ts(day: str) -> pd.Timestamp:
    return pd.Timestamp(day, tz=UTC)


def test_a_cutoff_closes_when_horizon_and_grace_have_passed() -> None:
    cutoffs = [ts("2025-01-01"), ts("2025-02-01"), ts("2025-03-01")]
    # 2025-02-01 + 60 + 14 days = 2025-04-16.
    assert select_closed_cutoffs(cutoffs, ts("2025-04-16"), 60, 14) == cutoffs[:2]
    assert select_closed_cutoffs(cutoffs, ts("2025-04-15 23:59"), 60, 14) == cutoffs[:1]


def test_open_cutoffs_are_not_joined_even_with_label_rows() -> None:
    scores = pd.DataFrame({
        "customer_id": [1, 2, 1, 2],  # integer ids, as a third-party export may have
        "cutoff": [ts("2025-01-01")] * 2 + [ts("2025-03-01")] * 2,
        "churn_probability": [0.2, 0.7, 0.3, 0.4],
    })
    labels = pd.DataFrame({
        "customer_id": ["1", "2", "1", "2"],
        "cutoff": scores["cutoff"],
        "label": pd.array([0, 1, 0, 0], dtype="Int8"),
    })
    joined = join_closed_labels(scores, labels, ts("2025-04-01"), 60, 14)
    assert set(joined["cutoff"]) == {ts("2025-01-01")}
    assert joined["label"].tolist() == [0, 1]


def test_labels_of_other_cutoffs_do_not_reach_the_join() -> None:
    closed, open_ = ts("2025-01-01"), ts("2025-03-01")
    scores = pd.DataFrame({"customer_id": ["a", "b", "c"], "cutoff": [closed] * 3,
                           "churn_probability": [0.1, 0.5, 0.9]})
    # Label rows at a cutoff no score has, and twice at the open one: neither can match.
    labels = pd.DataFrame({
        "customer_id": ["a", "b", "a", "a", "b"],
        "cutoff": [closed, closed, open_, open_, ts("2024-12-01")],
        "label": pd.array([1, 0, 0, 1, 1], dtype="Int8"),
    })
    joined = join_closed_labels(scores, labels, ts("2025-04-01"), 60, 14)
    # Naive reference: each score row's label looked up by key among all label rows.
    expected = [
        next((int(r.label) for r in labels.itertuples()
              if (r.customer_id, r.cutoff) == (s.customer_id, s.cutoff)), None)
        for s in scores.itertuples()
    ]
    assert [None if pd.isna(v) else int(v) for v in joined["label"]] == expected == [1, 0, None]
    # A duplicate where it could match is still refused.
    twice = pd.concat([labels, labels.iloc[[0]]], ignore_index=True)
    with pytest.raises(pd.errors.MergeError):
        join_closed_labels(scores, twice, ts("2025-04-01"), 60, 14)


def test_realized_metrics_match_sklearn_and_skip_missing_labels() -> None:
    rng = np.random.default_rng(0)
    n = 400
    p = rng.beta(1, 6, n)
    y = (rng.random(n) < p).astype(float)
    label = pd.array(y.astype(int), dtype="Int8")
    label[:25] = pd.NA
    joined = pd.DataFrame({"customer_id": [str(i) for i in range(n)],
                           "cutoff": ts("2025-01-01"), "churn_probability": p, "label": label})
    row = compute_realized_performance(joined).iloc[0]
    known = slice(25, None)
    assert row["rows"] == n and row["labeled_rows"] == n - 25
    assert row["roc_auc"] == pytest.approx(roc_auc_score(y[known], p[known]))
    top = np.argsort(-p[known])[: int(np.ceil(0.1 * (n - 25)))]
    assert row["lift_top_decile"] == pytest.approx(y[known][top].mean() / y[known].mean())
    assert row["churn_rate"] == pytest.approx(y[known].mean())


def test_calibration_error_of_a_perfect_and_a_biased_model() -> None:
    y = np.array([0, 0, 1, 1] * 25, dtype=float)
    assert compute_calibration_error(y, np.full(100, 0.5), bins=1) == pytest.approx(0.0)
    assert compute_calibration_error(y, np.full(100, 0.9), bins=1) == pytest.approx(0.4)
