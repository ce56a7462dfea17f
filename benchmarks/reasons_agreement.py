"""Measure the reason-agreement options of issue 13 item 5 on the pipeline's data.

For each ``train.interaction_groups`` given (``none``, ``family``) the model of ``churn train``
is refitted on the features, catalog and simulator truth of a finished ``dvc repro``; the test
slice's ROC AUC, PR AUC and expected calibration error are printed with the reason agreement of
:mod:`churn.model.explanation_check` for both ``train.first_reason`` modes (the mode is read
from the model, so one fit serves both). Paired counts say on how many of the same examined
rows one mode is right and the other wrong. Nothing is written or logged to MLflow.

Run from the repository root (or pass the root) after ``dvc repro``::

    python benchmarks/reasons_agreement.py none family
    python benchmarks/reasons_agreement.py --root /path/to/checkout none
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from churn.config import load_params
from churn.domain.catalog import read_catalog
from churn.domain.families import FAMILIES
from churn.model.explanation_check import compute_reason_agreement
from churn.model.fit import train_churn_models
from churn.model.metrics import compute_ece, compute_pr_auc, compute_roc_auc
from churn.model.reason_reference import REFERENCE_KEY
from churn.model.reason_selection import select_reasons
from churn.model.reasons import build_feature_specs

TOP_FRACTION = 0.1
CALIBRATION_BINS = 10


def with_first_reason(model, mode: str):
    """Return the model with its stored first-reason mode replaced (same booster)."""
    reference = {**model.metadata[REFERENCE_KEY], "first_reason": mode}
    return dataclasses.replace(model, metadata={**model.metadata, REFERENCE_KEY: reference})


def count_paired_wins(model, test: pd.DataFrame, truth: pd.DataFrame) -> tuple[int, int]:
    """Rows of the examined decile where only ``family`` (resp. only ``feature``) is right."""
    columns = [f"logit_{family}" for family in FAMILIES]
    keyed = truth[["customer_id", "month_start", *columns]].rename(
        columns={"month_start": "cutoff"}
    )
    keyed[columns] = keyed[columns] - keyed.groupby("cutoff")[columns].transform("mean")
    rows = test.merge(keyed, on=["customer_id", "cutoff"], validate="one_to_one")
    probability = model.predict_proba(rows)
    top_n = int(np.ceil(TOP_FRACTION * len(rows)))
    top = rows.iloc[np.lexsort((rows["customer_id"].to_numpy(), -probability))[:top_n]]
    top = top.reset_index(drop=True)
    true = np.array(FAMILIES, dtype=object)[np.argmax(top[columns].to_numpy(float), axis=1)]
    contributions, _ = model.contributions(top)
    specs = build_feature_specs(model.catalog, model.feature_names, model.categorical_levels)
    families = np.array([spec.family for spec in specs.values()], dtype=object)
    right = {}
    for mode in ("feature", "family"):
        index, value = select_reasons(
            top, contributions, specs, model.typical_values, 1, first_reason=mode
        )
        named = np.where(np.isfinite(value[:, 0]), families[index[:, 0]], None)
        right[mode] = named == true
    return int((right["family"] & ~right["feature"]).sum()), int(
        (right["feature"] & ~right["family"]).sum()
    )


def main(root: Path, groups: list[str]) -> None:
    """Print one block of measurements per interaction-groups setting."""
    params = load_params(root / "params.yaml")
    features = pd.read_parquet(root / "data/features/features.parquet")
    catalog = read_catalog(root / "reports/feature_catalog.csv")
    truth = pd.read_parquet(root / "data/simulated/truth/customer_months.parquet")
    for setting in groups:
        started = time.perf_counter()
        run = params.model_copy(
            update={"train": params.train.model_copy(update={"interaction_groups": setting})}
        )
        result = train_churn_models(features, catalog, run)
        keys = result.test_predictions[["customer_id", "cutoff"]]
        test = features.merge(keys, on=["customer_id", "cutoff"], validate="one_to_one")
        labels = test["label"].to_numpy(dtype=int)
        probability = result.model.predict_proba(test)
        print(
            f"interaction_groups={setting}: ROC AUC {compute_roc_auc(labels, probability):.4f}, "
            f"PR AUC {compute_pr_auc(labels, probability):.4f}, "
            f"ECE {compute_ece(labels, probability, CALIBRATION_BINS):.4f}, "
            f"{result.model.metadata['best_iteration']} trees",
            flush=True,
        )
        for mode in ("feature", "family"):
            check = compute_reason_agreement(
                with_first_reason(result.model, mode), test, truth, TOP_FRACTION
            )
            print(
                f"  first_reason={mode}: first {check['first_reason_family_agreement']:.3f}, "
                f"top family {check['top_family_agreement']:.3f}, "
                f"chance {check['chance_agreement']:.3f}, "
                f"majority {check['majority_family_baseline']:.3f} "
                f"({check['majority_family']}), rows {check['rows']}",
                flush=True,
            )
        only_family, only_feature = count_paired_wins(result.model, test, truth)
        print(
            f"  paired: only family right {only_family}, only feature right {only_feature} "
            f"[{time.perf_counter() - started:.0f} s]",
            flush=True,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("groups", nargs="*", default=["none", "family"])
    arguments = parser.parse_args()
    main(arguments.root, arguments.groups)
