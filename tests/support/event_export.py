"""A small events-mode export shaped like a third-party system (integer ids, text values).

Customers start monthly subscriptions between 2024-01 and 2024-07; about 1 in 25 active
customers cancels each month; every active customer logs in every few days. The data ends on
2025-06-30. Everything is text, as read from CSV, ready for :func:`validate_tables`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DATA_END = pd.Timestamp("2025-06-30T23:00:00", tz="UTC")


def make_event_export(n_customers: int = 300, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Return raw ``customers``, ``subscriptions`` and ``usage_events`` frames (all text)."""
    rng = np.random.default_rng(seed)
    ids = np.arange(5001, 5001 + n_customers)  # integer account ids, as a CRM exports them
    start = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 180, n_customers), unit="D"
    )
    lifetime = pd.to_timedelta(rng.geometric(1 / 25, n_customers) * 30, unit="D")
    end = pd.Series(start + lifetime)
    end = end.where(end <= DATA_END)
    customers = pd.DataFrame({"customer_id": ids, "converted_at": start.strftime("%Y-%m-%d")})
    subscriptions = pd.DataFrame(
        {
            "subscription_id": [f"SUB-{i}" for i in ids],
            "customer_id": ids,
            "plan": rng.choice(["basic", "pro"], n_customers),
            "billing_period": "monthly",
            "mrr": rng.choice([29.0, 99.0], n_customers),
            "started_at": start.strftime("%Y-%m-%d"),
            "ended_at": end.dt.strftime("%Y-%m-%d"),
        }
    )
    usage_rows = []
    for customer, first, last in zip(ids, start, end.fillna(DATA_END), strict=True):
        days = pd.date_range(first, last, freq="3D", inclusive="left")
        usage_rows.append(
            pd.DataFrame(
                {
                    "customer_id": customer,
                    "occurred_at": (days + pd.Timedelta(hours=10)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "event_type": "login",
                }
            )
        )
    usage = pd.concat(usage_rows, ignore_index=True)
    return {
        name: frame.astype("str").replace({"nan": None, "NaT": None})
        for name, frame in {
            "customers": customers,
            "subscriptions": subscriptions,
            "usage_events": usage,
        }.items()
    }
