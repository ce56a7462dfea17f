"""Tests for churn.validation.coerce: converting raw columns to contract dtypes, row by row."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from churn.validation.coerce import (
    coerce_attribute,
    coerce_bool,
    coerce_column,
    coerce_float,
    coerce_int,
    coerce_label,
    coerce_string,
    empty_column,
    has_only_whole_floats,
    parse_timestamps,
    to_text,
)

UTC = pd.Timestamp


def text(*values: str | None) -> pd.Series:
    """A column as read from CSV."""
    return pd.Series(list(values), dtype="str")


# --- timestamps --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "2025-01-01T10:00:00+02:00",
        "2025-01-01T08:00:00Z",
        "2025-01-01T08:00:00z",
        "2025-01-01T03:00:00-0500",
        "2025-01-01T10:00:00 +02:00",
        "2025-01-01 10:00+02",
        "2025-01-01T08:00:00.000000Z",
        "2025-01-01T10:00:00+2",  # an offset spelling the fast path does not know
    ],
)
def test_offsets_are_kept_and_converted_to_utc(value):
    values, failures = parse_timestamps(text(value, "2025-01-01 09:00"), "Europe/Berlin")

    assert values[0] == UTC("2025-01-01T08:00:00Z")
    assert values[1] == UTC("2025-01-01T08:00:00Z")  # naive, read in Berlin (UTC+1)
    assert failures.isna().all()


def test_a_column_of_only_unusual_offsets_parses():
    values, failures = parse_timestamps(text("2025-01-01T10:00:00+2", None), "Europe/Berlin")

    assert values[0] == UTC("2025-01-01T08:00:00Z")
    assert failures.isna().all()


def test_naive_values_follow_daylight_saving_time():
    values, _ = parse_timestamps(
        text("2025-01-15 12:00", "2025-07-15 12:00", "2025-07-15"), "Europe/Berlin"
    )

    assert list(values) == [
        UTC("2025-01-15T11:00:00Z"),
        UTC("2025-07-15T10:00:00Z"),
        UTC("2025-07-14T22:00:00Z"),  # a bare date is local midnight
    ]


def test_ambiguous_and_skipped_wall_clock_times_are_resolved_not_rejected():
    # 02:30 happens twice on 2025-10-26 in Berlin and not at all on 2025-03-30.
    values, failures = parse_timestamps(
        text("2025-10-26 02:30", "2025-03-30 02:30"), "Europe/Berlin"
    )

    assert values[0] == UTC("2025-10-26T00:30:00Z")  # the first (summer-time) occurrence
    assert values[1] == UTC("2025-03-30T01:00:00Z")  # moved forward to 03:00 local
    assert failures.isna().all()


def test_unparseable_values_fail_and_blanks_are_missing():
    values, failures = parse_timestamps(
        text("soon", "01/02/2025", "2025-13-01", None, "  ", "2025-01-01"), "UTC"
    )

    assert list(failures.isna()) == [False, False, False, True, True, True]
    assert set(failures.dropna()) == {"not_a_timestamp"}
    assert values[:5].isna().all()
    assert values[5] == UTC("2025-01-01T00:00:00Z")


def test_typed_timestamps_are_converted():
    aware = pd.Series(pd.to_datetime(["2025-01-01T10:00:00+02:00"], utc=False))
    naive = pd.Series(pd.to_datetime(["2025-01-01 09:00"]))

    from_aware, _ = parse_timestamps(aware, "Europe/Berlin")
    from_naive, _ = parse_timestamps(naive, "Europe/Berlin")

    assert str(from_aware.dtype) == str(from_naive.dtype) == "datetime64[us, UTC]"
    assert from_aware[0] == from_naive[0] == UTC("2025-01-01T08:00:00Z")


def test_python_datetime_objects_keep_their_offsets():
    plus_two = dt.timezone(dt.timedelta(hours=2))
    objects = pd.Series(
        [dt.datetime(2025, 1, 1, 10, tzinfo=plus_two), dt.datetime(2025, 1, 1, 9), None],
        dtype=object,
    )

    values, failures = parse_timestamps(objects, "Europe/Berlin")

    assert list(values[:2]) == [UTC("2025-01-01T08:00:00Z")] * 2
    assert failures.isna().all()


def test_numbers_are_not_guessed_as_epoch_times():
    values, failures = parse_timestamps(pd.Series([1735689600, np.nan]), "UTC")

    assert values.isna().all()
    assert list(failures.isna()) == [False, True]


def test_an_empty_column_parses():
    values, failures = parse_timestamps(text(), "Europe/Berlin")

    assert len(values) == len(failures) == 0
    assert str(values.dtype) == "datetime64[us, UTC]"


# --- numbers, booleans, labels, text ----------------------------------------------------------


def test_floats_reject_text_and_infinity():
    values, failures = coerce_float(text("1.5", " 2 ", "-3", "abc", "inf", None, "1e3"))

    assert list(values.fillna(-99)) == [1.5, 2.0, -3.0, -99, -99, -99, 1000.0]
    assert list(failures.fillna("")) == ["", "", "", "not_a_number", "not_a_number", "", ""]


def test_integers_reject_fractions():
    values, failures = coerce_int(text("3", "3.0", "3.5", "x", None))

    assert str(values.dtype) == "Int64"
    assert list(values.astype(object).where(values.notna(), None)) == [3, 3, None, None, None]
    assert list(failures.fillna("")) == ["", "", "not_an_integer", "not_a_number", ""]


def test_typed_integers_with_gaps_convert():
    values, failures = coerce_int(pd.Series([1, None, 3], dtype="Int64"))

    assert list(values.isna()) == [False, True, False]
    assert failures.isna().all()


def test_booleans_accept_common_spellings():
    values, failures = coerce_bool(text("true", "No", "Y", "0", "maybe", None))

    assert list(values.astype(object).where(values.notna(), None)) == [
        True,
        False,
        True,
        False,
        None,
        None,
    ]
    assert list(failures.fillna("")) == ["", "", "", "", "not_a_bool", ""]


def test_labels_accept_01_true_false_yes_no_and_reject_missing():
    values, failures = coerce_label(text("1", "0", "TRUE", "no", "2", None))

    assert str(values.dtype) == "Int8"
    assert list(values[:4]) == [1, 0, 1, 0]
    assert list(failures.fillna("")) == ["", "", "", "", "label_invalid", "label_invalid"]


def test_typed_labels_convert():
    values, failures = coerce_label(pd.Series([1, 0, 2]))

    assert list(values.isna()) == [False, False, True]
    assert list(failures.fillna("")) == ["", "", "label_invalid"]


def test_whole_float_ids_lose_their_decimal_point():
    values, _ = coerce_string(pd.Series([101.0, np.nan, 7.0]))

    assert list(values.fillna("<NA>")) == ["101", "<NA>", "7"]
    assert str(values.dtype) == "str"


def test_whole_floats_follow_the_decision_for_the_whole_table():
    batch = pd.Series([101.0, np.nan, 7.0])  # whole here, but not everywhere in its table

    kept, _ = coerce_string(batch, whole=False)
    whole, _ = coerce_string(batch, whole=True)

    assert list(kept.fillna("<NA>")) == ["101.0", "<NA>", "7.0"]
    assert list(whole.fillna("<NA>")) == ["101", "<NA>", "7"]
    assert list(coerce_column(batch, "category", "UTC", whole=False).values.dropna()) == [
        "101.0",
        "7.0",
    ]
    assert has_only_whole_floats(batch) and not has_only_whole_floats(pd.Series([2.0**53]))
    assert not has_only_whole_floats(pd.Series([1.0, 1.5]))


def test_text_keeps_values_and_blanks_become_missing():
    values, failures = coerce_string(text("a ", "  ", None))

    assert values[0] == "a "
    assert values[1:].isna().all()
    assert failures.isna().all()


def test_attributes_become_numbers_only_when_nearly_every_value_is_one():
    assert str(coerce_attribute(text("1", "2.5", None)).values.dtype) == "float64"
    assert str(coerce_attribute(text("1", "x")).values.dtype) == "str"
    assert str(coerce_attribute(pd.Series([1, 2])).values.dtype) == "float64"
    assert str(coerce_attribute(pd.Series([True, False])).values.dtype) == "str"
    for values in (text("1", "2.5", None), text("1", "x"), pd.Series([1, 2])):
        assert coerce_attribute(values).failures.isna().all()


def test_a_numeric_attribute_keeps_its_type_and_names_the_few_unparsable_values():
    # 199 of 200 non-blank values parse (99.5%): numeric, the odd one fails not_a_number.
    raw = text(*["29,85"] * 150, *["1.5"] * 49, "n/a", "", " ", None)

    values, failures = coerce_attribute(raw)

    assert str(values.dtype) == "float64"
    assert values.iloc[0] == pytest.approx(29.85)
    assert values.iloc[150] == pytest.approx(1.5)
    assert list(failures[failures.notna()].index) == [199]
    assert failures[199] == "not_a_number"
    assert values.iloc[199:].isna().all()  # the unparsable value and the blanks


def test_an_attribute_below_the_numeric_share_stays_text():
    # 98 of 100 parse (98% < 99%): a column of codes with letters, kept whole as text.
    raw = text(*["7"] * 98, "x", "y")

    values, failures = coerce_attribute(raw)

    assert str(values.dtype) == "str"
    assert list(values.iloc[97:]) == ["7", "x", "y"]
    assert failures.isna().all()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("29,85", 29.85), ("-0,5", -0.5), (",5", 0.5), ("1,23456", 1.23456), (" 3,1 ", 3.1)],
)
def test_a_decimal_comma_reads_as_a_decimal_point(raw, expected):
    values, failures = coerce_float(text(raw))

    assert values[0] == pytest.approx(expected)
    assert failures.isna().all()


@pytest.mark.parametrize("raw", ["1,234", "1,2,3", "1.000,5", "29,85x"])
def test_an_ambiguous_comma_is_not_guessed(raw):
    values, failures = coerce_float(text(raw))

    assert values.isna().all()
    assert failures[0] == "not_a_number"


def test_to_text_renders_originals():
    assert list(to_text(pd.Series([1.5, None])).fillna("<NA>")) == ["1.5", "<NA>"]
    assert to_text(pd.Series([dt.datetime(2025, 1, 1)], dtype=object))[0] == "2025-01-01T00:00:00"


@pytest.mark.parametrize(
    ("kind", "dtype"),
    [
        ("string", "str"),
        ("category", "str"),
        ("timestamp", "datetime64[us, UTC]"),
        ("float", "float64"),
        ("int", "Int64"),
        ("bool", "boolean"),
    ],
)
def test_every_kind_has_its_validated_dtype(kind, dtype):
    assert str(empty_column(kind, 2).dtype) == dtype
    assert str(coerce_column(text("1", None), kind, "UTC").values.dtype) == dtype
