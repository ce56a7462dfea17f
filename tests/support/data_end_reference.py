"""Naive reference of the data end: every timestamp column of a table stacked, then the rule.

The straightforward reading of :func:`churn.labels.schedule.data_end`: per table, stack every
timestamp column (paid-through ends after the ``as_of`` day left out), hand them to
:func:`churn.domain.data_end.find_density_end`, and take the latest table end. The lean NumPy
path and the label stage's DuckDB path over files are both compared with it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import pandas as pd

from churn.domain.data_end import end_of_day, find_density_end
from churn.labels.schedule import SCHEDULED_END_COLUMNS


def naive_data_end(
    tables: Mapping[str, pd.DataFrame], gap_days: int = 30, as_of: dt.date | None = None
) -> pd.Timestamp | None:
    """Return the latest table end by the rule, or ``None`` when no table holds a timestamp."""
    horizon = None if as_of is None else end_of_day(as_of)
    ends = []
    for table, frame in tables.items():
        stacked = []
        for name in frame.columns:
            if not pd.api.types.is_datetime64_any_dtype(frame[name].dtype):
                continue
            values = pd.to_datetime(frame[name].dropna(), utc=True)
            if horizon is not None and name in SCHEDULED_END_COLUMNS.get(table, ()):
                values = values[values <= horizon]
            stacked.append(values)
        if stacked and (found := find_density_end(pd.concat(stacked), gap_days)) is not None:
            ends.append(found[0])
    return max(ends) if ends else None
