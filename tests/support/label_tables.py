"""Hand-made label inputs: subscription rows and the tables around them, for the label tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from support.synthetic import contract_frame


def subscription_row(
    sid: str, cid: str, start: str, end: str | None, period: str = "monthly", mrr: float = 10.0
) -> dict:
    """One ``subscriptions`` row of plan ``pro`` (``end`` ``None``: still running)."""
    return {
        "subscription_id": sid,
        "customer_id": cid,
        "plan": "pro",
        "billing_period": period,
        "mrr": mrr,
        "started_at": start,
        "ended_at": end,
    }


def label_tables(subs: list[dict], end: str = "2025-01-01") -> dict[str, pd.DataFrame]:
    """``subscriptions`` and ``customers`` (converted 2023-01-01) of the rows, plus customer
    ``zz``, whose subscription ends at ``end``."""
    # A sentinel row keeps the data's end fixed whatever the timelines under test.
    subs = [*subs, subscription_row("zz", "zz", "2023-01-01", end)]
    customers = sorted({s["customer_id"] for s in subs})
    return {
        "subscriptions": contract_frame("subscriptions", subs),
        "customers": contract_frame(
            "customers", [{"customer_id": c, "converted_at": "2023-01-01"} for c in customers]
        ),
    }


def write_label_tables(directory: Path, churned: int, retained: int) -> None:
    """Write :func:`label_tables` to ``directory`` (created): customers ``c0``, ``c1``, ...
    converting 2023-01-01, the first ``churned`` of them ending on 2024-07-10."""
    subs = [
        subscription_row(f"s{i}", f"c{i}", "2023-01-01", "2024-07-10" if i < churned else None)
        for i in range(churned + retained)
    ]
    directory.mkdir()
    for name, frame in label_tables(subs).items():
        frame.to_parquet(directory / f"{name}.parquet")
