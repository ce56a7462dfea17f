"""Where expected-value targeting's edge over top revenue at risk comes from (issue 15).

For the last ``--cutoffs`` labeled cutoffs of a simulated run, with the configured save rates
only (no logged estimate: the gate at ``1e-6``), this script chooses contacts at equal team
capacities by several policies and scores each by the truth's saved revenue:

* ``expected_value`` and ``top_revenue_at_risk`` as in ``churn target``;
* ``rar_any_play``: revenue-at-risk order, but each customer may take any eligible play (its
  best by expected value first, the next where that team is full): the play freedom alone;
* ``ev_no_cost``: expected value without the plays' costs (``P x s x value``): what charging
  the discount's MRR given away adds;
* ``ev_first_play``: expected value, but only each customer's first reason's play (the
  baselines' play): what the free choice of play adds or loses;
* ``oracle``: the truth's own saved revenue of every eligible (customer, play), positive only:
  the most any ranking could save with these capacities and plays;
* ``oracle_first_play``: the same, but only each customer's first reason's play.

It also prints how alike the expected-value and revenue-at-risk lists are (shared customers,
median probability and MRR of each list, share of discounts, the share of the eligible
population the capacity covers). Nothing is written. Usage::

    python benchmarks/targeting_gap.py --root /tmp/bench_work [--cutoffs 4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from churn.config import load_params
from churn.domain.catalog import read_catalog
from churn.domain.families import FAMILIES, PROFILE_FAMILY
from churn.io import read_frame
from churn.model.artifact import ChurnModel
from churn.model.scoring import score_population
from churn.stages.target import learn_effects
from churn.targeting.playbook import (
    actionable_families,
    eligible_plays,
    family_doses,
    first_reason_play,
    reason_families,
)
from churn.targeting.policies import compare_on_truth
from churn.targeting.value import build_candidates, select_contacts


def choose_all(candidates: pd.DataFrame, first: pd.DataFrame, truth: pd.DataFrame,
               teams: dict[str, int], capacity: dict[str, int | None]
               ) -> dict[str, pd.DataFrame]:
    """Every diagnostic policy's contacts (see the module docstring)."""
    frame = candidates.assign(
        revenue_at_risk=candidates["churn_probability"] * candidates["mrr"].fillna(0.0),
        gross_value=candidates["churn_probability"] * candidates["save_rate"]
        * candidates["value_at_risk"],
    ).merge(truth[["customer_id", "play", "saved_revenue"]], on=["customer_id", "play"],
            how="left")
    frame["saved_revenue"] = frame["saved_revenue"].fillna(0.0)
    baseline = frame.merge(first[["customer_id", "play"]], on=["customer_id", "play"])
    # Best play first among a customer's rows, so that a stable sort by revenue at risk
    # offers each customer its best play, then the next.
    by_value = frame.sort_values("expected_value", ascending=False, kind="stable")
    oracle = frame.assign(expected_value=frame["saved_revenue"])
    oracle_first = baseline.assign(expected_value=baseline["saved_revenue"])
    return {
        "expected_value": select_contacts(frame, "expected_value", teams, capacity),
        "top_revenue_at_risk": select_contacts(baseline, "revenue_at_risk", teams, capacity,
                                               positive_value_only=False),
        "rar_any_play": select_contacts(by_value, "revenue_at_risk", teams, capacity,
                                        positive_value_only=False),
        "ev_no_cost": select_contacts(frame.assign(expected_value=frame["gross_value"]),
                                      "gross_value", teams, capacity),
        "ev_first_play": select_contacts(baseline, "expected_value", teams, capacity),
        "oracle": select_contacts(oracle, "expected_value", teams, capacity),
        "oracle_first_play": select_contacts(oracle_first, "expected_value", teams, capacity),
    }


def describe_lists(chosen: dict[str, pd.DataFrame], candidates: pd.DataFrame
                   ) -> dict[str, float]:
    """How alike the expected-value and revenue-at-risk lists are.

    ``*_rar_vs_unconstrained``: the list's summed revenue at risk (probability x MRR) over
    that of the same number of customers with the highest revenue at risk, whatever their
    team: how much the team capacities push the list below the top.
    """
    ev, rar = chosen["expected_value"], chosen["top_revenue_at_risk"]
    eligible_customers = candidates["customer_id"].nunique()
    per_customer = (candidates.drop_duplicates("customer_id")
                    .eval("churn_probability * mrr").fillna(0.0).to_numpy())
    top = np.sort(per_customer)[::-1][: len(rar)].sum()
    shared = set(ev["customer_id"]) & set(rar["customer_id"])
    same_play = ev.merge(rar, on=["customer_id", "play"]).shape[0]
    return {
        "capacity_share_of_eligible": len(rar) / eligible_customers,
        "shared_customers": len(shared) / max(len(rar), 1),
        "shared_customer_and_play": same_play / max(len(rar), 1),
        "ev_median_p": float(ev["churn_probability"].median()),
        "rar_median_p": float(rar["churn_probability"].median()),
        "ev_median_mrr": float(ev["mrr"].median()),
        "rar_median_mrr": float(rar["mrr"].median()),
        "ev_discount_share": float((ev["play"] == "discount_offer").mean()),
        "rar_discount_share": float((rar["play"] == "discount_offer").mean()),
        "ev_rar_vs_unconstrained": float((ev["churn_probability"] * ev["mrr"]).sum() / top),
        "rar_rar_vs_unconstrained": float((rar["churn_probability"] * rar["mrr"]).sum() / top),
    }


