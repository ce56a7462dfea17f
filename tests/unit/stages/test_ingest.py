"""Tests for churn.stages.ingest: contract validation, quarantine, table errors, the runner."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from churn.config import IngestConfig, TableMapping
from churn.domain.contract import CONTRACT
from churn.errors import DataContractError
from churn.stages.ingest import FAILED_RULES, ROW_NUMBER, IngestResult, run_ingest, validate_tables

AS_OF = pd.Timestamp("2025-06-30", tz="UTC")
Tables = dict[str, pd.DataFrame]


def _text(rows: list[dict[str, str | None]]) -> pd.DataFrame:
    """A frame as read from CSV: every column text."""
    return pd.DataFrame(rows).astype("str")


def make_tables() -> Tables:
    """A small, entirely valid data set covering every contract table (all values text)."""
    customers = _text(
        [
            {
                "customer_id": f"C{i}",
                "lead_created_at": "2024-12-01T09:00:00Z",
                "converted_at": f"2025-01-0{i}T10:00:00Z",
                "acquisition_channel": "referral",
                "segment": "smb",
                "trial_days": "14",
            }
            for i in range(1, 5)
        ]
    )
    subscriptions = _text(
        [
            {
                "subscription_id": f"S{i}",
                "customer_id": f"C{i}",
                "plan": "pro",
                "billing_period": "monthly",
                "mrr": "49.5",
                "started_at": f"2025-01-0{i}T10:00:00Z",
                "ended_at": "2025-05-01T00:00:00Z" if i == 4 else None,
            }
            for i in range(1, 5)
        ]
    )
    changes = _text(
        [
            {
                "subscription_id": "S1",
                "customer_id": "C1",
                "effective_at": "2025-02-01T00:00:00Z",
                "change_type": "upgrade",
                "mrr_before": "49.5",
                "mrr_after": "99",
            },
            {
                "subscription_id": "S2",
                "customer_id": "C2",
                "effective_at": "2025-03-01T00:00:00Z",
                "change_type": "discount_start",
                "mrr_before": "49.5",
                "mrr_after": "40",
            },
        ]
    )
    usage = _text(
        [
            {
                "customer_id": f"C{i}",
                "occurred_at": f"2025-03-0{i}T08:00:00Z",
                "event_type": "login",
                "quantity": "1",
            }
            for i in range(1, 5)
        ]
    )
    presale = _text(
        [{"customer_id": "C1", "occurred_at": "2024-12-02T10:00:00Z", "touchpoint_type": "demo"}]
    )
    postsale = _text(
        [{"customer_id": "C2", "occurred_at": "2025-02-02T10:00:00Z", "touchpoint_type": "webinar"}]
    )
    nps = _text(
        [
            {"customer_id": "C1", "responded_at": "2025-03-01T10:00:00Z", "score": "9"},
            {"customer_id": "C2", "responded_at": "2025-03-02T10:00:00Z", "score": "3"},
        ]
    )
    tickets = _text(
        [
            {
                "ticket_id": f"T{i}",
                "customer_id": f"C{i}",
                "opened_at": "2025-03-01T10:00:00Z",
                "first_response_at": "2025-03-01T11:00:00Z",
                "resolved_at": "2025-03-02T10:00:00Z",
                "category": "billing",
                "priority": "normal",
                "reopened": "false",
                "csat_score": "4",
                "csat_received_at": "2025-03-03T10:00:00Z",
            }
            for i in range(1, 4)
        ]
    )
    return {
        "customers": customers,
        "presale_touchpoints": presale,
        "subscriptions": subscriptions,
        "subscription_changes": changes,
        "usage_events": usage,
        "postsale_touchpoints": postsale,
        "nps_responses": nps,
        "support_tickets": tickets,
        "retention_actions": _text(
            [
                {"customer_id": "C1", "action_at": "2025-03-01T09:00:00Z",
                 "play": "support_escalation", "control": "false"},
                {"customer_id": "C2", "action_at": "2025-03-01T09:00:00Z",
                 "play": "discount_offer", "control": "true"},
            ]
        ),
    }


@pytest.fixture
def tables() -> Tables:
    """A fresh valid data set (tests may modify it)."""
    return make_tables()


@pytest.fixture
def lenient() -> IngestConfig:
    """Config that never fails on the quarantined share, to look at row rules one by one."""
    return IngestConfig(max_quarantine_share=1.0)


def failed_rules(result: IngestResult, table: str) -> dict[int, str]:
    """Row number -> ``_failed_rules`` of the quarantined rows of ``table``."""
    frame = result.quarantine[table]
    return dict(zip(frame[ROW_NUMBER], frame[FAILED_RULES], strict=True))


def assert_balanced(result: IngestResult) -> None:
    """rows_in == rows_valid + rows_quarantined, in the report and in the frames."""
    for name, info in result.report["tables"].items():
        if not info["present"]:
            continue
        assert info["rows_in"] == info["rows_valid"] + info["rows_quarantined"], name
        assert info["rows_valid"] == len(result.valid[name])
        assert info["rows_quarantined"] == len(result.quarantine[name])
        assert info["rows_balanced"] is True
    report = result.report
    assert report["rows_in"] == report["rows_valid"] + report["rows_quarantined"]


def set_cell(table: str, row: int, column: str, value: str | None) -> Callable[[Tables], None]:
    """A modifier that sets one raw cell."""

    def modify(tables: Tables) -> None:
        tables[table].loc[row, column] = value

    return modify


# --- a clean data set ------------------------------------------------------------------------


def test_clean_input_is_all_valid_with_contract_columns_and_dtypes(tables, lenient):
    result = validate_tables(tables, lenient, AS_OF)

    assert result.report["rows_quarantined"] == 0
    assert_balanced(result)
    for name, spec in CONTRACT.items():
        valid = result.valid[name]
        assert list(valid.columns) == spec.column_names, name
        assert len(valid) == len(tables[name])
        for col in spec.columns:
            dtype = str(valid[col.name].dtype)
            expected = {
                "string": "str",
                "category": "str",
                "timestamp": "datetime64[us, UTC]",
                "float": "float64",
                "int": "Int64",
                "bool": "boolean",
            }[col.kind]
            assert dtype == expected, (name, col.name, dtype)
        assert len(result.quarantine[name]) == 0
        assert list(result.quarantine[name].columns)[-2:] == [ROW_NUMBER, FAILED_RULES]


def test_optional_columns_absent_are_added_as_nulls(tables, lenient):
    result = validate_tables(tables, lenient, AS_OF)

    customers = result.valid["customers"]
    assert customers["campaign"].isna().all()
    assert customers["country"].isna().all()
    report = result.report["tables"]["customers"]
    assert set(report["added_columns"]) == {"campaign", "country"}


def test_extra_columns_are_dropped_and_reported(tables, lenient):
    tables["usage_events"]["browser"] = "firefox"

    result = validate_tables(tables, lenient, AS_OF)

    assert "browser" not in result.valid["usage_events"].columns
    assert result.report["tables"]["usage_events"]["ignored_columns"] == ["browser"]


def test_declared_customer_attributes_are_kept_and_typed_in_events_mode(tables, lenient):
    customers = tables["customers"]
    customers["industry"] = ["7", "7", "12", "3"]  # integer industry codes, as exported
    customers["company_size"] = ["10", "250", "", "40"]
    customers["date_of_birth"] = ["1990-06-02", "1985-01-31", "not a date", "2001-12-24"]
    customers["browser"] = "firefox"
    declared = {"industry": "categorical", "company_size": "numeric", "date_of_birth": "age"}

    result = validate_tables(tables, lenient, AS_OF, customer_attributes=declared)

    valid = result.valid["customers"]
    assert {"industry", "company_size", "date_of_birth"} <= set(valid.columns)
    assert valid["industry"].dtype == "str" and valid["industry"].tolist() == ["7", "7", "3"]
    assert valid["company_size"].dtype == "float64"
    assert valid["company_size"].tolist() == [10.0, 250.0, 40.0]
    assert valid["date_of_birth"].dt.year.tolist() == [1990, 1985, 2001]
    # An unreadable date of birth quarantines its row under the column's name.
    assert list(failed_rules(result, "customers")) == [2]
    assert failed_rules(result, "customers")[2].startswith("date_of_birth:")
    assert result.report["tables"]["customers"]["ignored_columns"] == ["browser"]
    assert_balanced(result)
    without = validate_tables(make_tables(), lenient, AS_OF)
    assert "industry" not in without.valid["customers"].columns


def test_a_declared_customer_attribute_missing_from_the_export_is_named(tables, lenient):
    with pytest.raises(DataContractError, match=r"\['industry'\] declared in features"):
        validate_tables(tables, lenient, AS_OF, customer_attributes={"industry": "categorical"})


def test_input_frames_are_not_modified(tables, lenient):
    before = {name: frame.copy() for name, frame in tables.items()}
    tables["customers"].loc[0, "converted_at"] = "garbage"
    before["customers"].loc[0, "converted_at"] = "garbage"

    validate_tables(tables, lenient, AS_OF)

    for name, frame in tables.items():
        pd.testing.assert_frame_equal(frame, before[name])


# --- row rules ---------------------------------------------------------------------------------

ROW_RULE_CASES = [
    ("customers", "converted_at", "yesterday", "converted_at:not_a_timestamp"),
    ("customers", "trial_days", "fourteen", "trial_days:not_a_number"),
    ("customers", "trial_days", "1.5", "trial_days:not_an_integer"),
    ("support_tickets", "reopened", "maybe", "reopened:not_a_bool"),
    ("customers", "converted_at", None, "converted_at:missing"),
    ("subscriptions", "plan", None, "plan:missing"),
    ("subscriptions", "billing_period", "weekly", "billing_period:not_in_vocabulary"),
    ("subscription_changes", "change_type", "refund", "change_type:not_in_vocabulary"),
    ("subscriptions", "mrr", "-5", "mrr:out_of_range[0,inf]"),
    ("customers", "trial_days", "400", "trial_days:out_of_range[0,365]"),
    ("support_tickets", "csat_score", "7", "csat_score:out_of_range[1,5]"),
    ("nps_responses", "score", "11", "score:out_of_range[0,10]"),
    ("subscriptions", "ended_at", "2024-12-31T00:00:00Z", "ended_at:before_started_at"),
    ("support_tickets", "resolved_at", "2025-02-28T00:00:00Z", "resolved_at:before_opened_at"),
    ("customers", "lead_created_at", "2025-06-01T00:00:00Z", "converted_at:before_lead_created_at"),
    ("usage_events", "occurred_at", "2025-07-01T00:00:00Z", "occurred_at:future_dated"),
    ("support_tickets", "csat_received_at", "2026-01-01", "csat_received_at:future_dated"),
    ("usage_events", "customer_id", "C99", "customer_id:unknown_customer"),
    ("subscription_changes", "subscription_id", "S99", "subscription_id:unknown_subscription"),
]


@pytest.mark.parametrize(("table", "column", "value", "rule"), ROW_RULE_CASES)
def test_each_row_rule_quarantines_the_row_under_its_name(
    tables, lenient, table, column, value, rule
):
    tables[table].loc[1, column] = value

    result = validate_tables(tables, lenient, AS_OF)

    assert failed_rules(result, table) == {1: rule}
    info = result.report["tables"][table]
    assert info["rows_quarantined"] == 1
    assert info["rows_valid"] == len(tables[table]) - 1
    assert info["rules"][rule]["count"] == 1
    assert info["rules"][rule]["examples"][0]["row"] == 1
    assert_balanced(result)


def test_a_row_lists_every_rule_it_breaks_in_column_order(tables, lenient):
    tables["support_tickets"].loc[0, "csat_score"] = "7"
    tables["support_tickets"].loc[0, "opened_at"] = "not a date"

    result = validate_tables(tables, lenient, AS_OF)

    assert failed_rules(result, "support_tickets") == {
        0: "opened_at:not_a_timestamp; csat_score:out_of_range[1,5]"
    }


def test_an_unconvertible_value_is_not_also_reported_missing(tables, lenient):
    tables["customers"].loc[0, "converted_at"] = "soon"

    result = validate_tables(tables, lenient, AS_OF)

    assert "converted_at:missing" not in result.report["tables"]["customers"]["rules"]


def test_rule_examples_show_the_original_values(tables, lenient):
    tables["subscriptions"].loc[2, "mrr"] = "-12.5"

    result = validate_tables(tables, lenient, AS_OF)

    examples = result.report["tables"]["subscriptions"]["rules"]["mrr:out_of_range[0,inf]"]
    assert examples == {"count": 1, "examples": [{"row": 2, "value": "-12.5"}]}


def test_exact_duplicate_rows_keep_the_first_copy(tables, lenient):
    usage = tables["usage_events"]
    tables["usage_events"] = pd.concat([usage, usage.iloc[[0, 0, 2]]], ignore_index=True)

    result = validate_tables(tables, lenient, AS_OF)

    assert len(result.valid["usage_events"]) == 4
    assert failed_rules(result, "usage_events") == {
        4: "duplicate_row",
        5: "duplicate_row",
        6: "duplicate_row",
    }
    rule = result.report["tables"]["usage_events"]["rules"]["duplicate_row"]
    assert rule["count"] == 3
    assert rule["examples"][0] == {"row": 4, "value": "same as row 0"}
    assert_balanced(result)


def test_duplicates_compare_instants_not_spelling(tables, lenient):
    copy = tables["usage_events"].iloc[[0]].copy()
    copy["occurred_at"] = "2025-03-01T10:00:00+02:00"  # the same instant as row 0
    tables["usage_events"] = pd.concat([tables["usage_events"], copy], ignore_index=True)

    result = validate_tables(tables, lenient, AS_OF)

    assert failed_rules(result, "usage_events") == {4: "duplicate_row"}


def test_different_unparseable_values_are_not_duplicates(tables, lenient):
    usage = pd.concat([tables["usage_events"].iloc[[0]]] * 2, ignore_index=True)
    usage["occurred_at"] = ["soon", "later"]
    tables["usage_events"] = usage

    result = validate_tables(tables, lenient, AS_OF)

    assert failed_rules(result, "usage_events") == {
        0: "occurred_at:not_a_timestamp",
        1: "occurred_at:not_a_timestamp",
    }


def test_rows_sharing_a_key_with_different_content_are_all_quarantined(tables, lenient):
    clash = tables["subscriptions"].iloc[[1]].copy()
    clash["mrr"] = "99"  # same subscription_id S2, other content
    exact = tables["subscriptions"].iloc[[0]]  # an exact copy of S1
    tables["subscriptions"] = pd.concat([tables["subscriptions"], clash, exact], ignore_index=True)

    result = validate_tables(tables, lenient, AS_OF)

    assert failed_rules(result, "subscriptions") == {
        1: "subscription_id:duplicate_key",
        4: "subscription_id:duplicate_key",
        5: "duplicate_row",
    }
    assert list(result.valid["subscriptions"]["subscription_id"]) == ["S1", "S3", "S4"]
    # S2 is no longer a valid subscription, so its change is quarantined too.
    assert failed_rules(result, "subscription_changes") == {
        1: "subscription_id:unknown_subscription"
    }
    assert_balanced(result)


def test_references_must_point_at_valid_rows(tables, lenient):
    tables["customers"].loc[2, "converted_at"] = "garbage"  # C3 becomes invalid

    result = validate_tables(tables, lenient, AS_OF)

    assert failed_rules(result, "customers") == {2: "converted_at:not_a_timestamp"}
    assert failed_rules(result, "subscriptions") == {2: "customer_id:unknown_customer"}
    assert failed_rules(result, "usage_events") == {2: "customer_id:unknown_customer"}
    assert failed_rules(result, "support_tickets") == {2: "customer_id:unknown_customer"}
    assert "C3" not in set(result.valid["usage_events"]["customer_id"])
    assert_balanced(result)


def test_future_dated_starts_after_the_end_of_the_as_of_day(tables, lenient):
    usage = tables["usage_events"]
    usage.loc[0, "occurred_at"] = "2025-06-30T23:59:59Z"
    usage.loc[1, "occurred_at"] = "2025-07-01T00:00:00Z"

    result = validate_tables(tables, lenient, pd.Timestamp("2025-06-30"))

    assert failed_rules(result, "usage_events") == {1: "occurred_at:future_dated"}


def test_quarantine_keeps_the_original_values_as_text(tables, lenient):
    usage = tables["usage_events"].copy()
    usage["quantity"] = [1.0, -2.0, 3.0, 4.0]  # typed, as from Parquet
    usage["occurred_at"] = pd.to_datetime(usage["occurred_at"], utc=True)
    usage["browser"] = "firefox"
    tables["usage_events"] = usage

    result = validate_tables(tables, lenient, AS_OF)

    bad = result.quarantine["usage_events"]
    assert list(bad.columns) == [*usage.columns, ROW_NUMBER, FAILED_RULES]
    assert bad.loc[0, "quantity"] == "-2.0"
    assert bad.loc[0, "occurred_at"].startswith("2025-03-02 08:00:00")
    assert bad.loc[0, "browser"] == "firefox"
    assert bad.loc[0, ROW_NUMBER] == 1
    assert str(bad[ROW_NUMBER].dtype) == "int64"
    assert all(str(bad[c].dtype) == "str" for c in usage.columns)


def test_invariant_holds_on_messy_input(tables, lenient):
    tables["customers"].loc[0, "trial_days"] = "-1"
    tables["subscriptions"].loc[3, "started_at"] = "2025-13-45"
    tables["usage_events"] = pd.concat([tables["usage_events"]] * 3, ignore_index=True)
    tables["support_tickets"].loc[1, "priority"] = "critical"
    tables["nps_responses"].loc[0, "score"] = None

    result = validate_tables(tables, lenient, AS_OF)

    assert result.report["rows_quarantined"] > 0
    assert result.report["rows_balanced"] is True
    assert_balanced(result)


# --- table-level errors ------------------------------------------------------------------------


def test_missing_required_table_raises_naming_it(tables):
    del tables["subscriptions"]

    with pytest.raises(DataContractError, match="required table 'subscriptions' is missing"):
        validate_tables(tables, IngestConfig(), AS_OF)


def test_missing_required_columns_of_all_tables_are_listed_at_once(tables):
    tables["customers"] = tables["customers"].drop(columns=["converted_at"])
    tables["subscriptions"] = tables["subscriptions"].drop(columns=["mrr", "plan"])
    tables["nps_responses"] = tables["nps_responses"].drop(columns=["score"])

    with pytest.raises(DataContractError) as info:
        validate_tables(tables, IngestConfig(), AS_OF)

    message = str(info.value)
    for table, column in [
        ("customers", "converted_at"),
        ("subscriptions", "mrr"),
        ("subscriptions", "plan"),
        ("nps_responses", "score"),
    ]:
        assert f"table '{table}': column '{column}'" in message


def test_a_mapped_column_missing_names_the_user_column(tables):
    cfg = IngestConfig(tables={"customers": TableMapping(columns={"converted_at": "first_buy"})})

    with pytest.raises(DataContractError, match="'converted_at' \\(mapped from 'first_buy'\\)"):
        validate_tables(tables, cfg, AS_OF)


def test_a_mapping_that_duplicates_a_column_is_refused(tables):
    tables["customers"]["signup"] = tables["customers"]["converted_at"]
    cfg = IngestConfig(tables={"customers": TableMapping(columns={"converted_at": "signup"})})

    with pytest.raises(DataContractError, match="converted_at"):
        validate_tables(tables, cfg, AS_OF)


def test_quarantined_share_above_the_limit_raises_naming_the_table(tables):
    tables["support_tickets"].loc[0, "csat_score"] = "9"  # 1 of 3 rows: 33%

    with pytest.raises(DataContractError) as info:
        validate_tables(tables, IngestConfig(max_quarantine_share=0.3), AS_OF)

    message = str(info.value)
    assert "table 'support_tickets': 1 of 3 rows" in message
    assert "csat_score:out_of_range[1,5] on 1 row(s)" in message
    assert "'9'" in message


def test_quarantined_share_at_the_limit_passes(tables):
    tables["usage_events"].loc[0, "event_type"] = None  # 1 of 4 rows: exactly 25%

    result = validate_tables(tables, IngestConfig(max_quarantine_share=0.25), AS_OF)

    assert result.report["tables"]["usage_events"]["rows_quarantined"] == 1


def test_absent_optional_table_is_logged_and_reported(tables, caplog):
    del tables["nps_responses"]

    with caplog.at_level(logging.WARNING, logger="churn.stages.ingest"):
        result = validate_tables(tables, IngestConfig(), AS_OF)

    info = result.report["tables"]["nps_responses"]
    assert info["present"] is False
    assert info["feature_family"] == "engagement"
    assert "nps_responses" not in result.valid
    assert "table nps_responses absent" in caplog.text
    assert "engagement" in caplog.text


# --- timestamps --------------------------------------------------------------------------------


def test_mixed_offsets_and_naive_timestamps_are_the_same_utc_instant(tables, lenient):
    tables["usage_events"]["occurred_at"] = [
        "2025-03-01T10:00:00+02:00",
        "2025-03-01T08:00:00Z",
        "2025-03-01 08:00:00",  # naive: read in input_timezone (UTC here)
        "2025-03-01T03:00:00-05:00",
    ]

    result = validate_tables(tables, lenient, AS_OF)

    stamps = result.valid["usage_events"]["occurred_at"]
    assert str(stamps.dtype) == "datetime64[us, UTC]"
    assert set(stamps) == {pd.Timestamp("2025-03-01T08:00:00Z")}


def test_naive_timestamps_are_read_in_the_input_timezone(tables):
    tables["usage_events"]["occurred_at"] = [
        "2025-03-01 09:00:00",  # Berlin winter time: UTC+1
        "2025-03-01T08:00:00Z",
        "2025-07-01 10:00:00",  # Berlin summer time: UTC+2 (after as_of: future-dated)
        "2025-06-01T10:00:00+02:00",
    ]
    cfg = IngestConfig(input_timezone="Europe/Berlin", max_quarantine_share=1.0)

    result = validate_tables(tables, cfg, pd.Timestamp("2025-12-31"))

    stamps = list(result.valid["usage_events"]["occurred_at"])
    assert stamps[0] == stamps[1] == pd.Timestamp("2025-03-01T08:00:00Z")
    assert stamps[2] == pd.Timestamp("2025-07-01T08:00:00Z")
    assert stamps[3] == pd.Timestamp("2025-06-01T08:00:00Z")


def test_typed_input_ingests_like_text_input(tables, lenient):
    typed = {name: frame.copy() for name, frame in tables.items()}
    subs = typed["subscriptions"]
    subs["mrr"] = subs["mrr"].astype(float)
    subs["started_at"] = pd.to_datetime(subs["started_at"], utc=True)
    subs["ended_at"] = pd.to_datetime(subs["ended_at"], utc=True)
    tickets = typed["support_tickets"]
    tickets["reopened"] = False
    tickets["csat_score"] = tickets["csat_score"].astype(int)

    from_text = validate_tables(tables, lenient, AS_OF)
    from_typed = validate_tables(typed, lenient, AS_OF)

    for name in ("subscriptions", "support_tickets"):
        pd.testing.assert_frame_equal(from_typed.valid[name], from_text.valid[name])


# --- column mapping ----------------------------------------------------------------------------


def test_renamed_columns_and_mapped_values_ingest_like_canonical_names(tables, lenient):
    user = {name: frame.copy() for name, frame in tables.items()}
    user["customers"] = user["customers"].rename(
        columns={"customer_id": "account_id", "converted_at": "first_purchase_date"}
    )
    user["customers"]["segment"] = "SMB"
    user["subscriptions"] = user["subscriptions"].rename(columns={"billing_period": "cycle"})
    user["subscriptions"]["cycle"] = ["M", "M", "M", "M"]
    cfg = lenient.model_copy(
        update={
            "tables": {
                "customers": TableMapping(
                    columns={"customer_id": "account_id", "converted_at": "first_purchase_date"},
                    values={"segment": {"SMB": "smb"}},
                ),
                "subscriptions": TableMapping(
                    columns={"billing_period": "cycle"}, values={"billing_period": {"M": "monthly"}}
                ),
            }
        }
    )

    canonical = validate_tables(tables, lenient, AS_OF)
    mapped = validate_tables(user, cfg, AS_OF)

    for name in CONTRACT:
        pd.testing.assert_frame_equal(mapped.valid[name], canonical.valid[name])
    assert mapped.report["tables"]["customers"]["ignored_columns"] == []


def test_quarantine_of_a_mapped_table_keeps_the_users_names_and_values(tables, lenient):
    subs = tables["subscriptions"].rename(columns={"billing_period": "cycle"})
    subs["cycle"] = ["M", "M", "W", "M"]
    tables["subscriptions"] = subs
    mapping = TableMapping(
        columns={"billing_period": "cycle"}, values={"billing_period": {"M": "monthly"}}
    )
    cfg = lenient.model_copy(update={"tables": {"subscriptions": mapping}})

    result = validate_tables(tables, cfg, AS_OF)

    bad = result.quarantine["subscriptions"]
    assert list(bad.columns) == [*subs.columns, ROW_NUMBER, FAILED_RULES]
    assert bad.loc[0, "cycle"] == "W"  # as read, before the value mapping
    assert failed_rules(result, "subscriptions") == {2: "billing_period:not_in_vocabulary"}
    rule = result.report["tables"]["subscriptions"]["rules"]["billing_period:not_in_vocabulary"]
    assert rule["examples"] == [{"row": 2, "value": "W"}]


def _integer_export(tables: Tables) -> Tables:
    """The clean data set shaped like a third-party export: integer ids and billing codes."""
    export = {name: frame.copy() for name, frame in tables.items()}
    export["customers"]["customer_id"] = pd.Series([101, 102, 103, 104], dtype="int64")
    subs = export["subscriptions"]
    subs["subscription_id"] = pd.Series([9001, 9002, 9003, 9004], dtype="int64")
    subs["customer_id"] = pd.Series([101, 102, 103, 104], dtype="int64")
    subs["billing_period"] = pd.Series([1, 12, 3, 6], dtype="int64")
    subs["mrr"] = pd.Series([49.5, 49.5, 49.5, 49.5])
    return {"customers": export["customers"], "subscriptions": subs}


def test_month_count_billing_periods_of_an_integer_export_need_no_mapping(tables, lenient):
    result = validate_tables(_integer_export(tables), lenient, AS_OF)

    subs = result.valid["subscriptions"]
    assert subs["billing_period"].tolist() == ["monthly", "annual", "quarterly", "semiannual"]
    assert subs["subscription_id"].tolist() == ["9001", "9002", "9003", "9004"]
    assert subs["customer_id"].tolist() == ["101", "102", "103", "104"]
    assert result.report["rows_quarantined"] == 0


@pytest.mark.parametrize("codes", [["1", "12", "3", "6"], ["1.0", "12.0", " 3", "6"]])
def test_month_counts_as_text_need_no_mapping(tables, lenient, codes):
    tables["subscriptions"]["billing_period"] = codes

    result = validate_tables(tables, lenient, AS_OF)

    expected = ["monthly", "annual", "quarterly", "semiannual"]
    assert result.valid["subscriptions"]["billing_period"].tolist() == expected


def test_a_users_mapping_wins_over_the_built_in_month_counts(tables, lenient):
    tables["subscriptions"]["billing_period"] = pd.Series([1, 1, 12, 12], dtype="int64")
    cfg = IngestConfig.model_validate(
        {
            "max_quarantine_share": 1.0,
            "tables": {"subscriptions": {"values": {"billing_period": {12: "monthly"}}}},
        }
    )

    result = validate_tables(tables, cfg, AS_OF)

    assert result.valid["subscriptions"]["billing_period"].tolist() == ["monthly"] * 4


@pytest.mark.parametrize(
    "mapping",
    [
        {1: "low", 2: "normal", 3: "urgent"},  # YAML {1: low}: integer keys
        {"1": "low", "2": "normal", "3": "urgent"},  # YAML {"1": low}: text keys
        {1.0: "low", "2.0": "normal", 3: "urgent"},
    ],
)
@pytest.mark.parametrize(
    "source",
    [
        pd.Series([1, 2, 3], dtype="int64"),
        pd.Series([1, 2, 3], dtype="Int64"),
        pd.Series(["1", "2", "3"], dtype="str"),
        pd.Series(["1.0", "2", " 3 "], dtype="str"),
    ],
)
def test_value_mappings_take_integer_codes_in_any_spelling(tables, mapping, source):
    tables["support_tickets"]["priority"] = source
    cfg = IngestConfig.model_validate(
        {"tables": {"support_tickets": {"values": {"priority": mapping}}}}
    )

    result = validate_tables(tables, cfg, AS_OF)

    assert result.valid["support_tickets"]["priority"].tolist() == ["low", "normal", "urgent"]
    assert result.report["tables"]["support_tickets"]["rows_quarantined"] == 0


@pytest.mark.parametrize("source", [[True, False, True], ["TRUE", "false", "True"]])
def test_value_mappings_take_boolean_codes(tables, source):
    tickets = tables["support_tickets"].drop(columns="priority")
    tickets["is_urgent"] = pd.Series(source)
    tables["support_tickets"] = tickets
    cfg = IngestConfig.model_validate(
        {
            "tables": {
                "support_tickets": {
                    "columns": {"priority": "is_urgent"},
                    "values": {"priority": {True: "urgent", False: "normal"}},
                }
            }
        }
    )

    result = validate_tables(tables, cfg, AS_OF)

    assert result.valid["support_tickets"]["priority"].tolist() == ["urgent", "normal", "urgent"]


def test_unmapped_codes_are_quarantined_and_the_detail_shows_values_keys_and_types(
    tables, lenient
):
    tables["support_tickets"]["priority"] = pd.Series([1, 9, 9], dtype="int64")
    cfg = lenient.model_copy(
        update={"tables": {"support_tickets": TableMapping(values={"priority": {"1": "low"}})}}
    )

    result = validate_tables(tables, cfg, AS_OF)

    assert failed_rules(result, "support_tickets") == {
        1: "priority:not_in_vocabulary",
        2: "priority:not_in_vocabulary",
    }
    assert result.quarantine["support_tickets"]["priority"].tolist() == ["9", "9"]
    rule = result.report["tables"]["support_tickets"]["rules"]["priority:not_in_vocabulary"]
    assert rule["count"] == 2
    assert rule["detail"] == (
        "source values not in the vocabulary (most frequent; column dtype int64): 9 (int) x2; "
        "ingest.tables.support_tickets.values.priority keys: '1' (str)"
    )
    assert_balanced(result)


def test_a_type_mismatch_that_maps_nothing_is_obvious_in_the_error(tables):
    tables["subscriptions"]["billing_period"] = pd.Series([2, 2, 24, 2], dtype="int64")
    cfg = IngestConfig(
        tables={"subscriptions": TableMapping(values={"billing_period": {"two": "monthly"}})}
    )

    with pytest.raises(DataContractError) as info:
        validate_tables(tables, cfg, AS_OF)

    message = str(info.value)
    assert "billing_period:not_in_vocabulary on 4 row(s)" in message
    assert "(most frequent; column dtype int64): 2 (int) x3, 24 (int) x1;" in message
    assert "values.billing_period keys: '1' (str), '3' (str), '6' (str), '12' (str), " in message
    assert "'two' (str)" in message


def test_entity_mode_config_may_map_mrr_and_events_mode_may_not():
    mapping = {"customers": {"columns": {"mrr": "MonthlyCharges"}}}

    cfg = IngestConfig.model_validate({"mode": "entity", "tables": mapping})

    assert cfg.tables["customers"].columns == {"mrr": "MonthlyCharges"}
    with pytest.raises(ValueError, match=r"maps unknown contract column\(s\) \['mrr'\]"):
        IngestConfig.model_validate({"mode": "events", "tables": mapping})


# --- entity mode -------------------------------------------------------------------------------


@pytest.fixture
def entity_customers() -> pd.DataFrame:
    """A CRM-style customer extract with a churn label and free attribute columns."""
    return _text(
        [
            {"customer_id": "A1", "churned": "1", "seats": "12", "region": "north", "tier": "3"},
            {"customer_id": "A2", "churned": "no", "seats": "3", "region": "south", "tier": "x"},
            {"customer_id": "A3", "churned": "TRUE", "seats": None, "region": None, "tier": "1"},
            {"customer_id": "A4", "churned": "0", "seats": "7.5", "region": "north", "tier": "2"},
        ]
    )


def test_entity_mode_keeps_extra_columns_and_converts_the_label(entity_customers):
    cfg = IngestConfig(mode="entity")

    result = validate_tables({"customers": entity_customers}, cfg, AS_OF)

    valid = result.valid["customers"]
    assert list(valid.columns) == ["customer_id", "churned", "seats", "region", "tier"]
    assert list(valid["churned"]) == [1, 0, 1, 0]
    assert str(valid["churned"].dtype) == "Int8"
    assert str(valid["seats"].dtype) == "float64"  # numeric-looking text
    assert str(valid["region"].dtype) == "str"
    assert str(valid["tier"].dtype) == "str"  # "x" makes it categorical
    assert list(result.report["tables"]) == ["customers"]
    assert result.report["tables"]["customers"]["ignored_columns"] == []


def test_entity_mode_quarantines_missing_or_invalid_labels(entity_customers):
    entity_customers.loc[1, "churned"] = "maybe"
    entity_customers.loc[2, "churned"] = None
    cfg = IngestConfig(mode="entity", max_quarantine_share=1.0)

    result = validate_tables({"customers": entity_customers}, cfg, AS_OF)

    assert failed_rules(result, "customers") == {
        1: "churned:label_invalid",
        2: "churned:label_invalid",
    }
    assert_balanced(result)


def test_entity_mode_requires_the_label_column_but_not_converted_at(entity_customers):
    cfg = IngestConfig(mode="entity", label_column="is_lost")

    with pytest.raises(DataContractError) as info:
        validate_tables({"customers": entity_customers}, cfg, AS_OF)

    assert "column 'is_lost' is missing" in str(info.value)
    assert "converted_at" not in str(info.value).split("the table has")[0]


def test_entity_mode_ignores_event_tables(entity_customers, tables):
    result = validate_tables(
        {"customers": entity_customers, "usage_events": tables["usage_events"]},
        IngestConfig(mode="entity"),
        AS_OF,
    )

    assert list(result.valid) == ["customers"]
    assert result.report["ignored_tables"] == ["usage_events"]


def _telecom_crm(rows: int = 120) -> pd.DataFrame:
    """A telecom-style CRM export: integer ids, Yes/No churn, decimal commas, blank cells."""
    ids = pd.Series(range(7000, 7000 + rows), dtype="int64")
    charges = [f"{20 + i % 50},{i % 100:02d}" for i in range(rows)]  # "29,85"-style
    total = [f"{(20 + i % 50) * (1 + i % 24)},5" for i in range(rows)]
    total[3] = " "  # a new customer: no charges yet, exported as a blank cell
    total[4] = ""
    return pd.DataFrame(
        {
            "customerID": ids,
            "SeniorCitizen": pd.Series([i % 2 for i in range(rows)], dtype="int64"),
            "tenure": pd.Series([1 + i % 24 for i in range(rows)], dtype="int64"),
            "Contract": ["Month-to-month", "One year", "Two year"] * (rows // 3),
            "MonthlyCharges": charges,
            "TotalCharges": total,
            "Churn": ["Yes" if i % 4 == 0 else "No" for i in range(rows)],
        }
    ).astype({"MonthlyCharges": "str", "TotalCharges": "str", "Contract": "str", "Churn": "str"})


def test_entity_mode_reads_a_telecom_crm_export_with_mrr_mapped():
    crm = _telecom_crm()
    cfg = IngestConfig.model_validate(
        {
            "mode": "entity",
            "label_column": "Churn",
            "tables": {
                "customers": {"columns": {"customer_id": "customerID", "mrr": "MonthlyCharges"}}
            },
        }
    )

    result = validate_tables({"customers": crm}, cfg, AS_OF)

    valid = result.valid["customers"]
    assert len(valid) == len(crm)
    assert valid["customer_id"].tolist()[:2] == ["7000", "7001"]
    assert str(valid["mrr"].dtype) == "float64"
    # Naive reference: swap the decimal comma by hand.
    expected_mrr = [float(v.replace(",", ".")) for v in crm["MonthlyCharges"]]
    assert valid["mrr"].tolist() == pytest.approx(expected_mrr)
    assert valid["mrr"].gt(0).all()
    assert str(valid["TotalCharges"].dtype) == "float64"  # blanks are missing, not text
    assert valid["TotalCharges"].isna().tolist()[2:6] == [False, True, True, False]
    assert valid["TotalCharges"][0] == pytest.approx(20.5)
    assert valid["Churn"].tolist()[:4] == [1, 0, 0, 0]
    assert str(valid["Contract"].dtype) == "str"
    report = result.report["tables"]["customers"]
    assert report["attribute_columns"]["TotalCharges"] == {"type": "numeric", "unparsable_rows": 0}
    assert report["attribute_columns"]["Contract"] == {"type": "text", "unparsable_rows": 0}
    assert "mrr" in report["columns"]


def test_entity_mode_keeps_a_numeric_column_numeric_despite_one_bad_value():
    crm = _telecom_crm()
    crm.loc[7, "TotalCharges"] = "n/a"  # 1 of 118 non-blank values (0.8%) does not parse
    cfg = IngestConfig.model_validate(
        {
            "mode": "entity",
            "label_column": "Churn",
            "tables": {"customers": {"columns": {"customer_id": "customerID"}}},
        }
    )

    result = validate_tables({"customers": crm}, cfg, AS_OF)

    valid = result.valid["customers"]
    assert str(valid["TotalCharges"].dtype) == "float64"
    assert failed_rules(result, "customers") == {7: "TotalCharges:not_a_number"}
    assert result.quarantine["customers"]["TotalCharges"].tolist() == ["n/a"]
    report = result.report["tables"]["customers"]
    assert report["attribute_columns"]["TotalCharges"] == {"type": "numeric", "unparsable_rows": 1}
    assert report["rules"]["TotalCharges:not_a_number"]["count"] == 1
    assert_balanced(result)


def test_entity_mode_quarantines_a_negative_or_unparsable_mrr():
    crm = _telecom_crm()
    crm.loc[5, "MonthlyCharges"] = "-3,5"
    crm.loc[6, "MonthlyCharges"] = "lots"
    cfg = IngestConfig.model_validate(
        {
            "mode": "entity",
            "label_column": "Churn",
            "max_quarantine_share": 1.0,
            "tables": {
                "customers": {"columns": {"customer_id": "customerID", "mrr": "MonthlyCharges"}}
            },
        }
    )

    result = validate_tables({"customers": crm}, cfg, AS_OF)

    assert failed_rules(result, "customers") == {
        5: "mrr:out_of_range[0,inf]",
        6: "mrr:not_a_number",
    }


# --- the runner and the CLI --------------------------------------------------------------------


def write_csvs(tables: Tables, directory: Path) -> None:
    """Write each table as ``<table>.csv`` (missing values as empty cells)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_csv(directory / f"{name}.csv", index=False)


