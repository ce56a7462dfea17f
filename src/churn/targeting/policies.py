"""Targeting policies at equal capacity and their comparison by (true) saved revenue.

Policies, all choosing within the same team and play capacities
(:func:`~churn.targeting.value.select_contacts`):

* ``expected_value``: every eligible play, ranked by expected value, never at a value <= 0.
* ``top_probability``: highest churn probability first, the play of the first reason.
* ``top_revenue_at_risk``: highest probability x MRR first, the play of the first reason.
* ``random``: a random order of the scored customers (:func:`draw_random_order`, drawn over
  the whole population, so a customer's draw does not depend on anyone's reasons), the play
  of the first reason.

The baselines fill their capacity whatever the value (they do not know it).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from churn.errors import DataContractError
from churn.targeting.value import select_contacts

POLICIES = ("expected_value", "top_probability", "top_revenue_at_risk", "random")
#: The column each policy ranks its candidates by, higher first (:func:`choose_by_policies`).
RANKED_BY = {
    "expected_value": "expected_value",
    "top_probability": "churn_probability",
    "top_revenue_at_risk": "revenue_at_risk",
    "random": "random_order",
}


def draw_random_order(customer_ids: pd.Series, seed: int) -> pd.DataFrame:
    """The random policy's order: one seeded uniform draw per scored customer.

    The draws follow the population's rows (one per customer), not the candidates: a
    customer's draw is then the same whichever customers have an addressed reason, and a
    list can be chosen from some customers' explanations only
    (:mod:`~churn.targeting.shortlist`).

    Args:
        customer_ids: The scored population's ids, one row per customer.
        seed: ``target.seed``.

    Returns:
        ``customer_id`` and ``random_order``, in the population's order.

    Raises:
        DataContractError: If a customer appears twice (one draw per customer).
    """
    repeated = customer_ids.duplicated(keep=False)
    if repeated.any():
        examples = list(customer_ids[repeated].drop_duplicates().head(5))
        raise DataContractError(
            f"the scored population holds {int(repeated.sum())} rows of customers that appear "
            f"more than once (e.g. {examples}); targeting needs one row per customer"
        )
    return pd.DataFrame({
        "customer_id": customer_ids.array,
        "random_order": np.random.default_rng(seed).random(len(customer_ids)),
    })


def choose_by_policies(
    candidates: pd.DataFrame,
    first_reason: pd.DataFrame,
    teams: Mapping[str, int],
    play_capacity: Mapping[str, int | None],
    random_order: pd.DataFrame,
) -> dict[str, pd.DataFrame]:
    """The contacts each policy of :data:`POLICIES` chooses.

    Args:
        candidates: :func:`~churn.targeting.value.build_candidates` output.
        first_reason: ``customer_id`` and ``play`` of each customer's first addressed reason
            (:func:`~churn.targeting.playbook.first_reason_play`).
        teams: Team -> weekly capacity.
        play_capacity: Play -> weekly capacity or ``None``.
        random_order: :func:`draw_random_order` of the population (every candidate's
            customer in it).

    Returns:
        Policy -> chosen candidate rows in the order taken (``contact_rank``).
    """
    baseline = candidates.merge(first_reason[["customer_id", "play"]],
                                on=["customer_id", "play"], how="inner")
    baseline = baseline.assign(revenue_at_risk=compute_revenue_at_risk(baseline)).merge(
        random_order[["customer_id", "random_order"]], on="customer_id", how="left",
        validate="many_to_one")
    chosen = {"expected_value": select_contacts(candidates, "expected_value", teams,
                                                play_capacity)}
    for policy in ("top_probability", "top_revenue_at_risk", "random"):
        chosen[policy] = select_contacts(baseline, RANKED_BY[policy], teams, play_capacity,
                                         positive_value_only=False)
    return chosen


def compute_revenue_at_risk(scores: pd.DataFrame) -> pd.Series:
    """The ``top_revenue_at_risk`` policy's ranking: probability x MRR (missing MRR: 0)."""
    return scores["churn_probability"] * scores["mrr"].fillna(0.0)


def compare_on_truth(
    chosen: Mapping[str, pd.DataFrame], truth: pd.DataFrame, fixed_cost: Mapping[str, float]
) -> pd.DataFrame:
    """Each policy's contacts, true saved revenue and true net value.

    Args:
        chosen: Policy -> contacts (``customer_id``, ``play``).
        truth: ``customer_id``, ``play``, ``saved_revenue`` (revenue kept because of the
            contact, net of any discount given) and ``discount_given``, one row per pair.
        fixed_cost: Play -> fixed cost of one contact.

    Returns:
        ``policy``, ``contacts``, ``matched`` (contacts found in the truth),
        ``true_saved_revenue``, ``true_saved_before_discounts`` (saved + discounts given) and
        ``true_net_value`` (saved - fixed costs).
    """
    rows = []
    for policy, contacts in chosen.items():
        joined = contacts[["customer_id", "play"]].merge(
            truth, on=["customer_id", "play"], how="left", validate="one_to_one")
        saved = joined["saved_revenue"].fillna(0.0).to_numpy(dtype=np.float64)
        given = joined["discount_given"].fillna(0.0).to_numpy(dtype=np.float64)
        fixed = joined["play"].map(fixed_cost).fillna(0.0).to_numpy(dtype=np.float64)
        rows.append({
            "policy": policy,
            "contacts": len(contacts),
            "matched": int(joined["saved_revenue"].notna().sum()),
            "true_saved_revenue": float(saved.sum()),
            "true_saved_before_discounts": float((saved + given).sum()),
            "true_net_value": float((saved - fixed).sum()),
        })
    return pd.DataFrame(rows)


def cumulative_curves(chosen: Mapping[str, pd.DataFrame], value_column: str) -> pd.DataFrame:
    """Cumulative ``value_column`` against the number of contacts, per policy.

    Returns:
        ``policy``, ``contacts`` (1, 2, ...), ``cumulative_value``.
    """
    parts = []
    for policy, contacts in chosen.items():
        values = contacts[value_column].to_numpy(dtype=np.float64)
        parts.append(pd.DataFrame({
            "policy": policy,
            "contacts": np.arange(1, len(values) + 1),
            "cumulative_value": np.cumsum(np.nan_to_num(values)),
        }))
    if not parts:
        return pd.DataFrame(columns=["policy", "contacts", "cumulative_value"])
    return pd.concat(parts, ignore_index=True)
