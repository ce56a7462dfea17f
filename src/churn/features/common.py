"""Building blocks shared by the feature families: the query contract and the bucket grid.

Names registered in the DuckDB session by :func:`churn.features.build.build_features`:

* ``_keys``: the distinct ``(customer_id, cutoff)`` pairs of the population, each with its
  dense integer ``_key``.
* one view per input table, under its contract name, timestamps as naive UTC.
* ``_day_bucket``: the bucket grid of :func:`build_bucket_grid`.

**Windowed sums over big event tables.** Joining every event to every cutoff of its customer
multiplies the rows by the number of cutoffs a window covers. Instead, the cutoffs and their
window starts (``T - w``) cut the time line into disjoint buckets; events are summed once per
(customer, bucket), and a window ``[T - w, T)`` is the sum of the buckets it contains (it always
contains whole buckets because both ends are bucket boundaries; :mod:`churn.features.windows`
adds them up). Active days are kept as a 64-bit mask of the days of a bucket (buckets are at
most 63 days long), so distinct days add up too.
Everything before the first bucket lands in one "prehistory" bucket, which only the recency
features ("days since the last ...") and a customer's first row read: its rows are grouped
per customer for the maxima and minima alone, and left out when nothing asks for either. This
relies on cutoffs at midnight UTC, which :func:`churn.features.build.build_features` checks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from churn.domain.catalog import FeatureSpec, Kind, Phase
from churn.sql import days_between

KEYS = "_keys"
KEY_SELECT_LIST = "k._key, k.customer_id, k.cutoff"
"""A family's first output columns, selected from ``_keys AS k``: the population key first."""
DAY_BUCKET = "_day_bucket"
LAST_CUTOFF = "churn_last_cutoff"
"""Session variable: the latest cutoff of ``_keys`` (set by :func:`set_last_cutoff`)."""
FIRST_BUCKET_DAY = "churn_first_bucket_day"
"""Session variable: the first day of the bucket grid (set by :func:`set_last_cutoff`)."""
MAX_BUCKET_DAYS = 63
PREHISTORY = "'-infinity'::TIMESTAMP"
FIRST_USAGE = "_first_usage"
"""Table the usage family keeps for acquisition's trial use: ``customer_id``,
``first_event_at``, each customer's first usage event before the last cutoff (customers without
one have no row). Usage runs before acquisition (:func:`churn.features.build.order_families`)."""


StepBuilder = Callable[[duckdb.DuckDBPyConnection, str], None]
"""A step that is not one SELECT: called with the session and its table name, it creates the
table (:class:`churn.features.windows.WindowedSums`)."""


def create_step(con: duckdb.DuckDBPyConnection, name: str, step: str | StepBuilder) -> None:
    """Create a family step's temporary table ``name`` from its SELECT or its builder."""
    if isinstance(step, str):
        con.execute(f"CREATE TEMP TABLE {name} AS {step}")
    else:
        step(con, name)


@dataclass(frozen=True)
class FamilyQuery:
    """What a family computes: SQL plus one catalog entry per output column.

    Attributes:
        sql: A SELECT returning ``_key``, ``customer_id``, ``cutoff`` (:data:`KEY_SELECT_LIST`) and
            the feature columns, exactly one row per row of ``_keys``.
        specs: Catalog entries, in column order.
        skipped_parts: Optional parts left out because their table is absent (part -> reason).
        steps: ``(temporary table, SELECT or builder)`` pairs created in order before ``sql``
            runs (which reads them; :func:`create_step`), and dropped after it. Each step is a
            statement of its own, so DuckDB holds one step's working state at a time and
            spills it past the memory limit: as common table expressions of one statement, the
            usage family's steps ran out of memory at 1M customers under the default 4 GB
            limit (300k under 1.2 GB), while each step alone spilled and finished.
        reads: Tables kept by other families that this query reads (they must run first).
            A family keeps a step for later ones by naming it in its module's ``KEEPS``
            (:func:`churn.features.build.order_families`); a kept step goes with the session.
    """

    sql: str
    specs: tuple[FeatureSpec, ...]
    skipped_parts: dict[str, str] = field(default_factory=dict)
    steps: tuple[tuple[str, str | StepBuilder], ...] = ()
    reads: tuple[str, ...] = ()


