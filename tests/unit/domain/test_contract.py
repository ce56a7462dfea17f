"""Tests for churn.domain.contract: the single description of raw tables and the column mapping."""

from __future__ import annotations

import pandas as pd
import pytest

from churn.domain.contract import (
    CONTRACT,
    EVENT_TABLES,
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
