"""The dose responses' implied save rates against the simulator's truth (``reports/target.json``).

Kept apart from the stage so that :mod:`churn.stages.target` stays small; the truth columns are
those of ``retention_truth`` (:mod:`churn.stages.simulate.retention`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from churn.targeting.dose_response import DoseEffect, implied_save_rate

#: The retention truth's key: one row per customer, month and play.
TRUTH_KEY = ("customer_id", "month_start", "play")


def find_contact_months(logged: pd.DataFrame) -> pd.Series:
    """The first day (UTC) of each logged action's month: the truth's ``month_start``."""
    when = logged["action_at"].dt.tz_convert("UTC")
    return pd.to_datetime({"year": when.dt.year, "month": when.dt.month, "day": 1}, utc=True)


def list_truth_keys(logged: pd.DataFrame) -> pd.DataFrame:
    """The truth keys of the logged rows (``customer_id``, ``month_start``, ``play``), for
    reading only those rows of the truth (:func:`churn.io.read_frame_keys`)."""
    return logged[["customer_id", "play"]].assign(
        month_start=find_contact_months(logged))[list(TRUTH_KEY)]


def join_truth(logged: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Logged rows with the truth of their (customer, contact month, play)."""
    month = find_contact_months(logged)
    keyed = logged.assign(month_start=month.astype(truth["month_start"].dtype))
    return keyed.merge(truth, on=list(TRUTH_KEY), how="inner")


def dose_effects_vs_truth(logged: pd.DataFrame, truth: pd.DataFrame,
                          fits: dict[str, DoseEffect]) -> list[dict[str, Any]]:
    """Each dose response's implied save rate against the truth, per play and segment.

    On the logged rows of a play and segment (both arms), the fit implies
    ``1 - sum(p_treated) / sum(p)`` with ``p`` the model's calibrated probability
    (``sigmoid(logit(expected) + alpha)``) and ``p_treated`` lowered by ``theta x dose``; the
    truth's is ``1 - sum(churn_treated) / sum(churn_untreated)`` on the same rows.
    """
    if logged.empty or not fits:
        return []
    joined = join_truth(logged, truth)
    out = []
    for (play, segment), part in joined.groupby(["play", "segment"], sort=True):
        fit = fits.get(str(play))
        if fit is None:
            continue
        expected = np.clip(part["expected"].to_numpy(dtype=np.float64), 1e-6, 1 - 1e-6)
        calibrated = 1 / (1 + np.exp(-(np.log(expected / (1 - expected)) + fit.alpha)))
        rate, se = implied_save_rate(calibrated, part["dose"].to_numpy(), fit)
        true_rate = float(1 - part["churn_treated"].sum() / part["churn_untreated"].sum())
        out.append({
            "play": play, "segment": segment, "estimate": rate, "standard_error": se,
            "true_save_rate": true_rate,
            "z": (rate - true_rate) / se if se > 0 else None,
            "within_2_se": abs(rate - true_rate) <= 2 * se, "rows": len(part),
        })
    return out