def leftovers(*directories: Path) -> list[Path]:
    """Temporary files or directories left behind by atomic writes."""
    return [p for d in directories if d.exists() for p in d.iterdir() if p.name.startswith(".")]


def test_run_ingest_round_trips_csv_files(tables, tmp_path):
    tables["support_tickets"].loc[2, "csat_score"] = "0"
    tables["usage_events"]["browser"] = "firefox"
    raw, out, quarantine, report_path = (
        tmp_path / "raw",
        tmp_path / "validated",
        tmp_path / "quarantine",
        tmp_path / "reports" / "ingest.json",
    )
    write_csvs(tables, raw)
    cfg = IngestConfig(as_of=AS_OF.date(), max_quarantine_share=0.5)

    result = run_ingest(cfg, raw, out, quarantine, report_path)

    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.parquet" for n in CONTRACT)
    assert sorted(p.name for p in quarantine.iterdir()) == sorted(f"{n}.parquet" for n in CONTRACT)
    assert leftovers(out, quarantine, report_path.parent) == []
    for name in CONTRACT:
        pd.testing.assert_frame_equal(pd.read_parquet(out / f"{name}.parquet"), result.valid[name])
    empty = pd.read_parquet(quarantine / "customers.parquet")
    assert len(empty) == 0
    assert list(empty.columns) == [*tables["customers"].columns, ROW_NUMBER, FAILED_RULES]
    bad = pd.read_parquet(quarantine / "support_tickets.parquet")
    assert list(bad[FAILED_RULES]) == ["csat_score:out_of_range[1,5]"]
    report = json.loads(report_path.read_text())
    assert report["as_of"] == "2025-06-30"
    assert report["tables"]["support_tickets"]["rows_quarantined"] == 1
    assert report["tables"]["usage_events"]["ignored_columns"] == ["browser"]
    assert report["tables"]["customers"]["source"].endswith("customers.csv")
    assert report["rows_balanced"] is True


