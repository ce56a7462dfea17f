"""Measure the survival head against the per-horizon classifier on a pipeline run's data.

Reads the features, labels (with the churn time), catalog and, when present, the simulator's
truth of a ``dvc repro`` run, fits both model forms on one split purged with the longest horizon
(:func:`churn.model.horizon_evaluation.compare_model_forms`) and writes the metrics per horizon.

Run from the project root after ``dvc repro``:
``.venv/bin/python benchmarks/bench_survival.py --out reports/survival_benchmark.json``.
Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import pandas as pd

from churn.config import load_params
from churn.model.horizon_evaluation import attach_churn_times, compare_model_forms
from churn.model.metrics import make_jsonable


def main() -> None:
    """Parse the arguments, compare the model forms and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--features", default="data/features/features.parquet")
    parser.add_argument("--labels", default="data/labels/labels.parquet")
    parser.add_argument("--catalog", default="reports/feature_catalog.csv")
    parser.add_argument("--truth", default="data/simulated/truth/customer_months.parquet")
    parser.add_argument("--out", default="reports/survival_benchmark.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    params = load_params(args.params)
    started = time.perf_counter()
    frame = attach_churn_times(pd.read_parquet(args.features), pd.read_parquet(args.labels))
    truth = pd.read_parquet(args.truth) if Path(args.truth).exists() else None
    result = compare_model_forms(frame, pd.read_csv(args.catalog), params, truth)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["load_average"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(make_jsonable(result), indent=2) + "\n")
    print(
        json.dumps(make_jsonable({k: result[k] for k in ("hazard", "classifier")}), indent=1)[:6000]
    )


if __name__ == "__main__":
    main()
