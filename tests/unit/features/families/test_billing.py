"""Billing features: reference comparison on random data and hand-made cases."""

from __future__ import annotations

import math

import pandas as pd
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


@pytest.mark.parametrize(
    ("period", "renewal"),
    [
        # Started 2024-01-15; the cutoff 2024-06-01 lies between billing dates.
        ("monthly", "2024-06-15"),
        ("quarterly", "2024-07-15"),  # every 3 months: 04-15, 07-15
        ("semiannual", "2024-07-15"),  # every 6 months: 07-15
        ("annual", "2025-01-15"),
    ],
)
def test_days_to_renewal_follows_the_billing_period(period: str, renewal: str) -> None:
    subs = [
        {
            "subscription_id": "b1",
            "customer_id": "b",
            "plan": "pro",
            "billing_period": period,
            "mrr": 30.0,
            "started_at": "2024-01-15",
            "ended_at": None,
        }
    ]
    tables = {
        "customers": contract_frame(
            "customers", [{"customer_id": "b", "converted_at": "2024-01-15"}]
        ),
        "subscriptions": contract_frame("subscriptions", subs),
    }
    result = build_features(tables, population([("b", "2024-06-01")]), CFG)
    expected = (pd.Timestamp(renewal) - pd.Timestamp("2024-06-01")).days
    assert row(result, "b", "2024-06-01")["days_to_renewal"] == pytest.approx(expected)


def test_quarterly_and_semiannual_renewals_match_the_reference() -> None:
    subs = [
        {
            "subscription_id": f"q{i}",
            "customer_id": f"q{i}",
            "plan": "pro",
            "billing_period": period,
            "mrr": 30.0,
            "started_at": start,
            "ended_at": None,
        }
        for i, (period, start) in enumerate(
            [
                ("quarterly", "2023-11-30"),
                ("semiannual", "2023-08-31T12:00"),
                ("quarterly", "2024-03-01"),
            ]
        )
    ]
    tables = {
        "customers": contract_frame(
            "customers",
            [{"customer_id": f"q{i}", "converted_at": "2023-01-01"} for i in range(3)],
        ),
        "subscriptions": contract_frame("subscriptions", subs),
    }
    keys = population([(f"q{i}", "2024-06-01") for i in range(3)])
    result = build_features(tables, keys, CFG)
    got = result.frame.set_index(["customer_id", "cutoff"])["days_to_renewal"]
    wanted = reference.billing(tables, keys, CFG)["days_to_renewal"].reindex(got.index)
    # By hand: 2023-11-30 + 9 months = 2024-08-30 (90 days); 2023-08-31 12:00 + 12 months
    # = 2024-08-31 12:00 (91.5 days); 2024-03-01 + 3 months is the cutoff itself (0 days).
    assert got.tolist() == pytest.approx([90.0, 91.5, 0.0])
    assert got.tolist() == pytest.approx(wanted.tolist())