def test_run_ingest_writes_nothing_when_the_contract_is_violated(tables, tmp_path):
    tables["customers"] = tables["customers"].drop(columns=["converted_at"])
    raw, out, quarantine = tmp_path / "raw", tmp_path / "validated", tmp_path / "quarantine"
    write_csvs(tables, raw)

    with pytest.raises(DataContractError, match="converted_at"):
        run_ingest(IngestConfig(), raw, out, quarantine, tmp_path / "ingest.json")

    assert not out.exists()
    assert not quarantine.exists()
    assert not (tmp_path / "ingest.json").exists()


def test_run_ingest_removes_files_of_tables_no_longer_present(tables, tmp_path):
    raw, out, quarantine = tmp_path / "raw", tmp_path / "validated", tmp_path / "quarantine"
    write_csvs(tables, raw)
    cfg = IngestConfig(as_of=AS_OF.date())
    run_ingest(cfg, raw, out, quarantine, tmp_path / "ingest.json")
    (raw / "nps_responses.csv").unlink()

    run_ingest(cfg, raw, out, quarantine, tmp_path / "ingest.json")

    assert not (out / "nps_responses.parquet").exists()
    assert not (quarantine / "nps_responses.parquet").exists()
    assert (out / "usage_events.parquet").exists()


def test_run_ingest_reads_a_mapped_file_name(tables, tmp_path):
    raw = tmp_path / "raw"
    write_csvs({"subscriptions": tables["subscriptions"]}, raw)
    tables["customers"].to_parquet(raw / "crm_accounts.parquet", index=False)
    cfg = IngestConfig(
        as_of=AS_OF.date(), tables={"customers": TableMapping(file="crm_accounts.parquet")}
    )

    result = run_ingest(cfg, raw, tmp_path / "v", tmp_path / "q", tmp_path / "r.json")

    assert len(result.valid["customers"]) == 4
    assert result.report["tables"]["customers"]["source"].endswith("crm_accounts.parquet")


