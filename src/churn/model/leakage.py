"""Label-leakage guards of training: one feature too predictive alone, or a model too good to
be true, stops the run with the features to check (and, for contract and timing features, the
label settings that usually cause it).

Pure functions of metrics, feature AUCs and importances; :func:`churn.model.fit.train_churn_models`
calls them after the fit.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import pandas as pd

from churn.config import TrainConfig
from churn.errors import ModelError

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
