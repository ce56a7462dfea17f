"""Measure rare-level pooling and reason agreement on the pipeline's data (issue 13).

Refits the model of ``churn train`` for each ``train.min_category_count`` given, on the
features, catalog and simulator truth of a finished ``dvc repro``, and prints for the test
slice: ROC AUC and PR AUC, the share of reason slots (and first reasons) naming ``campaign``
(all test rows and the riskiest decile), and the reason agreement of
:mod:`churn.model.explanation_check`. Nothing is written or logged to MLflow.

Run from the repository root after ``dvc repro``::

    python benchmarks/reasons_pooling.py 1 100 500
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from churn.config import load_params
from churn.domain.catalog import read_catalog
from churn.model.explanation_check import compute_reason_agreement
from churn.model.fit import train_churn_models
from churn.model.metrics import compute_pr_auc, compute_roc_auc
from churn.model.scoring import score_frame

COLUMN = "campaign_stem"
REASONS = 3


def main(counts: list[int]) -> None:
    """Print one line of measurements per minimum count."""
    params = load_params("params.yaml")
    features = pd.read_parquet("data/features/features.parquet")
    catalog = read_catalog("reports/feature_catalog.csv")
    truth = pd.read_parquet("data/simulated/truth/customer_months.parquet")
    for count in counts:
        started = time.perf_counter()
        run = params.model_copy(
            update={"train": params.train.model_copy(update={"min_category_count": count})}
        )
        result = train_churn_models(features, catalog, run)
        model = result.model
        keys = result.test_predictions[["customer_id", "cutoff"]]
        test = features.merge(keys, on=["customer_id", "cutoff"], validate="one_to_one")
        labels = test["label"].to_numpy(dtype=int)
        probability = model.predict_proba(test)
        scores = score_frame(model, test, REASONS)
        slots = scores[[f"reason_{i}_feature" for i in range(1, REASONS + 1)]]
        top = scores["churn_probability"].rank(ascending=False, method="first") <= np.ceil(
            0.1 * len(scores)
        )
        agreement = compute_reason_agreement(model, test, truth, 0.1)
        levels = model.categorical_levels.get(COLUMN, ())
        print(
            f"min_category_count={count}: {len(levels)} {COLUMN} levels, "
            f"ROC AUC {compute_roc_auc(labels, probability):.4f}, "
            f"PR AUC {compute_pr_auc(labels, probability):.4f}, "
            f"reason slots naming {COLUMN} {(slots == COLUMN).to_numpy().mean():.2%} "
            f"(first reasons {(slots.iloc[:, 0] == COLUMN).mean():.2%}; top decile slots "
            f"{(slots[top] == COLUMN).to_numpy().mean():.2%}, first "
            f"{(slots.loc[top].iloc[:, 0] == COLUMN).mean():.2%}), "
            f"agreement first {agreement.get('first_reason_family_agreement', np.nan):.3f} "
            f"top family {agreement.get('top_family_agreement', np.nan):.3f} "
            f"chance {agreement.get('chance_agreement', np.nan):.3f} "
            f"majority {agreement.get('majority_family_baseline', np.nan):.3f} "
            f"[{time.perf_counter() - started:.0f} s]",
            flush=True,
        )


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [1, 100, 500])
