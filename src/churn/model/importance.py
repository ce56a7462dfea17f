"""Global importance: mean |SHAP| by feature, family and phase, and the explained sample."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from churn.domain.families import FAMILIES, PHASES
from churn.errors import EmptyPopulationError
from churn.model.reasons import build_feature_specs

logger = logging.getLogger(__name__)


#: Seed of the customer sample, fixed so that reruns draw the same plots.
SAMPLE_SEED = 0


@dataclass(frozen=True)
class GlobalImportance:
    """Mean ``|SHAP|`` at three levels, each sorted by decreasing importance.

    Attributes:
        features: ``feature``, ``family``, ``phase``, ``reason_eligible``, ``mean_abs_shap``,
            ``share`` (of every feature's total).
        families: ``family``, ``mean_abs_shap``, ``share`` (the five families always present),
            over reason-eligible features only: exposure and contract timing (catalog
            ``reason_eligible`` False) say when a customer can leave, not what drives risk.
        phases: ``phase``, ``mean_abs_shap``, ``share`` (pre_sale and post_sale always present),
            eligible features only as ``families``.
    """

    features: pd.DataFrame
    families: pd.DataFrame
    phases: pd.DataFrame


def _grouped(features: pd.DataFrame, column: str, required: tuple[str, ...]) -> pd.DataFrame:
    sums = features.groupby(column, sort=False)["mean_abs_shap"].sum()
    groups = list(required) + sorted(set(sums.index) - set(required))
    out = sums.reindex(groups, fill_value=0.0).rename_axis(column).reset_index()
    total = out["mean_abs_shap"].sum()
    out["share"] = out["mean_abs_shap"] / total if total > 0 else 0.0
    return out.sort_values("mean_abs_shap", ascending=False, kind="stable").reset_index(drop=True)


def compute_global_importance(
    contributions: pd.DataFrame, catalog: pd.DataFrame
) -> GlobalImportance:
    """Aggregate per-row contributions into feature, family and phase importance.

    Args:
        contributions: One column per feature (catalog names), one row per customer, SHAP
            values in log-odds (no base value column).
        catalog: Feature catalog (name, family, phase, ...). Features missing from it are
            reported with family and phase ``unknown``.

    Returns:
        The three importance tables.
    """
    names = [str(c) for c in contributions.columns]
    specs = build_feature_specs(catalog, names, {})
    mean_abs = np.abs(contributions.to_numpy(dtype=np.float64)).mean(axis=0)
    if not len(contributions):
        mean_abs = np.zeros(len(names))
    features = pd.DataFrame(
        {
            "feature": names,
            "family": [specs[n].family for n in names],
            "phase": [specs[n].phase for n in names],
            "reason_eligible": [bool(specs[n].reason_eligible) for n in names],
            "mean_abs_shap": mean_abs,
        }
    )
    total = features["mean_abs_shap"].sum()
    features["share"] = features["mean_abs_shap"] / total if total > 0 else 0.0
    features = features.sort_values("mean_abs_shap", ascending=False, kind="stable")
    return GlobalImportance(
        features=features.reset_index(drop=True),
        families=_grouped(features[features["reason_eligible"]], "family", FAMILIES),
        phases=_grouped(features[features["reason_eligible"]], "phase", PHASES),
    )


def select_explain_sample(features: pd.DataFrame, sample_rows: int, seed: int) -> pd.DataFrame:
    """Return up to ``sample_rows`` random rows of the most recent cutoff (labeled or not).

    The latest cutoff is the population analysts act on; one cutoff keeps each customer once.

    Raises:
        EmptyPopulationError: If the frame has no rows.
    """
    if features.empty:
        raise EmptyPopulationError("the feature table is empty: nothing to explain")
    if "cutoff" in features.columns:
        features = features[features["cutoff"] == features["cutoff"].max()]
    if len(features) <= sample_rows:
        return features
    return features.sample(n=sample_rows, random_state=seed).sort_index()
