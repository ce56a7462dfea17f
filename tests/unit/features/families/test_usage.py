"""Usage features: reference comparison on random data and hand-made boundary cases."""

from __future__ import annotations

import math

import pytest
from support import reference
from support.helpers import CFG, SEEDS, assert_family_matches, random_case, row
from support.synthetic import contract_frame, population

from churn.features.build import build_features


@pytest.mark.parametrize("seed", SEEDS)
def test_usage_matches_reference(seed: int) -> None:
    tables, keys, result = random_case(seed)
    assert_family_matches(result, reference.usage(tables, keys, CFG), "usage")


def test_usage_windows_boundaries_and_recency() -> None:
    tables = {
        "customers": contract_frame(
            "customers", [{"customer_id": "a", "converted_at": "2024-01-01"}]
        ),
        "usage_events": contract_frame(
            "usage_events",
            [
                # Exactly at the cutoff: future.
                {
                    "customer_id": "a",
                    "occurred_at": "2024-06-01",
                    "event_type": "login",
                    "quantity": 5.0,
                },
                # Exactly at the 7-day window start: inside it.
                {
                    "customer_id": "a",
                    "occurred_at": "2024-05-25",
                    "event_type": "core_action",
                    "quantity": None,
                },
                {
                    "customer_id": "a",
                    "occurred_at": "2024-05-25T10:00",
                    "event_type": "core_action",
                    "quantity": 2.0,
                },
                # Unlisted type: totals only.
                {
                    "customer_id": "a",
                    "occurred_at": "2024-05-20",
                    "event_type": "mystery",
                    "quantity": 1.0,
                },
                # Long ago (older than every window): only recency sees it.
                {
                    "customer_id": "a",
                    "occurred_at": "2023-01-10T12:00",
                    "event_type": "login",
                    "quantity": 1.0,
                },
            ],
        ),
    }
    result = build_features(tables, population([("a", "2024-06-01"), ("b", "2024-06-01")]), CFG)
    a = row(result, "a", "2024-06-01")
    assert a["usage_events_last_7d"] == 3.0  # missing quantity counts 1
    assert a["usage_active_days_last_7d"] == 1.0
    assert a["usage_core_action_events_last_7d"] == 3.0
    assert a["usage_events_last_30d"] == 4.0
    assert a["usage_active_days_last_30d"] == 2.0
    assert a["usage_login_events_last_90d"] == 0.0
    assert a["days_since_last_event"] == pytest.approx(7 - 10 / 24)
    assert a["days_since_last_login"] == pytest.approx(pd_days("2024-06-01", "2023-01-10T12:00"))
    assert math.isnan(a["usage_trend_30d_vs_prior_60d"])  # no baseline
    b = row(result, "b", "2024-06-01")
    assert b["usage_events_last_90d"] == 0.0
    assert math.isnan(b["days_since_last_event"])


def pd_days(end: str, start: str) -> float:
    import pandas as pd

    return (pd.Timestamp(end) - pd.Timestamp(start)) / pd.Timedelta(days=1)
