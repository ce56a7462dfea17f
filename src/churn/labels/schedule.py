"""The cutoff schedule and the end of the data, which the labels are built over.

* **Cutoffs** (:func:`build_cutoffs`) are month starts (midnight UTC) every
  ``label.every_months``, from the first month start at least ``label.min_history_days`` after
  the data covers every source (:func:`history_start`) up to the last month start not after
  the end of the data. History counts **calendar dates**, not timestamps: ``min_history_days:
  31`` from a first event at 00:06 on 2024-01-01 gives the first cutoff 2024-02-01.
* The **end of the data** (:func:`data_end`) is robust to stray rows: one valid event months
  after the rest must not make the empty months look observed (cutoffs with no churner at
  all). Paid-through subscription ends after ``ingest.as_of`` are not observations.

Tables that can answer without being read (the label stage's Parquet files, in DuckDB and from
their row-group statistics) implement :class:`DensityEnds` and :class:`EarliestTimes`; plain
mappings of frames are read here. :mod:`churn.labels.build` builds the population and the
labels over this schedule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from churn.config import LabelConfig
from churn.domain.contract import CONTRACT, EVENT_TABLES
from churn.domain.data_end import end_of_day, find_density_end_of_ticks
from churn.errors import DataContractError, EmptyPopulationError
from churn.sql import utc_timestamp

DEFAULT_GAP_DAYS = 30
"""Default silent gap that separates stray rows from the bulk (``ingest.data_end_gap_days``)."""

SCHEDULED_END_COLUMNS = {"subscriptions": ("ended_at",)}
"""Timestamps that may lie after ``as_of`` (paid-through ends): never the end of the data."""


def data_end(
    tables: Mapping[str, pd.DataFrame],
    gap_days: int = DEFAULT_GAP_DAYS,
    explicit: dt.date | None = None,
    as_of: dt.date | None = None,
) -> pd.Timestamp:
    """Return the end of the data (UTC): the latest table end, robust to stray rows.

    Each table's end is where the density of all its timestamps (every timestamp column,
    stacked) ends, by the rule of :func:`churn.domain.data_end.find_density_end`: values
    after a silent gap longer than ``gap_days`` (or 10 typical gaps) past the table's 99.9th
    percentile are stray and ignored. Scheduled ends (a subscription's ``ended_at``) after the
    end of the ``as_of`` day are paid-through dates, not observations, and are ignored too.
    Tables that are also :class:`DensityEnds` find each table's end themselves (the same rule
    on the same values), so no table is read here.

    Args:
        tables: Validated tables.
        gap_days: ``ingest.data_end_gap_days``.
        explicit: ``ingest.data_end``: when set, the end of that day, no derivation.
        as_of: ``ingest.as_of``; ``None``: scheduled ends count like any timestamp.

    Raises:
        EmptyPopulationError: If the tables hold no timestamp at all.
    """
    if explicit is not None:
        return end_of_day(explicit)
    horizon = None if as_of is None else end_of_day(as_of)
    ends: list[pd.Timestamp] = []
    for table in tables:
        scheduled = SCHEDULED_END_COLUMNS.get(table, ())
        until = {} if horizon is None else dict.fromkeys(scheduled, horizon)
        if isinstance(tables, DensityEnds):  # the tables find it themselves (files, in DuckDB)
            found = tables.density_end(table, gap_days, until)
        else:
            found = find_frame_end(tables[table], gap_days, until)
        if found is not None:
            ends.append(found)
    if not ends:
        raise EmptyPopulationError("the tables hold no timestamps: there is no data to label")
    return max(utc_timestamp(t) for t in ends)


def find_frame_end(
    frame: pd.DataFrame, gap_days: int, until: Mapping[str, pd.Timestamp]
) -> pd.Timestamp | None:
    """One table's end for :func:`data_end` from its frame: :class:`DensityEnds`'s
    ``density_end`` of the frame's timestamp columns (``until``: UTC times)."""
    stacked = []
    for name in frame.columns:
        if not pd.api.types.is_datetime64_any_dtype(frame[name].dtype):
            continue
        values = _utc_numbers(frame[name])
        if name in until:
            limit = pd.Timestamp(until[name])
            limit = limit.tz_convert("UTC").tz_localize(None) if limit.tzinfo else limit
            values = values[values <= limit.to_datetime64()]
        stacked.append(values)
    return _density_end(stacked, gap_days) if stacked else None


def _utc_numbers(column: pd.Series) -> np.ndarray:
    """A timestamp column's present values as naive UTC ``datetime64`` (naive read as UTC)."""
    # tz_convert(None) is UTC wall time; unlike pd.to_datetime(utc=True) it copies nothing.
    naive = column.dt.tz_convert(None) if isinstance(column.dtype, pd.DatetimeTZDtype) else column
    values = naive.to_numpy()
    return values[~np.isnat(values)]  # a copy: the caller may partition it in place


