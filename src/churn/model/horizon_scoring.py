"""Scores at every horizon from the survival head, added beside ``churn_probability``.

Columns (when the model folder holds a survival head, :mod:`churn.model.survival`):

* ``churn_probability_<H>d`` for each of the head's horizons: calibrated probability of
  churning within ``H`` days, non-decreasing in ``H``, exactly 0 when the contract has no
  decision point inside ``H``;
* ``next_decision_date``: the next renewal or billing date (``cutoff + days_to_renewal``), NaT
  when unknown.

``churn_probability`` keeps its meaning, the calibrated probability within the primary horizon
``label.horizon_days``: with ``train.model_form: hazard`` it is the head's column at that
horizon (and ``expected_revenue_at_risk`` follows it), with ``classifier`` the classifier's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from churn.config import Params
from churn.model.hazard import find_next_decision_dates
from churn.model.horizons import probability_column
from churn.model.survival import SurvivalHead, has_survival_head

logger = logging.getLogger(__name__)

MONTHS_PER_YEAR = 12


def add_horizon_columns(
    scores: pd.DataFrame,
    features: pd.DataFrame,
    head: SurvivalHead,
    primary_horizon: int,
    *,
    head_is_primary: bool,
) -> pd.DataFrame:
    """Return ``scores`` with the horizon columns inserted after ``churn_probability``.

    Args:
        scores: :func:`churn.model.scoring.score_frame` output, same index as ``features``.
        features: The scored feature rows.
        head: The survival head.
        primary_horizon: ``label.horizon_days``.
        head_is_primary: Whether ``churn_probability`` becomes the head's primary horizon.
    """
    probabilities = head.predict_horizons(features.loc[scores.index])
    out = scores.copy()
    at = out.columns.get_loc("churn_probability") + 1
    for k, horizon in enumerate(head.horizons):
        out.insert(at + k, probability_column(horizon), probabilities[:, k])
    out.insert(
        at + len(head.horizons),
        "next_decision_date",
        find_next_decision_dates(features.loc[scores.index]).to_numpy(),
    )
    if head_is_primary:
        primary = out[probability_column(primary_horizon)].to_numpy(dtype=np.float64)
        out["churn_probability"] = primary
        out["expected_revenue_at_risk"] = primary * MONTHS_PER_YEAR * out["mrr"].astype(float)
    return out


def add_horizon_columns_if_fitted(
    scores: pd.DataFrame, features: pd.DataFrame, model_uri: str | Path, params: Params
) -> pd.DataFrame:
    """Add the horizon columns when ``model_uri`` is a model folder holding a survival head."""
    folder = Path(str(model_uri))
    if not folder.is_dir() or not has_survival_head(folder):
        return scores
    head = SurvivalHead.load(folder)
    logger.info("survival head: churn_probability at %s days", list(head.horizons))
    return add_horizon_columns(
        scores,
        features,
        head,
        params.label.horizon_days,
        head_is_primary=params.train.model_form == "hazard",
    )