def test_cli_ingest_on_bad_input_exits_2_naming_table_and_column(tables, tmp_path):
    from churn.cli import app

    tables["subscriptions"] = tables["subscriptions"].drop(columns=["billing_period"])
    write_csvs(tables, tmp_path / "raw")
    params = tmp_path / "params.yaml"
    params.write_text("ingest:\n  as_of: '2025-06-30'\n")

    result = CliRunner().invoke(
        app,
        [
            "ingest",
            "--params", str(params),
            "--raw", str(tmp_path / "raw"),
            "--out", str(tmp_path / "validated"),
            "--quarantine", str(tmp_path / "quarantine"),
            "--report", str(tmp_path / "ingest.json"),
        ],
    )

    assert result.exit_code == 2, result.output
    assert "subscriptions" in result.output
    assert "billing_period" in result.output
    assert not (tmp_path / "validated").exists()


def test_an_empty_optional_table_counts_as_absent_and_says_so(tables, tmp_path):
    tables["nps_responses"] = tables["nps_responses"].iloc[:0]
    raw = tmp_path / "raw"
    write_csvs(tables, raw)  # a header-only CSV
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "nps_responses.parquet").write_text("from an earlier run")

    result = run_ingest(
        IngestConfig(as_of=AS_OF.date()), raw, tmp_path / "v", tmp_path / "q", tmp_path / "r.json"
    )

    # "No rows" must give the same features as "no table": no validated file at all.
    assert not (tmp_path / "v" / "nps_responses.parquet").exists()
    assert "nps_responses" not in result.valid
    entry = result.report["tables"]["nps_responses"]
    assert entry["present"] is False and entry["empty"] is True
    assert "0 rows" in entry["note"] and "engagement" in entry["note"]
    assert (tmp_path / "v" / "customers.parquet").exists()


