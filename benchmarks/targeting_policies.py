"""Compare targeting policies on the simulator's truth over several cutoffs (issue 15).

The ``churn target`` stage compares policies at one cutoff, the last labeled one. One cutoff is
one draw: a small change of the model's reasons moves which plays are eligible. This script
repeats the stage's comparison (the same functions: :func:`~churn.stages.target.learn_effects`,
:func:`~churn.targeting.planning.plan_contacts`,
:func:`~churn.stages.target.compare_policies_on_truth`) at the last ``--cutoffs`` labeled
cutoffs, for each ``target.max_standard_error`` (``--limits``), ``target.one_source_per``
(``--sources``) and ``target.configured_rate_scaling`` (``--scalings``) given, and prints
expected-value targeting's true saved revenue against top probability and top revenue at risk
(each cutoff, then the mean over the cutoffs). The earlier cutoffs were training cutoffs of the
model, so their probabilities are in-sample for every policy alike.
Nothing is written.

Run from the repository root after ``dvc repro`` (the default pipeline, simulated data), or
with ``--root`` on the scratch folder of ``benchmarks/bench_pipeline.py``::

    python benchmarks/targeting_policies.py --cutoffs 4 --limits 0.05 inf \
        --sources segment play playbook --scalings none addressed_share \
        [--root /tmp/bench_work]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd

from churn.config import TargetConfig, load_params
from churn.domain.catalog import read_catalog
from churn.domain.families import FAMILIES, PROFILE_FAMILY
from churn.io import read_frame
from churn.model.artifact import ChurnModel
from churn.model.scoring import score_population
from churn.stages.target import compare_policies_on_truth, learn_effects
from churn.targeting.logged import attach_outcomes
from churn.targeting.planning import Explained, plan_contacts
from churn.targeting.playbook import actionable_families, family_doses
from churn.targeting.uplift import ADDRESSED_SEGMENTS, EFFECT_SOURCE_SCOPES, SOURCE_LOGGED


def main() -> None:
    """Print the policy ratios per cutoff and limit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--cutoffs", type=int, default=4)
    parser.add_argument("--limits", nargs="+", type=float, default=[0.05, np.inf])
    parser.add_argument("--sources", nargs="+", choices=EFFECT_SOURCE_SCOPES,
                        default=["segment"], help="target.one_source_per values")
    parser.add_argument("--scalings", nargs="+", default=["none"],
                        choices=get_args(
                            TargetConfig.model_fields["configured_rate_scaling"].annotation),
                        help="target.configured_rate_scaling values")
    args = parser.parse_args()
    root = args.root
    params = load_params(root / "params.yaml")
    catalog = read_catalog(root / "reports" / "feature_catalog.csv")
    family_of = dict(zip(catalog["name"], catalog["family"], strict=True))
    families = [*FAMILIES, PROFILE_FAMILY]
    model = ChurnModel.load(root / "models" / "churn")
    labels = read_frame(root / "data" / "labels" / "labels.parquet")
    features = read_frame(root / "data" / "features" / "features.parquet")
    truth = pd.read_parquet(root / "data" / "simulated" / "truth" / "retention_truth.parquet")
    actions = read_frame(root / "data" / "validated" / "retention_actions.parquet")

    def explain(rows: pd.DataFrame) -> Explained:
        result = score_population(model, rows, params.score.reasons)
        doses = family_doses(result.contributions, actionable_families(catalog), families)
        return Explained(result.scores, doses)

    scoring_cutoff = features["cutoff"].max()
    logged, _ = attach_outcomes(actions, labels, list(params.target.plays), scoring_cutoff)
    keys = logged[["customer_id", "cutoff"]].drop_duplicates()
    explained_logged = explain(features.merge(keys, on=["customer_id", "cutoff"]))
    cutoffs = sorted(labels.loc[labels["label"].notna(), "cutoff"].unique())[-args.cutoffs:]
    populations = {cutoff: explain(features[features["cutoff"] == cutoff])
                   for cutoff in cutoffs}
    print(f"{'max_standard_error':>18} {'one_source_per':>14} {'scaling':>15} {'cutoff':>10} "
          f"{'vs top prob':>11} {'vs top RaR':>10} {'EV saved':>10} {'RaR saved':>10} "
          "logged rates used (addressed segments)")
    runs = [(limit, scope, scaling) for limit in args.limits for scope in args.sources
            for scaling in args.scalings]
    for limit, scope, scaling in runs:
        config = params.target.model_copy(update={
            "max_standard_error": limit, "one_source_per": scope,
            "configured_rate_scaling": scaling, "tlearner_bootstrap_rounds": 0})
        effects, _ = learn_effects(logged, explained_logged, family_of, config)
        # Logged rates that rank the list (a play is offered only where it addresses).
        used = sum(e.source == SOURCE_LOGGED and e.segment in ADDRESSED_SEGMENTS
                   for e in effects)
        ratios, prob_ratios = [], []
        for cutoff, population in populations.items():
            _, chosen = plan_contacts(population.scores, population.doses, family_of,
                                      effects, config)
            result = compare_policies_on_truth(
                chosen, truth[truth["month_start"] == cutoff], config)
            saved = {p["policy"]: p["true_saved_revenue"] for p in result["policies"]}
            ratios.append(result["ratio_vs_top_revenue_at_risk"])
            prob_ratios.append(result["ratio_vs_top_probability"])
            print(f"{limit:>18} {scope:>14} {scaling:>15} "
                  f"{pd.Timestamp(cutoff).date()!s:>10} "
                  f"{result['ratio_vs_top_probability']:>11.2f} "
                  f"{result['ratio_vs_top_revenue_at_risk']:>10.2f} "
                  f"{saved['expected_value']:>10,.0f} "
                  f"{saved['top_revenue_at_risk']:>10,.0f} {used}", flush=True)
        print(f"{limit:>18} {scope:>14} {scaling:>15} {'mean':>10} "
              f"{np.mean(prob_ratios):>11.2f} {np.mean(ratios):>10.2f}", flush=True)

if __name__ == "__main__":
    main()
