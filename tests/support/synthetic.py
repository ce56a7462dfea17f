"""Tiny random validated tables for tests (the validated dtypes of docs/architecture.md).

Timestamps are drawn at random seconds, and a share of them is moved exactly onto a cutoff, a
window start (``cutoff - w days``) or a midnight, so boundary handling (a row at ``T`` is future)
is exercised on every seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churn.domain.contract import (
    CONTRACT,
    POSTSALE_TOUCHPOINT_TYPES,
    PRESALE_TOUCHPOINT_TYPES,
    SUBSCRIPTION_CHANGE_TYPES,
)

START = pd.Timestamp("2024-01-01", tz="UTC")
# Consecutive month starts make windows of neighbouring cutoffs overlap; the last one is apart.
CUTOFFS = tuple(
    pd.DatetimeIndex(["2024-05-01", "2024-06-01", "2024-07-01", "2024-10-01"], tz="UTC").as_unit(
        "us"
    )
)
WINDOWS = (7, 30, 90)
EVENT_TYPES = ("login", "core_action", "report_export", "integration_call", "seat_invite", "other")
CATEGORIES = ("billing", "technical", "how_to", "bug", "account", "other")
DAY = pd.Timedelta(days=1)


def _special_instants() -> np.ndarray:
    instants = {(c - w * DAY).tz_localize(None) for c in CUTOFFS for w in (0, *WINDOWS)}
    return np.array(sorted(instants), dtype="datetime64[us]")


SPECIAL = _special_instants()


def utc(values: np.ndarray | list) -> pd.Series:
    """Wrap naive UTC values as the validated timestamp dtype."""
    return pd.Series(
        pd.to_datetime(np.asarray(values, dtype="datetime64[us]")), dtype="datetime64[us]"
    ).dt.tz_localize("UTC")


def text(values: np.ndarray | list) -> pd.Series:
    """Wrap values (None = missing) as pandas ``str``."""
    return pd.Series(list(values), dtype="str")


def _times(
    rng: np.random.Generator, low: np.ndarray, high: np.ndarray, snap: float = 0.15
) -> np.ndarray:
    """Random instants in [low, high) at second resolution; some snapped to special instants."""
    low = np.asarray(low, dtype="datetime64[s]").astype("int64")
    high = np.asarray(high, dtype="datetime64[s]").astype("int64")
    out = (low + rng.random(low.shape) * np.maximum(high - low, 1)).astype("int64")
    out = out.astype("datetime64[s]").astype("datetime64[us]")
    snapped = rng.random(out.shape) < snap
    out[snapped] = rng.choice(SPECIAL, size=int(snapped.sum()))
    return out


def _per_customer(rng: np.random.Generator, ids: np.ndarray, high: int) -> np.ndarray:
    """Repeat customer ids a random number of times (0 to high - 1)."""
    return np.repeat(ids, rng.integers(0, high, size=len(ids)))


def make_tables(seed: int, n_customers: int = 30) -> dict[str, pd.DataFrame]:
    """Return every contract table for ``n_customers`` random customers.

    Args:
        seed: Random seed.
        n_customers: Number of customers.

    Returns:
        Validated-style tables by contract name.
    """
    rng = np.random.default_rng(seed)
    ids = np.array([f"c{i:03d}" for i in range(n_customers)])
    start = np.datetime64(START.tz_localize(None).to_datetime64(), "us")
    converted = _times(
        rng, np.full(n_customers, start), np.full(n_customers, start + np.timedelta64(300, "D"))
    )
    lead = converted - (rng.random(n_customers) * 60 * 86400e6).astype("timedelta64[us]")
    lead = np.where(rng.random(n_customers) < 0.2, np.datetime64("NaT"), lead)

    def pick(options: tuple[str, ...], size: int, missing: float = 0.1) -> pd.Series:
        values = rng.choice(np.array(options, dtype=object), size=size)
        values[rng.random(size) < missing] = None
        return text(values)

    customers = pd.DataFrame(
        {
            "customer_id": text(ids),
            "lead_created_at": utc(lead),
            "converted_at": utc(converted),
            "acquisition_channel": pick(("paid_search", "referral", "partner"), n_customers),
            # Period-named codes as CRM exports write them, plus a code that is only a period.
            "campaign": pick(
                ("spring", "summer_2024q1", "Q3-2024 ABM", "webinar-2024-03", "H1 2024", "2024"),
                n_customers,
                0.4,
            ),
            "segment": pick(("smb", "mid_market", "enterprise"), n_customers),
            "country": pick(("US", "DE", "FR"), n_customers),
            "trial_days": pd.array(
                np.where(rng.random(n_customers) < 0.1, None, rng.choice([0, 14, 30], n_customers)),
                dtype="Int64",
            ),
        }
    )

    # Subscriptions: a chain per customer with renewals, short gaps, long gaps and overlaps.
    rows = []
    for i, cid in enumerate(ids):
        t = converted[i]
        for k in range(int(rng.integers(1, 4))):
            period = "annual" if rng.random() < 0.3 else "monthly"
            end = None
            if rng.random() < 0.6:
                end = (
                    t
                    + np.timedelta64(int(rng.integers(20, 400)), "D")
                    + np.timedelta64(int(rng.integers(0, 86400)), "s")
                )
                if rng.random() < 0.2:
                    end = rng.choice(SPECIAL)
                if end <= t:
                    end = t + np.timedelta64(1, "D")
            rows.append(
                (
                    f"{cid}-s{k}",
                    cid,
                    rng.choice(["starter", "pro", "business"]),
                    period,
                    float(rng.integers(1, 20) * 10),
                    t,
                    end,
                )
            )
            if end is None:
                if rng.random() < 0.3:  # an overlapping second contract
                    t = t + np.timedelta64(int(rng.integers(1, 200)), "D")
                    continue
                break
            gap = rng.choice([0, 3, 10, 20, 90])
            t = end + np.timedelta64(int(gap), "D")
    subscriptions = pd.DataFrame(
        rows,
        columns=[
            "subscription_id",
            "customer_id",
            "plan",
            "billing_period",
            "mrr",
            "started_at",
            "ended_at",
        ],
    )
    subscriptions = subscriptions.assign(
        subscription_id=text(subscriptions["subscription_id"]),
        customer_id=text(subscriptions["customer_id"]),
        plan=text(subscriptions["plan"]),
        billing_period=text(subscriptions["billing_period"]),
        started_at=utc(subscriptions["started_at"].to_numpy(dtype="datetime64[us]")),
        ended_at=utc(
            subscriptions["ended_at"]
            .map(lambda v: np.datetime64("NaT") if v is None else v)
            .to_numpy(dtype="datetime64[us]")
        ),
    )

    sub_idx = np.repeat(np.arange(len(subscriptions)), rng.integers(0, 4, size=len(subscriptions)))
    s_start = subscriptions["started_at"].dt.tz_localize(None).to_numpy()[sub_idx]
    changes = pd.DataFrame(
        {
            "subscription_id": text(subscriptions["subscription_id"].to_numpy()[sub_idx]),
            "customer_id": text(subscriptions["customer_id"].to_numpy()[sub_idx]),
            "effective_at": utc(_times(rng, s_start, s_start + np.timedelta64(300, "D"))),
            "change_type": text(rng.choice(SUBSCRIPTION_CHANGE_TYPES, size=len(sub_idx))),
            "mrr_before": rng.integers(1, 20, size=len(sub_idx)) * 10.0,
            "mrr_after": rng.integers(1, 20, size=len(sub_idx)) * 10.0,
        }
    )

    window_low = np.datetime64("2023-11-01", "us")
    window_high = np.datetime64("2025-01-01", "us")

    cid = _per_customer(rng, ids, 60)
    usage = pd.DataFrame(
        {
            "customer_id": text(cid),
            "occurred_at": utc(
                _times(rng, np.full(len(cid), window_low), np.full(len(cid), window_high))
            ),
            "event_type": text(rng.choice(EVENT_TYPES, size=len(cid))),
            "quantity": np.where(
                rng.random(len(cid)) < 0.2, np.nan, rng.integers(0, 5, len(cid)).astype(float)
            ),
        }
    )

    cid = _per_customer(rng, ids, 25)
    postsale = pd.DataFrame(
        {
            "customer_id": text(cid),
            "occurred_at": utc(
                _times(rng, np.full(len(cid), start), np.full(len(cid), window_high))
            ),
            "touchpoint_type": text(rng.choice(POSTSALE_TOUCHPOINT_TYPES, size=len(cid))),
        }
    )

    idx = np.repeat(np.arange(n_customers), rng.integers(0, 8, size=n_customers))
    presale = pd.DataFrame(
        {
            "customer_id": text(ids[idx]),
            # Mostly before conversion; some mis-stamped after it.
            "occurred_at": utc(
                _times(
                    rng,
                    converted[idx] - np.timedelta64(90, "D"),
                    converted[idx] + np.timedelta64(20, "D"),
                )
            ),
            "touchpoint_type": text(rng.choice(PRESALE_TOUCHPOINT_TYPES, size=len(idx))),
        }
    )

    cid = _per_customer(rng, ids, 5)
    nps = pd.DataFrame(
        {
            "customer_id": text(cid),
            "responded_at": utc(
                _times(rng, np.full(len(cid), start), np.full(len(cid), window_high))
            ),
            "score": pd.array(rng.integers(0, 11, size=len(cid)), dtype="Int64"),
        }
    )

    idx = np.repeat(np.arange(n_customers), rng.integers(0, 9, size=n_customers))
    n = len(idx)
    opened = _times(rng, np.full(n, start), np.full(n, window_high))

    def later(base: np.ndarray, max_hours: float, missing: float) -> np.ndarray:
        out = base + (rng.random(n) * max_hours * 3600e6).astype("timedelta64[us]")
        snap = rng.random(n) < 0.1
        out[snap] = np.maximum(base[snap], rng.choice(SPECIAL, size=int(snap.sum())))
        return np.where(rng.random(n) < missing, np.datetime64("NaT"), out)

    responded = later(opened, 72, 0.2)
    resolved = later(opened, 24 * 40, 0.25)
    csat_at = later(np.where(np.isnat(resolved), opened, resolved), 24 * 30, 0.4)
    tickets = pd.DataFrame(
        {
            "ticket_id": text([f"t{i:04d}" for i in range(n)]),
            "customer_id": text(ids[idx]),
            "opened_at": utc(opened),
            "first_response_at": utc(responded),
            "resolved_at": utc(resolved),
            "channel": pick(("email", "chat", "phone"), n),
            "category": pick(CATEGORIES, n),
            "priority": pick(("low", "normal", "high", "urgent"), n),
            "reopened": pd.array(
                np.where(rng.random(n) < 0.1, None, rng.random(n) < 0.3), dtype="boolean"
            ),
            "csat_score": pd.array(
                np.where(rng.random(n) < 0.3, None, rng.integers(1, 6, n)), dtype="Int64"
            ),
            "csat_received_at": utc(csat_at),
        }
    )
    return {
        "customers": customers,
        "subscriptions": subscriptions,
        "subscription_changes": changes,
        "usage_events": usage,
        "postsale_touchpoints": postsale,
        "presale_touchpoints": presale,
        "nps_responses": nps,
        "support_tickets": tickets,
    }


def all_keys(
    tables: dict[str, pd.DataFrame], cutoffs: tuple[pd.Timestamp, ...] = CUTOFFS
) -> pd.DataFrame:
    """Every (customer, cutoff) pair, active or not, with a NA label (a worst-case population)."""
    ids = tables["customers"]["customer_id"].to_numpy()
    return pd.DataFrame(
        {
            "customer_id": text(np.repeat(ids, len(cutoffs))),
            "cutoff": pd.Series(np.tile(np.array(cutoffs), len(ids))).astype("datetime64[us, UTC]"),
            "label": pd.array([pd.NA] * (len(ids) * len(cutoffs)), dtype="Int8"),
        }
    )


_DTYPES = {
    "timestamp": "datetime64[us, UTC]",
    "float": "float64",
    "int": "Int64",
    "bool": "boolean",
    "string": "str",
    "category": "str",
}


def contract_frame(table: str, rows: list[dict]) -> pd.DataFrame:
    """Build a validated table from hand-written rows (missing columns are null).

    Timestamps may be given as strings (read as UTC).
    """
    spec = CONTRACT[table]
    data = {}
    for column in spec.columns:
        values = [row.get(column.name) for row in rows]
        dtype = _DTYPES[column.kind]
        if column.kind == "timestamp":
            data[column.name] = pd.Series(
                pd.to_datetime(values, utc=True, format="ISO8601")
            ).astype(dtype)
        else:
            data[column.name] = pd.Series(values, dtype=dtype)
    return pd.DataFrame(data, columns=spec.column_names)


def population(rows: list[tuple[str, str]]) -> pd.DataFrame:
    """A population from (customer_id, cutoff date) pairs."""
    return pd.DataFrame(
        {
            "customer_id": text([c for c, _ in rows]),
            "cutoff": pd.Series(pd.to_datetime([t for _, t in rows], utc=True)).astype(
                "datetime64[us, UTC]"
            ),
            "label": pd.array([pd.NA] * len(rows), dtype="Int8"),
        }
    )
