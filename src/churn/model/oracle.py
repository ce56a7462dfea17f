"""The simulator's oracle: the true probability of churning within the horizon, and the check
that no model ranks better than it.

Truth holds each customer's true monthly churn hazard ``p_m`` and the date ``e_m`` on which the
subscription ends if the customer churns in month ``m`` (``end_if_churned``, the billing date in
that month). The label counts an end inside ``[c, c + horizon_days)``, so the true probability
of churning within the horizon after cutoff ``c`` is ``1 - prod(1 - p_m)`` over the months whose
``e_m`` lies in that window. Ranking customers by it gives the best ROC AUC any model could reach
on those rows, which is what ``test.roc_auc_ratio_to_oracle`` compares with.

Why the end date and not the month start: a 60-day window from January 1 reaches March 1, so
counting every month that *starts* in the window added March's whole hazard although only a
customer billed on the 1st can end inside it. Knowing the billing day, the model then ranked
better than that "oracle" (AUC ratio 1.006 at 1M customers), and the check below stopped the
run as leakage. Truth written before ``end_if_churned`` existed falls back to month starts, with
a warning.

Months after a churn. Truth has a row only while the customer is active, so a customer who
churns in the window's first month has no hazard for its second: counted as is, every churner
inside the window got a lower probability than a survivor with the same hazards (at 1M
customers the oracle's mean probability was 0.0499 against a realized rate of 0.0522, and the
model out-ranked it by 0.002 ROC AUC, 3.7 bootstrap standard deviations). The probability at
the cutoff cannot depend on whether the customer later churned, so those months take the
hazard of the churn month's state (``sigmoid(logit_total)``) wherever the contract lets the
customer leave then (every month for a monthly contract, the anniversary month for an annual
one: ``billing_anchor``, ``annual_contract``), ending on that month's billing day. Truth without
those columns leaves the months out, with a warning.

A model cannot rank better than the truth: beating the oracle's AUC by more than noise
(``evaluate.oracle_tolerance_se`` standard errors, :func:`check_model_below_oracle`) means
leakage, and stops the run unless ``train.allow_high_auc`` is true.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churn.config import Params
from churn.domain.billing_calendar import add_months
from churn.errors import ModelError
from churn.model.fit import build_importance
from churn.model.leakage import describe_strongest_features

if TYPE_CHECKING:
    from churn.model.artifact import ChurnModel

logger = logging.getLogger(__name__)


def _as_naive_utc(values: pd.Series) -> np.ndarray:
    """Return ``values`` as UTC wall times in ``datetime64`` (no time zone).

    ``to_numpy()`` of a time-zone-aware column makes an object array of Timestamps, which
    took 6 s per horizon on 100k customers' truth; dropping the zone after converting to UTC
    keeps the native type, and both sides of every comparison are converted alike.
    """
    return pd.to_datetime(values, utc=True).dt.tz_localize(None).to_numpy()


def compute_oracle_probabilities(
    keys: pd.DataFrame, truth: pd.DataFrame, horizon_days: int
) -> np.ndarray:
    """Return each row's true probability of churning within the horizon.

    Args:
        keys: Rows with ``customer_id`` and ``cutoff``.
        truth: Monthly truth with ``customer_id``, ``month_start``, ``churn_probability``
            (the month's hazard) and ``end_if_churned`` (the end date if the customer churns
            that month; when the column is missing, ``month_start`` stands in for it).
        horizon_days: Label horizon.

    Returns:
        ``1 - prod(1 - p_m)`` over months whose end date lies in
        ``[cutoff, cutoff + horizon)``; 0 for a row without such months.
    """
    if keys.empty:
        return np.zeros(0)
    cutoffs = _as_naive_utc(keys["cutoff"])
    rows = pd.DataFrame(
        {
            "row": np.arange(len(keys)),
            "customer_id": keys["customer_id"].astype(str).to_numpy(),
            "cutoff": cutoffs,
        }
    )
    if "end_if_churned" in truth.columns:
        churn_end = _as_naive_utc(truth["end_if_churned"])
    else:
        logger.warning(
            "oracle: the truth has no end_if_churned column (simulated before it existed); "
            "counting every month that starts inside the horizon, which overstates the "
            "oracle's probability when the horizon ends inside a month: re-run simulate"
        )
        churn_end = _as_naive_utc(truth["month_start"])
    # Only months inside some row's window can count: keep those before converting ids to
    # text and joining (a test cutoff needs 2-3 of the truth's 24 months). Same result.
    end = cutoffs.max() + np.timedelta64(horizon_days, "D")
    window = (churn_end >= cutoffs.min()) & (churn_end < end)
    months = pd.DataFrame(
        {
            "customer_id": truth["customer_id"].to_numpy()[window].astype(str),
            "churn_end": churn_end[window],
            "hazard": truth["churn_probability"].to_numpy(dtype=float)[window],
        }
    )
    joined = rows.merge(months, on="customer_id", how="inner")
    start = joined["cutoff"]
    inside = (joined["churn_end"] >= start) & (
        joined["churn_end"] < start + pd.Timedelta(days=horizon_days)
    )
    joined = joined[inside]
    after = _months_after_churn(rows, truth, churn_end, horizon_days)
    hazards = pd.concat([joined[["row", "hazard"]], after], ignore_index=True)
    survival = (1.0 - hazards["hazard"]).groupby(hazards["row"]).prod()
    return 1.0 - survival.reindex(rows["row"], fill_value=1.0).to_numpy()


#: Truth columns the months after a churn need (:func:`_months_after_churn`).
SCHEDULE_COLUMNS = ("churned", "logit_total", "billing_anchor", "annual_contract")


def _months_after_churn(
    rows: pd.DataFrame, truth: pd.DataFrame, churn_end: np.ndarray, horizon_days: int
) -> pd.DataFrame:
    """Return ``(row, hazard)`` for the window's months after a churn inside the window.

    See the module docstring: each such month whose billing day lies in the window and in
    which the contract could end gets the churn month's hazard ``sigmoid(logit_total)``.

    Args:
        rows: ``row``, ``customer_id`` (text) and ``cutoff`` (naive UTC) of every key.
        truth: The monthly truth.
        churn_end: ``end_if_churned`` of every truth row (naive UTC).
        horizon_days: Label horizon.
    """
    empty = pd.DataFrame({"row": np.zeros(0, np.int64), "hazard": np.zeros(0)})
    if not set(SCHEDULE_COLUMNS) <= set(truth.columns):
        logger.warning(
            "oracle: the truth has no %s: the months after a churn inside the window are left "
            "out, which lowers churners' probabilities: re-run simulate",
            ", ".join(c for c in SCHEDULE_COLUMNS if c not in truth.columns),
        )
        return empty
    # Churn months are a few percent of the truth: select them before converting anything.
    churn_rows = truth[truth["churned"].to_numpy(dtype=bool)]
    logit = churn_rows["logit_total"].to_numpy(dtype=float)
    churns = pd.DataFrame(
        {
            "customer_id": churn_rows["customer_id"].to_numpy().astype(str),
            "churn_end": churn_end[truth["churned"].to_numpy(dtype=bool)],
            "month_start": _as_naive_utc(churn_rows["month_start"]),
            "billing_anchor": _as_naive_utc(churn_rows["billing_anchor"]),
            "annual": churn_rows["annual_contract"].to_numpy(dtype=bool),
            "hazard": 1.0 / (1.0 + np.exp(-logit)),
        }
    )
    found = rows.merge(churns, on="customer_id", how="inner")  # a customer churns once
    window_end = found["cutoff"] + pd.Timedelta(days=horizon_days)
    inside_window = (found["churn_end"] >= found["cutoff"]) & (found["churn_end"] < window_end)
    found, window_end = found[inside_window], window_end[inside_window]
    if found.empty:
        return empty
    anchor = found["billing_anchor"].to_numpy()
    anchor_seconds = anchor.astype("datetime64[s]").astype(np.int64)
    anchor_month = anchor.astype("datetime64[M]")
    churn_month = found["month_start"].to_numpy().astype("datetime64[M]")
    start, end = found["cutoff"].to_numpy(), window_end.to_numpy()
    row, hazard = found["row"].to_numpy(), found["hazard"].to_numpy()
    monthly = ~found["annual"].to_numpy()
    parts = [empty]
    # A window of h days holds at most h // 28 + 2 month starts after the churn month's.
    for later in range(1, horizon_days // 28 + 3):
        months_in = (churn_month + np.timedelta64(later, "M") - anchor_month).astype(np.int64)
        billing_day = add_months(anchor_seconds, months_in).astype("datetime64[s]")
        exposed = monthly | (months_in % 12 == 0)
        inside = exposed & (billing_day >= start) & (billing_day < end)
        parts.append(pd.DataFrame({"row": row[inside], "hazard": hazard[inside]}))
    return pd.concat(parts, ignore_index=True)


def compute_auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Return the Hanley-McNeil (1982) standard error of a ROC AUC on this many rows."""
    if positives == 0 or negatives == 0:
        return float("nan")
    q1, q2 = auc / (2.0 - auc), 2.0 * auc * auc / (1.0 + auc)
    variance = (
        auc * (1.0 - auc)
        + (positives - 1) * (q1 - auc * auc)
        + (negatives - 1) * (q2 - auc * auc)
    ) / (positives * negatives)
    return float(np.sqrt(max(variance, 0.0)))


