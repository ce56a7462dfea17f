"""Every policy's contacts, explaining only the customers who can make a list.

Planning contacts needs each customer's reasons and doses, so an exact TreeSHAP explanation of
every scored row; but a week's lists hold a few hundred contacts out of hundreds of thousands
of customers. Each policy of :func:`~churn.targeting.policies.choose_by_policies` is a greedy
walk down one ranking, and each ranking is known, or bounded, before any explanation:

* ``expected_value``: at most :func:`~churn.targeting.value.bound_expected_values` (the
  probability, the MRR and each play's largest possible save rate);
* ``top_probability``, ``top_revenue_at_risk``, ``random``: the probability, probability x
  MRR and the customer's random draw themselves.

:func:`choose_explaining_fewest` explains the customers best key first, a block per policy at a
time (the block doubling each round), and chooses on the explained rows. A policy's list is
final when it is full and every customer not yet explained has a key below its last contact's
ranking value: the walk over all customers would have stopped at that contact before reaching
any of them, so the list is the one the whole population gives, to the row. A policy whose list
does not fill (too few eligible customers) needs everyone explained, and gets it.

Branch and bound with a cheap bound, as in top-k query processing (Fagin's threshold
algorithm); the idea, not code, is borrowed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from churn.targeting.policies import RANKED_BY

#: Customers explained per policy in the first round (then twice as many each round).
FIRST_BLOCK_ROWS = 4096

Explain = Callable[[np.ndarray], tuple[pd.DataFrame, pd.DataFrame]]
Choose = Callable[[pd.DataFrame, pd.DataFrame], dict[str, pd.DataFrame]]


def is_list_final(
    chosen: pd.DataFrame, policy: str, keys: np.ndarray, explained: np.ndarray, capacity: int
) -> bool:
    """Tell whether a policy's list from the explained customers is the whole population's.

    Args:
        chosen: The policy's contacts chosen from the explained customers, in the order taken.
        policy: Its name (:data:`~churn.targeting.policies.RANKED_BY` gives its ranking column).
        keys: Per customer of the population, the ranking value or an upper bound of it.
        explained: Per customer, whether it was explained.
        capacity: Contacts that fill every team (the walk stops there).

    Returns:
        True when every customer is explained, no team has capacity, or the list is full and no
        unexplained customer's key reaches its last contact's value.
    """
    if explained.all() or capacity <= 0:
        return True
    if len(chosen) < capacity:
        return False  # the walk went through every explained candidate
    last = float(chosen[RANKED_BY[policy]].iloc[-1])
    if np.isnan(last):
        return False  # missing values rank last: the walk reached them
    # NaN keys compare False: such customers rank after every value.
    return not bool(np.any(keys[~explained] >= last))


def choose_explaining_fewest(
    keys: Mapping[str, np.ndarray],
    capacity: int,
    explain: Explain,
    choose: Choose,
    first_block: int = FIRST_BLOCK_ROWS,
) -> tuple[dict[str, pd.DataFrame], int]:
    """Choose every policy's contacts, explaining customers only until every list is final.

    Args:
        keys: Policy -> per customer of the population (one row each, in a fixed order), its
            ranking value or an upper bound of it (``expected_value``); missing ranks last.
        capacity: The sum of the teams' positive weekly capacities.
        explain: Positions of customers (increasing) -> their scores and doses, as the whole
            population's explanation would give them for those rows.
        choose: Scores and doses of the explained customers -> policy -> contacts in the order
            taken (the lists of the population's explanation when it is given everyone).
        first_block: Customers taken per unfinished policy in the first round.

    Returns:
        Policy -> contacts, and the number of customers explained.

    Raises:
        ValueError: If the keys are not one array per policy of one common length, or
            ``first_block`` is not positive.
    """
    lengths = {len(k) for k in keys.values()}
    if len(lengths) != 1 or first_block < 1:
        raise ValueError("keys need one array per policy, all of one length; first_block >= 1")
    (size,) = lengths
    ranked = {policy: np.asarray(k, dtype=np.float64) for policy, k in keys.items()}
    # Best first, missing keys last. Ties in population order, though any order would do: a
    # list is final only once no unexplained key reaches its last value.
    orders = {
        policy: np.argsort(-np.nan_to_num(k, nan=-np.inf), kind="stable")
        for policy, k in ranked.items()
    }
    explained = np.zeros(size, dtype=bool)
    reached = dict.fromkeys(keys, 0)
    pending = set(keys)
    positions: list[np.ndarray] = []
    scores: list[pd.DataFrame] = []
    doses: list[pd.DataFrame] = []
    block = first_block
    while True:
        wanted = [orders[p][reached[p] : reached[p] + block] for p in sorted(pending)]
        for policy in pending:
            reached[policy] += block
        new = np.unique(np.concatenate([np.empty(0, dtype=np.int64), *wanted]))
        new = new[~explained[new]]
        if len(new) or not scores:  # an empty population is still planned (empty lists)
            explained[new] = True
            new_scores, new_doses = explain(new)
            positions.append(new)
            scores.append(new_scores)
            doses.append(new_doses)
        # The explained customers in the population's order, as one explanation of them gives.
        order = np.argsort(np.concatenate(positions), kind="stable")
        chosen = choose(_in_order(scores, order), _in_order(doses, order))
        pending = {
            policy
            for policy in keys
            if not is_list_final(chosen[policy], policy, ranked[policy], explained, capacity)
        }
        if not pending:
            return chosen, int(explained.sum())
        block *= 2


def _in_order(parts: list[pd.DataFrame], order: np.ndarray) -> pd.DataFrame:
    """The parts' rows put together, then taken in ``order``, on a fresh range index."""
    whole = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
    return whole.iloc[order].reset_index(drop=True)
