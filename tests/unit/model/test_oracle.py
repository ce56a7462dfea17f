"""Tests for churn.model.oracle: the true probabilities within the horizon and the check that
no model beats them by more than noise."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from support.tiny import fit_tiny_model, make_feature_frame

from churn.config import SimulateConfig, parse_params
from churn.errors import ModelError
from churn.model.oracle import (
    check_model_below_oracle,
    compute_auc_standard_error,
    compute_oracle_probabilities,
)
from churn.stages.simulate import simulate


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_oracle_multiplies_monthly_survival_inside_the_horizon():
    truth = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b"],
            # Naive timestamps are read as UTC.
            "month_start": pd.to_datetime(
                ["2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01", "2024-01-01"]
            ),
            "churn_probability": [0.1, 0.2, 0.5, 0.9, 0.7],
        }
    )
    keys = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "zz"],
            "cutoff": [utc("2025-01-01"), utc("2025-02-01"), utc("2025-01-01"), utc("2025-01-01")],
        }
    )
    oracle = compute_oracle_probabilities(keys, truth, horizon_days=45)
    # a@Jan: [Jan 1, Feb 15) holds Jan and Feb; a@Feb: [Feb 1, Mar 18) holds Feb and Mar;
    # b has no month in its window; zz is not in the truth at all.
    np.testing.assert_allclose(oracle, [1 - 0.9 * 0.8, 1 - 0.8 * 0.5, 0.0, 0.0])


def test_oracle_equals_a_naive_loop_on_random_rows():
    rng = np.random.default_rng(3)
    months = pd.date_range("2024-01-01", periods=18, freq="MS", tz="UTC")
    truth = pd.DataFrame(
        {
            "customer_id": np.repeat(np.arange(30), len(months)),
            "month_start": np.tile(months, 30),
            "churn_probability": rng.uniform(0, 0.3, 30 * len(months)),
        }
    ).sample(frac=0.8, random_state=1)
    keys = pd.DataFrame(
        {
            "customer_id": rng.integers(0, 35, 200).astype(str),  # 30-34: not in the truth
            "cutoff": rng.choice(months[3:12], 200),
        }
    )
    expected = []
    for customer, cutoff in keys.itertuples(index=False):
        survival = 1.0
        for row in truth.itertuples(index=False):
            inside = cutoff <= row.month_start < cutoff + pd.Timedelta(days=75)
            if str(row.customer_id) == customer and inside:
                survival *= 1 - row.churn_probability
        expected.append(1 - survival)
    np.testing.assert_allclose(compute_oracle_probabilities(keys, truth, 75), expected)
    assert compute_oracle_probabilities(keys.iloc[:0], truth, 75).shape == (0,)


def test_oracle_window_end_is_exclusive():
    truth = pd.DataFrame(
        {
            "customer_id": ["a", "a"],
            "month_start": [utc("2025-01-01"), utc("2025-03-02")],
            "churn_probability": [0.25, 0.5],
        }
    )
    keys = pd.DataFrame({"customer_id": ["a"], "cutoff": [utc("2025-01-01")]})
    # 2025-01-01 + 60 days = 2025-03-02: that month starts exactly at the end and is outside.
    np.testing.assert_allclose(compute_oracle_probabilities(keys, truth, 60), [0.25])


def test_oracle_compares_instants_whatever_the_time_zone_or_its_absence():
    """A month start given in another zone, or naive (read as UTC), is the same instant."""
    instants = [utc("2025-01-01"), utc("2025-03-02")]
    truth = pd.DataFrame(
        {
            "customer_id": [7, 7],  # integer ids, as an export has them
            "month_start": pd.DatetimeIndex(instants).tz_convert("America/New_York"),
            "churn_probability": [0.25, 0.5],
        }
    )
    naive = pd.DataFrame({"customer_id": ["7"], "cutoff": [pd.Timestamp("2025-01-01")]})
    aware = naive.assign(cutoff=[utc("2025-01-01")])
    for keys in (naive, aware):
        np.testing.assert_allclose(compute_oracle_probabilities(keys, truth, 60), [0.25])
        np.testing.assert_allclose(compute_oracle_probabilities(keys, truth, 61), [1 - 0.75 * 0.5])


def test_oracle_counts_a_month_by_the_end_date_of_its_churn_not_by_its_start():
    """A 60-day window from 2025-01-01 ends on 2025-03-02: March starts inside it, but only a
    customer billed on the 1st can end inside it."""
    truth = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b", "b", "b"],
            "month_start": [utc("2025-01-01"), utc("2025-02-01"), utc("2025-03-01")] * 2,
            "end_if_churned": [
                utc("2025-01-15"), utc("2025-02-15"), utc("2025-03-15"),
                utc("2025-01-01"), utc("2025-02-01"), utc("2025-03-01"),
            ],
            "churn_probability": [0.1, 0.2, 0.5, 0.1, 0.2, 0.5],
        }
    )
    keys = pd.DataFrame({"customer_id": ["a", "b"], "cutoff": [utc("2025-01-01")] * 2})

    oracle = compute_oracle_probabilities(keys, truth, 60)

    np.testing.assert_allclose(oracle, [1 - 0.9 * 0.8, 1 - 0.9 * 0.8 * 0.5])


def test_oracle_without_end_dates_counts_month_starts_and_says_so(caplog):
    truth = pd.DataFrame(
        {
            "customer_id": ["a", "a"],
            "month_start": [utc("2025-01-01"), utc("2025-03-01")],
            "churn_probability": [0.25, 0.5],
        }
    )
    keys = pd.DataFrame({"customer_id": ["a"], "cutoff": [utc("2025-01-01")]})

    with caplog.at_level(logging.WARNING, logger="churn.model.oracle"):
        oracle = compute_oracle_probabilities(keys, truth, 60)

    np.testing.assert_allclose(oracle, [1 - 0.75 * 0.5])
    assert "no end_if_churned column" in caplog.text


def _churn_month(customer, end, hazard, converted, annual=False):
    """One truth row: the customer churned in October 2025 with this hazard."""
    return {
        "customer_id": customer,
        "month_start": utc("2025-10-01"),
        "end_if_churned": end,
        "churn_probability": hazard,
        "logit_total": float(np.log(hazard / (1 - hazard))),
        "churned": True,
        "billing_anchor": converted,
        "annual_contract": annual,
    }


def test_months_after_a_churn_inside_the_window_keep_the_churn_months_hazard():
    """The window from 2025-10-01 (60 days) ends on November 29. Truth has no November row for
    a customer who left in October; the probability at the cutoff must not know that."""
    truth = pd.DataFrame(
        [
            # Monthly, billed on the 15th: November 15 is inside, at October's hazard.
            _churn_month("monthly", utc("2025-10-15 09:30"), 0.2, utc("2024-03-15 09:30")),
            # Annual, renewing in October: November is no renewal, so nothing is added.
            _churn_month("annual", utc("2025-10-20"), 0.3, utc("2024-10-20"), annual=True),
            # Monthly, billed on the 30th: November 30 is after the window.
            _churn_month("late", utc("2025-10-30"), 0.1, utc("2024-01-30")),
            # Monthly, billed on the 31st: clipped to November 30, after the window too.
            _churn_month("clipped", utc("2025-10-31"), 0.1, utc("2024-01-31")),
            # Left in September, before the cutoff: nothing inside the window.
            {
                **_churn_month("gone", utc("2025-09-10"), 0.4, utc("2024-02-10")),
                "month_start": utc("2025-09-01"),
            },
        ]
    )
    customers = ["monthly", "annual", "late", "clipped", "gone"]
    keys = pd.DataFrame({"customer_id": customers, "cutoff": utc("2025-10-01")})

    oracle = compute_oracle_probabilities(keys, truth, 60)

    np.testing.assert_allclose(oracle, [1 - 0.8 * 0.8, 0.3, 0.1, 0.1, 0.0])
    # A 90-day window (to December 30) holds December 15 as well.
    ninety = compute_oracle_probabilities(keys.iloc[:1], truth, 90)
    np.testing.assert_allclose(ninety, [1 - 0.8**3])


def test_truth_without_the_contract_schedule_leaves_the_months_after_a_churn_out(caplog):
    truth = pd.DataFrame([_churn_month("a", utc("2025-10-15"), 0.2, utc("2024-03-15"))])
    keys = pd.DataFrame({"customer_id": ["a"], "cutoff": [utc("2025-10-01")]})

    with caplog.at_level(logging.WARNING, logger="churn.model.oracle"):
        oracle = compute_oracle_probabilities(keys, truth.drop(columns="billing_anchor"), 60)

    np.testing.assert_allclose(oracle, [0.2])
    assert "billing_anchor" in caplog.text


def test_oracle_is_calibrated_on_a_simulated_world():
    """Every active customer at every month start: the mean oracle probability is the realized
    churn rate within noise. Without the months after a churn it falls short by more (what
    the oracle did before: churners lost their later months' hazards)."""
    truth = simulate(SimulateConfig(customers=20000, months=12, seed=9, mess=False)).truth
    months = truth["customer_months"]
    keys = months[["customer_id", "month_start"]].rename(columns={"month_start": "cutoff"})
    end = keys["cutoff"] + pd.Timedelta(days=60)
    observed = end <= months["month_start"].max()  # the window lies inside the simulated months
    keys = keys[observed]
    churned_at = keys["customer_id"].map(truth["customers"].set_index("customer_id")["churned_at"])
    label = ((churned_at >= keys["cutoff"]) & (churned_at < end[observed])).to_numpy(dtype=float)
    standard_error = np.sqrt(label.mean() * (1 - label.mean()) / label.size)

    oracle = compute_oracle_probabilities(keys, months, 60)
    without = compute_oracle_probabilities(keys, months.drop(columns="billing_anchor"), 60)

    assert abs(oracle.mean() - label.mean()) < 3 * standard_error
    assert label.mean() - without.mean() > 3 * standard_error


@pytest.fixture(scope="module")
def simulated_truth() -> dict[str, pd.DataFrame]:
    return simulate(SimulateConfig(customers=1500, months=18, seed=5, mess=False)).truth


@pytest.mark.parametrize("horizon_days", [30, 60, 61, 90])
def test_oracle_of_the_realized_outcomes_is_the_realized_label(simulated_truth, horizon_days):
    """With each month's hazard replaced by what happened (1 in the month the customer churned,
    else 0), the oracle must say exactly who churned inside the window: the label's rule
    (``churned_at`` in ``[cutoff, cutoff + horizon)``) applied to the simulator's churn dates."""
    months = simulated_truth["customer_months"]
    realized = months.assign(churn_probability=months["churned"].astype(float))
    keys = months[["customer_id", "month_start"]].rename(columns={"month_start": "cutoff"})
    churned_at = keys["customer_id"].map(
        simulated_truth["customers"].set_index("customer_id")["churned_at"]
    )
    end = keys["cutoff"] + pd.Timedelta(days=horizon_days)
    label = ((churned_at >= keys["cutoff"]) & (churned_at < end)).to_numpy(dtype=float)
    assert 0 < label.mean() < 0.5

    oracle = compute_oracle_probabilities(keys, realized, horizon_days)

    np.testing.assert_array_equal(oracle, label)
    # Counting months by their start instead gets some of these rows wrong (what the oracle did
    # before end_if_churned): customers billed late in a month whose start is inside the window.
    by_start = compute_oracle_probabilities(
        keys, realized.drop(columns="end_if_churned"), horizon_days
    )
    assert (by_start != label).any()


def _rank_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Naive AUC: the share of (churner, non-churner) pairs ranked right (ties half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (pos.size * neg.size))


def test_auc_standard_error_matches_the_spread_of_resampled_aucs():
    rng = np.random.default_rng(0)
    aucs = []
    for _ in range(300):
        labels = np.r_[np.ones(40), np.zeros(160)].astype(int)
        scores = rng.normal(labels * 1.2, 1.0)
        aucs.append(_rank_auc(labels, scores))
    mean = float(np.mean(aucs))

    se = compute_auc_standard_error(mean, 40, 160)

    assert se == pytest.approx(float(np.std(aucs)), rel=0.2)
    assert np.isnan(compute_auc_standard_error(0.8, 0, 10))


def test_model_within_noise_of_the_oracle_passes_and_far_above_fails():
    model = fit_tiny_model(make_feature_frame(n_customers=300, n_cutoffs=3))
    labels = np.r_[np.ones(100), np.zeros(900)].astype(int)
    se = compute_auc_standard_error(0.80, 100, 900)
    params = parse_params({})

    assert check_model_below_oracle(labels, 0.80 + 2.9 * se, 0.80, model, params) is None
    with pytest.raises(ModelError, match=r"beats the simulator oracle's 0\.800"):
        check_model_below_oracle(labels, 0.80 + 3.1 * se, 0.80, model, params)
