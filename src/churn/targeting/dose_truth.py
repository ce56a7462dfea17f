"""The dose responses' implied save rates against the simulator's truth (``reports/target.json``).

Kept apart from the stage so that :mod:`churn.stages.target` stays small; the truth columns are
those of ``retention_truth`` (:mod:`churn.stages.simulate.retention`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from churn.targeting.dose_response import DoseEffect, implied_save_rate


def join_truth(logged: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Logged rows with the truth of their (customer, contact month, play)."""
    when = logged["action_at"].dt.tz_convert("UTC")
    month = pd.to_datetime({"year": when.dt.year, "month": when.dt.month, "day": 1}, utc=True)
    keyed = logged.assign(month_start=month.astype(truth["month_start"].dtype))
    return keyed.merge(truth, on=["customer_id", "month_start", "play"], how="inner")


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
