"""Choosing lists while explaining only the customers who can make them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.targeting.shortlist import choose_explaining_fewest, is_list_final


def _chosen(values: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"churn_probability": values})


def test_a_list_is_final_only_when_full_and_no_unexplained_key_reaches_its_last_value():
    keys = np.array([0.9, 0.8, 0.7, 0.7, np.nan])
    explained = np.array([True, True, False, False, False])
    # Full at 0.8; every unexplained key is below (or missing).
    assert is_list_final(_chosen([0.9, 0.8]), "top_probability", keys, explained, 2)
    # Not full: the walk went through every explained customer.
    assert not is_list_final(_chosen([0.9]), "top_probability", keys, explained, 2)
    # An unexplained key equal to the last value could come first in the population's order.
    assert not is_list_final(
        _chosen([0.9, 0.7]),
        "top_probability",
        np.array([0.9, 0.7, 0.7]),
        np.array([True, True, False]),
        2,
    )
    # The walk reached missing values: everything ranked must be known.
    assert not is_list_final(_chosen([0.9, np.nan]), "top_probability", keys, explained, 2)
    # Everyone explained, or no capacity: nothing else could change the list.
    assert is_list_final(_chosen([0.9]), "top_probability", keys, np.ones(5, bool), 2)
    assert is_list_final(_chosen([]), "top_probability", keys, explained, 0)


def _top_choice(capacity: int, eligible: np.ndarray, values: np.ndarray):
    """A greedy top-``capacity`` list by a value only explained customers reveal (some are
    not eligible at all): the shape of every policy's walk."""

    def explain(positions: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
        frame = pd.DataFrame(
            {
                "position": positions,
                "churn_probability": values[positions],
                "eligible": eligible[positions],
            }
        )
        return frame, frame[["position"]]

    def choose(scores: pd.DataFrame, doses: pd.DataFrame) -> dict[str, pd.DataFrame]:
        assert scores["position"].is_monotonic_increasing  # the population's order
        pool = scores[scores["eligible"]]
        # Ties go to the later customer: the lists' own tie order need not be the population's
        # (candidates come play by play, customers by id). Missing values rank last.
        value = pool["churn_probability"].to_numpy()
        order = np.lexsort(
            (-pool["position"].to_numpy(), np.isnan(value), -np.nan_to_num(value, nan=0.0))
        )
        return {"top_probability": pool.iloc[order[:capacity]].reset_index(drop=True)}

    return explain, choose


@pytest.mark.parametrize("seed", range(25))
def test_the_lists_equal_those_of_everyone_explained(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    values = np.round(rng.random(n), 2)  # ties
    values[rng.random(n) < 0.05] = np.nan
    eligible = rng.random(n) < rng.uniform(0.01, 1.0)
    capacity = int(rng.integers(0, 40))
    explain, choose = _top_choice(capacity, eligible, values)
    everyone = choose(*explain(np.arange(n)))
    counted = []

    def counting(positions: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
        counted.append(len(positions))
        return explain(positions)

    chosen, explained = choose_explaining_fewest(
        {"top_probability": values},
        capacity,
        counting,
        choose,
        first_block=int(rng.integers(1, 200)),
    )
    pd.testing.assert_frame_equal(chosen["top_probability"], everyone["top_probability"])
    assert explained == sum(counted) <= n


def test_few_customers_are_explained_when_the_lists_are_short():
    rng = np.random.default_rng(0)
    values = rng.random(100_000)
    explain, choose = _top_choice(20, np.ones(len(values), bool), values)
    chosen, explained = choose_explaining_fewest(
        {"top_probability": values}, 20, explain, choose, first_block=1000
    )
    assert explained == 1000
    assert chosen["top_probability"]["position"].tolist() == list(np.argsort(-values)[:20])


def test_keys_of_different_lengths_are_refused():
    explain, choose = _top_choice(1, np.ones(2, bool), np.zeros(2))
    with pytest.raises(ValueError, match="one length"):
        choose_explaining_fewest({"a": np.zeros(2), "b": np.zeros(3)}, 1, explain, choose)
