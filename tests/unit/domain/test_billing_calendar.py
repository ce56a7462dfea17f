"""Tests for churn.domain.billing_calendar: calendar months on epoch seconds."""

from __future__ import annotations

import numpy as np
import pandas as pd

from churn.domain.billing_calendar import add_months


def test_add_months_matches_pandas_date_offset():
    rng = np.random.default_rng(0)
    seconds = rng.integers(1_500_000_000, 1_800_000_000, 500)
    months = rng.integers(-30, 30, 500)
    expected = [
        (pd.Timestamp(s, unit="s") + pd.DateOffset(months=int(k))).value // 10**9
        for s, k in zip(seconds, months, strict=True)
    ]
    np.testing.assert_array_equal(add_months(seconds, months), expected)
