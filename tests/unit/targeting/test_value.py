"""Expected value and the greedy capacity-constrained choice."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from churn.config import PlayConfig, TargetConfig
from churn.targeting.shrinkage import SOURCE_SHRUNK
from churn.targeting.uplift import SEGMENTS, SOURCE_LOGGED, PlayEffect
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


def _two_play_config(scaling: str) -> TargetConfig:
    # The cheap play acts on support, the dear one on billing; same configured rate.
    return TargetConfig(
        months_kept=10, teams={"t": 5}, configured_rate_scaling=scaling,
        plays={"cheap": PlayConfig(families=("support",), team="t", cost=1.0, save_rate=0.3),
               "dear": PlayConfig(families=("billing",), team="t", cost=5.0, save_rate=0.3)},
    )


def _configured(play: str, rate: float, source: str = "configured") -> list[PlayEffect]:
    rates = {"not_addressed": 0.0, "addressed_low_dose": rate, "addressed_high_dose": rate}
    return [PlayEffect(play, s, rates[s], None, source, 0, 0, None) for s in SEGMENTS]


def _customer_x() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    scores = pd.DataFrame({"customer_id": ["x"], "churn_probability": [0.5], "mrr": [100.0]})
    eligible = pd.DataFrame({"customer_id": ["x", "x"], "play": ["cheap", "dear"],
                             "reason_rank": [2, 1], "reason_feature": ["tickets", "price_up"]})
    # 90% of x's excess risk is billing, 10% support.
    doses = pd.DataFrame({"customer_id": ["x"], "dose_support": [0.1], "dose_billing": [0.9],
                          "positive_total": [1.0]})
    return scores, eligible, doses


@pytest.mark.parametrize(("scaling", "play"), [("none", "cheap"), ("addressed_share", "dear")])
def test_the_addressed_share_changes_which_play_a_customer_gets(scaling, play):
    scores, eligible, doses = _customer_x()
    config = _two_play_config(scaling)
    effects = _configured("cheap", 0.3) + _configured("dear", 0.3)
    candidates = build_candidates(scores, eligible, doses, effects, config)
    chosen = select_contacts(candidates, "expected_value", config.teams,
                             {"cheap": None, "dear": None})
    assert chosen["play"].tolist() == [play]
    if scaling == "addressed_share":
        rates = candidates.set_index("play")["save_rate"]
        assert rates["cheap"] == pytest.approx(0.3 * 0.1)
        assert rates["dear"] == pytest.approx(0.3 * 0.9)
        # dear: 0.5 x 0.27 x 1000 - 5 = 130 beats cheap: 0.5 x 0.03 x 1000 - 1 = 14.
        assert chosen["expected_value"].iloc[0] == pytest.approx(130.0)


def test_a_zero_share_gives_a_zero_rate_and_no_contact():
    scores, eligible, doses = _customer_x()
    doses = doses.assign(dose_support=0.0, dose_billing=0.0, positive_total=0.0)
    config = _two_play_config("addressed_share")
    candidates = build_candidates(scores, eligible, doses,
                                  _configured("cheap", 0.3) + _configured("dear", 0.3), config)
    assert candidates["save_rate"].tolist() == [0.0, 0.0]
    assert candidates.set_index("play")["expected_value"].to_dict() == pytest.approx(
        {"cheap": -1.0, "dear": -5.0})
    assert select_contacts(candidates, "expected_value", config.teams,
                           {"cheap": None, "dear": None}).empty


@pytest.mark.parametrize("measured", [SOURCE_LOGGED, SOURCE_SHRUNK])
def test_measured_rates_are_not_scaled(measured):
    scores, eligible, doses = _customer_x()
    config = _two_play_config("addressed_share")
    effects = _configured("cheap", 0.2, measured) + _configured("dear", 0.3)
    rates = build_candidates(scores, eligible, doses, effects, config).set_index("play")
    assert rates.loc["cheap", "save_rate"] == pytest.approx(0.2)
    assert rates.loc["cheap", "effect_source"] == measured
    assert rates.loc["dear", "save_rate"] == pytest.approx(0.3 * 0.9)


@pytest.mark.parametrize("source", ["configured (logged estimate too uncertain)",
                                    "configured (one source: another segment's logged "
                                    "estimate not usable)"])
def test_every_configured_source_is_scaled(source):
    from churn.targeting.uplift import CONFIGURED_SOURCES

    assert source in CONFIGURED_SOURCES
    scores, eligible, doses = _customer_x()
    config = _two_play_config("addressed_share")
    effects = _configured("cheap", 0.3, source) + _configured("dear", 0.3)
    rates = build_candidates(scores, eligible, doses, effects, config).set_index("play")
    assert rates.loc["cheap", "save_rate"] == pytest.approx(0.03)



def _naive_dose_rate(probability: float, dose: float, fraction: float) -> float:
    logit = np.log(probability / (1 - probability))
    return 1 - (1 / (1 + np.exp(-(logit - fraction * dose)))) / probability


def test_the_dose_scaling_reads_the_configured_rate_as_a_share_of_the_families_log_odds():
    scores, eligible, doses = _customer_x()
    config = _two_play_config("dose")
    effects = _configured("cheap", 0.3) + _configured("dear", 0.3)
    candidates = build_candidates(scores, eligible, doses, effects, config).set_index("play")
    assert candidates.loc["cheap", "save_rate"] == pytest.approx(_naive_dose_rate(0.5, 0.1, 0.3))
    assert candidates.loc["dear", "save_rate"] == pytest.approx(_naive_dose_rate(0.5, 0.9, 0.3))
    assert candidates.loc["dear", "expected_value"] == pytest.approx(
        0.5 * _naive_dose_rate(0.5, 0.9, 0.3) * 1000 - 5)
    chosen = select_contacts(candidates.reset_index(), "expected_value", config.teams,
                             {"cheap": None, "dear": None})
    assert chosen["play"].tolist() == ["dear"]


def test_the_dose_scaling_leaves_measured_rates_and_gives_no_dose_no_contact():
    scores, eligible, doses = _customer_x()
    config = _two_play_config("dose")
    effects = _configured("cheap", 0.2, SOURCE_LOGGED) + _configured("dear", 0.3)
    rates = build_candidates(scores, eligible, doses, effects, config).set_index("play")
    assert rates.loc["cheap", "save_rate"] == pytest.approx(0.2)
    none = doses.assign(dose_support=0.0, dose_billing=0.0, positive_total=0.0)
    candidates = build_candidates(scores, eligible, none,
                                  _configured("cheap", 0.3) + _configured("dear", 0.3), config)
    assert candidates["save_rate"].to_numpy() == pytest.approx([0.0, 0.0], abs=1e-12)
    assert select_contacts(candidates, "expected_value", config.teams,
                           {"cheap": None, "dear": None}).empty


@pytest.mark.parametrize("seed", range(30))
def test_the_bound_is_at_least_every_plays_expected_value_to_the_bit(seed):
    from dataclasses import replace

    from churn.targeting.dose_response import DoseEffect
    from churn.targeting.uplift import SOURCE_CONFIGURED
    from churn.targeting.value import bound_expected_values

    rng = np.random.default_rng(seed)
    n = 300
    plays = {
        "a": PlayConfig(families=("support",), team="t", cost=float(rng.uniform(0, 20)),
                        save_rate=float(rng.uniform(0, 1))),
        "b": PlayConfig(families=("billing", "usage"), team="t", cost=1.0,
                        cost_share_of_mrr=0.2, cost_months=3, save_rate=float(rng.uniform(0, 1))),
    }
    config = TargetConfig(teams={"t": 5}, plays=plays, months_kept=float(rng.uniform(1, 12)),
                          configured_rate_scaling=str(rng.choice(["none", "addressed_share",
                                                                   "dose"])))
    effects = [PlayEffect(play, segment, float(rng.uniform(-0.3, 1.0)), None,
                          SOURCE_CONFIGURED if rng.random() < 0.5 else SOURCE_LOGGED, 0, 0,
                          float(rng.uniform(0, 2)) if rng.random() < 0.5 else None)
               for play in plays for segment in SEGMENTS]
    effects = [replace(e, save_rate=plays[e.play].save_rate) if e.source == SOURCE_CONFIGURED
               else e for e in effects]
    fits = {"b": DoseEffect(float(rng.uniform(-1, 4)), 0.1, 0.0, 50, 50)} if seed % 3 else {}
    scores = pd.DataFrame({
        "customer_id": np.arange(n),
        "churn_probability": rng.choice([0.0, 1.0, *rng.random(20)], n),
        "mrr": rng.choice([np.nan, 0.0, 9.99, 120.0, 3000.0], n),
    })
    eligible = pd.DataFrame([(c, play, 1, "f") for c in range(n) for play in plays
                             if rng.random() < 0.7],
                            columns=["customer_id", "play", "reason_rank", "reason_feature"])
    doses = pd.DataFrame({"customer_id": np.arange(n),
                          "dose_support": rng.exponential(1.0, n) * (rng.random(n) < 0.8),
                          "dose_billing": rng.exponential(2.0, n),
                          "dose_usage": rng.exponential(0.5, n)})
    doses["positive_total"] = doses.filter(like="dose_").sum(axis=1) + rng.exponential(1.0, n)
    candidates = build_candidates(scores, eligible, doses, effects, config, dose_effects=fits)
    bound = pd.Series(bound_expected_values(scores, effects, config, dose_effects=fits),
                      index=scores["customer_id"])
    best = candidates.groupby("customer_id")["expected_value"].max()
    assert len(best) > 0
    assert (best <= bound[best.index]).all()  # exact: no tolerance
