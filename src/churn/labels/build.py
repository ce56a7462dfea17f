"""Point-in-time labels: the active population and the churn label at every cutoff.

The cutoffs and the end of the data come from :mod:`churn.labels.schedule`. For a cutoff ``T``
(midnight UTC, exclusive: a row stamped at ``T`` is in the future):

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

The **end of the data** (:func:`churn.labels.schedule.data_end`) is robust to stray rows;
:func:`churn.labels.plausibility.describe_cutoffs` and
:func:`~churn.labels.plausibility.check_label_plausibility` then report every cutoff and stop
on churn rates that only broken end dates produce.

The heavy work is set-based SQL in DuckDB; pandas is the glue. The subscription-state SQL is
shared with the billing features (:mod:`churn.features.families.billing`) so that "active" and
"MRR at T" mean the same thing in labels and features.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import pandas as pd

from churn.config import LabelConfig
from churn.domain.contract import TIMESTAMP_DTYPE
from churn.domain.subscriptions import (
    sql_timestamp,
    subscription_summary_sql,
    subscriptions_active_at_cutoffs_sql,
)
from churn.errors import EmptyPopulationError
from churn.labels.plausibility import add_label_rate
from churn.labels.schedule import build_cutoffs, data_end, require_subscriptions
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
    require_subscriptions(tables)
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
    return count_labels_at(tables, cfg, _build_schedule_or_raise(tables, cfg, end), end)


def count_labels_at(
    tables: Mapping[str, pd.DataFrame],
    cfg: LabelConfig,
    cutoffs: list[pd.Timestamp],
    end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """:func:`count_labels` at the given cutoffs (the schedule :func:`build_cutoffs` gives).

    Reads only ``subscriptions``, ``subscription_changes`` and ``customers``.

    Raises:
        EmptyPopulationError: If no customer is in any population.
    """
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


def label_counts_agree(
    cutoffs: list[pd.Timestamp], cfg: LabelConfig, end: pd.Timestamp, other_end: pd.Timestamp
) -> bool:
    """Whether :func:`count_labels_at` gives the same counts at the two data ends.

    A cutoff's label is known (counted as observed) when its window of
    ``horizon_days + grace_days`` ends at or before the data end (:func:`_churn_sql`); nothing
    else in the counts depends on the end. So the counts agree when no cutoff's window ends
    after one end but not after the other. (The rows' ``observed_days`` may differ; they are
    not counted.)
    """
    window = pd.Timedelta(days=cfg.horizon_days + cfg.grace_days)
    end, other_end = utc_timestamp(end), utc_timestamp(other_end)
    return all(
        (utc_timestamp(cutoff) + window > end) == (utc_timestamp(cutoff) + window > other_end)
        for cutoff in cutoffs
    )


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