def test_an_empty_required_table_says_it_has_0_rows_not_orphans(tables, tmp_path):
    tables["customers"] = tables["customers"].iloc[:0]
    raw = tmp_path / "raw"
    write_csvs(tables, raw)

    with pytest.raises(DataContractError) as caught:
        run_ingest(
            IngestConfig(as_of=AS_OF.date()),
            raw,
            tmp_path / "v",
            tmp_path / "q",
            tmp_path / "r.json",
        )
    assert "customers has 0 rows" in str(caught.value)
    assert "unknown_customer" not in str(caught.value)
    assert not (tmp_path / "v").exists()


def test_run_ingest_defaults_as_of_to_today(tables, tmp_path):
    tomorrow = pd.Timestamp.now(tz="UTC").normalize() + pd.Timedelta(days=1)
    tables["usage_events"].loc[0, "occurred_at"] = tomorrow.isoformat()
    raw = tmp_path / "raw"
    write_csvs(tables, raw)
    cfg = IngestConfig(as_of=None, max_quarantine_share=1.0)

    result = run_ingest(cfg, raw, tmp_path / "v", tmp_path / "q", tmp_path / "r.json")

    assert failed_rules(result, "usage_events") == {0: "occurred_at:future_dated"}
    assert result.report["as_of"] == pd.Timestamp.now(tz="UTC").date().isoformat()


