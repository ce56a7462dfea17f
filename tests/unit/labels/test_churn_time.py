"""Labels' churn time (``days_to_churn``, ``observed_days``) for the survival head."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from support.synthetic import contract_frame

from churn.config import LabelConfig
from churn.labels.build import build_labels

T = pd.Timestamp("2024-06-01", tz="UTC")
CFG = LabelConfig(
    first_cutoff=dt.date(2024, 6, 1),
    last_cutoff=dt.date(2024, 6, 1),
    horizon_days=60,
    horizons_days=(30, 60, 90),
    grace_days=14,
)


def _sub(sid: str, cid: str, start: str, end: str | None) -> dict:
    return {
        "subscription_id": sid,
        "customer_id": cid,
        "plan": "pro",
        "billing_period": "monthly",
        "mrr": 10.0,
        "started_at": start,
        "ended_at": end,
    }


def _labels(subs: list[dict], end: str = "2025-01-01") -> pd.DataFrame:
    subs = [*subs, _sub("zz", "zz", "2023-01-01", end)]  # fixes the data end
    customers = sorted({s["customer_id"] for s in subs})
    tables = {
        "subscriptions": contract_frame("subscriptions", subs),
        "customers": contract_frame(
            "customers", [{"customer_id": c, "converted_at": "2023-01-01"} for c in customers]
        ),
    }
    labels = build_labels(tables, CFG)
    return labels[labels["cutoff"] == T].set_index("customer_id")


def test_churn_time_is_days_from_cutoff_to_coverage_end() -> None:
    labels = _labels(
        [
            _sub("a1", "a", "2023-03-01", "2024-07-10"),  # 39 days after T
            _sub("b1", "b", "2023-03-01", "2024-08-20"),  # 80 days: inside 90, not 60
            _sub("c1", "c", "2023-03-01", "2024-10-01"),  # 122 days: after the longest
            _sub("d1", "d", "2023-03-01", None),
        ]
    )
    assert labels.loc["a", "days_to_churn"] == pytest.approx(39.0)
    assert labels.loc["b", "days_to_churn"] == pytest.approx(80.0)
    assert np.isnan(labels.loc["c", "days_to_churn"])
    assert np.isnan(labels.loc["d", "days_to_churn"])
    assert (labels["observed_days"] == 90).all()
    # The primary label is the churn time read at horizon_days.
    assert labels.loc["a", "label"] == 1 and labels.loc["b", "label"] == 0


def test_renewal_inside_grace_is_no_churn_time() -> None:
    labels = _labels(
        [_sub("a1", "a", "2023-03-01", "2024-07-10"), _sub("a2", "a", "2024-07-15", None)]
    )
    assert np.isnan(labels.loc["a", "days_to_churn"])


def test_observed_days_stop_at_data_end_minus_grace() -> None:
    # Data ends 2024-08-15: 75 whole days after T, minus 14 days of grace = 61 observed days.
    labels = _labels([_sub("a1", "a", "2023-03-01", "2024-08-10")], end="2024-08-15")
    assert labels.loc["a", "observed_days"] == 61
    # The end on day 70 is not confirmed (a renewal could still come inside the grace).
    assert np.isnan(labels.loc["a", "days_to_churn"])
    assert labels.loc["a", "label"] == 0  # 60-day outcome observed: still a customer at 60


def test_churn_time_looks_only_after_the_cutoff() -> None:
    base = [_sub("a1", "a", "2023-03-01", "2024-07-10")]
    before = _labels(base)
    # A subscription that ended before T changes nothing for the customer active at T.
    after = _labels([*base, _sub("a0", "a", "2022-01-01", "2022-06-01")])
    assert after.loc["a", "days_to_churn"] == before.loc["a", "days_to_churn"]
    # A customer whose only subscription ended before T is not in the population at all.
    gone = _labels([*base, _sub("e1", "e", "2023-01-01", "2024-05-31")])
    assert "e" not in gone.index
