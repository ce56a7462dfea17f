"""Tests for churn.domain.contract: the single description of raw tables and the column mapping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.domain.contract import (
    BILLING_PERIOD_CODES,
    BILLING_PERIOD_MONTHS,
    BILLING_PERIODS,
    CONTRACT,
    ENTITY_CUSTOMER_COLUMNS,
    EVENT_TABLES,
    code_key,
    map_codes,
    rename_to_contract,
    render_contract_markdown,
)


def test_every_table_references_contract_columns_consistently():
    for spec in CONTRACT.values():
        names = spec.column_names
        assert len(names) == len(set(names)), spec.name
        for key in spec.key:
            assert key in names
        for rule in spec.order_rules:
            assert spec.column(rule.earlier).kind == "timestamp"
            assert spec.column(rule.later).kind == "timestamp"
        if spec.event_time:
            assert spec.column(spec.event_time).kind == "timestamp"
        if spec.references_customers:
            assert "customer_id" in names


def test_required_tables_are_customers_and_subscriptions():
    assert {n for n, s in CONTRACT.items() if s.required} == {"customers", "subscriptions"}
    assert "customers" not in EVENT_TABLES


def test_rename_to_contract_maps_columns_and_values():
    user = pd.DataFrame({"acct": ["a", "b"], "period": ["M", "Y"], "extra": [1, 2]})
    out = rename_to_contract(
        user,
        {"customer_id": "acct", "billing_period": "period"},
        {"billing_period": {"M": "monthly", "Y": "annual"}},
    )
    assert list(out.columns) == ["customer_id", "billing_period", "extra"]
    assert list(out["billing_period"]) == ["monthly", "annual"]
    assert list(user.columns) == ["acct", "period", "extra"]  # input untouched


def test_rename_to_contract_names_missing_user_columns():
    with pytest.raises(KeyError, match="acct"):
        rename_to_contract(pd.DataFrame({"id": [1]}), {"customer_id": "acct"})


def test_markdown_documents_every_table_and_column():
    text = render_contract_markdown()
    for spec in CONTRACT.values():
        assert f"`{spec.name}`" in text
        for column in spec.columns:
            assert f"`{column.name}`" in text


def test_every_timestamp_column_states_its_time_rule():
    without_rule = [
        f"{spec.name}.{column.name}"
        for spec in CONTRACT.values()
        for column in spec.columns
        if column.kind == "timestamp" and not column.time_rule.strip()
    ]
    assert without_rule == []


def test_only_timestamp_columns_carry_a_time_rule():
    stray = [
        f"{spec.name}.{column.name}"
        for spec in CONTRACT.values()
        for column in spec.columns
        if column.kind != "timestamp" and column.time_rule
    ]
    assert stray == []


def test_time_rules_match_what_ingest_exempts_from_the_future_dated_rule():
    from churn.stages.ingest import SCHEDULED_END_COLUMNS

    for name, spec in CONTRACT.items():
        for column in spec.timestamp_columns:
            rule = spec.column(column).time_rule
            exempt = column in SCHEDULED_END_COLUMNS.get(name, ())
            assert ("may lie after `ingest.as_of`" in rule) is exempt, (name, column)
            assert ("quarantined as future-dated" in rule) is not exempt, (name, column)


def test_markdown_renders_each_time_rule_and_no_blanket_as_of_sentence():
    text = render_contract_markdown()
    for spec in CONTRACT.values():
        for column in spec.timestamp_columns:
            assert f"- `{column}`: {spec.column(column).time_rule}" in text
    assert "rows after `ingest.as_of` are quarantined" not in text
    assert "quarantined as `future_dated` (scheduled ends excepted" in text


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (1, "1"),
        (1.0, "1"),
        ("1", "1"),
        (" 1.0 ", "1"),
        (np.int64(12), "12"),
        (np.float64(12.0), "12"),
        (2.5, "2.5"),
        ("2.50", "2.5"),
        (True, "true"),
        (np.bool_(False), "false"),
        ("TRUE", "true"),
        ("Yes", "true"),  # YAML 1.1 reads an unquoted Yes key as True
        ("off", "false"),
        ("M", "M"),
        ("nan", "nan"),  # text that only looks like a float stays text
        (None, None),
        (float("nan"), None),
        (pd.NA, None),
    ],
)
def test_code_key_ignores_how_a_code_is_typed(value, code):
    assert code_key(value) == code


@pytest.mark.parametrize(
    "source",
    [
        pd.Series([1, 12, 1], dtype="int64"),
        pd.Series([1, 12, 1], dtype="Int64"),
        pd.Series([1.0, 12.0, 1.0]),
        pd.Series(["1", "12", "1.0"], dtype="str"),
        pd.Series([1, "12", 1.0], dtype=object),
    ],
)
@pytest.mark.parametrize(
    "mapping",
    [
        {1: "monthly", 12: "annual"},
        {"1": "monthly", "12": "annual"},
        {1.0: "monthly", "12.0": "annual"},
    ],
)
def test_map_codes_matches_keys_and_values_of_any_type(source, mapping):
    assert map_codes(source, mapping).tolist() == ["monthly", "annual", "monthly"]


def test_map_codes_keeps_unmapped_and_missing_values_as_read():
    source = pd.Series([1, 7, None], dtype="Int64")

    out = map_codes(source, {1: "monthly"})

    assert out[0] == "monthly"
    assert out[1] == 7  # left for the vocabulary rule to quarantine
    assert pd.isna(out[2])


def test_map_codes_maps_booleans_and_their_text():
    mapping = {True: "annual", False: "monthly"}
    assert map_codes(pd.Series([True, False]), mapping).tolist() == ["annual", "monthly"]
    assert map_codes(pd.Series(["True", "false"]), mapping).tolist() == ["annual", "monthly"]
    assert map_codes(pd.Series(["Yes", "No"]), mapping).tolist() == ["annual", "monthly"]


def test_rename_to_contract_maps_integer_source_codes():
    user = pd.DataFrame({"period": [1, 12, 3]})

    out = rename_to_contract(user, {"billing_period": "period"}, {"billing_period": {1: "monthly"}})

    assert out["billing_period"].tolist() == ["monthly", 12, 3]


def test_billing_periods_are_month_counts_and_their_codes():
    assert BILLING_PERIODS == ("monthly", "quarterly", "semiannual", "annual")
    assert dict(BILLING_PERIOD_MONTHS) == {
        "monthly": 1,
        "quarterly": 3,
        "semiannual": 6,
        "annual": 12,
    }
    assert dict(BILLING_PERIOD_CODES) == {
        "1": "monthly",
        "3": "quarterly",
        "6": "semiannual",
        "12": "annual",
    }
    assert CONTRACT["subscriptions"].column("billing_period").allowed == BILLING_PERIODS


def test_entity_only_columns_are_not_contract_columns_of_customers():
    names = [c.name for c in ENTITY_CUSTOMER_COLUMNS]
    assert names == ["mrr"]
    assert not set(names) & set(CONTRACT["customers"].column_names)


def test_markdown_documents_codes_entity_columns_and_the_numeric_rule():
    text = render_contract_markdown()
    assert "one of monthly, quarterly, semiannual, annual" in text
    assert "- `mrr` (float, >= 0)" in text
    assert "at least 99% of its non-blank values parse" in text
