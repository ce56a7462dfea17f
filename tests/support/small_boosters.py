"""Small LightGBM boosters and labels for the TreeSHAP and raw-score tests."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np


def train_small_booster(
    X: np.ndarray,
    y: np.ndarray,
    *,
    rounds: int = 25,
    categorical: list[int] | None = None,
    **params: object,
) -> lgb.Booster:
    """Train a small booster quickly (1 thread, no output)."""
    base = {
        "objective": "binary",
        "learning_rate": 0.3,
        "num_leaves": 15,
        "min_data_in_leaf": 5,
        "verbose": -1,
        "num_threads": 1,
        "seed": 0,
    }
    base.update(params)
    dataset = lgb.Dataset(X, y, categorical_feature=categorical or "auto")
    return lgb.train(base, dataset, num_boost_round=rounds)


def draw_labels(rng: np.random.Generator, signal: np.ndarray) -> np.ndarray:
    """Return 0/1 labels drawn with probability ``sigmoid(signal)``."""
    return (rng.random(signal.shape[0]) < 1 / (1 + np.exp(-signal))).astype(int)
