"""Point-in-time labels: the cutoff schedule, the active population and the churn label.

For a cutoff ``T`` (midnight UTC, exclusive: a row stamped at ``T`` is in the future):

* A subscription is **active at T** when ``started_at < T`` and (``ended_at`` is missing or
  ``ended_at >= T``): an end at or after ``T`` is not known at ``T``.
* The **population** at ``T`` is every customer with an active subscription and a tenure of at
  least ``label.min_tenure_days`` (tenure counts from the earlier of the first subscription start
  and ``converted_at``).
* History and tenure count **calendar dates**, not timestamps: a first row at 00:06 on day D
  counts day D whole, so a customer who started on D has a tenure of 31 days at ``D + 31`` and
  ``min_history_days: 31`` from a first event on 2024-01-01 gives the first cutoff 2024-02-01.
* The **label** is 1 when the customer's coverage ends inside ``[T, T + horizon)`` and no
  subscription starts within ``grace_days`` after that end. Coverage is the chain of the
  customer's subscriptions in which each one starts no later than ``grace_days`` after the
  latest end so far, so a renewal (or a re-subscription inside the grace period, or an
  overlapping new contract) continues it. It is ``<NA>`` when ``T + horizon + grace`` lies after
  the end of the data: the outcome is not fully observed and the cutoff is a scoring cutoff.

The **end of the data** is robust to stray rows (:func:`data_end`): one valid event months after
the rest must not make the empty months look observed (cutoffs with no churner at all).
:func:`churn.labels.plausibility.describe_cutoffs` and
:func:`~churn.labels.plausibility.check_label_plausibility` then report every cutoff and stop
on churn rates that only broken end dates produce.

The heavy work is set-based SQL in DuckDB; pandas is the glue. The subscription-state SQL is
shared with the billing features (:mod:`churn.features.families.billing`) so that "active" and
"MRR at T" mean the same thing in labels and features.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from churn.config import LabelConfig
from churn.domain.contract import CONTRACT, EVENT_TABLES, TIMESTAMP_DTYPE
from churn.domain.data_end import end_of_day, find_density_end_of_ticks
from churn.domain.subscriptions import (
    sql_timestamp,
    subscription_summary_sql,
    subscriptions_active_at_cutoffs_sql,
)
from churn.errors import DataContractError, EmptyPopulationError
from churn.labels.plausibility import add_label_rate
from churn.sql import (
    US_PER_DAY,
    connect,
    fetch_frame,
    normalize_timestamps,
    to_utc,
    utc_timestamp,
)

logger = logging.getLogger(__name__)


LABEL_COLUMNS = (
    "customer_id",
    "cutoff",
    "label",
    "mrr",
    "plan",
    "billing_period",
    "tenure_days",
    "days_to_churn",
    "observed_days",
)
"""Columns of the labels frame, in order."""


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


def _subscriptions(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
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
    starts = [utc_timestamp(_subscriptions(tables)["started_at"].min())]
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
    _subscriptions(tables)  # fail early with a clear message when it is missing or empty
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


def _population_sql(min_tenure_days: int, with_changes: bool, with_customers: bool) -> str:
    """SQL of the active population over the registered ``_cutoffs`` table."""
    summary = subscription_summary_sql(
        subscriptions_active_at_cutoffs_sql("_cutoffs", with_changes)
    )
    # Tenure counts from the earlier of first subscription start and conversion; both are
    # before T for anyone active at T, because the earliest start is at most an active start.
    converted = (
        "LEFT JOIN (SELECT customer_id, min(converted_at) AS converted_at FROM customers "
        "GROUP BY customer_id) AS cu USING (customer_id)"
        if with_customers
        else ""
    )
    first_seen = "least(f.first_start, cu.converted_at)" if with_customers else "f.first_start"
    return f"""
        WITH summary AS ({summary}),
        first_start AS (
            SELECT customer_id, min(started_at) AS first_start
            FROM subscriptions GROUP BY customer_id
        ),
        population AS (
            SELECT m.customer_id, m.cutoff, m.mrr, m.plan, m.billing_period,
                   (epoch_us(m.cutoff) - epoch_us(date_trunc('day', {first_seen}))) // {US_PER_DAY}
                       AS tenure_days
            FROM summary AS m
            JOIN first_start AS f USING (customer_id)
            {converted}
        )
        SELECT * FROM population WHERE tenure_days >= {int(min_tenure_days)}"""


def _churn_sql(
    horizon_days: int, grace_days: int, end: pd.Timestamp, longest_horizon_days: int | None = None
) -> str:
    """SQL adding ``label`` to the registered ``_population`` (uses the future, by design).

    Reads ``subscriptions`` and the ``_cutoffs`` the population was built over.

    Also adds the churn time for the survival head (:mod:`churn.model.hazard`):
    ``observed_days``, how many days after the cutoff the outcome is known (the data end minus
    the grace period, at most the longest horizon, at least 0), and ``days_to_churn``, days
    from the cutoff to the coverage end when that end lies inside the observed days (else
    NULL: no churn seen yet). ``label`` is ``days_to_churn < horizon_days`` exactly when
    ``observed_days >= horizon_days``.
    """
    longest = max(horizon_days, longest_horizon_days or horizon_days)
    whole_days_to_end = f"(epoch_us({sql_timestamp(end)}) - epoch_us(p.cutoff)) // {US_PER_DAY}"
    observed = f"greatest(0, least({int(longest)}, {whole_days_to_end} - {int(grace_days)}))"
    return f"""
        WITH ordered AS (
            SELECT customer_id, subscription_id, started_at,
                   coalesce(ended_at, 'infinity'::TIMESTAMP) AS end_at,
                   max(coalesce(ended_at, 'infinity'::TIMESTAMP)) OVER (
                       PARTITION BY customer_id ORDER BY started_at, subscription_id
                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
                   ) AS previous_end
            FROM subscriptions
        ),
        -- Gaps and islands: a subscription starting more than grace_days after every earlier
        -- one has ended opens a new coverage island; anything sooner continues the island.
        islands AS (
            SELECT *, sum(CASE WHEN previous_end IS NULL
                               OR started_at > previous_end + INTERVAL {int(grace_days)} DAY
                          THEN 1 ELSE 0 END) OVER (
                       PARTITION BY customer_id ORDER BY started_at, subscription_id
                       ROWS UNBOUNDED PRECEDING
                   ) AS island
            FROM ordered
        ),
        island_ends AS (
            SELECT customer_id, island, max(end_at) AS island_end
            FROM islands GROUP BY customer_id, island
        ),
        coverage AS (
            -- Every subscription active at T overlaps T, so they all share one island.
            SELECT a.customer_id, a.cutoff, max(e.island_end) AS coverage_end
            FROM ({subscriptions_active_at_cutoffs_sql("_cutoffs")}) AS a
            JOIN islands AS i USING (subscription_id)
            JOIN island_ends AS e ON e.customer_id = i.customer_id AND e.island = i.island
            GROUP BY a.customer_id, a.cutoff
        )
        SELECT p.*,
               CASE
                   WHEN p.cutoff + INTERVAL {int(horizon_days + grace_days)} DAY
                        > {sql_timestamp(end)} THEN NULL
                   WHEN c.coverage_end < p.cutoff + INTERVAL {int(horizon_days)} DAY THEN 1
                   ELSE 0
               END AS label,
               {observed} AS observed_days,
               CASE WHEN c.coverage_end < p.cutoff + to_days(({observed})::INTEGER)
                    THEN (epoch_us(c.coverage_end) - epoch_us(p.cutoff)) / {US_PER_DAY}::DOUBLE
               END AS days_to_churn
        FROM _population AS p
        JOIN coverage AS c USING (customer_id, cutoff)"""


def _label_frame(
    tables: Mapping[str, pd.DataFrame],
    cutoffs: list[pd.Timestamp],
    cfg: LabelConfig,
    with_labels: bool,
    end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Compute population rows (and labels) for ``cutoffs`` in one DuckDB session."""
    frame, customer_ids = _run_label_sql(
        tables,
        cutoffs,
        cfg,
        with_labels,
        end,
        lambda query: f"SELECT * FROM ({query}) ORDER BY cutoff, customer_id",
    )
    codes = frame["customer_id"]
    ids = pd.Series(customer_ids.take(codes.fillna(0).astype("int64").to_numpy()))
    frame["customer_id"] = ids.where(codes.notna().to_numpy())
    return _typed_labels(frame)