def test_a_configured_file_that_is_absent_is_named(tables, tmp_path):
    raw = tmp_path / "raw"
    write_csvs(tables, raw)
    cfg = IngestConfig(tables={"subscriptions": TableMapping(file="billing_export.csv")})

    with pytest.raises(DataContractError, match=r"'billing_export\.csv' is not in the raw"):
        run_ingest(cfg, raw, tmp_path / "v", tmp_path / "q", tmp_path / "r.json")


# --- data end and stray rows -------------------------------------------------------------------


def test_stray_row_after_the_data_end_is_quarantined_as_out_of_range(tables, lenient, caplog):
    usage = tables["usage_events"]
    usage.loc[len(usage)] = {
        "customer_id": "C1",
        "occurred_at": "2025-06-20T08:00:00Z",  # valid, before as_of, but 108 days after the rest
        "event_type": "login",
        "quantity": "1",
    }

    with caplog.at_level(logging.WARNING):
        result = validate_tables(tables, lenient, AS_OF)

    assert failed_rules(result, "usage_events") == {4: "occurred_at:out_of_range[after_data_end]"}
    example = result.report["tables"]["usage_events"]["rules"][
        "occurred_at:out_of_range[after_data_end]"
    ]["examples"][0]
    assert "silent gap of 108 days following 2025-03-04" in example["value"]
    time_range = result.report["tables"]["usage_events"]["time_range"]
    assert time_range["last_seen"].startswith("2025-06-20")
    assert time_range["data_end"].startswith("2025-03-04")
    assert time_range["stray_rows"] == 1
    assert "out_of_range" in caplog.text
    assert_balanced(result)