def decompose(chosen: dict[str, pd.DataFrame], truth: pd.DataFrame) -> list[str]:
    """Lines: true saved revenue of each list by play, and by shared or own customers."""
    keys = ["customer_id", "play"]
    lists = {policy: chosen[policy][keys].merge(truth[[*keys, "saved_revenue"]], on=keys,
                                                 how="left").fillna({"saved_revenue": 0.0})
             for policy in ("expected_value", "top_revenue_at_risk")}
    ev, rar = lists["expected_value"], lists["top_revenue_at_risk"]
    shared = set(ev["customer_id"]) & set(rar["customer_id"])
    lines = []
    for policy, frame in lists.items():
        by_play = frame.groupby("play")["saved_revenue"].agg(["size", "sum"])
        lines.append(f"{policy} by play: " + "; ".join(
            f"{play} {int(row['size'])} / {row['sum']:,.0f}" for play, row in by_play.iterrows()))
        own = ~frame["customer_id"].isin(shared)
        lines.append(f"{policy}: shared customers {int((~own).sum())} save "
                     f"{frame.loc[~own, 'saved_revenue'].sum():,.0f}; its own {int(own.sum())} "
                     f"save {frame.loc[own, 'saved_revenue'].sum():,.0f}")
    return lines


def main() -> None:
    """Print the diagnostic policies' true saved revenue per cutoff."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--cutoffs", type=int, default=4)
    args = parser.parse_args()
    root = args.root
    params = load_params(root / "params.yaml")
    config = params.target.model_copy(update={"max_standard_error": 1e-6,
                                              "tlearner_bootstrap_rounds": 0})
    catalog = read_catalog(root / "reports" / "feature_catalog.csv")
    family_of = dict(zip(catalog["name"], catalog["family"], strict=True))
    model = ChurnModel.load(root / "models" / "churn")
    labels = read_frame(root / "data" / "labels" / "labels.parquet")
    features = read_frame(root / "data" / "features" / "features.parquet")
    truth = pd.read_parquet(root / "data" / "simulated" / "truth" / "retention_truth.parquet")
    effects, _, _ = learn_effects(pd.DataFrame(columns=["play"]), None, family_of, config)
    capacity = {name: play.weekly_capacity for name, play in config.plays.items()}
    fixed = {name: play.cost for name, play in config.plays.items()}
    cutoffs = sorted(labels.loc[labels["label"].notna(), "cutoff"].unique())[-args.cutoffs:]
    for cutoff in cutoffs:
        rows = features[features["cutoff"] == cutoff]
        result = score_population(model, rows, params.score.reasons)
        doses = family_doses(
            result.contributions, actionable_families(catalog), [*FAMILIES, PROFILE_FAMILY]
        )
        reasons = reason_families(result.scores, family_of)
        eligible = eligible_plays(reasons, config.plays)
        candidates = build_candidates(result.scores, eligible, doses, effects, config)
        chosen = choose_all(candidates, first_reason_play(eligible, config.plays),
                            truth[truth["month_start"] == cutoff], dict(config.teams), capacity)
        table = compare_on_truth(chosen, truth[truth["month_start"] == cutoff], fixed)
        saved = dict(zip(table["policy"], table["true_saved_revenue"], strict=True))
        rar = saved["top_revenue_at_risk"]
        print(f"cutoff {pd.Timestamp(cutoff).date()} ({len(rows):,} customers, "
              f"{candidates['customer_id'].nunique():,} eligible)")
        for policy, value in saved.items():
            print(f"  {policy:>20} {value:>12,.0f}  x RaR {value / rar:5.2f}  "
                  f"contacts {len(chosen[policy])}")
        stats = describe_lists(chosen, candidates)
        print("  " + ", ".join(f"{k} {v:.3g}" for k, v in stats.items()), flush=True)
        for line in decompose(chosen, truth[truth["month_start"] == cutoff]):
            print("  " + line, flush=True)
        ev = chosen["expected_value"]
        print(f"  EV list: median expected value {np.median(ev['expected_value']):,.0f}, "
              f"median cost {np.median(ev['cost']):,.0f}", flush=True)


if __name__ == "__main__":
    main()