def _run_label_sql(
    tables: Mapping[str, pd.DataFrame],
    cutoffs: list[pd.Timestamp],
    cfg: LabelConfig,
    with_labels: bool,
    end: pd.Timestamp | None,
    select: Callable[[str], str],
) -> tuple[pd.DataFrame, pd.Index]:
    """Run ``select(query)`` over the population (and label) rows of ``cutoffs``.

    The rows' ids are integer codes (:func:`_code_ids`); the customer ids by code are returned
    beside the frame for the caller that decodes them.
    """
    needed, customer_ids = _code_ids(
        {
            name: normalize_timestamps(tables[name])
            for name in ("subscriptions", "subscription_changes", "customers")
            if name in tables
        }
    )
    cutoff_frame = pd.DataFrame({"cutoff": pd.Series(cutoffs, dtype=TIMESTAMP_DTYPE)})
    con = connect()
    try:
        for name, frame in needed.items():
            con.register(name, frame)
        con.register("_cutoffs", normalize_timestamps(cutoff_frame))
        population_sql = _population_sql(
            cfg.min_tenure_days, "subscription_changes" in needed, "customers" in needed
        )
        if with_labels:
            con.execute(f"CREATE TEMP TABLE _population AS {population_sql}")
            observed_to = data_end(tables) if end is None else end
            query = _churn_sql(
                cfg.horizon_days, cfg.grace_days, observed_to, max(cfg.horizons_days)
            )
        else:
            query = (
                "SELECT *, NULL::TINYINT AS label, NULL::DOUBLE AS days_to_churn, "
                f"NULL::INTEGER AS observed_days FROM ({population_sql})"
            )
        return fetch_frame(con, select(query)), customer_ids
    finally:
        con.close()


