"""Shared fixtures: tiny synthetic feature frames and a tiny real ChurnModel.

Everything is made here, in memory, from a seed: tests need no network and no pipeline run.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd

from churn.config import Params, parse_params
from churn.model.artifact import (
    Calibrator,
    ChurnModel,
    learn_categorical_levels,
    prepare_features,
)

TINY_CATALOG = pd.DataFrame(
    [
        (
            "support_tickets_last_30d",
            "support",
            "post_sale",
            "numeric",
            "tickets",
            "support tickets opened in the last 30 days",
        ),
        (
            "active_days_last_30d",
            "usage",
            "post_sale",
            "numeric",
            "days",
            "days with product activity in the last 30 days",
        ),
        (
            "mrr_at_cutoff",
            "billing",
            "post_sale",
            "numeric",
            "currency/month",
            "monthly recurring revenue at the cutoff",
        ),
        ("last_nps_score", "engagement", "post_sale", "numeric", "points", "last NPS score"),
        (
            "docs_and_help_views_before_conversion",
            "acquisition",
            "pre_sale",
            "numeric",
            "views",
            "docs and help-center views before buying",
        ),
        (
            "acquisition_channel",
            "acquisition",
            "pre_sale",
            "categorical",
            "",
            "acquisition channel",
        ),
        ("plan", "billing", "post_sale", "categorical", "", "plan"),
    ],
    columns=["name", "family", "phase", "kind", "unit", "description"],
)
CHANNELS = ("organic_search", "paid_search", "referral", "partner")
PLANS = ("starter", "pro", "business")


def make_feature_frame(n_customers: int = 400, n_cutoffs: int = 4, seed: int = 0) -> pd.DataFrame:
    """Return a synthetic features frame (key, label, catalog features) with a real signal.

    The label depends on support tickets (up), active days (down), NPS (down) and channel, so
    directional tests have something true to find.
    """
    rng = np.random.default_rng(seed)
    cutoffs = pd.date_range("2025-01-01", periods=n_cutoffs, freq="MS", tz="UTC")
    n = n_customers * n_cutoffs
    frame = pd.DataFrame(
        {
            "customer_id": np.tile([f"c{i:05d}" for i in range(n_customers)], n_cutoffs),
            "cutoff": np.repeat(cutoffs.to_numpy(), n_customers),
        }
    )
    frame["cutoff"] = pd.to_datetime(frame["cutoff"], utc=True).astype("datetime64[us, UTC]")
    tickets = rng.poisson(0.7, n).astype(float)
    active = rng.integers(0, 31, n).astype(float)
    nps = rng.integers(0, 11, n).astype(float)
    nps[rng.random(n) < 0.3] = np.nan
    channel = rng.choice(CHANNELS, n)
    logit = (
        -2.5
        + 0.8 * tickets
        - 0.08 * active
        - 0.15 * np.nan_to_num(nps - 7)
        + 0.7 * (channel == "paid_search")
    )
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int8")
    frame["label"] = pd.array(label, dtype="Int8")
    frame["support_tickets_last_30d"] = tickets
    frame["active_days_last_30d"] = active
    frame["mrr_at_cutoff"] = rng.choice([49.0, 199.0, 799.0], n)
    frame["last_nps_score"] = nps
    frame["docs_and_help_views_before_conversion"] = rng.poisson(2, n).astype(float)
    frame["acquisition_channel"] = pd.array(channel, dtype="str")
    frame["plan"] = pd.array(rng.choice(PLANS, n), dtype="str")
    return frame


def fit_tiny_model(frame: pd.DataFrame, seed: int = 0) -> ChurnModel:
    """Fit a small real LightGBM ChurnModel on ``frame`` (no MLflow, no disk)."""
    names = list(TINY_CATALOG["name"])
    categorical = list(TINY_CATALOG.loc[TINY_CATALOG["kind"] == "categorical", "name"])
    levels = learn_categorical_levels(frame, categorical)
    matrix = prepare_features(frame, tuple(names), levels)
    labels = frame["label"].to_numpy(dtype=int)
    dataset = lgb.Dataset(
        matrix,
        labels,
        feature_name=names,
        categorical_feature=[names.index(c) for c in categorical],
        free_raw_data=False,
    )
    booster = lgb.train(
        {
            "objective": "binary",
            "num_leaves": 7,
            "max_depth": 3,
            "learning_rate": 0.1,
            "min_data_in_leaf": 20,
            "verbose": -1,
            "seed": seed,
            "num_threads": 1,
        },
        dataset,
        num_boost_round=40,
    )
    return ChurnModel(
        booster=booster,
        feature_names=tuple(names),
        categorical_levels=levels,
        calibrator=Calibrator.fit(booster.predict(matrix, raw_score=True), labels, "isotonic"),
        catalog=TINY_CATALOG,
        typical_values={
            name: (frame[name].mode().iloc[0] if name in levels else float(frame[name].median()))
            for name in names
        },
    )




def make_backtest_params(evaluate: dict[str, object] | None = None, **train: object) -> Params:
    """Params for fitting and backtesting on :func:`make_feature_frame` in a second or two.

    A 20-day horizon and 5-day grace suit its monthly cutoffs; ``train`` overrides the small,
    one-thread LightGBM settings and ``evaluate`` the evaluate section (3 backtest cutoffs).
    """
    return parse_params(
        {
            "label": {"horizon_days": 20, "grace_days": 5},
            "train": {"min_child_samples": 20, "n_estimators": 60, "num_threads": 1, **train},
            "evaluate": {"backtest_cutoffs": 3, **(evaluate or {})},
        }
    )
