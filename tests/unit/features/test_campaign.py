"""Tests for churn.features.campaign: the stem of a campaign code against a naive reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support.campaign_stems import naive_campaign_stem
from support.helpers import row
from support.synthetic import contract_frame, population

from churn.config import FeaturesConfig, IngestConfig, TableMapping
from churn.domain.campaigns import DEFAULT_CAMPAIGN_PERIOD_PATTERN
from churn.features.build import build_features
from churn.features.campaign import campaign_stems, campaign_stems_sql
from churn.sql import connect
from churn.stages.ingest import validate_tables

PATTERN = DEFAULT_CAMPAIGN_PERIOD_PATTERN

# (code, stem) written by hand: what a reader expects, not what the code happens to give.
EXAMPLES = [
    ("spring_promo_2024", "spring_promo"),
    ("webinar-2024-03", "webinar"),
    ("Q3-2024 ABM", "ABM"),
    ("search_generic_2023q1", "search_generic"),
    ("outbound_abm_2025Q4", "outbound_abm"),
    ("H1 2024 launch", "launch"),
    ("launch 2024 h2", "launch"),
    ("mar2024_promo", "promo"),
    ("promo_march-2024", "promo"),
    ("spring2024", "spring"),
    ("summer_fy2025", "summer"),
    ("2024-03-15_event", "event"),
    ("webinar_03_2024", "webinar"),
    ("x_2023_2024_y", "x_y"),
    ("a-2024 -b", "a-b"),
    ("offer_2024_10k", "offer_10k"),  # 10k is no month: the year goes, the offer stays
    ("Q3-2024", None),  # only a period: missing
    ("2024", "2024"),  # digits only: an integer campaign id, never a period
    ("1033", "1033"),
    ("promo__x", "promo__x"),  # no period: unchanged, separators and all
    ("_promo_", "_promo_"),
    ("release_12024", "release_12024"),  # a digit before: not a year
    ("v2024b", "v2024b"),  # a letter after: not a period token
    ("Brand Awareness", "Brand Awareness"),
    ("O'Brien 2024 dinner", "O'Brien dinner"),  # a quote survives the SQL literal
    ("webinar Q3-2024 FY2025", "webinar"),  # adjacent tokens, each with its prefix
    ("search genericQ3-2024", "search generic"),  # a glued token goes whole
    ("", ""),
    (None, None),
]


def _sql_stems(codes: list[object], pattern: str = PATTERN) -> list[object]:
    """The stems of ``codes`` as they reach DuckDB (the literal code -> stem table), in order."""
    con = connect(threads=1, memory_limit="256MB")
    try:
        table = con.sql(campaign_stems_sql(campaign_stems(codes, pattern))).fetchall()
    finally:
        con.close()
    stems = dict(table)
    assert len(stems) == len(table)  # one row per distinct code
    return [None if code is None else stems[str(code)] for code in codes]


def test_naive_reference_gives_the_hand_written_stems() -> None:
    for code, stem in EXAMPLES:
        assert naive_campaign_stem(code, PATTERN) == stem, code


def test_sql_stems_match_the_naive_reference_on_the_examples() -> None:
    codes = [code for code, _ in EXAMPLES]
    assert _sql_stems(codes) == [naive_campaign_stem(code, PATTERN) for code in codes]


def test_no_codes_give_an_empty_table() -> None:
    assert _sql_stems([]) == []


def test_sql_stems_match_the_naive_reference_on_random_codes() -> None:
    rng = np.random.default_rng(7)
    stems = ["spring_promo", "ABM", "webinar", "search generic", "x", "Mar", "q3"]
    periods = [
        "2024",
        "2023q1",
        "Q3-2024",
        "H1 2024",
        "mar2024",
        "2024-03",
        "2024_03_15",
        "FY2025",
        "2024H2",
        "december_2023",
        "1999",
        "2100",
        "24",
        "q5-2024",
    ]
    separators = ["_", "-", " ", "", "__"]
    codes = []
    for _ in range(400):
        parts = [str(rng.choice(stems)), str(rng.choice(periods))]
        if rng.random() < 0.3:
            parts.append(str(rng.choice(periods)))
        order = rng.permutation(len(parts))
        codes.append(str(rng.choice(separators)).join(parts[i] for i in order))
    expected = [naive_campaign_stem(code, PATTERN) for code in codes]
    assert _sql_stems(codes) == expected
    assert sum(stem != code for stem, code in zip(expected, codes, strict=True)) > 200


def test_a_configured_pattern_replaces_the_default() -> None:
    pattern = r"wave[0-9]+"
    codes = ["launch_wave3", "launch_2024"]
    assert _sql_stems(codes, pattern) == ["launch", "launch_2024"]
    assert _sql_stems(codes, pattern) == [naive_campaign_stem(c, pattern) for c in codes]


def _third_party_export() -> dict[str, pd.DataFrame]:
    """A CRM export: integer ids, its own column names, integer and text campaign codes."""
    bought = ["2024-01-10", "2024-02-10", "2024-03-01", "2024-05-20", "2024-07-01"]
    customers = pd.DataFrame(
        {
            "CustomerID": [1001, 1002, 1003, 1004, 1005],
            "FirstPurchase": bought,
            "utm_campaign": ["2024", "1033", "Q3-2024 ABM", "spring_promo_2024", "webinar-2024-03"],
        }
    )
    subscriptions = pd.DataFrame(
        {
            "subscription_id": [1, 2, 3, 4, 5],
            "customer_id": [1001, 1002, 1003, 1004, 1005],
            "plan": "pro",
            "billing_period": "monthly",
            "mrr": 10.0,
            "started_at": bought,
            "ended_at": None,
        }
    )
    return {"customers": customers, "subscriptions": subscriptions}


def test_third_party_export_through_the_ingest_mapping() -> None:
    mapping = {
        "customer_id": "CustomerID",
        "converted_at": "FirstPurchase",
        "campaign": "utm_campaign",
    }
    ingest = IngestConfig(tables={"customers": TableMapping(columns=mapping)})
    valid = validate_tables(_third_party_export(), ingest, pd.Timestamp("2024-12-31", tz="UTC"))
    keys = population([(str(i), "2024-06-01") for i in range(1001, 1006)])

    result = build_features(valid.valid, keys, FeaturesConfig(), mode="events")

    names = set(result.catalog["name"])
    assert "campaign_stem" in names and "campaign" not in names
    stems = [row(result, str(i), "2024-06-01")["campaign_stem"] for i in range(1001, 1005)]
    assert stems == ["2024", "1033", "ABM", "spring_promo"]
    assert pd.isna(row(result, "1005", "2024-06-01")["campaign_stem"])  # converts later


def test_integer_typed_campaign_codes_are_read_as_text() -> None:
    customers = contract_frame("customers", [{"customer_id": "a", "converted_at": "2024-01-10"}])
    customers["campaign"] = pd.array([2023], dtype="Int64")  # a numeric column from Parquet
    result = build_features(
        {"customers": customers}, population([("a", "2024-06-01")]), FeaturesConfig(), mode="events"
    )
    assert row(result, "a", "2024-06-01")["campaign_stem"] == "2023"


def test_stem_is_point_in_time_and_independent_of_other_customers() -> None:
    rows = [
        {"customer_id": "a", "converted_at": "2024-01-10", "campaign": "promo_2024q1"},
        {"customer_id": "b", "converted_at": "2024-06-01", "campaign": "promo_2024q2"},
    ]
    keys = population([("a", "2024-06-01"), ("b", "2024-06-01"), ("b", "2024-07-01")])
    cfg = FeaturesConfig()

    result = build_features(
        {"customers": contract_frame("customers", rows)}, keys, cfg, mode="events"
    )
    alone = build_features(
        {"customers": contract_frame("customers", rows[:1])},
        population([("a", "2024-06-01")]),
        cfg,
        mode="events",
    )

    assert row(result, "a", "2024-06-01")["campaign_stem"] == "promo"
    assert pd.isna(row(result, "b", "2024-06-01")["campaign_stem"])  # converts at the cutoff
    assert row(result, "b", "2024-07-01")["campaign_stem"] == "promo"
    assert row(alone, "a", "2024-06-01")["campaign_stem"] == "promo"


@pytest.mark.parametrize("allowed", [(), ("campaign",)])
def test_personal_values_are_pseudonymised_not_stemmed(allowed: tuple[str, ...]) -> None:
    rows = [
        {"customer_id": "a", "converted_at": "2024-01-10", "campaign": "promo2024@example.com"},
        {"customer_id": "b", "converted_at": "2024-01-10", "campaign": "spring_2024"},
        {"customer_id": "c", "converted_at": "2024-01-10", "campaign": "summer"},
    ]
    keys = population([("a", "2024-06-01"), ("b", "2024-06-01"), ("c", "2024-06-01")])
    cfg = FeaturesConfig(allow_personal_columns=allowed)
    result = build_features(
        {"customers": contract_frame("customers", rows)}, keys, cfg, mode="events"
    )
    values = [row(result, c, "2024-06-01")["campaign_stem"] for c in "abc"]
    assert values[0].startswith("pii_") and "example" not in values[0]
    if allowed:  # every stem pseudonymised: b's stem is the pseudonym of "spring"
        assert values[1] != "spring" and values[1].startswith("pii_")
        assert values[1] != values[2]
    else:
        assert values[1:] == ["spring", "summer"]
