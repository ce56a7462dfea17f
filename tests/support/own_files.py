"""Example CSV files shaped like a third-party export, for docs/your-data.md and its tests.

Three files as a billing system and a product database might export them: ``accounts.csv``
(integer ``AccountNo``, integer acquisition codes, size letters), ``contracts.csv`` (integer
``ContractNo``, plan and term codes, a ``PaidThrough`` date that for a cancelled annual contract
may lie after the export date) and ``logins.csv`` (naive local timestamps, action codes).
None of the column names or codes is the data contract's: ``params.yaml`` maps them.

The business is simple but not random: each account has an engagement level that sets how
often it logs in and how likely it is to leave, and a leaving account logs in less in its last
weeks, so a model can learn something (far from perfectly). The export ends on
:data:`EXPORT_END`.

Run as a script to write the files: ``python tests/support/own_files.py data/raw``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: The ``ingest`` section that maps the files onto the data contract (the parity tests').
OWN_FILES_MAPPING: dict[str, Any] = {
    "as_of": "2025-12-31",
    "data_end": "2025-12-31",
    "input_timezone": "Europe/Berlin",
    "tables": {
        "customers": {
            "file": "accounts.csv",
            "columns": {
                "customer_id": "AccountNo",
                "converted_at": "SignupDate",
                "acquisition_channel": "SourceCode",
                "segment": "Size",
            },
            "values": {
                "acquisition_channel": {"1": "paid_search", "2": "referral", "3": "partner"},
                "segment": {"S": "smb", "M": "mid_market", "L": "enterprise"},
            },
        },
        "subscriptions": {
            "file": "contracts.csv",
            "columns": {
                "subscription_id": "ContractNo",
                "customer_id": "AccountNo",
                "plan": "Product",
                "billing_period": "Term",
                "mrr": "MonthlyFee",
                "started_at": "StartDate",
                "ended_at": "PaidThrough",
            },
            "values": {
                "plan": {"BAS": "basic", "PRO": "pro"},
                "billing_period": {"M": "monthly", "Y": "annual"},
            },
        },
        "usage_events": {
            "file": "logins.csv",
            "columns": {
                "customer_id": "AccountNo",
                "occurred_at": "EventTime",
                "event_type": "Action",
            },
            "values": {"event_type": {"LOGIN": "login", "EXPORT": "report_export"}},
        },
    },
}

#: The day of the export: no row is later (except paid-through contract ends).
EXPORT_END = pd.Timestamp("2025-12-31")
FIRST_SIGNUP = pd.Timestamp("2024-01-01")
LAST_SIGNUP = pd.Timestamp("2025-10-31")


def _contract(
    rng: np.random.Generator, signup: pd.Timestamp, engagement: float, annual: bool
) -> tuple[pd.Timestamp | None, pd.Timestamp]:
    """Return (paid-through end or None while active, last day the account uses the product)."""
    monthly_hazard = 0.01 + 0.09 * (1.0 - engagement) ** 2
    step = 12 if annual else 1
    leave_at_renewal = 1.0 - (1.0 - monthly_hazard) ** step
    renewal = signup + pd.DateOffset(months=step)
    while True:
        if rng.random() < leave_at_renewal:
            # Cancelled: paid through the renewal date, which may lie after the export.
            last_use = min(renewal, EXPORT_END)
            return renewal, last_use
        if renewal > EXPORT_END:
            return None, EXPORT_END
        renewal = renewal + pd.DateOffset(months=step)


def make_own_files(n_accounts: int = 700, seed: int = 5) -> dict[str, pd.DataFrame]:
    """Return the three export frames by file name (``accounts.csv`` ...).

    Args:
        n_accounts: Number of accounts.
        seed: Random seed; the same seed gives the same files.

    Returns:
        File name -> frame, columns as the export names them.
    """
    rng = np.random.default_rng(seed)
    span_days = (LAST_SIGNUP - FIRST_SIGNUP).days
    account_no = np.arange(70_001, 70_001 + n_accounts)
    signup = FIRST_SIGNUP + pd.to_timedelta(rng.integers(0, span_days, n_accounts), unit="D")
    engagement = rng.beta(2.0, 2.0, n_accounts)
    annual = rng.random(n_accounts) < 0.2
    source = rng.choice(["1", "2", "3"], n_accounts, p=[0.5, 0.3, 0.2])
    size = rng.choice(["S", "M", "L"], n_accounts, p=[0.6, 0.3, 0.1])
    product = np.where(rng.random(n_accounts) < 0.3 + 0.3 * engagement, "PRO", "BAS")
    fee = np.where(product == "PRO", 99.0, 29.0) * np.where(size == "L", 3, 1)

    ends, login_rows = [], []
    for i, account in enumerate(account_no):
        end, last_use = _contract(rng, signup[i], float(engagement[i]), bool(annual[i]))
        ends.append(end)
        gap_days = 2.0 + 10.0 * (1.0 - engagement[i])
        fading_from = last_use - pd.Timedelta(days=45) if end is not None else last_use
        moments, moment = [], signup[i] + pd.Timedelta(hours=9)
        while moment < last_use:
            moments.append(moment)
            slower = 3.0 if moment >= fading_from else 1.0  # a leaving account fades out
            moment = moment + pd.Timedelta(days=float(rng.exponential(gap_days * slower)) + 0.2)
        stamps = pd.DatetimeIndex(moments)
        login_rows.append(
            pd.DataFrame(
                {
                    "AccountNo": account,
                    "EventTime": stamps.strftime("%Y-%m-%d %H:%M:%S"),
                    "Action": np.where(rng.random(len(stamps)) < 0.15, "EXPORT", "LOGIN"),
                }
            )
        )
    accounts = pd.DataFrame(
        {
            "AccountNo": account_no,
            "SignupDate": signup.strftime("%Y-%m-%d"),
            "SourceCode": source,
            "Size": size,
        }
    )
    contracts = pd.DataFrame(
        {
            "ContractNo": account_no * 10 + 1,
            "AccountNo": account_no,
            "Product": product,
            "Term": np.where(annual, "Y", "M"),
            "MonthlyFee": fee,
            "StartDate": signup.strftime("%Y-%m-%d"),
            "PaidThrough": [None if end is None else end.strftime("%Y-%m-%d") for end in ends],
        }
    )
    return {
        "accounts.csv": accounts,
        "contracts.csv": contracts,
        "logins.csv": pd.concat(login_rows, ignore_index=True),
    }


def write_own_files(folder: Path, n_accounts: int = 700, seed: int = 5) -> list[Path]:
    """Write the example export into ``folder`` (created if needed) and return the files."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in make_own_files(n_accounts, seed).items():
        frame.to_csv(folder / name, index=False)
        written.append(folder / name)
    return written


if __name__ == "__main__":
    for path in write_own_files(Path(sys.argv[1] if len(sys.argv) > 1 else "data/raw")):
        print(f"wrote {path}")