_CODED_IDS = ("customer_id", "subscription_id")


def _code_ids(
    tables: Mapping[str, pd.DataFrame],
) -> tuple[dict[str, pd.DataFrame], pd.Index]:
    """The tables with their ids replaced by integer codes, and the customer ids by code.

    The label SQL only joins, groups and orders by ``customer_id`` and ``subscription_id``;
    codes numbered in the ids' sorted order (as text: code point order, which is DuckDB's
    byte order of UTF-8; numbers in numeric order) join, group and order the same, and
    integers cost less than text: at a million customers (16.5M population rows) the final
    sort by cutoff and customer took 10.0 s on text and 3.4 s on codes, the population 17.2 ->
    14.4 s (2026-12-06). A missing id stays missing (it matches nothing, as before). Tables
    whose id columns differ in dtype are coded on the ids as text.

    Returns:
        The coded tables, and per ``customer_id`` code its id.
    """
    coded = dict(tables)
    customer_ids = pd.Index([], dtype="str")
    for column in _CODED_IDS:
        holders = [name for name, frame in tables.items() if column in frame.columns]
        if not holders:
            continue
        parts = [tables[name][column] for name in holders]
        if len({str(part.dtype) for part in parts}) > 1:
            parts = [part.astype("str") for part in parts]
        codes, uniques = pd.factorize(pd.concat(parts, ignore_index=True), sort=True)
        values = pd.array(codes, dtype="Int64")
        values[codes < 0] = pd.NA
        start = 0
        for name in holders:
            stop = start + len(tables[name])
            coded[name] = coded[name].assign(**{column: values[start:stop]})
            start = stop
        if column == "customer_id":
            customer_ids = pd.Index(uniques)
    return coded, customer_ids


