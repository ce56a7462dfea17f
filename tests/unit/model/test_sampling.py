"""Tests for the seeded customer sample (:func:`churn.model.sampling.sample_customer_ids`)."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from churn.errors import ModelError
from churn.model.sampling import sample_customer_ids, sample_training_negatives


def naive_sample(ids: list[object], limit: int, seed: int) -> set[str]:
    """The ``limit`` distinct ids (as text) with the smallest seeded hash, one at a time."""
    key = hashlib.blake2b(f"customers-{seed}".encode(), digest_size=8).hexdigest()
    distinct = list(dict.fromkeys(str(i) for i in ids))
    hashed = {
        i: int(pd.util.hash_pandas_object(pd.Series([i]), index=False, hash_key=key).iloc[0])
        for i in distinct
    }
    return set(sorted(distinct, key=lambda i: hashed[i])[:limit])


def test_at_or_below_the_limit_nothing_is_sampled():
    ids = pd.Series(["a", "b", "a", "c"])
    assert sample_customer_ids(ids, 3, seed=7) is None
    assert sample_customer_ids(ids, None, seed=7) is None


def test_the_limit_of_distinct_customers_is_kept_whatever_their_rows():
    rng = np.random.default_rng(0)
    ids = pd.Series(rng.integers(0, 500, size=3000)).map(lambda i: f"C{i:05d}")
    kept = sample_customer_ids(ids, 120, seed=7)
    assert kept is not None and len(kept) == 120 == len(set(kept))
    assert set(kept) <= set(ids)
    assert set(kept) == naive_sample(ids.tolist(), 120, seed=7)
    # Kept in order of first appearance.
    first = {value: position for position, value in reversed(list(enumerate(ids)))}
    assert [first[value] for value in kept] == sorted(first[value] for value in kept)


def test_the_sample_ignores_row_order_and_repetition_but_not_the_seed():
    ids = pd.Series([f"C{i}" for i in range(400)])
    kept = set(sample_customer_ids(ids, 100, seed=7))
    shuffled = pd.concat([ids, ids.iloc[:50]]).sample(frac=1.0, random_state=3)
    assert set(sample_customer_ids(shuffled, 100, seed=7)) == kept
    assert set(sample_customer_ids(ids, 100, seed=8)) != kept


def test_integer_ids_of_an_export_draw_the_customers_their_text_draws():
    numbers = pd.Series(np.arange(1000, 1400, dtype="int64"))
    kept = sample_customer_ids(numbers, 90, seed=7)
    assert kept is not None and kept.dtype == np.int64
    as_text = sample_customer_ids(numbers.astype(str), 90, seed=7)
    assert {str(value) for value in kept} == set(as_text)


def test_a_limit_below_one_is_refused():
    with pytest.raises(ModelError, match="at least 1"):
        sample_customer_ids(pd.Series(["a", "b"]), 0, seed=7)


def test_a_training_sample_holds_positions_not_a_copy_of_its_rows():
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(40)],
            "cutoff": pd.Timestamp("2025-01-01", tz="UTC"),
            "label": pd.array([1 if i % 5 == 0 else 0 for i in range(40)], dtype="Int8"),
            "x": np.arange(40.0),
        }
    )
    sample = sample_training_negatives(frame, 0.25, seed=7)
    assert sample.source is frame and sample.positions is not None
    assert sample.size == len(sample.positions) == 8 + 8  # 8 churners, a quarter of 32
    pd.testing.assert_frame_equal(sample.rows, frame.iloc[sample.positions])
    pd.testing.assert_index_equal(sample.index, frame.iloc[sample.positions].index)
    np.testing.assert_array_equal(sample.labels(), frame["label"].to_numpy(int)[sample.positions])
    whole = sample_training_negatives(frame, 1.0, seed=7)
    assert whole.positions is None and whole.rows is frame and whole.size == 40
    assert whole.index is frame.index
