"""The simulator's daily usage chance and row order, equal to their straightforward forms."""

from __future__ import annotations

import numpy as np
import pytest

from churn.stages.simulate.behaviour import compute_daily_chance, order_usage_rows


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


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("declared", [None, 2**36], ids=["by_day", "plain_argsort"])
def test_usage_rows_are_ordered_as_lexsort_orders_them(seed: int, declared: int | None):
    # A month of daily aggregates: one row per customer, day and type at most, stamped in
    # working hours, concatenated type by type as draw_usage does (customers x days in order).
    # With 2**36 customers declared a day's keys and positions need more than 63 bits.
    rng = np.random.default_rng(seed)
    customers, kinds, days = int(rng.integers(1, 300)), 6, 31
    parts = []
    for kind in range(kinds):
        hit = rng.random((customers, days)) < rng.uniform(0.01, 0.6)
        row, day = np.divmod(np.flatnonzero(hit), days)
        seconds = day * 86_400 + rng.integers(6 * 3600, 20 * 3600, len(row))
        parts.append((seconds, row, np.full(len(row), kind)))
    seconds, customer, kind = (np.concatenate(p) for p in zip(*parts, strict=True))

    order = order_usage_rows(seconds, customer, kind, declared or customers, kinds)

    np.testing.assert_array_equal(order, np.lexsort((kind, customer, seconds)))


def test_ties_and_values_out_of_range_are_refused():
    with pytest.raises(ValueError, match="share"):
        order_usage_rows(np.array([5, 5]), np.array([1, 1]), np.array([2, 2]), 3, 4)
    with pytest.raises(ValueError, match="ranges"):
        order_usage_rows(np.array([5]), np.array([3]), np.array([0]), 3, 4)
    with pytest.raises(ValueError, match="ranges"):
        order_usage_rows(np.array([-1]), np.array([0]), np.array([0]), 3, 4)
    assert order_usage_rows(np.zeros(0), np.zeros(0), np.zeros(0), 3, 4).size == 0


def test_duplicates_drawn_before_the_order_repeat_the_same_rows_as_duplicated_order():
    from churn.stages.simulate.mess import draw_duplicates, duplicated_order, repeat_duplicates

    order = np.random.default_rng(1).permutation(5_000)
    expected = duplicated_order(order, np.random.default_rng(11))
    duplicates = draw_duplicates(len(order), np.random.default_rng(11))
    # Naive reference: each entry once, twice where flagged.
    naive = [value for value, twice in zip(order, duplicates, strict=True)
             for _ in range(2 if twice else 1)]

    assert duplicates.any() and not duplicates.all()
    np.testing.assert_array_equal(repeat_duplicates(order, duplicates), expected)
    np.testing.assert_array_equal(expected, naive)
