"""Support features: reference comparison on random data and hand-made cases."""

from __future__ import annotations

import math

import pytest
from support import reference
from support.helpers import CFG, SEEDS, assert_family_matches, random_case, row
from support.synthetic import contract_frame, population

from churn.features.build import build_features


@pytest.mark.parametrize("seed", SEEDS)
def test_support_matches_reference(seed: int) -> None:
    tables, keys, result = random_case(seed)
    assert_family_matches(result, reference.support(tables, keys, CFG), "support")


def test_support_hand_made() -> None:
    tickets = [
        # Resolved after the cutoff: open and unanswered at the cutoff; its CSAT is future.
        {
            "ticket_id": "t1",
            "customer_id": "a",
            "opened_at": "2024-05-30",
            "priority": "urgent",
            "category": "billing",
            "first_response_at": "2024-06-02",
            "resolved_at": "2024-06-03",
            "reopened": True,
            "csat_score": 1,
            "csat_received_at": "2024-06-04",
        },
        # Resolved before the cutoff, CSAT received exactly at the cutoff: unknown.
        {
            "ticket_id": "t2",
            "customer_id": "a",
            "opened_at": "2024-05-01",
            "priority": "low",
            "category": "how_to",
            "first_response_at": "2024-05-01T02:00",
            "resolved_at": "2024-05-02",
            "reopened": True,
            "csat_score": 2,
            "csat_received_at": "2024-06-01",
        },
        {
            "ticket_id": "t3",
            "customer_id": "a",
            "opened_at": "2024-04-01",
            "priority": None,
            "first_response_at": "2024-04-01T06:00",
            "resolved_at": "2024-04-03",
            "reopened": None,
            "csat_score": 5,
            "csat_received_at": "2024-04-05",
        },
        # Opened at the cutoff: future.
        {"ticket_id": "t4", "customer_id": "a", "opened_at": "2024-06-01", "priority": "high"},
    ]
    tables = {
        "customers": contract_frame(
            "customers", [{"customer_id": "a", "converted_at": "2023-01-01"}]
        ),
        "support_tickets": contract_frame("support_tickets", tickets),
    }
    result = build_features(tables, population([("a", "2024-06-01"), ("b", "2024-06-01")]), CFG)
    a = row(result, "a", "2024-06-01")
    assert a["support_tickets_last_7d"] == 1.0
    assert a["support_tickets_last_90d"] == 3.0
    assert a["support_high_priority_tickets_last_90d"] == 1.0
    assert a["support_billing_tickets_last_90d"] == 1.0
    assert a["open_tickets_at_cutoff"] == 1.0
    assert a["unanswered_tickets_at_cutoff"] == 1.0
    assert a["median_first_response_hours_last_90d"] == pytest.approx(4.0)  # 2 h and 6 h
    assert a["median_resolution_hours_last_90d"] == pytest.approx((24 + 48) / 2)
    assert a["reopened_ticket_share_last_90d"] == pytest.approx(0.5)
    assert a["mean_csat_last_90d"] == 5.0 and a["last_csat_score"] == 5.0
    assert a["days_since_last_ticket"] == 2.0
    b = row(result, "b", "2024-06-01")
    assert b["support_tickets_last_90d"] == 0.0
    assert math.isnan(b["days_since_last_ticket"]) and math.isnan(b["last_csat_score"])