def _density_end(columns: list[np.ndarray], gap_days: int) -> pd.Timestamp | None:
    """The end :func:`~churn.domain.data_end.find_density_end` finds on the stacked columns.

    The same rule on the same values (``tests/unit/labels/test_data_end_lean.py`` compares the
    two on random data), through
    :func:`~churn.domain.data_end.find_density_end_of_ticks`: no sort of every value, no pandas
    copies (at a million customers the usage timestamps alone are 170M values, which
    ``find_density_end``'s pandas pipeline copied about ten times).

    Args:
        columns: A table's timestamp columns as naive UTC ``datetime64`` without missing values
            (each may be modified in place).
        gap_days: See :func:`~churn.domain.data_end.find_density_end`.

    Returns:
        The end (UTC), or ``None`` when there are no values.
    """
    # The stacked columns share the finest of their resolutions, as pandas would stack them.
    values = columns[0] if len(columns) == 1 else np.concatenate(columns)
    unit = np.datetime_data(values.dtype)[0]
    found = find_density_end_of_ticks(values.view(np.int64), unit, gap_days, overwrite=True)
    return None if found is None else found[0]


def _month_start_on_or_after(value: pd.Timestamp) -> pd.Timestamp:
    start = value.normalize().replace(day=1)
    return start if start == value else start + pd.DateOffset(months=1)


def _month_start_on_or_before(value: pd.Timestamp) -> pd.Timestamp:
    return value.normalize().replace(day=1)


def require_subscriptions(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Return the ``subscriptions`` table, which every schedule and population needs.

    Raises:
        DataContractError: If it is missing.
        EmptyPopulationError: If it has no subscription start.
    """
    if "subscriptions" not in tables:
        raise DataContractError("the 'subscriptions' table is required to build labels")
    subscriptions = tables["subscriptions"]
    if subscriptions["started_at"].notna().sum() == 0:
        raise EmptyPopulationError("the 'subscriptions' table is empty: no population to label")
    return subscriptions


@runtime_checkable
class DensityEnds(Protocol):
    """Tables that find a table's data end without handing its values over (the label stage's
    files answer in DuckDB: at a million customers the usage events' 170M times took 23 s to
    read into NumPy and search there)."""

    def __iter__(self) -> Iterator[str]:
        """The names of the tables."""
        ...

    def density_end(
        self, name: str, gap_days: int, until: Mapping[str, pd.Timestamp]
    ) -> pd.Timestamp | None:
        """The end :func:`churn.domain.data_end.find_density_end` finds on every timestamp
        column of table ``name`` stacked, each column in ``until`` without its values after
        the given time (UTC); ``None`` when the table holds no timestamp."""
        ...


@runtime_checkable
class EarliestTimes(Protocol):
    """Tables that know a time column's earliest value without being read (the label stage's
    files answer from their row-group statistics)."""

    def earliest_time(self, name: str, column: str) -> pd.Timestamp | None:
        """The earliest value of ``column`` in table ``name`` (UTC), ``None`` without any."""
        ...


def history_start(tables: Mapping[str, pd.DataFrame]) -> pd.Timestamp:
    """Return when the data starts covering every source: the automatic schedule's origin.

    That is the earliest subscription start, or later the first row of the event table that
    starts last. A CRM often reaches back years before product analytics or the help desk
    were connected (the simulator's back-filled customer base does the same); cutoffs before
    an event table starts would see zero usage or tickets where the truth is "unknown", and
    no churn at all where ends were not recorded yet. Tables that are also
    :class:`EarliestTimes` are asked for an event table's first row instead of being read.
    """
    starts = [utc_timestamp(require_subscriptions(tables)["started_at"].min())]
    for name in EVENT_TABLES:
        if name == "subscriptions" or name not in tables:
            continue
        column = CONTRACT[name].event_time
        if isinstance(tables, EarliestTimes):
            earliest = tables.earliest_time(name, column)
        else:
            # One lookup per table: a lazy mapping reads the file on each.
            stamps = tables[name][column]
            earliest = utc_timestamp(stamps.min()) if stamps.notna().any() else None
        if earliest is not None:
            starts.append(earliest)
    return max(starts)


def build_cutoffs(
    tables: Mapping[str, pd.DataFrame], cfg: LabelConfig, end: pd.Timestamp | None = None
) -> list[pd.Timestamp]:
    """Return the cutoff schedule: month starts (midnight UTC) every ``cfg.every_months``.

    Args:
        tables: Validated tables; ``subscriptions`` is required.
        cfg: Label configuration. A configured ``first_cutoff`` that is not a month start moves
            to the next month start; ``last_cutoff`` moves back to its month start.
            ``first_cutoff=None``: the first month start at least ``min_history_days`` after
            :func:`history_start`. ``last_cutoff=None``: the last month start not after the
            end of the data (``end``; default :func:`data_end` with its defaults).
        end: The end of the data, when the caller derived it (e.g. from ``ingest.data_end``).

    Returns:
        Cutoffs in increasing order (possibly empty when the data is too short).
    """
    require_subscriptions(tables)  # fail early with a clear message when it is missing or empty
    if cfg.first_cutoff is None:
        # Calendar dates, not timestamps: a first row at 00:06 on day D counts day D whole.
        start = history_start(tables).normalize()
        first = _month_start_on_or_after(start + pd.Timedelta(days=cfg.min_history_days))
    else:
        first = _month_start_on_or_after(utc_timestamp(cfg.first_cutoff))
    if cfg.last_cutoff is None:
        last = _month_start_on_or_before(data_end(tables) if end is None else end)
    else:
        last = _month_start_on_or_before(utc_timestamp(cfg.last_cutoff))
    cutoffs: list[pd.Timestamp] = []
    step = 0
    while (cutoff := first + pd.DateOffset(months=step * cfg.every_months)) <= last:
        cutoffs.append(pd.Timestamp(cutoff).as_unit("us"))
        step += 1
    return cutoffs
