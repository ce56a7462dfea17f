"""Tests for churn.validation.lookup: value lookups against known values (references)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.validation import lookup
from churn.validation.lookup import KnownValues, find_positions, is_in


def _naive_positions(values: pd.Series, known: pd.Series) -> np.ndarray:
    """First position in ``known`` of each value, -1 for missing or absent: one by one."""

    def position(value: object) -> int:
        if pd.isna(value):
            return -1
        matches = [i for i, k in enumerate(known) if not pd.isna(k) and k == value]
        return matches[0] if matches else -1

    return np.array([position(v) for v in values], dtype=np.int64)


@pytest.mark.parametrize("seed", range(10))
def test_is_in_matches_pandas_isin(seed: int):
    rng = np.random.default_rng(seed)
    words = np.array(["a", "b", "c", "d", None], dtype=object)
    values = pd.Series(rng.choice(words, 200), dtype="str")
    known = pd.Series(rng.choice(words[:4], rng.integers(0, 4)), dtype="str")

    expected = values.isin(known).to_numpy()

    np.testing.assert_array_equal(is_in(values, known), expected)
    np.testing.assert_array_equal(is_in(values.astype(object), known), expected)


@pytest.mark.parametrize("seed", range(10))
def test_find_positions_matches_a_naive_first_occurrence_lookup(seed: int):
    rng = np.random.default_rng(seed)
    words = np.array(["a", "b", "c", "d", None], dtype=object)
    values = pd.Series(rng.choice(words, 200), dtype="str")
    # Duplicates in ``known`` (positions are first occurrences), sometimes a missing value.
    known = pd.Series(rng.choice(words, rng.integers(0, 8)), dtype="str")

    def naive(value: object) -> int:
        if pd.isna(value):
            return -1
        matches = [i for i, k in enumerate(known) if not pd.isna(k) and k == value]
        return matches[0] if matches else -1

    expected = np.array([naive(v) for v in values], dtype=np.int64)
    for left, right in ((values, known), (values.astype(object), known.astype(object))):
        positions = find_positions(left, right)
        np.testing.assert_array_equal(positions, expected)
        np.testing.assert_array_equal(positions >= 0, is_in(left, right) & values.notna())


def test_find_positions_with_no_known_values_finds_nothing():
    values = pd.Series(["a", None, "b"], dtype="str")
    for known in (pd.Series([], dtype="str"), pd.Series([], dtype=object)):
        np.testing.assert_array_equal(find_positions(values, known), [-1, -1, -1])


@pytest.mark.parametrize("seed", range(10))
def test_known_values_find_what_find_positions_finds_batch_after_batch(seed: int):
    rng = np.random.default_rng(seed)
    ids = np.array([f"C{i:03d}" for i in range(60)], dtype=object)
    # Distinct known ids (a parent's valid keys) in a random order; values with unknown ids
    # and missing ones.
    known = pd.Series(rng.permutation(ids[:40]), dtype="str")
    lookup_once = KnownValues(known)
    assert lookup_once._index is not None  # the hash index is the path under test
    for _ in range(3):
        values = pd.Series(rng.choice(np.append(ids, None), 300), dtype="str")
        expected = _naive_positions(values, known)
        np.testing.assert_array_equal(lookup_once.find_positions(values), expected)
        np.testing.assert_array_equal(find_positions(values, known), expected)


def test_known_values_never_take_a_shared_hash_for_a_match(monkeypatch: pytest.MonkeyPatch):
    # A weak hash (the first letter) makes differing texts share hashes, as a 64-bit hash
    # could on unlucky data: only the comparison of the texts tells them apart.
    def first_letter(columns: list[pd.Series]) -> list[np.ndarray]:
        return [
            np.array([0 if pd.isna(v) else ord(v[0]) for v in c], dtype=np.uint64) for c in columns
        ]

    monkeypatch.setattr(lookup, "hash_arrow_text", first_letter)
    known = pd.Series(["apple", "banana", "cherry"], dtype="str")
    values = pd.Series(["avocado", "banana", None, "cherry", "blueberry", "date"], dtype="str")
    found = KnownValues(known)
    assert found._index is not None
    np.testing.assert_array_equal(found.find_positions(values), [-1, 1, -1, 2, -1, -1])


@pytest.mark.parametrize(
    "known",
    [
        pd.Series(["b", "a", "b", "c"], dtype="str"),  # repeated: the first occurrence counts
        pd.Series(["b", None, "a"], dtype="str"),  # a missing key is never referred to
        pd.Series(["b", "a", "c"], dtype=object),  # not Arrow text
        pd.Series([], dtype="str"),
    ],
)
def test_known_values_fall_back_to_find_positions_where_the_index_cannot_serve(known):
    values = pd.Series(["a", None, "b", "c", "z"], dtype="str")
    found = KnownValues(known)
    expected = _naive_positions(values, known)
    np.testing.assert_array_equal(found.find_positions(values), expected)
    np.testing.assert_array_equal(found.find_positions(values.astype(object)), expected)


def test_known_values_with_colliding_hashes_fall_back(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(
        lookup, "hash_arrow_text", lambda columns: [np.zeros(len(c), np.uint64) for c in columns]
    )
    known = pd.Series(["a", "b"], dtype="str")
    found = KnownValues(known)
    assert found._index is None
    values = pd.Series(["b", "x", "a"], dtype="str")
    np.testing.assert_array_equal(found.find_positions(values), [1, -1, 0])
