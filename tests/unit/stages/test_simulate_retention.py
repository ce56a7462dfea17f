"""The simulated past retention team and the truth of its plays (stages/simulate/retention.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.config import SimulateConfig
from churn.domain.families import FAMILIES
from churn.stages.simulate import SimulationResult, simulate
from churn.stages.simulate.retention import (
    CONTACT_SHARE,
    CONTROL_SHARE,
    EFFECT_MONTHS,
    PLAYS,
    VALUE_MONTHS,
    project_survival,
)

FAMILIES_OF = dict(PLAYS)


@pytest.fixture(scope="module")
def result() -> SimulationResult:
    return simulate(SimulateConfig(customers=2500, months=12, seed=5, mess=False))


def _actions(result: SimulationResult) -> pd.DataFrame:
    actions = result.tables["retention_actions"].copy()
    actions["month_start"] = actions["action_at"].dt.floor("D")
    return actions


def test_off_switch_removes_the_table_and_every_effect():
    off = simulate(SimulateConfig(customers=300, months=6, seed=1, retention_actions=False))
    assert "retention_actions" not in off.tables
    assert "retention_truth" not in off.truth
    assert (off.truth["customer_months"]["logit_retention"] == 0).all()


def test_about_five_percent_of_actives_a_month_and_a_fifth_held_out(result):
    actions = _actions(result)
    months = result.truth["customer_months"]
    per_month = actions.groupby("month_start").size()
    actives = months.groupby("month_start").size()
    expected = (CONTACT_SHARE * actives).round()
    assert (per_month.reindex(actives.index, fill_value=0) == expected).all()
    share = actions["control"].mean()
    n = len(actions)
    assert abs(share - CONTROL_SHARE) < 4 * np.sqrt(CONTROL_SHARE * (1 - CONTROL_SHARE) / n)
    assert set(actions["play"]) == set(FAMILIES_OF)


def test_half_the_contacts_are_the_riskiest_of_the_month(result):
    actions = _actions(result)
    months = result.truth["customer_months"]
    month = months["month_start"].sort_values().unique()[3]
    chosen = set(actions.loc[actions["month_start"] == month, "customer_id"])
    ranked = months[months["month_start"] == month].sort_values(
        "churn_probability", ascending=False)
    # Customers treated in the last EFFECT_MONTHS - 1 months are under a play: not chosen.
    recent = actions[(actions["month_start"] < month) & ~actions["control"]
                     & (actions["month_start"] >= month - pd.DateOffset(months=EFFECT_MONTHS - 1))]
    free = ranked[~ranked["customer_id"].isin(recent["customer_id"])]
    top = free.head(len(chosen) // 2)["customer_id"]
    assert top.isin(chosen).all()
    assert len(chosen) > 20


def test_treated_hazard_drops_by_the_truth_reduction_for_three_months_controls_untouched(result):
    actions = _actions(result)
    truth = result.truth["retention_truth"]
    months = result.truth["customer_months"].set_index(["customer_id", "month_start"])
    joined = actions.merge(truth, on=["customer_id", "month_start", "play"],
                           validate="one_to_one")
    for row in joined.head(300).itertuples():
        for k in range(EFFECT_MONTHS):
            key = (row.customer_id, row.month_start + pd.DateOffset(months=k))
            if key not in months.index:
                break  # churned (or the window ended)
            got = months.loc[key, "logit_retention"]
            if row.control:
                continue  # may be contacted again later; its own contact changes nothing
            assert got == pytest.approx(-row.logit_reduction, abs=1e-5)
    controls = joined[joined["control"]]
    at_contact = months.loc[list(zip(controls["customer_id"], controls["month_start"],
                                     strict=True)), "logit_retention"]
    assert (at_contact == 0).all()


def test_a_play_aimed_at_a_family_that_is_not_driving_does_nothing(result):
    truth = result.truth["retention_truth"]
    months = result.truth["customer_months"]
    means = months.groupby("month_start")[[f"logit_{f}" for f in FAMILIES]].transform("mean")
    excess = months[["customer_id", "month_start"]].copy()
    for family in FAMILIES:
        excess[family] = np.maximum(months[f"logit_{family}"] - means[f"logit_{family}"], 0)
    joined = truth.merge(excess, on=["customer_id", "month_start"], validate="many_to_one")
    for play, families in FAMILIES_OF.items():
        part = joined[joined["play"] == play]
        # Naive reference: fraction x the addressed families' excess.
        reference = part["fraction"] * part[list(families)].sum(axis=1)
        np.testing.assert_allclose(part["logit_reduction"], reference, rtol=1e-5, atol=1e-6)
        not_driving = part[list(families)].sum(axis=1) == 0
        assert not_driving.any()
        assert (part.loc[not_driving, "saved_revenue"] <= 1e-6).all()
        assert (part.loc[not_driving, "churn_treated"]
                == part.loc[not_driving, "churn_untreated"]).all()


def test_effect_fractions_follow_beta_2_5(result):
    fraction = result.truth["retention_truth"]["fraction"]
    assert fraction.between(0, 1).all()
    assert fraction.mean() == pytest.approx(2 / 7, abs=0.005)
    assert fraction.var() == pytest.approx(2 * 5 / (7**2 * 8), rel=0.05)


def test_discount_revenue_kept_is_net_of_the_discount(result):
    truth = result.truth["retention_truth"]
    discount = truth[truth["play"] == "discount_offer"]
    others = truth[truth["play"] != "discount_offer"]
    assert (others["discount_given"] == 0).all()
    assert (discount["discount_given"] > 0).any()
    # Without any effect, a discount only gives revenue away.
    idle = discount[discount["logit_reduction"] == 0]
    np.testing.assert_allclose(idle["saved_revenue"], -idle["discount_given"], atol=1e-3)


@pytest.mark.parametrize("seed", range(3))
def test_projected_survival_is_the_whole_computation_bit_for_bit(seed: int):
    rng = np.random.default_rng(seed)
    customers, plays = 500, len(PLAYS)
    logit = rng.normal(-3.0, 1.5, (customers, VALUE_MONTHS))
    renews = rng.random((customers, VALUE_MONTHS)) < 0.6
    reduction = rng.exponential(0.3, (customers, plays)) * (rng.random((customers, plays)) < 0.7)

    # Naive reference: every play's hazard of every month, with the effect as a 0/1 mask.
    sigmoid = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    h0 = np.where(renews, sigmoid(logit), 0.0)
    effect = (np.arange(VALUE_MONTHS) < EFFECT_MONTHS)[None, None, :]
    h1 = np.where(renews[:, None, :], sigmoid(logit[:, None, :] - reduction[:, :, None] * effect),
                  0.0)
    s0, s1 = project_survival(logit, renews, reduction)

    assert s1.shape == (customers, plays, VALUE_MONTHS)
    assert np.array_equal(s0, np.cumprod(1 - h0, axis=1))
    assert np.array_equal(s1, np.cumprod(1 - h1, axis=2))
    # The effect shows: treated survival is at least untreated, and higher where a reduced
    # month could end the contract.
    assert (s1 >= s0[:, None, :]).all()
    reduced = (reduction > 0) & renews[:, :EFFECT_MONTHS].any(axis=1)[:, None]
    assert reduced.sum() > 100
    assert (s1[:, :, -1] > s0[:, None, -1])[reduced].all()