def spec_maker(family: str, phase: Phase) -> Callable[[str, Kind, str, str], FeatureSpec]:
    """Return a shorthand ``make(name, kind, unit, description)`` bound to a family and phase."""

    def make(name: str, kind: Kind, unit: str, description: str) -> FeatureSpec:
        return FeatureSpec(name, family, phase, kind, unit, description)

    return make


def count_or_zero(expression: str) -> str:
    """SQL turning a missing count (no matching rows) into 0.0."""
    return f"coalesce({expression}, 0)::DOUBLE"


def days_before_cutoff(expression: str) -> str:
    """SQL for the fractional days from ``expression`` to the cutoff (NULL stays NULL)."""
    return days_between(expression, "cutoff")


def age_years_sql(expression: str, cutoff: str = "cutoff") -> str:
    """SQL for the whole years from a date to the cutoff (NULL unless the date is before it)."""
    return (
        f"CASE WHEN {expression} < {cutoff} "
        f"THEN extract(year FROM age({cutoff}, {expression}))::DOUBLE END"
    )


def select_features(specs: Sequence[FeatureSpec], expressions: Mapping[str, str]) -> str:
    """Render the SELECT list ``expression AS name`` in catalog order.

    Raises:
        KeyError: If a spec has no expression (a family bug, caught by the tests).
    """
    return ",\n".join(f"{expressions[spec.name]} AS {spec.name}" for spec in specs)


@dataclass(frozen=True)
class BucketGrid:
    """The bucket grid for a set of cutoffs and windows (see the module docstring).

    Attributes:
        day_bucket: One row per day in the covered range: ``day``, ``bucket_start`` and
            ``day_bit`` (uint64, the day's bit in its bucket's mask).
    """

    day_bucket: pd.DataFrame


def set_last_cutoff(con: duckdb.DuckDBPyConnection) -> None:
    """Store the latest cutoff of ``_keys`` in the session variable :data:`LAST_CUTOFF`, and
    the first day of the ``_day_bucket`` grid in :data:`FIRST_BUCKET_DAY`.

    :func:`bucketed_sql` filters on them. A variable is a constant when DuckDB plans the query,
    so it can estimate how many rows the filter keeps; with a scalar subquery in its place,
    DuckDB took the filtered events for the small side of the day join and built its hash
    table over all of them (47M usage events at 300k customers: the usage family took 77 s,
    38 s with the constant). Call it after ``_keys`` and ``_day_bucket`` exist, before any
    family query.
    """
    con.execute(f"SET VARIABLE {LAST_CUTOFF} = (SELECT max(cutoff) FROM {KEYS})")
    con.execute(f"SET VARIABLE {FIRST_BUCKET_DAY} = (SELECT min(day) FROM {DAY_BUCKET})")


