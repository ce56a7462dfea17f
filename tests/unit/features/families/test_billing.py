"""Billing features: reference comparison on random data and hand-made cases."""

from __future__ import annotations

import math

import pytest
from support import reference
from support.helpers import CFG, SEEDS, assert_family_matches, random_case, row
from support.synthetic import contract_frame, population

from churn.features.build import build_features


@pytest.mark.parametrize("seed", SEEDS)
def test_billing_matches_reference(seed: int) -> None:
    tables, keys, result = random_case(seed)
    assert_family_matches(result, reference.billing(tables, keys, CFG), "billing")


def _tables() -> dict:
    subs = [
        # Churned once, then came back: one previous lapse.
        {
            "subscription_id": "a1",
            "customer_id": "a",
            "plan": "starter",
            "billing_period": "monthly",
            "mrr": 10.0,
            "started_at": "2023-01-15",
            "ended_at": "2023-05-01",
        },
        {
            "subscription_id": "a2",
            "customer_id": "a",
            "plan": "pro",
            "billing_period": "annual",
            "mrr": 100.0,
            "started_at": "2023-08-31T08:00",
            "ended_at": "2024-08-31T08:00",
        },
        {
            "subscription_id": "a3",
            "customer_id": "a",
            "plan": "starter",
            "billing_period": "monthly",
            "mrr": 20.0,
            "started_at": "2024-01-31",
            "ended_at": None,
        },
    ]
    changes = [
        {
            "subscription_id": "a2",
            "customer_id": "a",
            "effective_at": "2024-04-01",
            "change_type": "price_increase",
            "mrr_before": 100.0,
            "mrr_after": 120.0,
        },
        {
            "subscription_id": "a2",
            "customer_id": "a",
            "effective_at": "2024-05-10",
            "change_type": "discount_start",
            "mrr_before": 120.0,
            "mrr_after": 90.0,
        },
        # Effective exactly at the cutoff: future.
        {
            "subscription_id": "a2",
            "customer_id": "a",
            "effective_at": "2024-06-01",
            "change_type": "discount_end",
            "mrr_before": 90.0,
            "mrr_after": 120.0,
        },
    ]
    return {
        "customers": contract_frame(
            "customers", [{"customer_id": "a", "converted_at": "2023-01-10"}]
        ),
        "subscriptions": contract_frame("subscriptions", subs),
        "subscription_changes": contract_frame("subscription_changes", changes),
    }


def test_billing_hand_made() -> None:
    result = build_features(_tables(), population([("a", "2024-06-01")]), CFG)
    a = row(result, "a", "2024-06-01")
    assert a["mrr_at_cutoff"] == 90.0 + 20.0
    assert a["mrr_change_90d"] == 110.0 - 120.0  # 90 days earlier: 100 (a2) + 20 (a3)
    assert a["mrr_change_pct_90d"] == pytest.approx(-10 / 120)
    assert a["plan"] == "pro" and a["billing_period"] == "annual"
    # Next anniversary of 2023-08-31 08:00 is 2024-08-31 08:00.
    assert a["days_to_renewal"] == pytest.approx(91 + 8 / 24)
    assert a["tenure_days"] == 508.0  # from conversion 2023-01-10
    assert a["active_subscriptions"] == 2.0
    assert a["previous_churns"] == 1.0
    assert a["discount_active_at_cutoff"] == 1.0
    assert a["price_increases_last_90d"] == 1.0
    assert a["discounts_started_last_30d"] == 1.0
    assert a["subscription_upgrades_last_90d"] == 0.0


def test_billing_without_changes_table_skips_part() -> None:
    tables = _tables()
    del tables["subscription_changes"]
    result = build_features(tables, population([("a", "2024-06-01"), ("z", "2024-06-01")]), CFG)
    assert "billing.subscription_changes" in result.skipped
    assert "discount_active_at_cutoff" not in result.frame.columns
    assert row(result, "a", "2024-06-01")["mrr_at_cutoff"] == 120.0  # starting MRRs only
    z = row(result, "z", "2024-06-01")  # unknown customer: nothing active
    assert z["mrr_at_cutoff"] == 0.0 and math.isnan(z["days_to_renewal"])
