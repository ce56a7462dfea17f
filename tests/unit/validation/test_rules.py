"""Tests for churn.validation.rules: column rules from the contract and the per-row rule log."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.domain.contract import CONTRACT, OrderRule
from churn.validation import rules
from churn.validation.rules import (
    RuleLog,
    build_column_rules,
    check_columns,
    check_duplicates,
    check_future_dated,
    check_magnitude,
    check_order,
    check_reference,
    find_duplicated_rows,
)
from churn.validation.text import RawText


def test_log_lists_rules_per_row_in_column_order():
    log = RuleLog(3)
    log.add("b:missing", np.array([True, False, True]), ("b",))
    log.add("duplicate_row", np.array([True, False, False]))
    log.add("a:not_a_number", np.array([True, True, False]), ("a",))

    assert log.describe(np.array([0, 1, 2]), ["a", "b"]) == [
        "a:not_a_number; b:missing; duplicate_row",
        "a:not_a_number",
        "b:missing",
    ]
    assert list(log.failed()) == [True, True, True]


def test_log_orders_rules_by_the_call_and_row_that_first_logged_them():
    log = RuleLog(4)
    log.add("b:missing", np.array([False, False, False, False]))  # empty: counted, not logged
    log.add_each("a", pd.Series([None, "not_an_integer", "not_a_number", None]), ("a",))
    log.add("duplicate_row", np.array([True, False, False, False]))

    assert list(log.masks) == ["a:not_an_integer", "a:not_a_number", "duplicate_row"]
    assert log.order == {
        "a:not_an_integer": (2, 1),
        "a:not_a_number": (2, 2),
        "duplicate_row": (3, 0),
    }
    assert sorted(log.masks, key=log.order.__getitem__) == list(log.masks)


def test_log_summary_counts_and_shows_original_values():
    original = pd.DataFrame({"user_mrr": ["-1", "5", "-2"]}, dtype="str")
    log = RuleLog(3)
    log.add("mrr:out_of_range[0,inf]", np.array([True, False, True]), ("mrr",))
    log.add("nothing", np.zeros(3, dtype=bool), ("mrr",))  # no failing row: not recorded

    summary = log.summarize(RawText(original), {"mrr": "user_mrr"})

    assert summary == {
        "mrr:out_of_range[0,inf]": {
            "count": 2,
            "examples": [{"row": 0, "value": "-1"}, {"row": 2, "value": "-2"}],
        }
    }


def test_schema_rules_name_vocabulary_and_range_checks():
    spec = CONTRACT["support_tickets"]

    rules = build_column_rules(spec, ["ticket_id", "priority", "csat_score"])

    assert [r.column for r in rules] == ["ticket_id", "priority", "csat_score"]
    assert [r.nullable for r in rules] == [False, True, True]
    assert set(rules[1].allowed) == {"low", "normal", "high", "urgent"}
    assert rules[1].vocabulary_rule == "not_in_vocabulary"
    assert (rules[2].minimum, rules[2].maximum) == (1, 5)
    assert rules[2].range_rule == "out_of_range[1,5]"


def test_check_columns_logs_vocabulary_and_label_rules():
    spec = CONTRACT["support_tickets"]
    frame = pd.DataFrame(
        {
            "priority": pd.Series(["low", "LOW", None, "urgent"], dtype="str"),
            "churned": pd.Series([0, 1, None, 2], dtype="Int8"),
        }
    )
    rules = build_column_rules(spec, ["priority"], label_column="churned")
    log = RuleLog(4)

    check_columns(frame, rules, {}, log)

    assert list(log.masks) == [
        "priority:not_in_vocabulary",
        "churned:missing",
        "churned:label_invalid",
    ]
    assert log.describe(np.arange(4), ["priority", "churned"]) == [
        "",
        "priority:not_in_vocabulary",
        "churned:missing",
        "churned:label_invalid",
    ]


def test_check_columns_refuses_a_column_of_the_wrong_dtype():
    spec = CONTRACT["nps_responses"]
    frame = pd.DataFrame({"score": [5.0, 6.0]})  # float, where conversion gives Int64

    with pytest.raises(RuntimeError, match="score has dtype float64"):
        check_columns(frame, build_column_rules(spec, ["score"]), {}, RuleLog(2))


@pytest.mark.parametrize("seed", range(20))
def test_duplicated_rows_match_pandas_on_random_frames(seed: int):
    rng = np.random.default_rng(seed)
    n = 120
    frame = pd.DataFrame(
        {
            "a": pd.Series(rng.choice(["x", "y", None], n), dtype="str"),
            "t": pd.Series(
                pd.to_datetime(rng.integers(0, 4, n), unit="D", utc=True).where(rng.random(n) > 0.2)
            ),
            "v": np.where(rng.random(n) > 0.3, rng.integers(0, 3, n).astype(float), np.nan),
        }
    )

    expected = frame.duplicated(keep="first").to_numpy()

    assert expected.any() and not expected.all()
    duplicate, first = find_duplicated_rows(frame)
    np.testing.assert_array_equal(duplicate, expected)
    for i in np.flatnonzero(expected):  # the first earlier row with the same values
        same = frame.iloc[: i + 1].apply(lambda row, i=i: row.equals(frame.iloc[i]), axis=1)
        assert first[i] == int(np.flatnonzero(same.to_numpy())[0])


def test_duplicated_rows_are_exact_even_when_every_hash_collides(monkeypatch):
    frame = pd.DataFrame({"a": ["x", "y", "x", "z", "y"], "b": [1, 2, 1, 3, 3]})
    monkeypatch.setattr(rules, "hash_rows", lambda f: np.zeros(len(f), dtype="uint64"))

    duplicate, _ = find_duplicated_rows(frame)

    assert list(duplicate) == [False, False, True, False, False]


@pytest.mark.parametrize("seed", range(5))
def test_row_hashes_are_equal_exactly_for_equal_rows_across_batches(seed: int):
    rng = np.random.default_rng(seed)
    n = 400
    frame = pd.DataFrame(
        {
            "id": pd.Series(rng.choice(["C1", "C2", "C10", "", None], n), dtype="str"),
            "kind": pd.Series(rng.choice(["a", "b"], n), dtype="object"),
            "at": pd.Series(
                pd.to_datetime(rng.integers(0, 3, n), unit="D", utc=True).where(rng.random(n) > 0.2)
            ),
            "amount": np.where(rng.random(n) > 0.3, rng.integers(0, 3, n).astype(float), np.nan),
            "seats": pd.array(np.where(rng.random(n) > 0.2, rng.integers(0, 2, n), None), "Int64"),
        }
    )
    # Hashed in three batches, as ingest hashes a table read in batches.
    parts = [frame.iloc[:150], frame.iloc[150:151], frame.iloc[151:]]
    hashes = np.concatenate([rules.hash_rows(part) for part in parts])
    assert hashes.dtype == np.uint64

    # Naive reference: the rows' values as tuples (missing values equal each other).
    rows = [tuple("<NA>" if pd.isna(v) else v for v in row) for row in frame.itertuples(False)]
    same_row = np.array([[a == b for b in rows] for a in rows])
    same_hash = hashes[:, None] == hashes[None, :]
    assert same_row.sum() > n  # some rows repeat
    np.testing.assert_array_equal(same_hash, same_row)


def test_check_columns_logs_missing_and_range_failures_per_row():
    spec = CONTRACT["nps_responses"]
    frame = pd.DataFrame(
        {
            "customer_id": pd.Series(["C1", None, "C3", "C4"], dtype="str"),
            "score": pd.Series([5, 11, None, -1], dtype="Int64"),
        }
    )
    rules = build_column_rules(spec, ["customer_id", "score"])
    log = RuleLog(4)
    # Row 2's score did not convert: it is not also "missing".
    failed = {"score": np.array([False, False, True, False])}

    check_columns(frame, rules, failed, log)

    assert log.describe(np.arange(4), ["customer_id", "score"]) == [
        "",
        "customer_id:missing; score:out_of_range[0,10]",
        "",
        "score:out_of_range[0,10]",
    ]


def test_duplicates_on_a_composite_key_and_null_keys():
    frame = pd.DataFrame(
        {
            "a": pd.Series(["x", "x", "x", None, None, "y"], dtype="str"),
            "b": pd.Series(["1", "1", "1", "1", "1", "1"], dtype="str"),
            "v": [1.0, 1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    log = RuleLog(len(frame))

    check_duplicates(frame, ("a", "b"), pd.DataFrame(index=frame.index), log)

    # Row 1 copies row 0; rows 0 and 2 share key (x, 1) with other content; null keys are
    # left to the `missing` rule.
    assert log.describe(np.arange(6), ["a", "b", "v"]) == [
        "a+b:duplicate_key",
        "duplicate_row",
        "a+b:duplicate_key",
        "",
        "",
        "",
    ]


def test_order_future_and_reference_checks():
    stamps = pd.to_datetime(["2025-01-02", "2025-01-01", None, "2025-02-01"], utc=True).as_unit(
        "us"
    )
    frame = pd.DataFrame(
        {
            "customer_id": pd.Series(["C1", "C2", "C9", None], dtype="str"),
            "opened_at": pd.Series(stamps).iloc[[1, 0, 0, 1]].reset_index(drop=True),
            "resolved_at": pd.Series(stamps),
        }
    )
    log = RuleLog(4)

    check_order(frame, [OrderRule("opened_at", "resolved_at")], log)
    check_future_dated(frame, ["resolved_at"], pd.Timestamp("2025-01-15", tz="UTC"), log)
    check_reference(frame, "customer_id", pd.Series(["C1", "C2"]), "unknown_customer", log)

    assert log.describe(np.arange(4), list(frame.columns)) == [
        "",
        "resolved_at:before_opened_at",
        "customer_id:unknown_customer",
        "resolved_at:future_dated",
    ]


def test_magnitude_check_quarantines_absurd_finite_numbers_against_a_naive_reference():
    frame = pd.DataFrame(
        {
            "amount": [1.0, -2e12, 1.5e308, np.nan, 1e12],
            "seats": pd.array([1, None, 3, 2_000_000_000_000, 5], dtype="Int64"),
            "plan": ["a", "b", "c", "d", "e"],
            "flag": [True, False, True, False, True],
        }
    )
    log = RuleLog(len(frame))
    check_magnitude(frame, list(frame.columns), 1e12, log)
    expected = {
        column: [not pd.isna(v) and abs(float(v)) > 1e12 for v in frame[column]]
        for column in ("amount", "seats")
    }
    assert expected["amount"] == [False, True, True, False, False]  # the limit itself is fine
    for column, mask in expected.items():
        np.testing.assert_array_equal(log.masks[f"{column}:too_large[abs>1e+12]"], mask)
    assert set(log.masks) == {"amount:too_large[abs>1e+12]", "seats:too_large[abs>1e+12]"}
