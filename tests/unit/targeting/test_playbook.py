"""Eligible plays from reasons, first-reason plays, costs and doses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.config import PlayConfig
from churn.targeting.playbook import (
    POSITIVE_TOTAL,
    actionable_families,
    addressed_share,
    eligible_plays,
    family_doses,
    first_reason_play,
    play_cost,
    reason_families,
)

PLAYS = {
    "escalate": PlayConfig(families=("support",), team="s", save_rate=0.2),
    "discount": PlayConfig(families=("billing",), team="b", save_rate=0.2, cost=5,
                           cost_share_of_mrr=0.2, cost_months=3),
}
FAMILY_OF = {"tickets": "support", "price_up": "billing", "logins": "usage"}


def _scores() -> pd.DataFrame:
    # Integer ids, as in a third-party export.
    return pd.DataFrame({
        "customer_id": [101, 102, 103],
        "reason_1_feature": ["logins", "price_up", None],
        "reason_2_feature": ["tickets", "tickets", None],
    })


def test_eligible_and_first_reason_plays():
    reasons = reason_families(_scores(), FAMILY_OF)
    eligible = eligible_plays(reasons, PLAYS)
    assert sorted(map(tuple, eligible[["customer_id", "play", "reason_rank"]].values.tolist())
                  ) == [(101, "escalate", 2), (102, "discount", 1), (102, "escalate", 2)]
    first = first_reason_play(eligible, PLAYS).set_index("customer_id")["play"].to_dict()
    assert first == {101: "escalate", 102: "discount"}


def test_cost_of_a_discount_scales_with_mrr():
    np.testing.assert_allclose(play_cost(PLAYS["discount"], np.array([100.0, np.nan])),
                               [5 + 0.2 * 100 * 3, 5.0])


def test_doses_sum_positive_contributions_by_family():
    contributions = pd.DataFrame({"customer_id": [1, 2], "tickets": [0.5, -0.3],
                                  "price_up": [0.2, 0.4], "logins": [1.0, 0.0]})
    doses = family_doses(contributions, FAMILY_OF, ["support", "billing", "engagement"])
    assert doses["dose_support"].tolist() == pytest.approx([0.5, 0.0])
    assert doses["dose_billing"].tolist() == pytest.approx([0.2, 0.4])
    assert doses["dose_engagement"].tolist() == [0.0, 0.0]


def test_timing_features_push_the_total_but_no_play_s_dose():
    """A renewal falling due (a billing feature that is never a reason) is no discount's dose."""
    catalog = pd.DataFrame({
        "name": ["price_up", "days_to_renewal", "tickets"],
        "family": ["billing", "billing", "support"],
        "phase": "post_sale", "kind": "numeric", "unit": "count", "description": "x",
        "reason_eligible": [True, False, True],
    })
    family_of = actionable_families(catalog)
    assert family_of == {"price_up": "billing", "tickets": "support"}
    contributions = pd.DataFrame({"customer_id": [1], "price_up": [0.2],
                                  "days_to_renewal": [1.5], "tickets": [0.3]})
    doses = family_doses(contributions, family_of, ["billing", "support"])
    assert doses["dose_billing"].tolist() == pytest.approx([0.2])
    assert doses["dose_support"].tolist() == pytest.approx([0.3])
    assert doses[POSITIVE_TOTAL].tolist() == pytest.approx([2.0])


def test_positive_total_and_addressed_share():
    # base_value is the intercept: neither in the total nor in a share.
    contributions = pd.DataFrame({"customer_id": [1, 2, 3], "base_value": [5.0, 5.0, 5.0],
                                  "tickets": [0.6, -0.3, -1.0], "price_up": [0.2, 0.4, 0.0],
                                  "logins": [0.2, 0.0, -0.5]})
    doses = family_doses(contributions, FAMILY_OF, ["support", "billing", "usage"])
    assert doses[POSITIVE_TOTAL].tolist() == pytest.approx([1.0, 0.4, 0.0])
    # 1: 0.6 of 1.0 is support; 2: no positive support push; 3: no positive push at all.
    assert addressed_share(doses, PLAYS["escalate"]).tolist() == pytest.approx([0.6, 0.0, 0.0])
    assert addressed_share(doses, PLAYS["discount"]).tolist() == pytest.approx([0.2, 1.0, 0.0])


