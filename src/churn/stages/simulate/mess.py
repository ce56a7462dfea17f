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
import pyarrow as pa

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
    local = np.where(missing, _NAT, seconds + minutes * 60)
    suffix = np.where(naive, len(_TIMESTAMP_OFFSETS), offset)  # the last suffix is ""
    return format_iso_seconds(local, suffix, (*_TIMESTAMP_OFFSETS, ""), missing)


#: ``YYYY-MM-DDTHH:MM:SS``: the first byte of each pair of digits (century, year, month, day,
#: hour, minute, second).
_ISO_PAIRS = (0, 2, 5, 8, 11, 14, 17)
_ISO_TEMPLATE = np.frombuffer(b"0000-00-00T00:00:00", dtype=np.uint8)
#: The ASCII digits of 0-99, two bytes each: one lookup writes a pair.
_DIGIT_PAIRS = np.frombuffer(
    "".join(f"{i:02d}" for i in range(100)).encode(), dtype=np.uint8
).reshape(100, 2)


def format_iso_seconds(
    seconds: np.ndarray, suffix: np.ndarray, suffixes: tuple[str, ...], missing: np.ndarray
) -> pd.Series:
    """Write whole seconds since the epoch as ``YYYY-MM-DDTHH:MM:SS`` plus a suffix, as text.

    The same strings as ``np.datetime_as_string(unit="s")`` joined to the suffix, built as
    ASCII digits in one byte matrix and handed to Arrow as a string array: at a million
    customers the simulator writes 12M ticket timestamps, which took 11.5 s through NumPy's
    strings and Python objects (cProfile, 2026-12-07).

    Args:
        seconds: Seconds since 1970-01-01 (any value where ``missing``).
        suffix: Per row, the position of its suffix in ``suffixes``.
        suffixes: ASCII texts written after the time (an offset such as ``+05:30``, or "").
        missing: Rows that are missing (``NaN`` in the result).

    Returns:
        A ``str`` Series.

    Raises:
        ValueError: If a year is outside 1000-9999 (the strings would not be four digits).
    """
    moments = np.where(missing, 0, seconds).astype("datetime64[s]")
    days = moments.astype("datetime64[D]")  # floors, also before 1970
    months = days.astype("datetime64[M]")
    years = months.astype("datetime64[Y]").astype(np.int64) + 1970
    known_years = years[~missing]
    if ((known_years < 1000) | (known_years > 9999)).any():
        raise ValueError("ISO timestamps need years between 1000 and 9999")
    of_day = (moments - days).astype(np.int32)
    pairs = (
        years // 100,
        years % 100,
        months.astype(np.int64) % 12 + 1,
        (days - months).astype(np.int32) + 1,
        of_day // 3600,
        of_day // 60 % 60,
        of_day % 60,
    )
    coded = [text.encode("ascii") for text in suffixes]
    suffix_lengths = np.array([len(text) for text in coded])
    widest = int(suffix_lengths.max())
    width = len(_ISO_TEMPLATE) + widest
    chars = np.zeros((len(seconds), width), dtype=np.uint8)
    chars[:, : len(_ISO_TEMPLATE)] = _ISO_TEMPLATE
    for start, value in zip(_ISO_PAIRS, pairs, strict=True):
        chars[:, start : start + 2] = _DIGIT_PAIRS[value]
    table = np.zeros((len(coded), widest), dtype=np.uint8)
    for row, text in enumerate(coded):
        table[row, : len(text)] = np.frombuffer(text, dtype=np.uint8)
    chars[:, len(_ISO_TEMPLATE) :] = table[suffix]
    lengths = np.where(missing, 0, len(_ISO_TEMPLATE) + suffix_lengths[suffix])
    # Row-major order keeps each row's first ``length`` bytes together, rows in order.
    data = chars[np.arange(width) < lengths[:, None]]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    validity = pa.array(~missing, type=pa.bool_()).buffers()[1]
    text = pa.LargeStringArray.from_buffers(
        len(seconds), pa.py_buffer(offsets), pa.py_buffer(data), validity, int(missing.sum())
    )
    return text.to_pandas()


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
