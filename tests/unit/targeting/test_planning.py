"""Planning one population's contacts: with everyone explained, or only who can make a list."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.config import PlayConfig, TargetConfig

_FEATURE_FAMILIES = {
    "tickets": "support",
    "price_up": "billing",
    "logins": "usage",
    "nps_drop": "engagement",
    "tenure_days": "billing",
}


def _explained_population(rng: np.random.Generator, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores (probabilities with ties, some MRR missing, up to 3 reasons) and family doses of
    ``n`` customers, as an explanation gives them."""
    from churn.targeting.playbook import family_doses

    names = list(_FEATURE_FAMILIES)
    pushes = rng.normal(0.0, 1.5, (n, len(names)))
    ids = (
        rng.permutation(n) + 10
        if rng.random() < 0.5
        else np.array([f"c{i}" for i in rng.permutation(n)], dtype=object)
    )
    order = np.argsort(-pushes, axis=1)
    scores = pd.DataFrame(
        {
            "customer_id": ids,
            "cutoff": pd.Timestamp("2025-06-01", tz="UTC"),
            "churn_probability": np.round(rng.beta(2, 5, n), 2),
            "mrr": rng.choice([np.nan, 20.0, 50.0, 100.0, 400.0], n),
        }
    )
    for i in range(3):
        column = order[:, i]
        positive = pushes[np.arange(n), column] > 0
        scores[f"reason_{i + 1}_feature"] = np.where(positive, np.array(names)[column], None)
    contributions = pd.DataFrame(pushes, columns=names).assign(customer_id=ids)
    actionable = {k: v for k, v in _FEATURE_FAMILIES.items() if k != "tenure_days"}
    doses = family_doses(contributions, actionable, ["support", "billing", "usage", "engagement"])
    return scores, doses


def _random_playbook(rng: np.random.Generator) -> tuple[TargetConfig, list, dict]:
    from dataclasses import replace

    from churn.stages.target import learn_effects
    from churn.targeting.dose_response import DoseEffect

    families = [("support",), ("billing",), ("usage",), ("engagement", "usage")]
    plays = {
        f"p{k}": PlayConfig(
            families=families[k],
            team=f"t{k % 2}",
            cost=float(rng.choice([0.0, 1.0, 30.0])),
            cost_share_of_mrr=float(rng.choice([0.0, 0.2])),
            cost_months=2,
            save_rate=float(rng.uniform(0.0, 0.6)),
            weekly_capacity=None if rng.random() < 0.85 else int(rng.integers(0, 6)),
        )
        for k in range(4)
    }
    config = TargetConfig(
        months_kept=float(rng.choice([1.0, 6.0])),
        teams={"t0": int(rng.integers(0, 15)), "t1": int(rng.integers(0, 15))},
        configured_rate_scaling=str(rng.choice(["none", "addressed_share", "dose"])),
        plays=plays,
        seed=int(rng.integers(0, 100)),
    )
    empty = pd.DataFrame(
        columns=["customer_id", "cutoff", "action_at", "play", "control", "churned"]
    )
    effects, _ = learn_effects(empty, None, dict(_FEATURE_FAMILIES), config)
    # A measured rate may be negative (the play made things worse), or exceed the configured.
    effects = [
        replace(e, save_rate=float(rng.uniform(-0.2, 0.8))) if rng.random() < 0.3 else e
        for e in effects
    ]
    fits = {
        name: DoseEffect(float(rng.uniform(-0.5, 3.0)), 0.1, 0.0, 100, 100)
        for name in plays
        if rng.random() < 0.3
    }
    return config, effects, fits


@pytest.mark.parametrize("seed", range(30))
def test_the_population_plan_equals_the_plan_of_everyone_explained(seed):
    from churn.targeting.planning import Explained, plan_contacts, plan_population_contacts
    from churn.targeting.policies import POLICIES, draw_random_order

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 6000))
    scores, doses = _explained_population(rng, n)
    config, effects, fits = _random_playbook(rng)
    family_of = dict(_FEATURE_FAMILIES)
    _, everyone = plan_contacts(scores, doses, family_of, effects, config, dose_effects=fits)
    asked: list[np.ndarray] = []

    def explain(positions: np.ndarray) -> Explained:
        asked.append(positions)
        return Explained(scores.iloc[positions], doses.iloc[positions])

    population = scores[["customer_id", "churn_probability", "mrr"]]
    chosen, explained = plan_population_contacts(
        population, explain, family_of, effects, config, fits, first_block=int(rng.integers(1, 300))
    )
    assert set(chosen) == set(POLICIES)
    for policy in POLICIES:
        pd.testing.assert_frame_equal(chosen[policy], everyone[policy])
    seen = np.concatenate(asked)
    assert len(seen) == len(np.unique(seen)) == explained <= n
    # The random policy's draw is the population's, whoever is explained.
    draw = draw_random_order(scores["customer_id"], config.seed).set_index("customer_id")
    random_list = chosen["random"]
    assert (
        random_list["random_order"].tolist()
        == draw.loc[random_list["customer_id"], "random_order"].tolist()
    )


def test_the_population_plan_explains_few_customers_of_a_large_population():
    from churn.stages.target import learn_effects
    from churn.targeting.planning import Explained, plan_population_contacts

    rng = np.random.default_rng(1)
    scores, doses = _explained_population(rng, 50_000)
    config = TargetConfig(
        teams={"t": 10},
        plays={
            "call": PlayConfig(families=("support",), team="t", cost=1.0, save_rate=0.3),
            "offer": PlayConfig(families=("billing",), team="t", cost=5.0, save_rate=0.2),
        },
    )
    empty = pd.DataFrame(
        columns=["customer_id", "cutoff", "action_at", "play", "control", "churned"]
    )
    effects, _ = learn_effects(empty, None, dict(_FEATURE_FAMILIES), config)
    chosen, explained = plan_population_contacts(
        scores[["customer_id", "churn_probability", "mrr"]],
        lambda positions: Explained(scores.iloc[positions], doses.iloc[positions]),
        dict(_FEATURE_FAMILIES),
        effects,
        config,
        first_block=500,
    )
    assert all(len(frame) == 10 for frame in chosen.values())
    assert explained < 10_000
