"""A table's data end for ``churn ingest``, computed without sorting the whole event time column.

:func:`churn.domain.data_end.find_table_end` sorts every event time and drops duplicate days
through pandas; on 17M usage events that was about a tenth of ingest (issue #14). The rule
only needs three things, each cheaper than a sort:

* the anchor, one order statistic (``np.partition``, linear time);
* the distinct days, for the median gap between days with data (a count per day);
* the sorted values from the anchor on (0.1% of the rows), where the silent gap is looked for.

:func:`find_table_end_fast` gives the same :class:`~churn.domain.data_end.TableEnd` as
``find_table_end`` (the tests compare both); the small parts (distinct days, the tail) go
through the same pandas operations, so that medians and rounding match.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from churn.domain.data_end import (
    ANCHOR_QUANTILE,
    TableEnd,
    end_of_day,
    find_end_before_silent_gap,
    find_silent_gap_limit,
)
from churn.validation.coerce import UTC_DTYPE

_US_PER_DAY = 86_400 * 10**6
_MAX_DAY_SPAN = 10_000_000
"""Beyond this many days between the first and last value, distinct days are hashed, not counted."""


_CHUNK = 1 << 23
"""Values per step where a whole-column temporary is avoided (64 MB of ``int64``)."""


def _distinct_days(micros: np.ndarray) -> np.ndarray:
    """The sorted distinct UTC days (as microseconds at midnight) of ``micros``.

    Days are counted a chunk at a time, so that no day number is kept per value (170M event
    times at 1M customers: 1.4 GB saved).
    """
    first = int(micros.min()) // _US_PER_DAY
    last = int(micros.max()) // _US_PER_DAY
    if last - first <= _MAX_DAY_SPAN:
        counts = np.zeros(last - first + 1, dtype=np.int64)
        for start in range(0, len(micros), _CHUNK):
            days = np.floor_divide(micros[start : start + _CHUNK], _US_PER_DAY) - first
            counts += np.bincount(days, minlength=last - first + 1)
        distinct = np.flatnonzero(counts) + first
    else:  # a value centuries away: counting per day would need too much memory
        distinct = np.sort(pd.unique(np.floor_divide(micros, _US_PER_DAY)))
    return distinct.astype(np.int64) * _US_PER_DAY


def _as_utc(micros: np.ndarray) -> pd.Series:
    return pd.Series(micros.astype("datetime64[us]")).dt.tz_localize("UTC").astype(UTC_DTYPE)


def find_density_end_fast(
    micros: np.ndarray, gap_days: int, *, overwrite: bool = False
) -> tuple[pd.Timestamp, str] | None:
    """:func:`churn.domain.data_end.find_density_end` of UTC microseconds (no missing values).

    Args:
        micros: Event times as microseconds since the epoch, any order.
        gap_days: Minimum silent gap, in days, that separates stray values from the bulk.
        overwrite: Whether ``micros`` may be reordered (partitioned in place) instead of
            copied: for a caller's own copy of many values.

    Returns:
        ``(end, reason)`` as ``find_density_end`` returns them; ``None`` without values.
    """
    if len(micros) == 0:
        return None
    k = int(np.floor(ANCHOR_QUANTILE * (len(micros) - 1)))
    if overwrite:
        micros.partition(k)
        anchor = micros[k]
    else:
        anchor = np.partition(micros, k)[k]
    days = _as_utc(_distinct_days(micros))
    limit = find_silent_gap_limit(days, gap_days)
    return find_end_before_silent_gap(_as_utc(np.sort(micros[micros >= anchor])), limit)


def find_table_end_fast(
    table: str,
    column: str,
    stamps: pd.Series,
    rows: np.ndarray,
    gap_days: int,
    explicit: dt.date | None = None,
) -> TableEnd | None:
    """:func:`churn.domain.data_end.find_table_end` of ``stamps[rows]``, without copying them.

    Args:
        table: Contract table name.
        column: Its event time column (the name reported).
        stamps: The typed event times (``datetime64[us, UTC]``) of the whole table.
        rows: One boolean per row: the rows to consider (those that broke no other rule).
        gap_days: See :func:`find_density_end_fast`.
        explicit: A configured data end (``ingest.data_end``); replaces the derivation.

    Returns:
        The table's end, or ``None`` when no considered row has an event time.
    """
    values = np.asarray(stamps.astype(UTC_DTYPE).array.asi8)  # NaT: masked out below
    present = rows & ~np.asarray(stamps.isna())
    return find_table_end_of_micros(table, column, values[present], gap_days, explicit)


def find_table_end_of_micros(
    table: str,
    column: str,
    micros: np.ndarray,
    gap_days: int,
    explicit: dt.date | None = None,
) -> TableEnd | None:
    """:func:`find_table_end_fast` of the considered event times as UTC microseconds.

    Args:
        table: Contract table name.
        column: Its event time column (the name reported).
        micros: The event times of the considered rows (no missing values), any order; a
            copy of the caller's, as it is reordered.
        gap_days: See :func:`find_density_end_fast`.
        explicit: A configured data end (``ingest.data_end``); replaces the derivation.

    Returns:
        The table's end, or ``None`` when ``micros`` is empty.
    """
    if len(micros) == 0:
        return None
    last_seen = pd.Timestamp(int(micros.max()), unit="us", tz="UTC")
    if explicit is not None:
        end, reason = end_of_day(explicit), f"after ingest.data_end = {explicit.isoformat()}"
    else:
        found = find_density_end_fast(micros, gap_days, overwrite=True)  # micros is a copy
        assert found is not None  # micros is not empty
        end, reason = found
    stray = int((micros > end.value // 1000).sum())  # .value is in nanoseconds
    return TableEnd(table, column, last_seen, end, stray, reason if stray else "")