def check_model_below_oracle(
    labels: np.ndarray,
    model_auc: float,
    oracle_auc: float,
    model: ChurnModel,
    params: Params,
) -> str | None:
    """Fail when the model's test ROC AUC beats the oracle's by more than noise.

    The margin is ``evaluate.oracle_tolerance_se`` Hanley-McNeil standard errors of the
    oracle's AUC on the test rows: the two AUCs share the rows, so their difference varies
    less than one AUC does, and this margin is conservative.

    Returns:
        A note for the metrics when the model beats the oracle but ``train.allow_high_auc``
        accepts it; ``None`` when the model is below the oracle (within noise).

    Raises:
        ModelError: Naming both AUCs, the margin and the strongest features by gain.
    """
    if not (np.isfinite(model_auc) and np.isfinite(oracle_auc)):
        return None
    positives = int(np.sum(labels))
    se = compute_auc_standard_error(oracle_auc, positives, int(labels.size) - positives)
    margin = params.evaluate.oracle_tolerance_se * se
    if not model_auc - oracle_auc > margin:
        return None
    shown = (
        f"test ROC AUC {model_auc:.3f} beats the simulator oracle's {oracle_auc:.3f} (the true "
        f"probabilities; ratio {model_auc / oracle_auc:.3f}) by more than "
        f"evaluate.oracle_tolerance_se = {params.evaluate.oracle_tolerance_se:g} standard "
        f"errors ({margin:.3f})"
    )
    strongest = describe_strongest_features(build_importance(model))
    if params.train.allow_high_auc:
        note = f"{shown}; accepted because train.allow_high_auc is true"
        logger.warning("%s; strongest features: %s", note, strongest)
        return note
    raise ModelError(
        f"label leakage suspected: the {shown}. No model can rank better than the truth, so "
        f"features (strongest by gain: {strongest}) or labels must use information from after "
        "the cutoff; check them (and reports/labels.json for implausible cutoffs)"
    )