def build_bucket_grid(cutoffs: Iterable[pd.Timestamp], windows: Sequence[int]) -> BucketGrid:
    """Cut the time line at every cutoff and window start.

    Args:
        cutoffs: Distinct cutoffs, naive UTC midnights.
        windows: Window lengths in days.

    Returns:
        The grid; empty frames when there are no cutoffs.
    """
    day = pd.Timedelta(days=1)
    points = sorted({pd.Timestamp(c) - w * day for c in cutoffs for w in (0, *windows)})
    if not points:
        return BucketGrid(
            pd.DataFrame(
                {
                    "day": pd.Series(dtype="datetime64[us]"),
                    "bucket_start": pd.Series(dtype="datetime64[us]"),
                    "day_bit": pd.Series(dtype="uint64"),
                }
            )
        )
    # Split long gaps so that a bucket's days fit in a 64-bit mask.
    starts = [points[0]]
    for point in points[1:]:
        while (point - starts[-1]) > MAX_BUCKET_DAYS * day:
            starts.append(starts[-1] + MAX_BUCKET_DAYS * day)
        starts.append(point)
    boundaries = np.array(starts, dtype="datetime64[us]")
    days = np.arange(boundaries[0], boundaries[-1], np.timedelta64(1, "D")).astype("datetime64[us]")
    index = np.searchsorted(boundaries, days, side="right") - 1
    offsets = ((days - boundaries[index]) // np.timedelta64(1, "D")).astype("uint64")
    day_bucket = pd.DataFrame(
        {
            "day": days,
            "bucket_start": boundaries[index],
            "day_bit": np.left_shift(np.uint64(1), offsets),
        }
    )
    return BucketGrid(day_bucket)


def bucketed_sql(
    source: str,
    time_column: str,
    sums: Mapping[str, str],
    maxes: Mapping[str, str] | None = None,
    day_mask: bool = False,
    mins: Mapping[str, str] | None = None,
) -> str:
    """SQL aggregating a table per (customer, bucket).

    Args:
        source: Table (or parenthesised subquery) with ``customer_id`` and ``time_column``.
        time_column: The column that stamps when a row became known.
        sums: Output column -> per-row SQL expression to sum.
        maxes: Output column -> per-row SQL expression to take the maximum of (for recency).
        day_mask: Also output ``day_mask``, the bitmask of days with at least one row.
        mins: Output column -> per-row SQL expression to take the minimum of (a customer's
            first row: the minimum of its buckets' minima).

    Returns:
        SQL with ``customer_id``, ``bucket_start`` and the requested columns. Rows at or after
        the last cutoff (the session variable :data:`LAST_CUTOFF`, see
        :func:`set_last_cutoff`) are dropped: they are in the future of every cutoff. Rows
        before the grid's first day (:data:`FIRST_BUCKET_DAY`) make one prehistory row per
        customer (``bucket_start`` :data:`PREHISTORY`) holding only the maxima and minima (sums
        and mask NULL: no window reaches it), and no row at all without ``maxes`` or ``mins``.
        The two parts are :func:`grid_buckets_sql` and :func:`prehistory_sql`.
    """
    sql = grid_buckets_sql(source, time_column, sums, maxes, day_mask, mins=mins)
    if not (maxes or mins):
        return sql
    return f"""{sql}
        UNION ALL BY NAME
        {prehistory_sql(source, time_column, sums, maxes or {}, day_mask, mins=mins)}"""


def grid_buckets_sql(
    source: str,
    time_column: str,
    sums: Mapping[str, str],
    maxes: Mapping[str, str] | None = None,
    day_mask: bool = False,
    time_range: tuple[str, str] | None = None,
    *,
    mins: Mapping[str, str] | None = None,
) -> str:
    """The buckets of the grid's days in :func:`bucketed_sql` (its arguments), optionally of
    the rows with ``time_range[0] <= time_column < time_range[1]`` only (two SQL timestamps,
    bucket starts, so every bucket is whole in one range:
    :class:`churn.features.time_chunks.ChunkedBuckets`)."""
    parts = [f"sum({expr}) AS {name}" for name, expr in sums.items()]
    parts += [f"max({expr}) AS {name}" for name, expr in (maxes or {}).items()]
    parts += [f"min({expr}) AS {name}" for name, expr in (mins or {}).items()]
    if day_mask:
        parts.append("bit_or(g.day_bit) AS day_mask")
    within = (
        ""
        if time_range is None
        else f" AND {time_column} >= {time_range[0]} AND {time_column} < {time_range[1]}"
    )
    # Only the grid's rows need the day join and the sums. A single cutoff (churn score) leaves
    # most of the history before the grid, where each customer needs nothing but its latest
    # times: grouped per customer without the join (the usage buckets of a million customers'
    # 170M events at one cutoff: see docs/benchmarks-log.md, 2026-12-06). Every day of the
    # grid is in the day table, so an inner join would keep the same rows, but the LEFT JOIN
    # keeps the events on the probe side: DuckDB may otherwise build its hash table over them.
    return f"""
        SELECT e.customer_id, g.bucket_start, {", ".join(parts)}
        FROM (
            SELECT *, date_trunc('day', {time_column}) AS _day FROM {source}
            WHERE {time_column} < getvariable('{LAST_CUTOFF}')
              AND {time_column} >= getvariable('{FIRST_BUCKET_DAY}'){within}
        ) AS e
        LEFT JOIN {DAY_BUCKET} AS g ON g.day = e._day
        GROUP BY ALL"""


def prehistory_sql(
    source: str,
    time_column: str,
    sums: Mapping[str, str],
    maxes: Mapping[str, str],
    day_mask: bool = False,
    *,
    mins: Mapping[str, str] | None = None,
) -> str:
    """The prehistory rows of :func:`bucketed_sql` (its arguments): one per customer with rows
    before the grid, holding only the maxima and minima."""
    early = [f"NULL AS {name}" for name in sums]
    early += [f"max({expr}) AS {name}" for name, expr in maxes.items()]
    early += [f"min({expr}) AS {name}" for name, expr in (mins or {}).items()]
    if day_mask:
        early.append("NULL AS day_mask")
    return f"""
        SELECT customer_id, {PREHISTORY} AS bucket_start, {", ".join(early)}
        FROM {source}
        WHERE {time_column} < getvariable('{FIRST_BUCKET_DAY}')
        GROUP BY customer_id"""


def latest_before_cutoff_sql(source: str, column: str, time_column: str = "bucket_start") -> str:
    """SQL for the non-null ``column`` of the latest row before each cutoff, by ``time_column``.

    For a bucketed relation (the default ``time_column``): every bucket that starts before a
    cutoff ends at or before it, so an as-of join on the bucket start finds the last bucket
    entirely in the past. Rows tied on ``time_column`` must hold the same ``column`` (the as-of
    join takes any one of them).

    Args:
        source: A relation with ``customer_id``, ``time_column`` and ``column``.
        column: The value to return (it may be ``time_column`` itself).
        time_column: When a row became known: a row counts before a cutoff strictly after it.

    Returns:
        SQL with ``customer_id, cutoff, value`` for every key (value NULL if none).
    """
    selected = ", ".join(dict.fromkeys(("customer_id", time_column, column)))
    return f"""
        SELECT k.customer_id, k.cutoff, b.{column} AS value
        FROM {KEYS} AS k
        ASOF LEFT JOIN (
            SELECT {selected} FROM {source}
            WHERE {column} IS NOT NULL
        ) AS b
          ON b.customer_id = k.customer_id AND k.cutoff > b.{time_column}"""


def assemble_family_query(
    steps: list[tuple[str, str]],
    joins: list[str],
    specs: list[FeatureSpec],
    expressions: dict[str, str],
    skipped: dict[str, str],
    reads: tuple[str, ...] = (),
) -> FamilyQuery:
    """Join a family's steps onto the population keys and select its features in catalog order.

    Args:
        steps: ``(name, SELECT)`` pairs, each keyed by customer (and cutoff), created in order
            as temporary tables (:attr:`FamilyQuery.steps`); a step may read the earlier ones.
        joins: ``LEFT JOIN`` clauses onto the keys (``k``), one per step that is used.
        specs: The family's feature specs, in output order.
        expressions: Feature name -> SQL expression over the joined steps.
        skipped: Optional parts left out (part -> reason).
        reads: Tables kept by other families that the steps read (:attr:`FamilyQuery.reads`).

    Returns:
        The family's query, specs and skipped parts.
    """
    sql = f"""
        SELECT {KEY_SELECT_LIST},
               {select_features(specs, expressions)}
        FROM {KEYS} AS k
        {" ".join(joins)}"""
    return FamilyQuery(
        sql=sql, specs=tuple(specs), skipped_parts=skipped, steps=tuple(steps), reads=reads
    )
