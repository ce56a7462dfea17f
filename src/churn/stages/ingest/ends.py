"""A table's data end for ``churn ingest``, computed without sorting the whole event time column.

:func:`churn.domain.data_end.find_table_end` sorts every event time and drops duplicate days
through pandas; on 17M usage events that was about a tenth of ingest (issue #14).
:func:`find_table_end_fast` gives the same :class:`~churn.domain.data_end.TableEnd` (the tests
compare both) through :func:`churn.domain.data_end.find_density_end_of_ticks`, which partitions
instead of sorting.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from churn.domain.data_end import TableEnd, end_of_day, find_density_end_of_ticks
from churn.validation.coerce import UTC_DTYPE


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
        gap_days: See :func:`churn.domain.data_end.find_density_end`.
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
        gap_days: See :func:`churn.domain.data_end.find_density_end`.
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
        found = find_density_end_of_ticks(micros, "us", gap_days, overwrite=True)  # a copy
        assert found is not None  # micros is not empty
        end, reason = found
    stray = int((micros > end.value // 1000).sum())  # .value is in nanoseconds
    return TableEnd(table, column, last_seen, end, stray, reason if stray else "")
