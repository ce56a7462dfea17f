"""The deliberate messiness of exported data (``simulate.mess``).

A few missing values in nullable columns, about 0.1% exact duplicate rows in the event
tables, support-ticket timestamps as ISO-8601 strings with mixed UTC offsets (0.2% without
an offset: UTC wall time, matching the default ``ingest.input_timezone``). Mess draws come
from their own random stream (``World.mess_rng``), so the business is the same with or
without mess; the order of the calls below is part of the output.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churn.stages.simulate.arrays import _NAT

_DUPLICATE_SHARE = 0.001
_TIMESTAMP_OFFSETS = ("Z", "+00:00", "+01:00", "+02:00", "-05:00", "-08:00", "+05:30")
_OFFSET_MINUTES = np.array([0, 0, 60, 120, -300, -480, 330])
_NAIVE_TIMESTAMP_SHARE = 0.002
# Share of missing values per nullable column.
_CUSTOMER_BLANKS = (("lead_created_at", 0.01), ("acquisition_channel", 0.005),
                    ("campaign", 0.03), ("segment", 0.005), ("country", 0.02),
                    ("trial_days", 0.01))
_TICKET_BLANKS = (("channel", 0.02), ("category", 0.01), ("priority", 0.005),
                  ("reopened", 0.005))
# Event tables duplicated at assembly (usage rows are duplicated month by month instead).
_DUPLICATED_TABLES = ("presale_touchpoints", "postsale_touchpoints", "nps_responses",
                      "support_tickets")


def duplicated_order(order: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``order`` with about ``_DUPLICATE_SHARE`` of its entries repeated next to the original."""
    return repeat_duplicates(order, draw_duplicates(len(order), rng))


def draw_duplicates(rows: int, rng: np.random.Generator) -> np.ndarray:
    """Which of ``rows`` positions :func:`duplicated_order` repeats (the same draws).

    The draws depend on the number of rows only, so they can be taken before the rows' order
    is known (the simulator sorts a month's usage rows on a thread) and applied to it later
    with :func:`repeat_duplicates`.
    """
    return rng.random(rows) < _DUPLICATE_SHARE


def repeat_duplicates(order: np.ndarray, duplicates: np.ndarray) -> np.ndarray:
    """``order`` with the entries at the positions flagged in ``duplicates`` repeated."""
    return np.repeat(order, 1 + duplicates)


def duplicate_event_tables(tables: dict[str, pd.DataFrame], rng: np.random.Generator) -> None:
    """Repeat about ``_DUPLICATE_SHARE`` of the rows of each event table, in place in ``tables``."""
    for name in _DUPLICATED_TABLES:
        frame = tables[name]
        rows = duplicated_order(np.arange(len(frame)), rng)
        tables[name] = frame.iloc[rows].reset_index(drop=True)


def _blanked(series: pd.Series, rng: np.random.Generator, share: float) -> pd.Series:
    """``series`` with about ``share`` of its values set missing."""
    return series.mask(rng.random(len(series)) < share)


def blank_customers(customers: pd.DataFrame, rng: np.random.Generator) -> None:
    """Set a few values of the nullable ``customers`` columns missing, in place."""
    for column, share in _CUSTOMER_BLANKS:
        customers[column] = _blanked(customers[column], rng, share)


def blank_tickets(tickets: pd.DataFrame, rng: np.random.Generator) -> None:
    """Set a few values of the nullable ``support_tickets`` columns missing, in place."""
    for column, share in _TICKET_BLANKS:
        tickets[column] = _blanked(tickets[column], rng, share)


def _iso_strings(seconds: np.ndarray, offset: np.ndarray, naive: np.ndarray) -> pd.Series:
    """ISO-8601 strings of UTC instants written in the local time of ``offset`` (codes).

    Naive rows are written in UTC wall time without an offset.
    """
    missing = seconds == _NAT
    minutes = np.where(naive, 0, _OFFSET_MINUTES[offset])
    local = np.where(missing, _NAT, seconds + minutes * 60).astype("datetime64[s]")
    suffix = np.where(naive, "", np.array(_TIMESTAMP_OFFSETS)[offset])
    text = np.char.add(np.datetime_as_string(local, unit="s"), suffix).astype(object)
    text[missing] = None
    return pd.Series(text, dtype="str")


def ticket_time_strings(
    times: dict[str, np.ndarray], rows: int, rng: np.random.Generator
) -> dict[str, pd.Series]:
    """Ticket timestamps as ISO-8601 strings with one UTC offset per row (or none).

    Args:
        times: Column name -> seconds since the epoch (``_NAT`` for missing), ``rows`` long.
        rows: Number of tickets.
        rng: The mess random stream.

    Returns:
        Column name -> ``str`` column, as if each row came from a system in its own time zone.
    """
    offset = rng.integers(0, len(_TIMESTAMP_OFFSETS), rows)
    naive = rng.random(rows) < _NAIVE_TIMESTAMP_SHARE
    return {name: _iso_strings(value, offset, naive) for name, value in times.items()}
