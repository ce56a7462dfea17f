"""Input modes and the reference date ("now") of a run.

``ingest.mode`` says what the input looks like: :attr:`Mode.EVENTS`, the full contract
(customers, subscriptions and event tables, labels over many monthly cutoffs), or
:attr:`Mode.ENTITY`, one customer table with a label column (one cutoff: the reference date).
:class:`Mode` is a ``StrEnum``, so ``params.yaml`` keeps its plain strings and a member equals its
string value.

The reference date of a run is defined once, by :func:`reference_date`: ``ingest.as_of`` when set,
else the current date in UTC. Ingest quarantines rows stamped after it; in entity mode it is the
cutoff that label and score use.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import pandas as pd

from churn.sql import utc_midnight


class Mode(StrEnum):
    """What the input tables are (``ingest.mode``)."""

    EVENTS = "events"
    """The full data contract: customers, subscriptions and event tables."""
    ENTITY = "entity"
    """One customer table with a churn label column; no event tables."""


def reference_date(as_of: dt.date | None, today: dt.date | None = None) -> dt.date:
    """Return the run's reference date: ``as_of`` if configured, else today's date in UTC.

    Args:
        as_of: ``ingest.as_of`` (``None`` when not configured).
        today: The current UTC date; ``None`` reads the clock (a parameter so tests can pin it).

    Returns:
        The reference date.
    """
    if as_of is not None:
        return as_of
    return today if today is not None else dt.datetime.now(dt.UTC).date()


def reference_timestamp(as_of: dt.date | None, today: dt.date | None = None) -> pd.Timestamp:
    """Return :func:`reference_date` as midnight UTC (``datetime64[us, UTC]`` resolution)."""
    return utc_midnight(reference_date(as_of, today))
