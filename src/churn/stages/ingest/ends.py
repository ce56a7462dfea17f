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


def _distinct_days(micros: np.ndarray) -> np.ndarray:
    """The sorted distinct UTC days (as microseconds at midnight) of ``micros``."""
    days = np.floor_divide(micros, _US_PER_DAY)
    first, last = int(days.min()), int(days.max())
    if last - first <= _MAX_DAY_SPAN:
        counts = np.bincount(days - first, minlength=last - first + 1)
        distinct = np.flatnonzero(counts) + first
    else:  # a value centuries away: counting per day would need too much memory
        distinct = np.sort(pd.unique(days))
    return distinct.astype(np.int64) * _US_PER_DAY


def _as_utc(micros: np.ndarray) -> pd.Series:
    return pd.Series(micros.astype("datetime64[us]")).dt.tz_localize("UTC").astype(UTC_DTYPE)


def find_density_end_fast(micros: np.ndarray, gap_days: int) -> tuple[pd.Timestamp, str] | None:
    """:func:`churn.domain.data_end.find_density_end` of UTC microseconds (no missing values).

    Args:
        micros: Event times as microseconds since the epoch, any order.
        gap_days: Minimum silent gap, in days, that separates stray values from the bulk.

    Returns:
        ``(end, reason)`` as ``find_density_end`` returns them; ``None`` without values.
    """
    if len(micros) == 0:
        return None
    k = int(np.floor(ANCHOR_QUANTILE * (len(micros) - 1)))
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
    micros = values[present]
    if len(micros) == 0:
        return None
    last_seen = pd.Timestamp(int(micros.max()), unit="us", tz="UTC")
    if explicit is not None:
        end, reason = end_of_day(explicit), f"after ingest.data_end = {explicit.isoformat()}"
    else:
        found = find_density_end_fast(micros, gap_days)
        assert found is not None  # micros is not empty
        end, reason = found
    stray = int((micros > end.value // 1000).sum())  # .value is in nanoseconds
    return TableEnd(table, column, last_seen, end, stray, reason if stray else "")
