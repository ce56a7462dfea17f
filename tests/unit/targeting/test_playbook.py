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
