"""Tests for churn.model.reasons: a readable sentence for every feature kind, unit and gap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support.tiny import TINY_CATALOG

from churn.domain.catalog import FeatureSpec
from churn.model.reasons import (
    build_feature_specs,
    build_reason_columns,
    describe_value,
    display_values,
    explain_values,
    format_number,
    format_value,
)


def _spec(kind: str = "numeric", unit: str = "", description: str = "things", levels=()):
    """Return a catalog entry and the training levels a sentence is checked against."""
    return FeatureSpec("f", "usage", "post_sale", kind, unit, description), tuple(levels)


@pytest.mark.parametrize(
    ("spec", "value", "typical", "expected"),
    [
        (
            _spec(unit="tickets", description="support tickets opened in the last 30 days"),
            4.0,
            0.0,
            "4 support tickets opened in the last 30 days; a typical customer has 0",
        ),
        (
            _spec(unit="days", description="days since the last login"),
            3.5,
            12.0,
            "3.5 days since the last login; a typical customer has 12",
        ),
        (
            _spec(unit="", description="logins in the last 7 days"),
            1234.0,
            None,
            "1,234 logins in the last 7 days",
        ),
        (
            _spec(unit="currency/month", description="monthly recurring revenue"),
            7391.15,
            161.85,
            "monthly recurring revenue is 7,391 per month (typical: 161.85 per month)",
        ),
        (
            _spec(unit="currency", description="total discount"),
            50.0,
            None,
            "total discount is 50",
        ),
        (
            _spec(unit="points", description="points on the latest NPS response (0-10)"),
            3.0,
            8.0,
            "3 points on the latest NPS response (0-10); a typical customer has 8",
        ),
        (
            _spec(unit="share", description="share of tickets reopened"),
            0.25,
            0.05,
            "share of tickets reopened is 25% (typical: 5%)",
        ),
        (
            _spec(unit="percent", description="seat utilisation"),
            12.5,
            80.0,
            "seat utilisation is 12.5% (typical: 80%)",
        ),
        (
            _spec(unit="fraction", description="share of tickets reopened"),
            0.5,
            None,
            "share of tickets reopened is 50%",
        ),
        (
            _spec(unit="bool", description="paid by invoice"),
            0.0,
            None,
            "paid by invoice: no",
        ),
        (
            _spec(unit="ratio", description="usage trend, last 30 days over prior 30"),
            0.4,
            1.0,
            "usage trend, last 30 days over prior 30 is 0.40 (typical: 1)",
        ),
        (
            _spec(unit="flag", description="flag for a discount running (1 yes, 0 no)"),
            1.0,
            0.0,
            "a discount running: yes (typical: no)",
        ),
        (
            _spec("categorical", description="acquisition channel", levels=["organic", "paid"]),
            "paid",
            "organic",
            "acquisition channel is paid (typical: organic)",
        ),
        (
            _spec("categorical", description="acquisition channel", levels=["organic", "paid"]),
            "tiktok",
            "organic",
            "acquisition channel is tiktok, a value not seen in training (scored as missing)",
        ),
        (
            _spec(unit="points", description="last NPS score"),
            np.nan,
            8.0,
            "no last NPS score on record",
        ),
        (
            _spec(unit="tickets", description="support tickets"),
            None,
            1.0,
            "no support tickets on record",
        ),
        (
            _spec("categorical", description="acquisition channel"),
            pd.NA,
            "organic",
            "no acquisition channel on record",
        ),
    ],
)
def test_sentence_for_every_kind_unit_and_missing_value(spec, value, typical, expected):
    feature, levels = spec
    assert describe_value(value, feature, typical, levels) == expected


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (0.0, "", "0"),
        (12.0, "tickets", "12"),
        (0.123, "", "0.12"),
        (-2.25, "", "-2.2"),
        (2_000_000.0, "currency", "2,000,000"),
        (0.5, "share", "50%"),
        (0.0, "bool", "no"),
    ],
)
def test_format_number(value, unit, expected):
    assert format_number(value, unit) == expected


def test_every_tiny_catalog_feature_has_sentences(tiny_model, feature_frame):
    specs = build_feature_specs(
        tiny_model.catalog, tiny_model.feature_names, tiny_model.categorical_levels
    )
    assert set(specs) == set(TINY_CATALOG["name"])
    for name, spec in specs.items():
        typical = tiny_model.typical_values[name]
        present = describe_value(feature_frame[name].dropna().iloc[0], spec, typical)
        missing = describe_value(np.nan, spec, typical)
        assert spec.description in present or spec.singular in present
        assert "typical" in present
        assert missing == f"no {spec.description} on record"


def test_explain_values_matches_one_by_one_reference():
    rng = np.random.default_rng(5)
    numbers = pd.Series(rng.choice([0.0, 1.0, 2.5, np.nan, 1234.0], size=300))
    words = pd.Series(rng.choice(["a", "b", "zz", None], size=300), dtype="str")
    for values, (spec, levels) in (
        (numbers, _spec(unit="tickets")),
        (words, _spec("categorical", levels=["a", "b"])),
    ):
        typical = values.dropna().iloc[0]
        display, sentences = explain_values(values, spec, typical=typical, levels=levels)
        # The display alone, without the sentences: each value as format_value shows it.
        shown = display_values(values, spec)
        for i, value in enumerate(values):
            assert sentences[i] == describe_value(value, spec, typical, levels)
            assert (display[i] is None) == bool(pd.isna(value))
            assert shown[i] == display[i] == format_value(value, spec)


def test_numeric_text_values_are_read_as_numbers():
    # A feature frame read from CSV holds numbers as text; the sentence must still format them.
    display, sentences = explain_values(pd.Series(["4", "4.0", None]), _spec(unit="tickets")[0])
    assert list(display) == ["4", "4", None]
    assert sentences[2] == "no things on record"


def test_feature_missing_from_catalog_still_gets_a_spec():
    specs = build_feature_specs(pd.DataFrame(), ("days_since_login", "plan"), {"plan": ("a",)})
    assert specs["days_since_login"].family == "unknown"
    assert specs["days_since_login"].description == "days since login"
    assert specs["plan"].kind == "categorical" and specs["plan"].phase == "unknown"


def test_reason_columns_name_a_level_unseen_in_training():
    specs = build_feature_specs(pd.DataFrame(), ("plan",), {"plan": ("a",)})
    batch = pd.DataFrame({"plan": pd.array(["a", "zz"], dtype="str")})
    index, value = np.zeros((2, 1), dtype=np.intp), np.array([[0.5], [0.5]])
    columns = build_reason_columns(batch, index, value, specs, {}, 1, {"plan": ("a",)})
    assert list(columns["reason_1_text"]) == [
        "plan is a",
        "plan is zz, a value not seen in training (scored as missing)",
    ]


def test_catalog_kind_is_overridden_by_the_model():
    # The model decides how values are read: a catalog "numeric" column without levels stays
    # numeric, a column the model encodes as categorical is formatted as a category.
    specs = build_feature_specs(TINY_CATALOG, ("plan", "mrr_at_cutoff"), {"plan": ("pro",)})
    assert specs["plan"].kind == "categorical" and specs["plan"].family == "billing"
    assert specs["mrr_at_cutoff"].kind == "numeric"
    assert specs["mrr_at_cutoff"].unit == "currency/month"


# --- wording rules of issue 13: number, units, categorical rates, rare levels -------------------


def test_one_of_a_count_reads_singular_and_more_read_plural():
    spec, _ = _spec(unit="tickets", description="support tickets opened in the last 30 days")
    assert spec.singular == "support ticket opened in the last 30 days"
    assert describe_value(1.0, spec, 0.0) == (
        "1 support ticket opened in the last 30 days; a typical customer has 0"
    )
    assert describe_value(4.0, spec, 1.0).startswith("4 support tickets opened")
    # Not a count of its unit: the description stays as it is.
    points, _ = _spec(unit="points", description="change in NPS points since the response before")
    assert describe_value(1.0, points) == "1 change in NPS points since the response before"


def test_long_day_counts_are_told_in_months_with_the_typical_value_in_the_same_unit():
    spec, _ = _spec(unit="days", description="days since the customer's first purchase")
    assert describe_value(400.0, spec, 200.0) == (
        "13.1 months since the customer's first purchase; a typical customer has 6.6"
    )
    assert describe_value(30.4375, spec) == "30.4 days since the customer's first purchase"
    assert describe_value(89.0, spec, 200.0) == (
        "89 days since the customer's first purchase; a typical customer has 200"
    )
    one_day, _ = _spec(unit="days", description="days since the last login")
    assert describe_value(1.0, one_day) == "1 day since the last login"


def test_categorical_reason_compares_the_level_churn_rate_with_the_average():
    spec, levels = _spec("categorical", description="contract", levels=["Month-to-month", "Year"])
    ratios = {"Month-to-month": 3.14, "Year": 0.456}
    assert describe_value("Month-to-month", spec, "Year", levels, ratios) == (
        "contract is Month-to-month: customers with it leave 3.1x as often as average"
    )
    year = describe_value("Year", spec, None, levels, ratios)
    assert year.endswith("leave 0.46x as often as average")
    # Without rates (an older model) the typical level is named instead.
    assert describe_value("Year", spec, "Month-to-month", levels) == (
        "contract is Year (typical: Month-to-month)"
    )


def test_rare_and_unseen_levels_speak_of_the_pooled_rare_levels():
    from churn.model.pooling import POOLED_LEVEL

    spec, levels = _spec("categorical", description="campaign", levels=["big", POOLED_LEVEL])
    ratios = {"big": 1.0, POOLED_LEVEL: 1.84}
    assert describe_value("tiny_2023q1", spec, "big", levels, ratios) == (
        "campaign is tiny_2023q1: customers with a rare value like it leave 1.8x as often as "
        "average"
    )
    assert describe_value("tiny_2023q1", spec, "big", levels) == (
        "campaign is tiny_2023q1, a rare value (scored with the other rare values)"
    )
