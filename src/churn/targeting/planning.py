"""Contacts for one scored population: the candidates and every policy's list.

:func:`plan_contacts` plans from every customer's reasons and doses;
:func:`plan_population_contacts` gives the same lists while explaining only the customers who
can make one (:mod:`~churn.targeting.shortlist`). ``churn target`` plans this week's contacts
with the first and compares the policies at the test cutoff with the second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from churn.config import TargetConfig
from churn.targeting.dose_response import DoseEffect
from churn.targeting.playbook import eligible_plays, first_reason_play, reason_families
from churn.targeting.policies import (
    choose_by_policies,
    compute_revenue_at_risk,
    draw_random_order,
)
from churn.targeting.shortlist import FIRST_BLOCK_ROWS, choose_explaining_fewest
from churn.targeting.uplift import PlayEffect
from churn.targeting.value import bound_expected_values, build_candidates


@dataclass(frozen=True)
class Explained:
    """Scores with reasons plus each row's family doses (for a set of customer rows)."""

    scores: pd.DataFrame
    doses: pd.DataFrame


def plan_contacts(
    scores: pd.DataFrame,
    doses: pd.DataFrame,
    family_of: dict[str, str],
    effects: list[PlayEffect],
    config: TargetConfig,
    probability: str = "churn_probability",
    dose_effects: dict[str, DoseEffect] | None = None,
    random_order: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Candidates and every policy's choice for one scored population.

    ``dose_effects`` (:func:`learn_dose_effects`) give each customer its own save rate for
    those plays; the other plays use their segment's. ``random_order`` is the random policy's
    draw (:func:`~churn.targeting.policies.draw_random_order`) of the whole population when
    ``scores`` holds only some of it; by default it is drawn over ``scores``.

    Returns:
        The candidates (:func:`~churn.targeting.value.build_candidates`) and policy -> chosen
        contacts (:func:`~churn.targeting.policies.choose_by_policies`).
    """
    reasons = reason_families(scores, family_of)
    eligible = eligible_plays(reasons, config.plays)
    candidates = build_candidates(
        scores, eligible, doses, effects, config, probability, dose_effects
    )
    capacity = {name: play.weekly_capacity for name, play in config.plays.items()}
    if random_order is None:
        random_order = draw_random_order(scores["customer_id"], config.seed)
    chosen = choose_by_policies(
        candidates, first_reason_play(eligible, config.plays), config.teams, capacity, random_order
    )
    return candidates, chosen


def plan_population_contacts(
    population: pd.DataFrame,
    explain: Callable[[np.ndarray], Explained],
    family_of: dict[str, str],
    effects: list[PlayEffect],
    config: TargetConfig,
    dose_effects: dict[str, DoseEffect] | None = None,
    first_block: int = FIRST_BLOCK_ROWS,
) -> tuple[dict[str, pd.DataFrame], int]:
    """Every policy's choice for a population, explaining only the customers who can make a list.

    The lists are those :func:`plan_contacts` gives from the whole population's explanation
    (:func:`~churn.targeting.shortlist.choose_explaining_fewest` says why); at a million
    customers the test cutoff's explanation was about a third of the stage.

    Args:
        population: ``customer_id``, ``churn_probability`` and ``mrr`` of every customer, as
            their explanation's scores give them.
        explain: Positions in ``population`` (increasing) -> those customers' reasons and
            doses, as the whole population's explanation gives them.
        family_of: Feature -> family.
        effects: The play effects.
        config: The ``target`` section.
        dose_effects: As for :func:`plan_contacts`.
        first_block: Customers explained per policy in the first round.

    Returns:
        Policy -> contacts, and the number of customers explained.
    """
    random_order = draw_random_order(population["customer_id"], config.seed)
    probability = population["churn_probability"]
    keys = {
        "expected_value": bound_expected_values(
            population, effects, config, dose_effects=dose_effects
        ),
        "top_probability": probability.to_numpy(dtype=np.float64),
        # The values choose_by_policies ranks by, computed by the same function.
        "top_revenue_at_risk": compute_revenue_at_risk(population).to_numpy(dtype=np.float64),
        "random": random_order["random_order"].to_numpy(),
    }
    capacity = sum(max(team, 0) for team in config.teams.values())

    def explain_at(positions: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
        explained = explain(positions)
        return explained.scores, explained.doses

    def choose(scores: pd.DataFrame, doses: pd.DataFrame) -> dict[str, pd.DataFrame]:
        return plan_contacts(
            scores,
            doses,
            family_of,
            effects,
            config,
            dose_effects=dose_effects,
            random_order=random_order,
        )[1]

    return choose_explaining_fewest(keys, capacity, explain_at, choose, first_block)
