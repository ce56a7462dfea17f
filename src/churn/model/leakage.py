"""Label-leakage guards of training: one feature too predictive alone, or a model too good to
be true, stops the run with the features to check (and, for contract and timing features, the
label settings that usually cause it).

The single-feature screen (:func:`compute_single_feature_aucs`: each feature alone as a score
on the test rows) runs before the fit; the guards are pure functions of metrics, those AUCs and
importances, which :func:`churn.model.fit.train_churn_models` calls before and after the fit.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from churn.config import TrainConfig
from churn.domain.catalog import select_feature_catalog
from churn.errors import ModelError
from churn.model.metrics import compute_median, compute_roc_auc
from churn.model.split import label_array

logger = logging.getLogger(__name__)


CONTRACT_TIMING_FAMILIES = frozenset({"billing"})
"""Families whose features describe the contract and its timing (tenure, renewal, MRR)."""

_TIMING_NAME = re.compile(r"(tenure|renewal|contract|subscription|days_to|ended|end_date|expir)")

LABEL_CAUSE_HINT = (
    "contract and timing features leak when the labels are wrong rather than the feature: "
    "check that subscriptions.ended_at holds real end dates (not a bulk close or export date), "
    "that the data end is right (reports/labels.json, reports/ingest.json: stray rows, tables "
    "ending apart, ingest.data_end) and that label.horizon_days / label.grace_days match how "
    "renewals are recorded"
)


def is_contract_timing_feature(name: str, families: Mapping[str, str] | None = None) -> bool:
    """Whether a feature describes the contract or its timing (where bad labels show first).

    A feature is one when its catalog family is in :data:`CONTRACT_TIMING_FAMILIES` or its
    name mentions tenure, renewal, contract, subscription, days to, end or expiry.
    """
    family = (families or {}).get(name)
    return family in CONTRACT_TIMING_FAMILIES or bool(_TIMING_NAME.search(name))


def compute_single_feature_aucs(
    train: pd.DataFrame, test: pd.DataFrame, catalog: pd.DataFrame, threads: int = 1
) -> dict[str, float]:
    """Score each feature on its own on the test rows: ``max(auc, 1 - auc)``.

    Numbers are used as the score with missing values imputed by the train median; categories
    are scored by their level's churn rate in train (unseen or missing levels get the overall
    train rate). A feature this predictive on its own is almost always a copy of the label.

    Args:
        train: The training rows (medians and level rates).
        test: The rows scored.
        catalog: The feature catalog.
        threads: Features scored at once. A numeric feature's median and sort release the
            GIL: with two threads the step took 14.6 / 15.1 s instead of 26.8 / 21.9 s on a
            million customers' split (4.8M training rows, 2026-12-05, docs/benchmarks-log.md).
            The result does not depend on it.

    Returns:
        Feature -> its AUC (``max(auc, 1 - auc)``), in the catalog's order.
    """
    feature_catalog = select_feature_catalog(train, catalog)
    train_y, test_y = label_array(train), label_array(test)

    def score_feature(name: str, kind: str) -> float:
        if kind == "categorical":
            score = score_by_level_rate(train[name], train_y, test[name])
        else:
            values = pd.to_numeric(test[name], errors="coerce").astype(float)
            # The train median only fills missing test values: a column without any (two in
            # three of the simulator's numeric features) skips its partition of every
            # training row, the larger part of this step (scores unchanged).
            if values.isna().any():
                median = compute_median(pd.to_numeric(train[name], errors="coerce"))
                values = values.fillna(0.0 if pd.isna(median) else float(median))
            score = values.to_numpy()
        auc = compute_roc_auc(test_y, score)
        return max(auc, 1.0 - auc)

    names = list(feature_catalog["name"])
    kinds = list(feature_catalog["kind"])
    if threads <= 1 or len(names) < 2:
        return {name: score_feature(name, kind) for name, kind in zip(names, kinds, strict=True)}
    with ThreadPoolExecutor(max_workers=min(threads, len(names))) as pool:
        aucs = list(pool.map(score_feature, names, kinds))
    return dict(zip(names, aucs, strict=True))


def score_by_level_rate(
    train_values: pd.Series, train_labels: np.ndarray, test_values: pd.Series
) -> np.ndarray:
    """Score each test row by its level's churn rate among the training rows.

    A level missing in the test rows, or never seen (with a value) in the training rows, gets
    the overall training rate. Levels are told apart as pandas' ``factorize`` tells them
    apart, over both slices at once (so ``category`` columns with different categories, integer
    codes and text all work); the rates are count-weighted sums of 0/1 labels, exact in
    float64, so they equal a per-level mean to the last bit. On a million customers' split
    (6.5M training rows, six text features) this took 1.8 s where grouping Python objects
    took 8.2 s, with the same scores (2026-12-06, docs/benchmarks-log.md).

    Args:
        train_values: The feature in the training rows.
        train_labels: Their 0/1 labels.
        test_values: The feature in the scored rows.

    Returns:
        One float64 score per test row.
    """
    both = pd.concat([train_values, test_values], ignore_index=True)
    codes, _ = pd.factorize(both)  # -1 for a missing value
    train_codes, test_codes = codes[: len(train_values)], codes[len(train_values) :]
    n_levels = int(codes.max()) + 1 if len(codes) else 0
    valued = train_codes >= 0
    counts = np.bincount(train_codes[valued], minlength=n_levels)
    sums = np.bincount(
        train_codes[valued], weights=train_labels[valued].astype(np.float64), minlength=n_levels
    )
    score = np.full(len(test_codes), float(np.mean(train_labels)) if len(train_labels) else np.nan)
    known = test_codes >= 0
    known[known] = counts[test_codes[known]] > 0
    score[known] = sums[test_codes[known]] / counts[test_codes[known]]
    return score


def check_leakage(
    feature_aucs: dict[str, float], threshold: float, families: Mapping[str, str] | None = None
) -> None:
    """Fail when any single feature's test AUC exceeds ``threshold``, naming the features.

    Args:
        feature_aucs: Single-feature test AUC per feature.
        threshold: ``train.leakage_auc_threshold``.
        families: Feature -> catalog family; contract/timing features get a hint that the
            labels are the likely cause.

    Raises:
        ModelError: Listing each leaky feature with its AUC.
    """
    leaky = {name: auc for name, auc in feature_aucs.items() if auc > threshold}
    if leaky:
        listed = ", ".join(f"{name} (AUC {auc:.3f})" for name, auc in sorted(leaky.items()))
        hint = (
            f"; {LABEL_CAUSE_HINT}"
            if any(is_contract_timing_feature(name, families) for name in leaky)
            else ""
        )
        raise ModelError(
            f"label leakage suspected: on its own, {listed} predicts the test labels above "
            f"train.leakage_auc_threshold = {threshold}; a feature must use only data known "
            f"before the cutoff{hint}"
        )


def check_plausible_auc(
    metrics: Mapping[str, Mapping[str, float]],
    importance: pd.DataFrame,
    cfg: TrainConfig,
    top: int = 5,
) -> bool:
    """Fail when the model is too good to be true: validation or test ROC AUC above the ceiling.

    The single-feature guard (:func:`check_leakage`) misses leakage spread over features: a
    noisy copy of the label plus a pair of features whose combination (e.g. XOR) encodes it
    each look harmless alone. Real churn rarely ranks above ``train.max_plausible_auc``.

    Args:
        metrics: ``{"validation": {"roc_auc": ...}, "test": {...}}``.
        importance: :func:`build_importance` (most important first).
        cfg: Train section (``max_plausible_auc``, ``allow_high_auc``).
        top: How many of the strongest features the message names.

    Returns:
        Whether the ceiling was passed and accepted by ``train.allow_high_auc`` (``False`` when
        the AUCs are plausible).

    Raises:
        ModelError: Naming the AUCs and the strongest features by gain.
    """
    high = {
        part: float(metrics[part]["roc_auc"])
        for part in ("validation", "test")
        if part in metrics and float(metrics[part]["roc_auc"]) > cfg.max_plausible_auc
    }
    if not high:
        return False
    shown = ", ".join(f"{part} ROC AUC {auc:.3f}" for part, auc in high.items())
    strongest = describe_strongest_features(importance, top)
    if cfg.allow_high_auc:
        logger.warning(
            "%s above train.max_plausible_auc = %s accepted because train.allow_high_auc is "
            "true; strongest features: %s",
            shown,
            cfg.max_plausible_auc,
            strongest,
        )
        return True
    raise ModelError(
        f"label leakage suspected: the model is too good to be true ({shown}, above "
        f"train.max_plausible_auc = {cfg.max_plausible_auc}); strongest features by gain: "
        f"{strongest}. Leakage can hide in a combination of features that are harmless one "
        "by one; check these features use only data known before the cutoff. For a problem "
        "known to be this easy set train.allow_high_auc: true (recorded on the run)"
    )


def describe_strongest_features(importance: pd.DataFrame, top: int = 5) -> str:
    """Return the ``top`` features by gain as ``"name (share of gain)"``, comma-separated."""
    total = float(importance["gain"].sum()) or 1.0
    rows = importance.sort_values("gain", ascending=False).head(top)
    return ", ".join(
        f"{name} ({gain / total:.0%} of gain)"
        for name, gain in zip(rows["feature"], rows["gain"], strict=True)
    )
