"""Benchmark scoring: probabilities + exact SHAP reasons for many customers.

Trains a LightGBM ChurnModel shaped like the default ``train`` section (max_depth 5, 15 leaves,
a few hundred trees) on synthetic data with ~70 features, then times on ``--rows`` customers:

* :func:`churn.model.scoring.score_frame` end to end (contributions, probabilities, reasons,
  sentences, risk shares), with the default kernel (LightGBM ``pred_contrib``) and, if
  importable, the faster kernel of :mod:`churn.model.treeshap`;
* ``model.contributions`` against ``shap.TreeExplainer`` on the same rows (a subsample for
  TreeExplainer, ``--shap-rows``), with the speed ratio and the max abs difference.

Run: ``.venv/bin/python benchmarks/bench_score.py --rows 1000000``. Not part of the tests.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import lightgbm as lgb
import numpy as np
import pandas as pd

from churn import ChurnModel, TrainConfig, score_frame
from churn.model.artifact import Calibrator, learn_categorical_levels, prepare_features

FAMILIES = ("acquisition", "billing", "usage", "support", "engagement")
UNITS = ("tickets", "days", "events", "currency/month", "points", "fraction", "ratio", "flag")


def make_catalog(n_numeric: int, n_categorical: int) -> pd.DataFrame:
    """Return a catalog of synthetic features spread over the five families."""
    rows = []
    for i in range(n_numeric):
        family = FAMILIES[i % len(FAMILIES)]
        unit = UNITS[i % len(UNITS)]
        phase = "pre_sale" if family == "acquisition" else "post_sale"
        rows.append((f"{family}_x{i:02d}", family, phase, "numeric", unit, f"{family} measure {i}"))
    for i in range(n_categorical):
        family = FAMILIES[i % len(FAMILIES)]
        phase = "pre_sale" if family == "acquisition" else "post_sale"
        rows.append((f"{family}_c{i}", family, phase, "categorical", "", f"{family} category {i}"))
    return pd.DataFrame(rows, columns=["name", "family", "phase", "kind", "unit", "description"])


def make_frame(catalog: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """Return a synthetic feature frame with a real signal in a third of the features."""
    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {
        "customer_id": pd.array([f"c{i:08d}" for i in range(rows)], dtype="str"),
        "cutoff": pd.Series(pd.Timestamp("2025-06-01", tz="UTC"), index=range(rows)),
    }
    logit = np.full(rows, -2.5)
    for j, spec in enumerate(catalog.itertuples()):
        if spec.kind == "categorical":
            levels = np.array([f"level_{k}" for k in range(4 + 3 * j % 12)])
            codes = rng.integers(0, len(levels), rows)
            columns[spec.name] = pd.array(levels[codes], dtype="str")
            logit += 0.15 * (codes % 3 == 0)
            continue
        if spec.unit in ("tickets", "events"):
            values = rng.poisson(1.5, rows).astype(float)
        elif spec.unit == "flag":
            values = (rng.random(rows) < 0.3).astype(float)
        else:
            values = rng.gamma(2.0, 10.0, rows)
        values[rng.random(rows) < 0.05] = np.nan
        if j % 3 == 0:
            scaled = np.nan_to_num((values - np.nanmean(values)) / (np.nanstd(values) + 1e-9))
            logit += 0.25 * (1 if j % 2 else -1) * scaled
        columns[spec.name] = values
    frame = pd.DataFrame(columns)
    frame["label"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


def train_model(catalog: pd.DataFrame, train_rows: int, trees: int) -> ChurnModel:
    """Fit a ChurnModel with the default train knobs (fixed number of trees, no early stop)."""
    cfg = TrainConfig()
    names = list(catalog["name"])
    categorical = list(catalog.loc[catalog["kind"] == "categorical", "name"])
    frame = make_frame(catalog, train_rows, seed=1)
    levels = learn_categorical_levels(frame, categorical)
    split = int(train_rows * 0.8)
    matrix, labels = prepare_features(frame, tuple(names), levels), frame["label"].to_numpy()
    params = {
        "objective": "binary",
        "learning_rate": cfg.learning_rate,
        "num_leaves": cfg.num_leaves,
        "max_depth": cfg.max_depth,
        "min_data_in_leaf": cfg.min_child_samples,
        "bagging_fraction": cfg.subsample,
        "bagging_freq": 1,
        "feature_fraction": cfg.colsample_bytree,
        "lambda_l2": cfg.reg_lambda,
        "seed": cfg.seed,
        "verbose": -1,
    }
    dataset = lgb.Dataset(
        matrix[:split],
        labels[:split],
        feature_name=names,
        categorical_feature=[names.index(c) for c in categorical],
    )
    booster = lgb.train(params, dataset, num_boost_round=trees)
    return ChurnModel(
        booster=booster,
        feature_names=tuple(names),
        categorical_levels=levels,
        calibrator=Calibrator.fit(
            booster.predict(matrix[split:], raw_score=True), labels[split:], "isotonic"
        ),
        catalog=catalog,
        typical_values={
            n: frame[n].mode().iloc[0] if n in categorical else float(frame[n].median())
            for n in names
        },
    )


def timed(func, *args, **kwargs):
    """Return ``(result, wall seconds)``."""
    start = time.perf_counter()
    result = func(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    """Run the benchmark and print the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="customers to score")
    parser.add_argument("--train-rows", type=int, default=200_000)
    parser.add_argument("--trees", type=int, default=400)
    parser.add_argument("--numeric", type=int, default=64)
    parser.add_argument("--categorical", type=int, default=6)
    parser.add_argument("--shap-rows", type=int, default=20_000, help="TreeExplainer subsample")
    parser.add_argument("--batch-rows", type=int, default=200_000)
    parser.add_argument(
        "--skip-reference",
        action="store_true",
        help="skip scoring every row with LightGBM pred_contrib (slow: ~1,300 rows/s)",
    )
    args = parser.parse_args()

    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f}")
    catalog = make_catalog(args.numeric, args.categorical)
    model, seconds = timed(train_model, catalog, args.train_rows, args.trees)
    print(
        f"trained {model.booster.num_trees()} trees on {args.train_rows:,} rows x "
        f"{len(catalog)} features in {seconds:.1f}s"
    )
    frame = make_frame(catalog, args.rows, seed=2).drop(columns=["label"])

    kernel_seconds = [0.0]

    def reference_kernel(batch: pd.DataFrame):
        result, spent = timed(model.contributions_reference, batch)
        kernel_seconds[0] += spent
        return result

    scores = None
    if not args.skip_reference:
        scores, seconds = timed(
            score_frame,
            model,
            frame,
            3,
            batch_rows=args.batch_rows,
            contributions_fn=reference_kernel,
        )
        print(
            f"score_frame (LightGBM pred_contrib): {len(scores):,} rows in {seconds:.1f}s = "
            f"{len(scores) / seconds:,.0f} rows/s; contributions {kernel_seconds[0]:.1f}s, "
            f"everything else (predict, reasons, text, shares) {seconds - kernel_seconds[0]:.1f}s"
        )
        print("example:", scores["reason_1_text"].iloc[0])

    try:
        from churn.model.treeshap import compute_contributions
    except ImportError:
        compute_contributions = None
    if compute_contributions is not None:
        # Build the tables and compile the kernel before timing.
        compute_contributions(model.booster, model.prepare(frame.head(1_000)))
        fast, seconds = timed(
            score_frame,
            model,
            frame,
            3,
            batch_rows=args.batch_rows,
            contributions_fn=lambda batch: compute_contributions(
                model.booster, model.prepare(batch)
            ),
        )
        print(
            "score_frame (churn.model.treeshap, the default): "
            f"{len(fast):,} rows in {seconds:.1f}s = "
            f"{len(fast) / seconds:,.0f} rows/s"
        )
        if scores is not None:
            same = np.abs(fast["churn_probability"] - scores["churn_probability"]).max()
            print(
                f"max prob diff {same:.1e}; "
                f"same reasons: {fast['reason_1_feature'].equals(scores['reason_1_feature'])}"
            )

    sample = frame.head(min(args.shap_rows, len(frame)))
    (ours, _), ours_seconds = timed(model.contributions, sample)  # churn.model.treeshap
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shap's import-time and LightGBM-output notices
        import shap

        explainer = shap.TreeExplainer(model.booster)
        theirs, theirs_seconds = timed(explainer.shap_values, model.prepare(sample))
    rate_ours, rate_theirs = len(sample) / ours_seconds, len(sample) / theirs_seconds
    print(
        f"{len(sample):,} rows: model.contributions {rate_ours:,.0f} rows/s, "
        f"shap.TreeExplainer {rate_theirs:,.0f} rows/s, ratio {rate_ours / rate_theirs:.2f}x, "
        f"max abs diff {np.abs(np.asarray(theirs) - ours).max():.2e}"
    )


if __name__ == "__main__":
    main()