def test_configured_data_end_quarantines_later_rows_in_every_table(tables):
    config = IngestConfig(max_quarantine_share=1.0, data_end=dt.date(2025, 3, 2))

    result = validate_tables(tables, config, AS_OF)

    # usage on 2025-03-03 and 2025-03-04 are after the end of 2025-03-02.
    assert failed_rules(result, "usage_events") == {
        2: "occurred_at:out_of_range[after_data_end]",
        3: "occurred_at:out_of_range[after_data_end]",
    }
    assert result.report["data_end"]["configured"] == "2025-03-02"
    assert result.report["data_end"]["tables"]["usage_events"] == "2025-03-02"
    assert_balanced(result)


def test_paid_through_end_after_as_of_is_data_not_a_stray_row(tables, lenient):
    tables["subscriptions"].loc[3, "ended_at"] = "2026-04-30T00:00:00Z"  # annual, paid through

    result = validate_tables(tables, lenient, AS_OF)

    assert failed_rules(result, "subscriptions") == {}
    ended = result.valid["subscriptions"].set_index("subscription_id")["ended_at"]
    assert ended["S4"] == pd.Timestamp("2026-04-30", tz="UTC")


def test_report_lists_each_table_end_and_warns_when_tables_end_apart(tables, lenient, caplog):
    with caplog.at_level(logging.WARNING):
        result = validate_tables(tables, lenient, AS_OF)

    ends = result.report["data_end"]
    assert ends["tables"]["usage_events"] == "2025-03-04"
    assert ends["tables"]["presale_touchpoints"] == "2024-12-02"
    assert ends["last_seen"]["subscriptions"] == "2025-01-04"
    assert ends["overall"].startswith("2025-03-04")
    assert "tables end on different dates" in ends["warning"]
    assert "presale_touchpoints stops 92 days before usage_events" in caplog.text
