"""The dose-response effect: a known log-odds reduction per unit of dose is recovered."""

from __future__ import annotations

import numpy as np
import pytest

from churn.targeting.dose_response import (
    fit_dose_response,
    implied_save_rate,
    save_rates_from_dose,
)


def _logged(seed: int, theta: float, alpha: float, n: int = 8000):
    rng = np.random.default_rng(seed)
    expected = rng.uniform(0.05, 0.5, n)
    dose = rng.exponential(0.8, n)
    control = rng.random(n) < 0.25
    logit = np.log(expected / (1 - expected)) + alpha - theta * dose * ~control
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return churned, control, expected, dose


@pytest.mark.parametrize("seed", range(8))
def test_a_known_dose_effect_is_recovered_within_its_uncertainty(seed):
    churned, control, expected, dose = _logged(seed, theta=0.4, alpha=0.3)
    fit = fit_dose_response(churned, control, expected, dose)
    assert abs(fit.theta - 0.4) < 3 * fit.standard_error
    assert abs(fit.alpha - 0.3) < 0.15
    assert fit.standard_error < 0.15
    assert fit.treated_rows + fit.control_rows == len(churned)


def test_no_effect_reads_as_theta_near_zero():
    churned, control, expected, dose = _logged(3, theta=0.0, alpha=0.0, n=20000)
    fit = fit_dose_response(churned, control, expected, dose)
    assert abs(fit.theta) < 3 * fit.standard_error


def test_the_fit_matches_a_naive_grid_search_of_the_likelihood():
    churned, control, expected, dose = _logged(5, theta=0.5, alpha=-0.2, n=3000)
    fit = fit_dose_response(churned, control, expected, dose)
    offset = np.log(expected / (1 - expected))
    best, best_ll = None, -np.inf
    for a in np.linspace(-0.6, 0.2, 81):
        for t in np.linspace(0.0, 1.0, 101):
            p = 1 / (1 + np.exp(-(offset + a - t * dose * ~control)))
            ll = np.sum(churned * np.log(p) + (1 - churned) * np.log(1 - p))
            if ll > best_ll:
                best, best_ll = (a, t), ll
    assert fit.alpha == pytest.approx(best[0], abs=0.011)
    assert fit.theta == pytest.approx(best[1], abs=0.011)


def test_no_fit_without_both_arms_or_without_a_dose():
    churned = np.array([1, 0, 1, 0])
    expected = np.full(4, 0.3)
    assert fit_dose_response(churned, np.zeros(4, bool), expected, np.ones(4)) is None
    assert fit_dose_response(churned, np.array([1, 0, 1, 0], bool), expected,
                             np.zeros(4)) is None


def test_save_rates_from_dose_by_hand():
    p, dose, theta = np.array([0.5, 0.2, 0.3]), np.array([1.0, 0.0, np.nan]), 0.5
    rates = save_rates_from_dose(p, dose, theta)
    treated = 1 / (1 + np.exp(-(0.0 - 0.5)))  # logit(0.5) = 0
    assert rates[0] == pytest.approx(1 - treated / 0.5)
    assert rates[1] == pytest.approx(0.0, abs=1e-12)
    assert rates[2] == pytest.approx(0.0, abs=1e-12)  # missing dose: no effect


def test_implied_save_rate_is_the_ratio_of_sums():
    churned, control, expected, dose = _logged(1, theta=0.4, alpha=0.0, n=4000)
    fit = fit_dose_response(churned, control, expected, dose)
    rate, se = implied_save_rate(expected[:10], dose[:10], fit)
    treated = 1 / (1 + np.exp(-(np.log(expected[:10] / (1 - expected[:10]))
                                - fit.theta * dose[:10])))
    assert rate == pytest.approx(1 - treated.sum() / expected[:10].sum())
    assert 0 < se < 1
