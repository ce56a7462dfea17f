"""Benchmark exact TreeSHAP kernels: FastTreeShap vs LightGBM pred_contrib vs shap.TreeExplainer.

Trains LightGBM models on synthetic churn-like data (70 features: zero-heavy counts, flags,
skewed amounts, 5% missing, 5 categorical features with 4..40 levels) and times:

* :class:`churn.model.treeshap.FastTreeShap` on ``--rows`` rows (in ``--batch-rows`` batches, like a
  scoring run), after a separate warm-up call that pays numba's one-off compilation;
* ``booster.predict(X, pred_contrib=True)`` and ``shap.TreeExplainer(booster).shap_values(X)``
  on a subsample (``--slow-rows``; they are an order of magnitude slower), extrapolated to
  ``--rows``;
* the max abs difference of FastTreeShap against both on the subsample, and the additivity
  error (sum of contributions + base vs the raw score).

Models: ``default`` mirrors params.yaml's train section (max_depth 5, 15 leaves, learning rate
0.05, min_child_samples 100, 0.8 row/column subsampling) with ``--trees`` trees; ``deep`` is
the same with max_depth 8 and 63 leaves, to show how the kernels scale with depth.

Wall time depends on what else runs on the machine, so the table also gives CPU milliseconds
per row (all threads of the process), a 1M-row estimate for idle cores (CPU time / cores,
assuming the kernels scale to all cores) and the load average. "max|diff|" is against
FastTreeShap on the same rows. Run:
``.venv/bin/python benchmarks/bench_treeshap.py --rows 1000000``. Not part of the tests.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import lightgbm as lgb
import numpy as np

from churn.model.treeshap import FastTreeShap

N_NUMERIC = 65
CATEGORICAL_LEVELS = (4, 6, 12, 25, 40)
T = TypeVar("T")
CONFIGS = {
    "default": {"max_depth": 5, "num_leaves": 15},
    "deep": {"max_depth": 8, "num_leaves": 63},
}


def make_data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return a synthetic ``(X, y)``: 65 numeric then 5 categorical (integer-coded) columns."""
    rng = np.random.default_rng(seed)
    n_features = N_NUMERIC + len(CATEGORICAL_LEVELS)
    X = np.empty((rows, n_features))
    logit = np.full(rows, -2.0)
    for j in range(N_NUMERIC):
        kind = j % 4
        if kind == 0:  # counts: zero-heavy
            values = rng.poisson(0.8, rows).astype(float)
        elif kind == 1:  # flags
            values = (rng.random(rows) < 0.3).astype(float)
        elif kind == 2:  # amounts
            values = rng.gamma(2.0, 10.0, rows)
        else:  # scores
            values = rng.normal(size=rows)
        values[rng.random(rows) < 0.05] = np.nan
        if j % 3 == 0:
            scaled = np.nan_to_num((values - np.nanmean(values)) / (np.nanstd(values) + 1e-9))
            logit += 0.3 * (1 if j % 2 else -1) * scaled
        X[:, j] = values
    for k, levels in enumerate(CATEGORICAL_LEVELS):
        codes = rng.integers(0, levels, rows).astype(float)
        effect = np.random.default_rng(k).normal(0, 0.4, levels)
        logit += effect[codes.astype(int)]
        codes[rng.random(rows) < 0.03] = np.nan  # unseen or missing levels
        X[:, N_NUMERIC + k] = codes
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def train(X: np.ndarray, y: np.ndarray, trees: int, **shape: int) -> lgb.Booster:
    """Train a booster with the default training parameters and the given tree shape."""
    params = {
        "objective": "binary",
        "learning_rate": 0.05,
        "min_data_in_leaf": 100,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "feature_fraction": 0.8,
        "lambda_l2": 1.0,
        # One training thread: on a shared machine two OpenMP threads can train 10x slower
        # (busy-waiting barriers), and training is not what is measured.
        "num_threads": 1,
        "seed": 7,
        "verbose": -1,
        **shape,
    }
    categorical = list(range(N_NUMERIC, X.shape[1]))
    return lgb.train(params, lgb.Dataset(X, y, categorical_feature=categorical), trees)


@dataclass
class Timing:
    """One kernel's measurement."""

    method: str
    rows: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.rows / self.wall


