"""Engagement features: reference comparison on random data and hand-made cases."""

from __future__ import annotations

import math

import pytest
from support import reference
from support.helpers import CFG, SEEDS, assert_family_matches, random_case, row
from support.synthetic import contract_frame, population

from churn.features.build import build_features


@pytest.mark.parametrize("seed", SEEDS)
def test_engagement_matches_reference(seed: int) -> None:
    tables, keys, result = random_case(seed)
    assert_family_matches(result, reference.engagement(tables, keys, CFG), "engagement")


def test_engagement_hand_made() -> None:
    touches = [
        {
            "customer_id": "a",
            "occurred_at": "2024-05-01",
            "touchpoint_type": "onboarding_step_completed",
        },
        {
            "customer_id": "a",
            "occurred_at": "2024-05-20",
            "touchpoint_type": "onboarding_step_completed",
        },
        # 30 days after conversion: outside the onboarding window.
        {
            "customer_id": "a",
            "occurred_at": "2024-05-31",
            "touchpoint_type": "onboarding_step_completed",
        },
        {
            "customer_id": "a",
            "occurred_at": "2024-05-02",
            "touchpoint_type": "onboarding_email_open",
        },
        {"customer_id": "a", "occurred_at": "2024-05-28", "touchpoint_type": "help_center_view"},
        {"customer_id": "a", "occurred_at": "2024-06-01", "touchpoint_type": "help_center_view"},
        {"customer_id": "a", "occurred_at": "2024-04-01", "touchpoint_type": "community_post"},
    ]
    nps = [
        {"customer_id": "a", "responded_at": "2024-05-10", "score": 9},
        {"customer_id": "a", "responded_at": "2024-05-21", "score": 6},
        {"customer_id": "a", "responded_at": "2024-06-01", "score": 10},  # future
    ]
    tables = {
        "customers": contract_frame(
            "customers", [{"customer_id": "a", "converted_at": "2024-05-01"}]
        ),
        "postsale_touchpoints": contract_frame("postsale_touchpoints", touches),
        "nps_responses": contract_frame("nps_responses", nps),
    }
    result = build_features(tables, population([("a", "2024-06-01"), ("a", "2024-05-15")]), CFG)
    a = row(result, "a", "2024-06-01")
    assert a["onboarding_steps_completed_first_30d"] == 2.0
    assert a["onboarding_emails_opened_first_30d"] == 1.0
    assert a["help_center_views_last_7d"] == 1.0
    assert a["community_posts_last_90d"] == 1.0 and a["community_posts_last_30d"] == 0.0
    assert a["last_nps_score"] == 6.0 and a["nps_trend"] == -3.0
    assert a["days_since_last_nps"] == 11.0
    assert a["last_nps_detractor"] == 1.0 and a["last_nps_promoter"] == 0.0
    early = row(result, "a", "2024-05-15")
    assert early["onboarding_steps_completed_first_30d"] == 1.0  # only what happened before T
    assert early["last_nps_promoter"] == 1.0 and math.isnan(early["nps_trend"])
