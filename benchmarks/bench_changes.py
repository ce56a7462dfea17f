"""Benchmark: the cost of worded what-changed sentences in ``compare_scores``.

Not part of the test suite. Usage::

    python benchmarks/bench_changes.py [--scores /work/main/data/scores/scores.parquet]

Reads a real scores file with its contributions and features sidecars (a default ``dvc repro``
run), makes a "previous" run from it by shifting a third of the customers' usage and support
counts and their contributions (a made-up change, enough to time the work), and times
``compare_scores`` without feature values (contribution ranking only, the behaviour before) and
with them (an unchanged value skipped, a sentence per moving feature), alternating the two
several times so that a busy machine slows both alike. Prints the median seconds of each, their
ratio, and a few sentences.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from churn.domain.catalog import ineligible_features
from churn.layout import CONTRIBUTIONS_SUFFIX, FEATURES_SUFFIX, sidecar_path
from churn.model.artifact import ChurnModel
from churn.model.changes import compare_scores
from churn.model.reasons import build_feature_specs


def make_previous(
    scores: pd.DataFrame, contributions: pd.DataFrame, features: pd.DataFrame, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Return a made-up earlier run: a third of the customers had other counts and scores."""
    rng = np.random.default_rng(seed)
    moved = rng.random(len(features)) < 1 / 3
    counts = [c for c in features.columns if c.startswith(("usage_", "support_"))][:12]
    before_features = features.copy()
    for column in counts:
        shift = rng.integers(-3, 4, len(features)).astype("float64")
        before_features.loc[moved, column] = (features.loc[moved, column] + shift[moved]).clip(0)
    before_contributions = contributions.copy()
    for column in counts:
        noise = rng.normal(0, 0.2, len(contributions)).astype("float32")
        before_contributions.loc[moved, column] = contributions.loc[moved, column] + noise[moved]
    before_scores = scores.assign(
        churn_probability=(scores["churn_probability"] + rng.normal(0, 0.03, len(scores)))
        .clip(0, 1)
        .to_numpy()
    )
    return before_scores, before_contributions, before_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scores", default="/work/main/data/scores/scores.parquet")
    parser.add_argument("--model", default="/work/main/models/churn")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    path = Path(args.scores)
    scores = pd.read_parquet(path)
    contributions = pd.read_parquet(sidecar_path(path, CONTRIBUTIONS_SUFFIX))
    features = pd.read_parquet(sidecar_path(path, FEATURES_SUFFIX))
    model = ChurnModel.load(args.model)
    specs = build_feature_specs(model.catalog, model.feature_names, model.categorical_levels)
    ineligible = ineligible_features(model.catalog)
    before = make_previous(scores, contributions, features, seed=0)
    timings: dict[str, list[float]] = {"contributions only": [], "with sentences": []}
    result = None
    for _ in range(args.repeats):
        for name in timings:
            started = time.perf_counter()
            kwargs = (
                {"current_features": features, "previous_features": before[2], "specs": specs}
                if name == "with sentences"
                else {}
            )
            out = compare_scores(
                scores, before[0], contributions, before[1], 3, ineligible, **kwargs
            )
            timings[name].append(time.perf_counter() - started)
            if name == "with sentences":
                result = out
    medians = {name: statistics.median(values) for name, values in timings.items()}
    for name, seconds in medians.items():
        print(f"{name}: median {seconds:.2f} s over {args.repeats} runs, {len(scores):,} customers")
    print(f"ratio with/without: {medians['with sentences'] / medians['contributions only']:.2f}")
    texts = result["moved_1_text"].dropna()
    print(f"rows with a first sentence: {len(texts):,}; examples:")
    for text in texts.drop_duplicates().head(5):
        print(f"  {text}")


if __name__ == "__main__":
    main()
