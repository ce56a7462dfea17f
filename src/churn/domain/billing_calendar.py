"""Billing calendar: a subscription is billed on the same day each month, clipped to short months.

Shared by the simulator, which bills and ends subscriptions on these days
(:mod:`churn.stages.simulate`), and the oracle, which needs the billing day of months a churner
never reached (:mod:`churn.model.oracle`).
"""

from __future__ import annotations

import numpy as np

SECONDS_PER_DAY = 86_400


def add_months(seconds: np.ndarray | int, months: np.ndarray | int) -> np.ndarray:
    """Shift UTC timestamps (seconds since the epoch) by whole calendar months.

    Same rule as ``pd.DateOffset(months=k)``: the day of month is kept and clamped to the
    target month's last day; the time of day is kept.

    Args:
        seconds: Timestamps in seconds since the epoch.
        months: Months to add (may be negative), broadcast against ``seconds``.

    Returns:
        Shifted timestamps in seconds (int64).
    """
    seconds = np.asarray(seconds, dtype=np.int64)
    days = seconds // SECONDS_PER_DAY
    time_of_day = seconds - days * SECONDS_PER_DAY
    month = days.astype("datetime64[D]").astype("datetime64[M]")
    day_of_month = days - month.astype("datetime64[D]").astype(np.int64)
    target = month + np.asarray(months, dtype=np.int64).astype("timedelta64[M]")
    target_first = target.astype("datetime64[D]").astype(np.int64)
    target_next = (target + np.timedelta64(1, "M")).astype("datetime64[D]").astype(np.int64)
    day = np.minimum(day_of_month, target_next - target_first - 1)
    return (target_first + day) * SECONDS_PER_DAY + time_of_day
