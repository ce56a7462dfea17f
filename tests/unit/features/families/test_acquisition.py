"""Acquisition features: reference comparison on random data and hand-made cases."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from support import reference
from support.helpers import CFG, SEEDS, assert_family_matches, random_case, row
from support.synthetic import contract_frame, population

from churn.features.build import build_features


@pytest.mark.parametrize("seed", SEEDS)
def test_acquisition_matches_reference(seed: int) -> None:
    tables, keys, result = random_case(seed)
    assert_family_matches(result, reference.acquisition(tables, keys, CFG), "acquisition")


def test_acquisition_hand_made() -> None:
    customers = [
        {
            "customer_id": "a",
            "lead_created_at": "2024-01-01",
            "converted_at": "2024-01-11T12:00",
            "acquisition_channel": "referral",
            "segment": "smb",
            "trial_days": 14,
        },
        # Converts exactly at the cutoff: not a customer yet, nothing is known.
        {"customer_id": "b", "converted_at": "2024-06-01", "acquisition_channel": "partner"},
    ]
    touches = [
        {"customer_id": "a", "occurred_at": "2024-01-02", "touchpoint_type": "docs_view"},
        {"customer_id": "a", "occurred_at": "2024-01-03", "touchpoint_type": "help_center_view"},
        {"customer_id": "a", "occurred_at": "2024-01-04", "touchpoint_type": "demo"},
        {"customer_id": "a", "occurred_at": "2024-06-01", "touchpoint_type": "demo"},  # future
    ]
    usage = [
        {"customer_id": "a", "occurred_at": "2024-01-05", "event_type": "login", "quantity": 3.0},
        {"customer_id": "a", "occurred_at": "2024-01-05T08:00", "event_type": "login"},
        {"customer_id": "a", "occurred_at": "2024-01-11T12:00", "event_type": "login"},  # paid
    ]
    tables = {
        "customers": contract_frame("customers", customers),
        "presale_touchpoints": contract_frame("presale_touchpoints", touches),
        "usage_events": contract_frame("usage_events", usage),
    }
    result = build_features(tables, population([("a", "2024-06-01"), ("b", "2024-06-01")]), CFG)
    a = row(result, "a", "2024-06-01")
    assert a["acquisition_channel"] == "referral" and a["segment"] == "smb"
    assert pd.isna(a["campaign"])
    assert a["days_lead_to_conversion"] == pytest.approx(10.5)
    assert a["trial_days"] == 14.0
    assert a["presale_demo_touches"] == 1.0
    assert a["docs_and_help_views_before_conversion"] == 2.0
    assert a["total_presale_touches"] == 3.0
    assert a["trial_usage_events"] == 4.0 and a["trial_active_days"] == 1.0
    b = row(result, "b", "2024-06-01")
    assert pd.isna(b["acquisition_channel"]) and math.isnan(b["total_presale_touches"])
