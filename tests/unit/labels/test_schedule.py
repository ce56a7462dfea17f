"""The cutoff schedule and the end of the data: hand-made timelines and event tables."""

from __future__ import annotations

import datetime as dt
import itertools

import pandas as pd
from support.label_tables import label_tables, subscription_row
from support.synthetic import contract_frame

from churn.config import LabelConfig
from churn.labels.schedule import build_cutoffs, data_end

T = pd.Timestamp("2024-06-01", tz="UTC")


def test_default_cutoff_schedule() -> None:
    subs = [subscription_row("a1", "a", "2023-01-15", None)]
    tables = label_tables(subs, end="2024-03-20T10:00")
    cutoffs = build_cutoffs(tables, LabelConfig(min_history_days=180, every_months=2))
    assert cutoffs[0] == pd.Timestamp("2023-02-01", tz="UTC") + pd.DateOffset(months=5)
    assert all(c.day == 1 and c.hour == 0 for c in cutoffs)
    assert cutoffs[-1] <= pd.Timestamp("2024-03-01", tz="UTC")
    assert all((b - a).days in (59, 60, 61, 62) for a, b in itertools.pairwise(cutoffs))


def test_schedule_starts_when_every_event_table_has_data() -> None:
    tables = label_tables([subscription_row("a1", "a", "2020-01-15", None)], end="2024-12-20")
    cfg = LabelConfig(min_history_days=90)
    assert build_cutoffs(tables, cfg)[0] == pd.Timestamp("2020-05-01", tz="UTC")
    tables["usage_events"] = contract_frame(
        "usage_events",
        [{"customer_id": "a", "occurred_at": "2024-01-10", "event_type": "login"}],
    )
    # Usage is only recorded from 2024-01-10: earlier cutoffs would see fake zero usage.
    assert build_cutoffs(tables, cfg)[0] == pd.Timestamp("2024-05-01", tz="UTC")


class _CountingTables(dict):
    """Tables that count how often each is looked up (the label stage reads a file on each)."""

    def __init__(self, tables: dict[str, pd.DataFrame]) -> None:
        super().__init__(tables)
        self.lookups: dict[str, int] = {}

    def __getitem__(self, name: str) -> pd.DataFrame:
        self.lookups[name] = self.lookups.get(name, 0) + 1
        return super().__getitem__(name)


def test_the_schedule_looks_each_event_table_up_once() -> None:
    tables = _CountingTables(
        label_tables([subscription_row("a1", "a", "2020-01-15", None)], end="2024-12-20")
    )
    tables["usage_events"] = contract_frame(
        "usage_events",
        [{"customer_id": "a", "occurred_at": "2024-01-10", "event_type": "login"}],
    )
    tables["support_tickets"] = contract_frame("support_tickets", [])  # no rows: no start

    first = build_cutoffs(tables, LabelConfig(min_history_days=90), end=T)[0]

    assert first == pd.Timestamp("2024-05-01", tz="UTC")
    assert tables.lookups["usage_events"] == 1
    assert tables.lookups["support_tickets"] == 1


def test_first_event_at_00_06_counts_its_whole_day_of_history() -> None:
    # The social-app export: first rows minutes after midnight on 2024-01-01.
    tables = label_tables([subscription_row("a1", "a", "2024-01-01T00:06", None)], end="2024-12-20")
    tables["usage_events"] = contract_frame(
        "usage_events",
        [{"customer_id": "a", "occurred_at": "2024-01-01T00:06", "event_type": "post"}],
    )
    # 31 calendar days (Jan 1..31) are history before Feb 1, not 30 days and 23:54 hours.
    assert build_cutoffs(tables, LabelConfig(min_history_days=31))[0] == pd.Timestamp(
        "2024-02-01", tz="UTC"
    )
    assert build_cutoffs(tables, LabelConfig(min_history_days=32))[0] == pd.Timestamp(
        "2024-03-01", tz="UTC"
    )


def _usage(days: pd.DatetimeIndex) -> pd.DataFrame:
    return contract_frame(
        "usage_events",
        [{"customer_id": "a", "occurred_at": d.isoformat(), "event_type": "login"} for d in days],
    )


def test_data_end_ignores_a_stray_event_months_after_the_rest() -> None:
    tables = label_tables([subscription_row("a1", "a", "2023-03-01", None)], end="2024-12-31")
    tables["usage_events"] = _usage(pd.date_range("2023-06-01", "2024-12-31", freq="D"))
    clean = data_end(tables)
    tables["usage_events"] = pd.concat(
        [tables["usage_events"], _usage(pd.DatetimeIndex(["2025-08-20"]))], ignore_index=True
    )

    assert data_end(tables) == clean == pd.Timestamp("2024-12-31", tz="UTC")
    assert data_end(tables, explicit=dt.date(2024, 11, 30)) == pd.Timestamp(
        "2024-11-30T23:59:59.999999", tz="UTC"
    )


def test_paid_through_end_after_as_of_does_not_extend_the_data() -> None:
    subs = [subscription_row("a1", "a", "2023-03-01", "2025-09-30", period="annual")]
    tables = label_tables(subs, end="2024-12-31")

    assert data_end(tables, as_of=dt.date(2024, 12, 31)) == pd.Timestamp("2024-12-31", tz="UTC")
    assert data_end(tables) == pd.Timestamp("2025-09-30", tz="UTC")  # without as_of it counts
