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


def test_support_old_tickets_and_latest_csat() -> None:
    """Tickets outside the window still give the history features; ties and late openings.

    The aggregation joins only tickets that can still count at the cutoff (the rest come from
    as-of joins), so this pins the boundary of that filter and the latest-CSAT rules.
    """
    tickets = [
        # Resolved exactly 90 days before the first cutoff: its resolution is in the window.
        {"ticket_id": "a1", "customer_id": "a", "opened_at": "2024-01-01",
         "first_response_at": "2024-01-01T01:00", "resolved_at": "2024-03-03", "reopened": True},
        # Resolved a microsecond before the window: counts for nothing in the window.
        {"ticket_id": "a2", "customer_id": "a", "opened_at": "2023-12-01",
         "first_response_at": "2023-12-01T05:00",
         "resolved_at": "2024-03-02T23:59:59.999999", "reopened": False},
        # Opened long ago and never resolved: open at every cutoff, answered.
        {"ticket_id": "a3", "customer_id": "a", "opened_at": "2023-01-01",
         "first_response_at": "2023-01-02"},
        # The only ticket of b, long before the window: only the history features see it.
        {"ticket_id": "b1", "customer_id": "b", "opened_at": "2023-01-01",
         "resolved_at": "2023-01-02", "csat_score": 3, "csat_received_at": "2023-01-05"},
        # Two CSATs received at the same moment: the highest ticket id wins ("c9" > "c10").
        {"ticket_id": "c9", "customer_id": "c", "opened_at": "2024-05-01",
         "resolved_at": "2024-05-09", "csat_score": 2, "csat_received_at": "2024-05-10"},
        {"ticket_id": "c10", "customer_id": "c", "opened_at": "2024-05-02",
         "resolved_at": "2024-05-09", "csat_score": 5, "csat_received_at": "2024-05-10"},
        # A CSAT stamped before its (unresolved) ticket was opened: known once the ticket is.
        {"ticket_id": "c11", "customer_id": "c", "opened_at": "2024-06-15",
         "csat_score": 1, "csat_received_at": "2024-05-20"},
    ]  # fmt: skip
    tables = {
        "customers": contract_frame(
            "customers",
            [{"customer_id": c, "converted_at": "2022-01-01"} for c in ("a", "b", "c")],
        ),
        "support_tickets": contract_frame("support_tickets", tickets),
    }
    keys = [(c, t) for c in ("a", "b", "c") for t in ("2024-06-01", "2024-07-01")]
    result = build_features(tables, population(keys), CFG)

    a = row(result, "a", "2024-06-01")
    assert a["support_tickets_last_90d"] == 0.0
    assert a["open_tickets_at_cutoff"] == 1.0 and a["unanswered_tickets_at_cutoff"] == 0.0
    assert a["median_resolution_hours_last_90d"] == pytest.approx(62 * 24)  # a1 only
    assert a["reopened_ticket_share_last_90d"] == 1.0
    assert math.isnan(a["median_first_response_hours_last_90d"])
    assert a["days_since_last_ticket"] == 152.0  # a1, 2024-01-01
    assert math.isnan(row(result, "a", "2024-07-01")["median_resolution_hours_last_90d"])

    b = row(result, "b", "2024-06-01")
    assert b["support_tickets_last_90d"] == 0.0 and b["open_tickets_at_cutoff"] == 0.0
    assert b["days_since_last_ticket"] == 517.0 and b["last_csat_score"] == 3.0
    assert math.isnan(b["mean_csat_last_90d"])

    before_c11 = row(result, "c", "2024-06-01")
    assert before_c11["last_csat_score"] == 2.0
    assert before_c11["mean_csat_last_90d"] == pytest.approx(3.5)
    after_c11 = row(result, "c", "2024-07-01")
    assert after_c11["last_csat_score"] == 1.0
    assert after_c11["open_tickets_at_cutoff"] == 1.0
    assert after_c11["unanswered_tickets_at_cutoff"] == 1.0
    assert after_c11["mean_csat_last_90d"] == pytest.approx(8 / 3)