def _typed_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """Cast a label frame to the documented dtypes and column order."""
    return pd.DataFrame(
        {
            "customer_id": frame["customer_id"].astype("str"),
            "cutoff": to_utc(frame["cutoff"]),
            "label": frame["label"].astype("Int8"),
            "mrr": frame["mrr"].astype("float64"),
            "plan": frame["plan"].astype("str"),
            "billing_period": frame["billing_period"].astype("str"),
            "tenure_days": frame["tenure_days"].astype("int64"),
            "days_to_churn": frame["days_to_churn"].astype("float64"),
            "observed_days": frame["observed_days"].astype("Int64"),
        }
    )


def active_population(
    tables: Mapping[str, pd.DataFrame], cutoff: pd.Timestamp, cfg: LabelConfig
) -> pd.DataFrame:
    """Return the customers in the population at one cutoff, with ``label`` <NA>.

    Args:
        tables: Validated tables (``subscriptions`` required; ``subscription_changes`` and
            ``customers`` used when present).
        cutoff: The cutoff (naive values are read as UTC).
        cfg: Label configuration (``min_tenure_days``).

    Returns:
        A labels frame (see :data:`LABEL_COLUMNS`) sorted by ``customer_id``; possibly empty.
    """
    _subscriptions(tables)
    return _label_frame(tables, [utc_timestamp(cutoff)], cfg, with_labels=False)


def build_labels(
    tables: Mapping[str, pd.DataFrame], cfg: LabelConfig, end: pd.Timestamp | None = None
) -> pd.DataFrame:
    """Build the labels frame over the whole cutoff schedule.

    Args:
        tables: Validated tables (``subscriptions`` required).
        cfg: Label configuration.
        end: The end of the data (default: :func:`data_end` with its defaults).

    Returns:
        One row per (customer, cutoff), sorted by cutoff then customer, with the columns of
        :data:`LABEL_COLUMNS`.

    Raises:
        EmptyPopulationError: If there is no cutoff or no customer in any population.
    """
    cutoffs = _build_schedule_or_raise(tables, cfg, end)
    labels = _label_frame(tables, cutoffs, cfg, with_labels=True, end=end)
    if labels.empty:
        raise _make_no_population_error(cfg, cutoffs)
    return labels


def count_labels(
    tables: Mapping[str, pd.DataFrame], cfg: LabelConfig, end: pd.Timestamp | None = None
) -> pd.DataFrame:
    """Return per cutoff the population, the observed labels and the churners, without the rows.

    The same frame as :func:`churn.labels.plausibility.summarize_labels` of
    :func:`build_labels` (the same SQL, grouped by cutoff in DuckDB), for a caller that only
    describes the cutoffs (the data check of ``churn ingest``): the rows are never fetched,
    sorted or decoded, which took a quarter of the labels' time at a million customers
    (2026-12-06, docs/benchmarks-log.md).

    Args:
        tables: Validated tables (``subscriptions`` required).
        cfg: Label configuration.
        end: The end of the data (default: :func:`data_end` with its defaults).

    Returns:
        Indexed by ``cutoff`` (UTC, increasing): ``customers`` (population rows), ``observed``
        (rows with a label), ``churned`` (NaN when none is observed) and ``label_rate``.

    Raises:
        EmptyPopulationError: As :func:`build_labels`.
    """
    cutoffs = _build_schedule_or_raise(tables, cfg, end)
    counts, _ = _run_label_sql(
        tables,
        cutoffs,
        cfg,
        True,
        end,
        lambda query: (
            "SELECT cutoff, count(*) AS customers, count(label) AS observed, "
            f"sum(label)::DOUBLE AS churned FROM ({query}) GROUP BY cutoff ORDER BY cutoff"
        ),
    )
    if counts.empty:
        raise _make_no_population_error(cfg, cutoffs)
    counted = pd.DataFrame(
        {
            # The dtypes of summarize_labels' groupby of a labels frame.
            "customers": counts["customers"].astype("Int64").array,
            "observed": counts["observed"].astype("Int64").array,
            "churned": counts["churned"].astype("float64").to_numpy(),
        },
        index=pd.Index(to_utc(counts["cutoff"]), name="cutoff"),
    )
    return add_label_rate(counted)


