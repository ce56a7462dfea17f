"""A bounded, repeatable sample of each cutoff's rows (churn.monitoring.sample)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.monitoring.sample import hash_customer_ids, select_rows_per_cutoff


def _keys(customers: int, cutoffs: int, seed: int = 0, text: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = rng.permutation(10 * customers)[:customers]
    frame = pd.DataFrame(
        {
            "customer_id": np.tile([f"C{i:06d}" for i in ids] if text else ids, cutoffs),
            "cutoff": np.repeat(pd.date_range("2025-01-01", periods=cutoffs, freq="MS"), customers),
        }
    )
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


@pytest.mark.parametrize("text", [True, False])
def test_each_cutoff_keeps_its_lowest_hashed_customers(text):
    """Naive reference: per cutoff, the ``limit`` smallest hashes, one row at a time."""
    keys = _keys(300, 4, text=text)
    keys = keys[~((keys["cutoff"] == keys["cutoff"].min()) & (keys.index % 3 == 0))]  # unequal
    kept = select_rows_per_cutoff(keys, 120)
    hashes = hash_customer_ids(keys["customer_id"])
    for cutoff in keys["cutoff"].unique():
        rows = np.flatnonzero((keys["cutoff"] == cutoff).to_numpy())
        lowest = rows[np.argsort(hashes[rows], kind="stable")[:120]]
        assert set(np.flatnonzero(kept)).intersection(rows) == set(lowest)


def test_the_sample_does_not_depend_on_the_row_order_or_other_cutoffs():
    keys = _keys(500, 3)
    chosen = set(map(tuple, keys[select_rows_per_cutoff(keys, 50)].astype(str).to_numpy()))
    shuffled = keys.sample(frac=1.0, random_state=9)
    again = set(map(tuple, shuffled[select_rows_per_cutoff(shuffled, 50)].astype(str).to_numpy()))
    assert again == chosen
    one = keys[keys["cutoff"] == keys["cutoff"].max()]
    alone = set(map(tuple, one[select_rows_per_cutoff(one, 50)].astype(str).to_numpy()))
    last = one["cutoff"].astype(str).iloc[0]
    assert alone == {row for row in chosen if row[1] == last} and len(alone) == 50
    # The same customers at every cutoff, since each cutoff holds the same customers.
    per_cutoff = keys[select_rows_per_cutoff(keys, 50)].groupby("cutoff")["customer_id"]
    assert len({frozenset(ids) for _, ids in per_cutoff}) == 1


def test_no_limit_or_a_limit_above_every_cutoff_keeps_every_row():
    keys = _keys(40, 2)
    assert select_rows_per_cutoff(keys, None).all()
    assert select_rows_per_cutoff(keys, 40).all()
    assert select_rows_per_cutoff(keys, 39).sum() == 2 * 39
    assert select_rows_per_cutoff(keys.iloc[:0], 5).shape == (0,)


def test_an_id_hashes_the_same_whatever_surrounds_it():
    alone = hash_customer_ids(pd.Series(["C1"]))
    among = hash_customer_ids(pd.Series(["C9", "C1", "C5"]))
    assert alone[0] == among[1] and len(set(among)) == 3
    assert (hash_customer_ids(pd.Series([17])) == hash_customer_ids(pd.Series(["17"]))).all()