def timed(method: str, rows: int, fn: Callable[[], T]) -> tuple[Timing, T]:
    """Run ``fn()`` and return its wall and process CPU time (all threads) and result."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = fn()
    return Timing(method, rows, time.perf_counter() - wall0, time.process_time() - cpu0), result


def run_config(name: str, args: argparse.Namespace, X: np.ndarray, y_train: np.ndarray) -> None:
    """Train one model shape, time the kernels and print its table."""
    shape = CONFIGS[name]
    n_train = args.train_rows
    wall0 = time.perf_counter()
    booster = train(X[:n_train], y_train, args.trees, **shape)
    print(
        f"\n## {name}: max_depth {shape['max_depth']}, {shape['num_leaves']} leaves, "
        f"{booster.num_trees()} trees, {booster.num_feature()} features "
        f"(trained on {n_train:,} rows in {time.perf_counter() - wall0:.0f}s)"
    )
    rows = args.rows if name == "default" else min(args.rows, args.deep_rows)
    slow_rows = args.slow_rows if name == "default" else max(500, args.slow_rows // 5)
    data = X[n_train : n_train + rows]
    sample = data[:slow_rows]

    setup, explainer = timed("setup", 0, lambda: FastTreeShap(booster))
    assert explainer.backend == "numba", explainer.fallback_reason
    warm, _ = timed("warm-up", 1000, lambda: explainer.shap_values(data[:1000]))
    print(
        f"FastTreeShap setup {setup.wall:.2f}s (tables {explainer.table_bytes / 2**20:.1f} MiB); "
        f"first call incl. numba compile {warm.wall:.1f}s"
    )

    def fast_all() -> None:
        for start in range(0, rows, args.batch_rows):
            explainer.shap_values(data[start : start + args.batch_rows])

    fast, _ = timed("FastTreeShap", rows, fast_all)
    fast_head = explainer.shap_values(sample)
    contrib, reference = timed(
        "LightGBM pred_contrib", slow_rows, lambda: booster.predict(sample, pred_contrib=True)
    )
    timings = [fast, contrib]
    diffs = {
        "FastTreeShap": 0.0,
        "LightGBM pred_contrib": float(np.abs(fast_head - reference).max()),
    }
    if not args.skip_shap:
        import shap

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # shap's notice about its LightGBM output format
            tree_explainer = shap.TreeExplainer(booster)
            shap_timing, shap_values = timed(
                "shap.TreeExplainer", slow_rows, lambda: tree_explainer.shap_values(sample)
            )
        timings.append(shap_timing)
        diffs["shap.TreeExplainer"] = float(
            np.abs(fast_head[:, :-1] - np.asarray(shap_values)).max()
        )
    additivity = float(
        np.abs(fast_head.sum(axis=1) - booster.predict(sample, raw_score=True)).max()
    )

    n_cores = os.cpu_count() or 1
    header = (
        f"{'method':<22} {'rows timed':>10} {'wall s':>7} {'rows/s':>8} {'CPU ms/row':>10} "
        f"{'1M wall (measured)':>18} {'1M idle (CPU/' + str(n_cores) + ')':>15} "
        f"{'speedup wall':>12} {'speedup CPU':>11} {'max|diff|':>9}"
    )
    print(header)
    print("-" * len(header))
    for timing in timings:
        cpu_per_row = timing.cpu / timing.rows
        print(
            f"{timing.method:<22} {timing.rows:>10,} {timing.wall:>7.1f} {timing.rate:>8,.0f} "
            f"{1000 * cpu_per_row:>10.3f} {1_000_000 / timing.rate:>17.0f}s "
            f"{1_000_000 * cpu_per_row / n_cores:>14.0f}s "
            f"{timing.rate / contrib.rate:>11.1f}x "
            f"{(contrib.cpu / contrib.rows) / cpu_per_row:>10.1f}x "
            f"{diffs[timing.method]:>9.1e}"
        )
    print(f"additivity: max |sum(contributions) + base - raw score| = {additivity:.1e}")


def main() -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows for FastTreeShap")
    parser.add_argument(
        "--slow-rows",
        type=int,
        default=20_000,
        help="subsample for pred_contrib and shap.TreeExplainer (deep model: a fifth)",
    )
    parser.add_argument(
        "--deep-rows", type=int, default=200_000, help="FastTreeShap rows for the deep model"
    )
    parser.add_argument("--batch-rows", type=int, default=250_000)
    parser.add_argument("--train-rows", type=int, default=50_000)
    parser.add_argument("--trees", type=int, default=400)
    parser.add_argument("--configs", default="default,deep")
    parser.add_argument("--skip-shap", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numba

    print(
        f"cores {os.cpu_count()}, numba {numba.__version__} with {numba.get_num_threads()} "
        f"threads, lightgbm {lgb.__version__}; load average at start "
        f"{os.getloadavg()[0]:.1f}"
    )
    total = args.train_rows + max(args.rows, args.deep_rows)
    X, y = make_data(total, args.seed)
    for name in args.configs.split(","):
        run_config(name, args, X, y[: args.train_rows])
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