def _build_schedule_or_raise(
    tables: Mapping[str, pd.DataFrame], cfg: LabelConfig, end: pd.Timestamp | None
) -> list[pd.Timestamp]:
    cutoffs = build_cutoffs(tables, cfg, end)
    if not cutoffs:
        raise EmptyPopulationError(
            "no cutoff fits the data: the history is shorter than label.min_history_days "
            "or label.first_cutoff is after the end of the data"
        )
    return cutoffs


def _make_no_population_error(
    cfg: LabelConfig, cutoffs: list[pd.Timestamp]
) -> EmptyPopulationError:
    return EmptyPopulationError(
        f"no customer is active (with tenure >= {cfg.min_tenure_days} days) at any of "
        f"the {len(cutoffs)} cutoffs from {cutoffs[0].date()} to {cutoffs[-1].date()}"
    )


def build_entity_labels(
    customers: pd.DataFrame, label_column: str, as_of: pd.Timestamp | dt.date
) -> pd.DataFrame:
    """Build the labels frame of entity mode: one row per customer at one constant cutoff.

    Args:
        customers: The validated customer table with the label column.
        label_column: Name of the 0/1 label column.
        as_of: The cutoff (its date, at midnight UTC).

    Returns:
        A labels frame. ``mrr``, ``plan``, ``billing_period`` and ``tenure_days`` come from
        same-named columns when present (``tenure`` is accepted for ``tenure_days``), else they
        are missing; ``tenure_days`` is nullable ``Int64`` here because it may be unknown.

    Raises:
        DataContractError: If the label column is missing or holds values other than 0/1.
        EmptyPopulationError: If there are no customers.
    """
    if label_column not in customers.columns:
        raise DataContractError(
            f"entity mode: the label column {label_column!r} is not in the customer table "
            f"(columns: {list(customers.columns)}); set ingest.label_column"
        )
    if customers.empty:
        raise EmptyPopulationError("entity mode: the customer table is empty")
    customers = customers.reset_index(drop=True)
    label = pd.to_numeric(customers[label_column].astype("object"), errors="coerce")
    if not label.isin([0, 1]).all():  # missing values fail too
        raise DataContractError(
            f"entity mode: the label column {label_column!r} must hold only 0 and 1"
        )
    cutoff = utc_timestamp(pd.Timestamp(as_of).normalize()).as_unit("us")
    tenure_source = next((c for c in ("tenure_days", "tenure") if c in customers.columns), None)
    if tenure_source is None:
        tenure = pd.Series(pd.NA, index=customers.index, dtype="Int64")
    else:
        tenure = pd.to_numeric(customers[tenure_source], errors="coerce").round().astype("Int64")
    missing_text = pd.Series(None, index=customers.index, dtype="str")
    return pd.DataFrame(
        {
            "customer_id": customers["customer_id"].astype("str"),
            "cutoff": pd.Series(cutoff, index=customers.index, dtype=TIMESTAMP_DTYPE),
            "label": label.astype("Int8"),
            "mrr": (
                pd.to_numeric(customers["mrr"], errors="coerce").astype("float64")
                if "mrr" in customers.columns
                else pd.Series(float("nan"), index=customers.index)
            ),
            "plan": customers["plan"].astype("str") if "plan" in customers else missing_text,
            "billing_period": (
                customers["billing_period"].astype("str")
                if "billing_period" in customers
                else missing_text
            ),
            "tenure_days": tenure,
            # Entity mode has no dates: no churn time, the survival head falls back to the
            # classifier (docs/survival.md).
            "days_to_churn": pd.Series(float("nan"), index=customers.index),
            "observed_days": pd.Series(pd.NA, index=customers.index, dtype="Int64"),
        }
    )
