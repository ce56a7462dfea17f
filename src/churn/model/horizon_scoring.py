"""Scores at every horizon from the survival head, added beside ``churn_probability``.

Columns (when the model folder holds a survival head, :mod:`churn.model.survival`):

* ``churn_probability_<H>d`` for each of the head's horizons: calibrated probability of
  churning within ``H`` days, non-decreasing in ``H``, exactly 0 when the contract has no
  decision point inside ``H``;
* ``next_decision_date``: the next renewal or billing date (``cutoff + days_to_renewal``), NaT
  when unknown; and, last, ``decision_context`` ("renews 2026-02-14"), the date beside the
  reasons (never a reason, :func:`churn.model.reason_selection.describe_decision_dates`).

``churn_probability`` keeps its meaning, the calibrated probability within the primary horizon
``label.horizon_days``: with ``train.model_form: hazard`` it is the head's column at that
horizon (and ``expected_revenue_at_risk`` follows it), with ``classifier`` the classifier's.

Reasons with ``train.model_form: hazard`` come from the head (:func:`score_with_head`): exact
TreeSHAP of the hazard at each customer's next decision. The period features (decision index,
days to the decision, term) are the exposure part: their contributions are folded into the
base value, so they can never be a reason or a risk share, and additivity still holds.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from churn.config import Params
from churn.model.artifact import Calibrator, ChurnModel
from churn.model.hazard import PERIOD_FEATURES, find_next_decision_dates
from churn.model.horizons import probability_column
from churn.model.reason_selection import describe_decision_dates
from churn.model.scoring import ScoreResult, score_population
from churn.model.survival import SurvivalHead, has_survival_head
from churn.model.treeshap import compute_contributions

logger = logging.getLogger(__name__)

MONTHS_PER_YEAR = 12

PERIOD_DESCRIPTIONS = {
    "decision_index": ("decisions", "index of the contract decision point after the cutoff"),
    "days_to_decision": ("days", "days from the cutoff to the decision point"),
    "term_months": ("months", "contract term between decision points"),
}
TIMING_TEMPLATE_FEATURE = "days_to_renewal"
"""Catalog row the period features copy any further attribute from (they are timing too)."""


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
    # The reasons' context ("renews 2026-02-14", docs/reasons.md): the scores only get the
    # date here, after the reasons were built, so the context is added here too.
    out["decision_context"] = describe_decision_dates(out["next_decision_date"])
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


def build_reason_model(model: ChurnModel, head: SurvivalHead) -> ChurnModel:
    """Return a ChurnModel view of the head's booster for :func:`score_population`.

    Its catalog is the classifier's plus one row per period feature (family and phase of
    ``days_to_renewal``, and any further catalog attribute copied from it); the calibrator is
    the identity (probabilities are replaced by the horizon columns afterwards).
    """
    catalog = model.catalog
    template = catalog.loc[catalog["name"] == TIMING_TEMPLATE_FEATURE]
    base = template.iloc[0] if len(template) else catalog.iloc[0]
    rows = []
    for name in PERIOD_FEATURES:
        row = base.copy()
        unit, description = PERIOD_DESCRIPTIONS[name]
        row["name"], row["kind"] = name, "numeric"
        row["unit"], row["description"] = unit, description
        rows.append(row)
    customer = catalog.set_index("name").loc[list(head.customer_features)].reset_index()
    return ChurnModel(
        booster=head.booster,
        feature_names=head.feature_names,
        categorical_levels=head.categorical_levels,
        calibrator=Calibrator(method="identity"),
        catalog=pd.concat([customer, pd.DataFrame(rows)], ignore_index=True),
        typical_values={**dict(model.typical_values), **dict.fromkeys(PERIOD_FEATURES)},
        metadata={"survival_head": True},
    )


def add_period_columns(features: pd.DataFrame, head: SurvivalHead) -> pd.DataFrame:
    """Return ``features`` with the period features of each row's next decision."""
    period = head.next_decision_matrix(features)[:, -len(PERIOD_FEATURES) :]
    # One concat, not column inserts: a wide features frame would fragment (PerformanceWarning).
    extra = pd.DataFrame(period, columns=list(PERIOD_FEATURES), index=features.index)
    return pd.concat([features.drop(columns=list(PERIOD_FEATURES), errors="ignore"), extra], axis=1)


def fold_period_contributions(
    contributions: np.ndarray, base: np.ndarray, n_period: int
) -> tuple[np.ndarray, np.ndarray]:
    """Move the last ``n_period`` columns' contributions into the base value (exposure part)."""
    folded = contributions.copy()
    exposure = folded[:, -n_period:].sum(axis=1)
    folded[:, -n_period:] = 0.0
    return folded, base + exposure


def score_with_head(
    model: ChurnModel,
    head: SurvivalHead,
    features: pd.DataFrame,
    reasons: int,
    batch_rows: int,
) -> ScoreResult:
    """Score with reasons from the head's behavioural part (see the module docstring)."""
    view = build_reason_model(model, head)

    def explain(batch: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        contributions, base = compute_contributions(view.booster, view.prepare(batch))
        return fold_period_contributions(contributions, base, len(PERIOD_FEATURES))

    return score_population(
        view,
        add_period_columns(features, head),
        reasons,
        batch_rows=batch_rows,
        contributions_fn=explain,
    )


def score_frame_with_head(
    model: ChurnModel,
    head: SurvivalHead | None,
    features: pd.DataFrame,
    reasons: int,
    *,
    primary_horizon: int,
    head_is_primary: bool,
    batch_rows: int = 200_000,
) -> pd.DataFrame:
    """Score a feature frame exactly like ``churn score`` does, given the model and its head.

    The one core the MLflow pyfunc and the Spark job call, so that their columns and values
    equal the local scores (:func:`score_with_model_form` then
    :func:`add_horizon_columns_if_fitted`): reasons from the head when it is primary
    (``train.model_form: hazard``), else from the classifier; then the horizon columns and
    ``next_decision_date`` when there is a head.

    Args:
        model: The classifier.
        head: The survival head, or ``None`` (the scores are then
            :func:`churn.model.scoring.score_frame`'s).
        features: Feature rows (the head needs ``days_to_renewal`` and ``billing_period``).
        reasons: Reasons per row.
        primary_horizon: ``label.horizon_days``.
        head_is_primary: ``train.model_form == "hazard"``.
        batch_rows: Rows explained at a time.

    Returns:
        The scores frame (input index kept), without ``risk_decile``.
    """
    if head is not None and head_is_primary:
        result = score_with_head(model, head, features, reasons, batch_rows)
    else:
        result = score_population(
            model, features, reasons, batch_rows=batch_rows, keep_contributions=False
        )
    if head is None:
        return result.scores
    return add_horizon_columns(
        result.scores, features, head, primary_horizon, head_is_primary=head_is_primary
    )


def score_with_model_form(
    model: ChurnModel, features: pd.DataFrame, model_uri: str | Path, params: Params
) -> ScoreResult:
    """Score with the classifier, or with the head's reasons under ``model_form: hazard``.

    The horizon columns are added by :func:`add_horizon_columns_if_fitted` either way.
    """
    folder = Path(str(model_uri))
    if params.train.model_form == "hazard" and folder.is_dir() and has_survival_head(folder):
        return score_with_head(
            model,
            SurvivalHead.load(folder),
            features,
            params.score.reasons,
            params.score.batch_rows,
        )
    return score_population(
        model, features, params.score.reasons, batch_rows=params.score.batch_rows
    )
