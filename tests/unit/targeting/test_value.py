"""Expected value and the greedy capacity-constrained choice."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from churn.config import PlayConfig, TargetConfig
from churn.targeting.uplift import SEGMENTS, PlayEffect
from churn.targeting.value import build_candidates, select_contacts


def _random_candidates(rng: np.random.Generator, n_customers: int) -> pd.DataFrame:
    rows = []
    for customer in range(n_customers):
        for play, team in (("a", "t1"), ("b", "t1"), ("c", "t2")):
            if rng.random() < 0.7:
                rows.append({"customer_id": customer, "play": play, "team": team,
                             "expected_value": rng.normal(5, 10)})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", range(20))
def test_capacity_is_respected_and_negative_value_never_chosen(seed):
    rng = np.random.default_rng(seed)
    candidates = _random_candidates(rng, 30)
    teams = {"t1": int(rng.integers(0, 8)), "t2": int(rng.integers(0, 8))}
    capacity = {"a": int(rng.integers(0, 4)), "b": None, "c": None}
    chosen = select_contacts(candidates, "expected_value", teams, capacity)
    assert (chosen["expected_value"] > 0).all()
    assert chosen["customer_id"].is_unique
    for team, limit in teams.items():
        assert (chosen["team"] == team).sum() <= limit
    assert (chosen["play"] == "a").sum() <= capacity["a"]


@pytest.mark.parametrize("seed", range(15))
def test_greedy_matches_the_brute_force_optimum_for_one_team(seed):
    # One team, one play per customer candidate: greedy by value is optimal (naive reference).
    rng = np.random.default_rng(seed)
    values = rng.normal(3, 6, 7)
    candidates = pd.DataFrame({"customer_id": range(7), "play": "a", "team": "t",
                               "expected_value": values})
    limit = int(rng.integers(0, 7))
    chosen = select_contacts(candidates, "expected_value", {"t": limit}, {"a": None})
    best = max(
        (sum(v for v in subset if v > 0) for k in range(limit + 1)
         for subset in itertools.combinations(values, k)),
        default=0.0,
    )
    assert chosen["expected_value"].sum() == pytest.approx(best)


def test_baselines_may_take_negative_values_when_asked():
    candidates = pd.DataFrame({"customer_id": [1, 2], "play": "a", "team": "t",
                               "expected_value": [-5.0, -1.0], "p": [0.9, 0.1]})
    chosen = select_contacts(candidates, "p", {"t": 1}, {"a": None}, positive_value_only=False)
    assert chosen["customer_id"].tolist() == [1]
    assert select_contacts(candidates, "expected_value", {"t": 2}, {"a": None}).empty


def _effects(rate_low: float, rate_high: float, split: float | None) -> list[PlayEffect]:
    rates = {"not_addressed": 0.0, "addressed_low_dose": rate_low,
             "addressed_high_dose": rate_high}
    return [PlayEffect("call", s, rates[s], None, "configured", 0, 0, split) for s in SEGMENTS]


def test_expected_value_is_probability_times_effect_times_value_minus_cost():
    config = TargetConfig(
        months_kept=10, teams={"t": 5},
        plays={"call": PlayConfig(families=("support",), team="t", cost=7.0,
                                  cost_share_of_mrr=0.1, cost_months=2, save_rate=0.3)},
    )
    scores = pd.DataFrame({"customer_id": ["x", "y"], "churn_probability": [0.5, 0.2],
                           "mrr": [100.0, 50.0]})
    eligible = pd.DataFrame({"customer_id": ["x", "y"], "play": "call", "reason_rank": [1, 2],
                             "reason_feature": ["tickets", "tickets"]})
    doses = pd.DataFrame({"customer_id": ["x", "y"], "dose_support": [0.9, 0.1]})
    out = build_candidates(scores, eligible, doses, _effects(0.2, 0.4, 0.5), config)
    out = out.set_index("customer_id")
    # x: high dose -> 0.4; y: low dose -> 0.2. cost = 7 + 0.1 * mrr * 2.
    assert out.loc["x", "expected_value"] == pytest.approx(0.5 * 0.4 * 100 * 10 - (7 + 20))
    assert out.loc["y", "expected_value"] == pytest.approx(0.2 * 0.2 * 50 * 10 - (7 + 10))
    assert out.loc["x", "segment"] == "addressed_high_dose"


def test_a_dose_response_gives_each_customer_its_own_save_rate():
    from churn.targeting.dose_response import DoseEffect
    from churn.targeting.value import SOURCE_DOSE_RESPONSE

    config = TargetConfig(
        months_kept=10, teams={"t": 5},
        plays={"call": PlayConfig(families=("support",), team="t", cost=7.0, save_rate=0.3)},
    )
    scores = pd.DataFrame({"customer_id": ["x", "y"], "churn_probability": [0.5, 0.2],
                           "mrr": [100.0, 50.0]})
    eligible = pd.DataFrame({"customer_id": ["x", "y"], "play": "call", "reason_rank": [1, 2],
                             "reason_feature": ["tickets", "tickets"]})
    doses = pd.DataFrame({"customer_id": ["x", "y"], "dose_support": [2.0, 0.0]})
    fit = DoseEffect(theta=0.5, standard_error=0.1, alpha=0.0, treated_rows=50, control_rows=50)
    out = build_candidates(scores, eligible, doses, _effects(0.2, 0.4, 0.5), config,
                           dose_effects={"call": fit}).set_index("customer_id")
    # x: logit(0.5) - 0.5 x 2 = -1 -> treated p = sigmoid(-1); save = 1 - that / 0.5.
    save_x = 1 - (1 / (1 + np.exp(1.0))) / 0.5
    assert out.loc["x", "save_rate"] == pytest.approx(save_x)
    assert out.loc["x", "expected_value"] == pytest.approx(0.5 * save_x * 100 * 10 - 7)
    # y: no dose, no effect, so a negative value (the cost).
    assert out.loc["y", "save_rate"] == pytest.approx(0.0, abs=1e-12)
    assert out.loc["y", "expected_value"] == pytest.approx(-7.0)
    assert (out["effect_source"] == SOURCE_DOSE_RESPONSE).all()