def test_addressed_share_is_zero_without_a_total():
    doses = pd.DataFrame({"customer_id": [1], "dose_support": [0.7]})
    assert addressed_share(doses, PLAYS["escalate"]).tolist() == [0.0]


def _eligible_by_hand(reasons: pd.DataFrame, plays) -> list[tuple]:
    """Naive reference: per play and customer the addressed reason of the lowest rank (the
    earlier row on a tie), sorted by customer, rank and play name (a missing id last)."""
    best: dict = {}
    for row, (customer, rank, feature, family) in enumerate(
        zip(reasons["customer_id"], reasons["rank"], reasons["feature"], reasons["family"],
            strict=True)
    ):
        key_customer = None if pd.isna(customer) else customer
        for name, play in plays.items():
            if family in play.families:
                key = (key_customer, name)
                if key not in best or (rank, row) < best[key][:2]:
                    best[key] = (rank, row, feature)
    rows = [(customer, name, rank, feature)
            for (customer, name), (rank, _, feature) in best.items()]
    return sorted(rows, key=lambda r: (r[0] is None, "" if r[0] is None else r[0], r[2], r[1]))


def _first_play_by_hand(eligible: list[tuple], plays) -> list[tuple]:
    order = {name: k for k, name in enumerate(plays)}
    first: dict = {}
    for customer, name, rank, feature in eligible:
        held = first.get(customer)
        if held is None or (rank, order[name]) < (held[2], order[held[1]]):
            first[customer] = (customer, name, rank, feature)
    return [first[c] for c in dict.fromkeys(row[0] for row in eligible)]


def _records(frame: pd.DataFrame) -> list[tuple]:
    return [tuple(None if pd.isna(v) else v for v in row)
            for row in frame[["customer_id", "play", "reason_rank", "reason_feature"]]
            .itertuples(index=False)]


@pytest.mark.parametrize("ids", ["integer", "text", "object", "text with a missing id"])
@pytest.mark.parametrize("seed", range(4))
def test_eligible_and_first_plays_equal_a_reference_by_hand(ids, seed):
    plays = {
        "winback": PlayConfig(families=("billing", "usage"), team="b", save_rate=0.2),
        "escalate": PlayConfig(families=("support",), team="s", save_rate=0.2),
        "adopt": PlayConfig(families=("usage", "engagement"), team="s", save_rate=0.2),
    }
    rng = np.random.default_rng(seed)
    n = 80
    numbers = rng.integers(0, 20, n)  # repeated customers, ranks repeating (two cutoffs)
    customer_id = {
        "integer": numbers,
        "text": pd.array([f"c{i:02d}" for i in numbers], dtype="str"),
        "object": pd.array([f"c{i:02d}" for i in numbers], dtype=object),
        "text with a missing id": pd.array(
            [None if i == 3 else f"c{i:02d}" for i in numbers], dtype="str"),
    }[ids]
    reasons = pd.DataFrame({
        "customer_id": customer_id,
        "rank": rng.integers(1, 4, n),
        "feature": [f"f{i}" for i in rng.integers(0, 9, n)],
        "family": rng.choice(["billing", "usage", "support", "engagement", "timing"], n),
    })
    eligible = eligible_plays(reasons, plays)
    expected = _eligible_by_hand(reasons, plays)
    assert _records(eligible) == expected and len(expected) > 10
    assert eligible["reason_rank"].dtype == np.int64
    first = first_reason_play(eligible, plays)
    assert _records(first) == _first_play_by_hand(expected, plays)
    assert first["customer_id"].dtype == eligible["customer_id"].dtype
