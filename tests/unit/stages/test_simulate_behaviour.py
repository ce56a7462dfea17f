"""The simulator's daily usage chance: per customer and weight, equal to the whole matrix."""

from __future__ import annotations

import numpy as np
import pytest

from churn.stages.simulate.behaviour import compute_daily_chance


def naive_daily_chance(rate: np.ndarray, weekend: np.ndarray, weight: float) -> np.ndarray:
    """The formula on every (customer, day) cell, as the simulator computed it before."""
    day_weight = np.where(weekend, weight, 1.0)
    return -np.expm1(-(rate[:, None] * day_weight[None, :])).astype(np.float32)


@pytest.mark.parametrize("days", [28, 29, 30, 31])
@pytest.mark.parametrize("weight", [0.1, 0.25, 0.9, 1.0])
def test_the_chance_equals_the_formula_on_every_cell_to_the_bit(days: int, weight: float):
    rng = np.random.default_rng(days)
    # Rates from none to certain, with the tiny and huge ones where expm1 and the float32
    # rounding matter most.
    rate = np.concatenate(
        [
            [0.0, 1e-300, 1e-12, 1e-7, 0.5, 3.0, 40.0, 1e3],
            rng.gamma(0.5, 0.4, 5_000),
        ]
    )
    weekend = ((np.arange(days) + days) % 7) >= 5

    chance = compute_daily_chance(rate, weekend, weight)

    expected = naive_daily_chance(rate, weekend, weight)
    assert chance.dtype == np.float32
    assert chance.shape == (len(rate), days)
    np.testing.assert_array_equal(chance.view(np.int32), expected.view(np.int32))


def test_weekend_days_take_the_weekend_weight_and_weekdays_the_full_rate():
    weekend = np.array([False, True, False, True])

    chance = compute_daily_chance(np.array([np.log(2.0)]), weekend, 0.5)

    # 1 - exp(-ln 2) = 1/2 on weekdays; 1 - exp(-ln 2 / 2) = 1 - 1/sqrt(2) on weekend days.
    np.testing.assert_allclose(chance[0], [0.5, 1 - 2**-0.5, 0.5, 1 - 2**-0.5], rtol=1e-6)
