"""Policies at equal capacity and their comparison on a hand-built truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.targeting.policies import (
    choose_by_policies,
    compare_on_truth,
    cumulative_curves,
    draw_random_order,
)


def _hand_built() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    # Three customers, two plays. The riskiest (a) is lost anyway; b's first-reason play does
    # nothing but the other play works; c is small.
    candidates = pd.DataFrame({
        "customer_id": ["a", "a", "b", "b", "c"],
        "play": ["call", "mail", "call", "mail", "call"],
        "team": "t",
        "churn_probability": [0.9, 0.9, 0.5, 0.5, 0.6],
        "mrr": [10.0, 10.0, 100.0, 100.0, 5.0],
        "expected_value": [1.0, -2.0, 3.0, 40.0, 0.5],
    })
    first = pd.DataFrame({"customer_id": ["a", "b", "c"], "play": ["call", "call", "call"]})
    truth = pd.DataFrame({
        "customer_id": ["a", "a", "b", "b", "c"],
        "play": ["call", "mail", "call", "mail", "call"],
        "saved_revenue": [0.0, 0.0, 0.0, 500.0, 20.0],
        "discount_given": [0.0, 0.0, 0.0, 50.0, 0.0],
    })
    return candidates, first, truth


def test_policies_choose_within_capacity_and_by_their_rule():
    candidates, first, _ = _hand_built()
    chosen = choose_by_policies(candidates, first, {"t": 1}, {"call": None, "mail": None},
                                draw_random_order(first["customer_id"], 0))
    assert chosen["expected_value"][["customer_id", "play"]].values.tolist() == [["b", "mail"]]
    assert chosen["top_probability"][["customer_id", "play"]].values.tolist() == [["a", "call"]]
    assert chosen["top_revenue_at_risk"][["customer_id", "play"]].values.tolist() == [
        ["b", "call"]]
    assert all(len(frame) == 1 for frame in chosen.values())


def test_comparison_on_truth_is_computed_from_the_truth_rows():
    candidates, first, truth = _hand_built()
    chosen = choose_by_policies(candidates, first, {"t": 2}, {"call": None, "mail": None},
                                draw_random_order(first["customer_id"], 0))
    table = compare_on_truth(chosen, truth, {"call": 1.0, "mail": 2.0}).set_index("policy")
    # EV: b/mail (500 saved net of 50 given, 2 fixed) then a/call (0 saved, 1 fixed).
    assert table.loc["expected_value", "true_saved_revenue"] == pytest.approx(500.0)
    assert table.loc["expected_value", "true_saved_before_discounts"] == pytest.approx(550.0)
    assert table.loc["expected_value", "true_net_value"] == pytest.approx(500 - 2 - 1)
    # Top probability: a/call then c/call: 20 saved.
    assert table.loc["top_probability", "true_saved_revenue"] == pytest.approx(20.0)
    # Top revenue at risk: b/call (50) then a/call (9): 0 saved.
    assert table.loc["top_revenue_at_risk", "true_saved_revenue"] == pytest.approx(0.0)
    assert (table["contacts"] == 2).all() and (table["matched"] == 2).all()


def test_cumulative_curves_add_up():
    frame = pd.DataFrame({"v": [3.0, 1.0, 2.0]})
    curves = cumulative_curves({"p": frame}, "v")
    assert curves["cumulative_value"].tolist() == [3.0, 4.0, 6.0]
    assert curves["contacts"].tolist() == [1, 2, 3]


def test_random_policy_follows_each_customers_draw_over_the_population():
    candidates, first, _ = _hand_built()
    # Drawn over the population (d and e have no candidate): a customer's draw does not depend
    # on who has an addressed reason.
    population = pd.Series(["d", "a", "e", "b", "c"])
    order = draw_random_order(population, 3)
    assert order["customer_id"].tolist() == population.tolist()
    assert order["random_order"].tolist() == pytest.approx(
        np.random.default_rng(3).random(5).tolist())
    draw = dict(zip(order["customer_id"], order["random_order"], strict=True))
    chosen = choose_by_policies(candidates, first, {"t": 3}, {"call": None, "mail": None}, order)
    # Naive reference: the first reasons' customers by their draw, highest first.
    expected = sorted(first["customer_id"], key=lambda c: -draw[c])
    assert chosen["random"]["customer_id"].tolist() == expected
    assert chosen["random"]["random_order"].tolist() == [draw[c] for c in expected]
    assert (chosen["random"]["play"] == "call").all()


def test_a_population_with_a_customer_twice_is_refused_by_name():
    from churn.errors import DataContractError

    with pytest.raises(DataContractError, match=r"2 rows .* \['b'\]"):
        draw_random_order(pd.Series(["a", "b", "c", "b"]), 0)
