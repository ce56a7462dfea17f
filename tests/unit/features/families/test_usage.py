"""Usage features: reference comparison on random data and hand-made boundary cases."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from support import reference
from support.helpers import CFG, SEEDS, assert_family_matches, random_case, row
from support.synthetic import contract_frame, population

from churn.config import FeaturesConfig, parse_params
from churn.features.build import build_features
from churn.features.families.usage import choose_usage_event_types, usage_event_types_of_model
from churn.stages.features import pin_model_usage_event_types


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


def test_the_grid_start_splits_windows_from_prehistory_to_the_microsecond() -> None:
    # One cutoff, largest window 90 days: the grid starts at 2024-03-03 00:00. The instant
    # before it is prehistory (recency only), the grid's first instant is inside the window.
    tables = {
        "customers": _customers(["c"]),
        "usage_events": _events(
            [
                ("c", "2024-03-02T23:59:59.999999", "login"),
                ("c", "2024-03-03T00:00:00", "core_action"),
            ]
        ),
    }
    result = build_features(tables, population([("c", "2024-06-01")]), CFG)
    c = row(result, "c", "2024-06-01")
    assert c["usage_events_last_90d"] == 1.0
    assert c["usage_core_action_events_last_90d"] == 1.0
    assert c["usage_login_events_last_90d"] == 0.0
    assert c["usage_active_days_last_90d"] == 1.0
    assert c["days_since_last_event"] == pytest.approx(pd_days("2024-06-01", "2024-03-03"))
    assert c["days_since_last_login"] == pytest.approx(
        pd_days("2024-06-01", "2024-03-02T23:59:59.999999")
    )


def pd_days(end: str, start: str) -> float:
    import pandas as pd

    return (pd.Timestamp(end) - pd.Timestamp(start)) / pd.Timedelta(days=1)


def _events(rows: list[tuple[object, str, object]]) -> pd.DataFrame:
    """usage_events from (customer_id, occurred_at, event_type) rows (quantity missing)."""
    return contract_frame(
        "usage_events",
        [{"customer_id": c, "occurred_at": t, "event_type": e} for c, t, e in rows],
    )


def _customers(ids: list[object]) -> pd.DataFrame:
    return contract_frame(
        "customers", [{"customer_id": c, "converted_at": "2023-01-01"} for c in ids]
    )


def test_auto_event_types_come_from_the_rows_before_the_first_cutoff() -> None:
    events = _events(
        [
            ("a", "2024-05-01", "post"),
            ("a", "2024-05-02", "post"),
            ("a", "2024-05-02", "post"),
            ("a", "2024-05-03", "like"),
            ("b", "2024-05-03", "share"),
            ("b", "2024-05-04", "like"),
            # At or after the first cutoff: not known when the first features are computed,
            # however frequent later.
            ("b", "2024-06-01", "comment"),
            ("b", "2024-06-10", "comment"),
            ("b", "2024-06-11", "comment"),
        ]
    )
    assert choose_usage_event_types(events, pd.Timestamp("2024-06-01", tz="UTC"), 8) == (
        "post",
        "like",
        "share",
    )
    # ``top`` cuts the list; ties go by name, not by order of appearance.
    assert choose_usage_event_types(events, pd.Timestamp("2024-06-01"), 2) == ("post", "like")
    tie = _events([("a", "2024-05-01", "zeta"), ("a", "2024-05-01", "alpha")])
    assert choose_usage_event_types(tie, pd.Timestamp("2024-06-01"), 8) == ("alpha", "zeta")
    tables = {"customers": _customers(["a", "b"]), "usage_events": events}
    keys = population([("a", "2024-06-01"), ("b", "2024-07-01")])
    result = build_features(tables, keys, FeaturesConfig(usage_event_types_top=2))
    names = set(result.catalog["name"])
    assert {"usage_post_events_last_7d", "usage_like_events_last_90d"} <= names
    assert not any("comment" in n or "share" in n for n in names)
    # No login among the types: no login recency feature that would be missing everywhere.
    assert "days_since_last_login" not in names
    b = row(result, "b", "2024-07-01")
    assert b["usage_like_events_last_90d"] == 1.0
    assert b["usage_events_last_90d"] == 5.0  # comments count in the totals


def test_an_explicit_event_type_list_still_wins() -> None:
    tables = {
        "customers": _customers(["a"]),
        "usage_events": _events([("a", "2024-05-01", "post"), ("a", "2024-05-02", "login")]),
    }
    cfg = FeaturesConfig(usage_event_types=("login", "seat_invite"))
    result = build_features(tables, population([("a", "2024-06-01")]), cfg)
    names = set(result.catalog["name"])
    assert "usage_seat_invite_events_last_7d" in names and "days_since_last_login" in names
    assert not any("post" in n for n in names)


def test_events_per_active_day_divide_by_the_days_with_any_event() -> None:
    tables = {
        "customers": _customers(["a", "b"]),
        "usage_events": _events(
            [
                ("a", "2024-05-30T08:00", "post"),
                ("a", "2024-05-30T09:00", "post"),
                ("a", "2024-05-31T00:06", "post"),
                ("a", "2024-05-31T10:00", "like"),
                ("a", "2024-03-15", "like"),
            ]
        ),
    }
    result = build_features(
        tables, population([("a", "2024-06-01"), ("b", "2024-06-01")]), FeaturesConfig()
    )
    a = row(result, "a", "2024-06-01")
    assert a["usage_active_days_last_7d"] == 2.0
    assert a["usage_events_per_active_day_last_7d"] == 2.0  # 4 events on 2 days
    assert a["usage_post_events_per_active_day_last_7d"] == 1.5
    assert a["usage_like_events_per_active_day_last_7d"] == 0.5
    assert a["usage_like_events_per_active_day_last_90d"] == pytest.approx(2 / 3)
    b = row(result, "b", "2024-06-01")
    assert math.isnan(b["usage_events_per_active_day_last_30d"])  # no active day, no rate


def test_third_party_export_with_integer_ids_and_codes() -> None:
    # A social app's export: integer customer ids, numeric event codes, spaced names.
    tables = {
        "customers": _customers([1001, 1002]),
        "usage_events": _events(
            [
                (1001, "2024-05-20T00:06", 17),
                (1001, "2024-05-21", 17),
                (1001, "2024-05-21", "Post Created"),
                (1002, "2024-05-25", 4),
            ]
        ),
    }
    result = build_features(tables, population([("1001", "2024-06-01")]), FeaturesConfig())
    names = list(result.catalog["name"])
    assert [n for n in names if n.endswith("_events_last_7d")] == [
        "usage_events_last_7d",
        "usage_17_events_last_7d",
        "usage_4_events_last_7d",
        "usage_post_created_events_last_7d",
    ]
    first = row(result, "1001", "2024-06-01")
    assert first["usage_17_events_last_30d"] == 2.0
    assert first["usage_17_events_per_active_day_last_30d"] == 1.0
    assert first["usage_4_events_last_30d"] == 0.0


def test_scoring_takes_the_event_types_from_the_model_not_the_data() -> None:
    model_names = [
        "usage_events_last_7d",
        "usage_events_per_active_day_last_7d",
        "usage_post_created_events_last_7d",
        "usage_17_events_per_active_day_last_30d",
        "usage_active_days_last_7d",
        "days_since_last_login",
    ]
    scoring_events = _events(
        [("1", "2024-07-01", "Post Created"), ("1", "2024-07-02", "brand_new_type")]
    )
    types = usage_event_types_of_model(model_names, scoring_events)
    assert types == ("Post Created", "17", "login")
    params = parse_params({})
    assert params.features.usage_event_types == "auto"
    pinned = pin_model_usage_event_types(params, model_names, {"usage_events": scoring_events})
    assert pinned.features.usage_event_types == ("Post Created", "17", "login")
    explicit = parse_params({"features": {"usage_event_types": ["login"]}})
    assert pin_model_usage_event_types(explicit, model_names, {}) is explicit
