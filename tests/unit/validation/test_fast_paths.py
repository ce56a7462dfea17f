"""The vectorised helpers of ingest (issue #14) against naive per-value references."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from churn.validation.coerce import (
    _OFFSET_RE,
    _is_blank,
    coerce_float,
    coerce_string,
    has_utc_offset,
    to_clean_text,
)
from churn.validation.rules import find_shared_values
from churn.validation.text import keep_rows, take_rows

# Cells that test each part of the offset pattern, and the Python-only meanings of \d, \s, $.
_OFFSET_CASES = [
    "2025-01-01T10:00:00+02:00",
    "2025-01-01T08:00:00Z",
    "2025-01-01t08:00:00z",
    "2025-01-01 08:00 -0500",
    "2025-01-01T08+02",
    "2025-01-01T08:00:00.123456+02:00",
    "2025-01-01T08:00:00,5Z",
    "2025-01-01",
    "2025-01-01T08:00:00",
    "2025-01-01T08:00:00+2",
    "2025-01-01T08:00:00\x0bZ",  # vertical tab: \s in Python, not in RE2
    "2025-01-01T08:00:00\x1cZ",  # file separator: whitespace to Python
    "2025-01-01T08:00:00Z\n",  # Python's $ matches before a final newline
    "2025-01-01T08:00:00Z\n\n",
    "2025-01-01T\u0660\u0668:00:00Z",  # Arabic-Indic digits: \d in Python
    "2025-01-01T08:00:00\u2003Z",  # em space: \s in Python
    "2025-01-01T08:00:00\u00a0+02:00",
    "Z",
    "",
    " ",
    "T1Z",
    "x T12:34:56-12:30",
]


def _naive_offset(values: list[str | None]) -> list[bool]:
    return [v is not None and _OFFSET_RE.search(v) is not None for v in values]


def test_utc_offset_matches_python_re_on_every_case():
    values = [*_OFFSET_CASES, None]

    found = has_utc_offset(pd.Series(values, dtype="str"))

    assert list(found) == _naive_offset(values)
    assert found.any() and not found.all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_utc_offset_matches_python_re_on_random_text(seed):
    rng = np.random.default_rng(seed)
    alphabet = [*"0123456789:+-.,TtZz \t\x0b\x1c\n", "\u0663", "\u2003", "\u00e9"]
    values = [
        "2025-01-01" + "".join(rng.choice(alphabet, size=rng.integers(0, 14))) for _ in range(3_000)
    ]

    found = has_utc_offset(pd.Series(values, dtype="str", index=np.arange(3_000) * 2))

    assert list(found) == _naive_offset(values)
    assert list(found.index) == list(np.arange(3_000) * 2)
    assert 0 < found.sum() < len(values)


def test_utc_offset_of_an_object_column_uses_python_re():
    values = ["2025-01-01T08:00:00Z", None, "2025-01-01"]

    found = has_utc_offset(pd.Series(values, dtype="object"))

    assert list(found) == [True, False, False]


@pytest.mark.parametrize("seed", [0, 1])
def test_shared_values_match_pandas_duplicated(seed):
    rng = np.random.default_rng(seed)
    unique = rng.integers(0, 2**63, size=20_000, dtype=np.int64).astype(np.uint64)
    repeated = rng.choice(unique, size=300)  # some values twice or more
    values = rng.permutation(np.concatenate([unique, repeated]))

    shared = find_shared_values(values)

    expected = pd.Series(values).duplicated(keep=False).to_numpy()
    assert (shared == expected).all()
    assert 0 < shared.sum() < len(values)


def test_shared_values_agree_when_values_differ_only_in_high_bits():
    # Equal low bits land in one bucket in the first rounds; only the last slice tells them apart.
    low = np.uint64(12345)
    values = np.array([low + (np.uint64(k) << np.uint64(50)) for k in range(5_000)] + [low])

    shared = find_shared_values(values)

    assert list(np.flatnonzero(shared)) == [0, 5_000]


def test_shared_values_of_int64_and_of_nothing():
    assert list(find_shared_values(np.array([-1, 3, -1], dtype=np.int64))) == [True, False, True]
    assert find_shared_values(np.array([], dtype=np.uint64)).shape == (0,)


def test_failure_column_is_text_with_the_rule_only_where_it_failed():
    values, failures = coerce_float(
        pd.Series(["1", "x", None, "inf"], dtype="str", index=[5, 6, 7, 8])
    )

    assert failures.dtype == pd.StringDtype(na_value=np.nan)
    assert list(failures.index) == [5, 6, 7, 8]
    assert list(failures.fillna("")) == ["", "not_a_number", "", "not_a_number"]
    assert values.isna().tolist() == [False, True, True, True]


def test_no_failures_is_an_all_missing_text_column():
    _, failures = coerce_string(pd.Series(["a", "b"], dtype="str", index=[3, 4]))

    assert failures.dtype == pd.StringDtype(na_value=np.nan)
    assert list(failures.index) == [3, 4]
    assert failures.isna().all()


def test_clean_text_blanks_whitespace_cells_and_keeps_the_rest_as_is():
    values = pd.Series(["a", " ", "", " b ", None, "\t"], dtype="str")

    cleaned = to_clean_text(values)

    assert cleaned.isna().tolist() == [False, True, True, False, True, True]
    assert cleaned.iloc[3] == " b "
    no_blank = to_clean_text(pd.Series(["x", " y"], dtype="str"))
    assert no_blank.tolist() == ["x", " y"]


def test_naive_offset_reference_is_the_pattern_itself():
    # Guards the test above: the reference must be the production regex, not a copy.
    assert _OFFSET_RE.flags & re.IGNORECASE


def _chunked_text(chunks: list[list[str | None]], index: list[int]) -> pd.Series:
    text = pa.large_string()
    column = pa.chunked_array([pa.array(chunk, text) for chunk in chunks]).to_pandas()
    return column.set_axis(index)


@pytest.mark.parametrize("positions", [[5, 0, 3, 3, 2], [1], [-1, 0], [], [4, 5, 0, 1, 2, 3]])
def test_take_rows_of_a_chunked_text_column_equals_iloc(positions):
    chunks = [["a", "b", None], ["c"], [], ["d", "e"], *[["z"] * 100] * 4]
    values = _chunked_text(chunks, list(range(0, 4060, 10))).rename("id")
    assert pa.array(values.array).num_chunks == 8  # the case take_rows is for

    taken = take_rows(values, np.array(positions, dtype=np.int64))

    pd.testing.assert_series_equal(taken, values.iloc[positions])


def test_take_rows_of_other_columns_equals_iloc():
    numbers = pd.Series([1.5, None, 3.0], index=[7, 8, 9])
    stamps = pd.Series(pd.to_datetime(["2025-01-01 00:00", None, "2025-01-02 00:00"], utc=True))

    for values in (numbers, stamps):
        pd.testing.assert_series_equal(take_rows(values, np.array([2, 0])), values.iloc[[2, 0]])


def test_keep_rows_equals_loc_on_every_dtype():
    frame = pd.DataFrame(
        {
            "id": _chunked_text([["a", None], ["b", "c", "d"]], [0, 1, 2, 3, 4]),
            "at": pd.Series(pd.to_datetime(["2025-01-01 00:00"] * 4 + [None], utc=True)),
            "x": [1.5, None, 3.0, 4.0, 5.0],
            "n": pd.Series([1, None, 3, 4, 5], dtype="Int64"),
            "flag": pd.Series([True, None, False, True, True], dtype="boolean"),
        },
        index=[0, 1, 2, 3, 4],
    )
    keep = np.array([True, False, True, True, False])

    kept = keep_rows(frame, keep)

    pd.testing.assert_frame_equal(kept, frame.loc[keep].reset_index(drop=True), check_exact=True)
    assert len(keep_rows(frame, np.zeros(5, dtype=bool))) == 0


def test_blank_cells_are_those_that_strip_to_nothing_for_every_code_point():
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    cells = pd.Series([*chars, "", " \t ", " a ", "\u3000\u2028", None], dtype="str")

    blank = _is_blank(cells)

    expected = cells.str.strip().eq("").to_numpy(dtype=bool)
    assert (blank == expected).all()
    assert 20 < blank.sum() < 100  # whitespace characters exist and are few
