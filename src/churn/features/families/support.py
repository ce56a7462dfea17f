"""Support family: ticket volume, friction and satisfaction known at the cutoff.

Reads ``support_tickets``. A ticket exists from ``opened_at``; its first response, resolution
and CSAT count only once stamped before the cutoff (``first_response_at``, ``resolved_at``,
``csat_received_at``): a ticket resolved after the cutoff is still open at the cutoff, a CSAT
that arrives later is unknown. ``reopened`` has no time stamp, so it is read only from tickets
whose (last) resolution is before the cutoff, when the whole history of the ticket is past.
Ticket tables are small per customer, so every key is joined with its earlier tickets, but only
with those that can still count: opened in the largest window, still open, or with a response,
resolution or CSAT in the window. The two features that look at the whole history (the latest
ticket and the latest CSAT) are as-of joins instead: at 300k customers the aggregation over
every earlier ticket took 5.5 s, most of it the latest-CSAT ``arg_max`` (docs/benchmarks-log.md).

Features (``w`` each window, ``W`` the largest):

* ``support_tickets_last_{w}d``: tickets opened.
* ``support_high_priority_tickets_last_{W}d``: tickets of priority high or urgent.
* ``support_{category}_tickets_last_{W}d``: per category in ``features.ticket_categories``.
* ``open_tickets_at_cutoff``: opened and not resolved before the cutoff.
* ``unanswered_tickets_at_cutoff``: open tickets with no first response before the cutoff.
* ``median_first_response_hours_last_{W}d``: over first responses sent in the window;
  ``median_resolution_hours_last_{W}d``: over resolutions in the window; NaN without any.
* ``reopened_ticket_share_last_{W}d``: share of the tickets resolved in the window that had been
  reopened (NaN without resolutions).
* ``mean_csat_last_{W}d``: mean CSAT received in the window (NaN without);
  ``last_csat_score``: the latest CSAT received before the cutoff (ties: highest ticket id).
  A CSAT without ``csat_received_at`` cannot be placed in time and is ignored.
* ``days_since_last_ticket``: NaN when the customer never opened a ticket.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from churn.config import FeaturesConfig
from churn.domain.catalog import slug
from churn.domain.families import FAMILY_PHASES
from churn.features.common import (
    KEY_SELECT_LIST,
    KEYS,
    FamilyQuery,
    count_or_zero,
    days_before_cutoff,
    latest_before_cutoff_sql,
    select_features,
    spec_maker,
)
from churn.sql import hours_between, quote_literal

FAMILY = "support"
PHASE = FAMILY_PHASES[FAMILY]
REQUIRED_TABLES = ("support_tickets",)
ANY_OF_TABLES: tuple[str, ...] = ()
HIGH_PRIORITIES = ("high", "urgent")

_spec = spec_maker(FAMILY, PHASE)


def family_query(cfg: FeaturesConfig, tables: Mapping[str, pd.DataFrame]) -> FamilyQuery:
    """Return the support SQL and catalog entries for the configured windows and categories."""
    largest = max(cfg.windows_days)
    in_window = f"t.{{column}} >= t.cutoff - INTERVAL {largest} DAY AND t.{{column}} < t.cutoff"
    opened_in_largest = in_window.format(column="opened_at")
    specs = []
    aggregates: dict[str, str] = {}
    expressions: dict[str, str] = {}

    def add_count(name: str, unit: str, description: str, condition: str) -> None:
        specs.append(_spec(name, "numeric", unit, description))
        # count(CASE ...), not count(*) FILTER (...): the same counts, about 10% less time for
        # this step at 100k customers (2.43 -> 2.19 s, three alternations in one process,
        # 2026-12-05; the same held for the windows sums when they were SQL).
        aggregates[name] = f"count(CASE WHEN {condition} THEN 1 END)"
        expressions[name] = count_or_zero(f"agg.{name}")

    def add_value(name: str, unit: str, description: str, aggregate: str) -> None:
        specs.append(_spec(name, "numeric", unit, description))
        aggregates[name] = aggregate
        expressions[name] = f"agg.{name}::DOUBLE"

    for w in cfg.windows_days:
        add_count(
            f"support_tickets_last_{w}d",
            "tickets",
            f"support tickets opened in the last {w} days",
            f"t.opened_at >= t.cutoff - INTERVAL {w} DAY",
        )
    priorities = ", ".join(quote_literal(p) for p in HIGH_PRIORITIES)
    add_count(
        f"support_high_priority_tickets_last_{largest}d",
        "tickets",
        f"high or urgent priority support tickets opened in the last {largest} days",
        f"{opened_in_largest} AND t.priority IN ({priorities})",
    )
    for category in cfg.ticket_categories:
        add_count(
            f"support_{slug(category)}_tickets_last_{largest}d",
            "tickets",
            f"{category.replace('_', ' ')} support tickets opened in the last {largest} days",
            f"{opened_in_largest} AND t.category = {quote_literal(category)}",
        )
    still_open = "(t.resolved_at IS NULL OR t.resolved_at >= t.cutoff)"
    add_count("open_tickets_at_cutoff", "tickets", "support tickets open at the cutoff", still_open)
    add_count(
        "unanswered_tickets_at_cutoff",
        "tickets",
        "open support tickets still waiting for a first response",
        f"{still_open} AND (t.first_response_at IS NULL OR t.first_response_at >= t.cutoff)",
    )
    responded = in_window.format(column="first_response_at")
    resolved = in_window.format(column="resolved_at")
    add_value(
        f"median_first_response_hours_last_{largest}d",
        "hours",
        f"median hours to a first response, over responses in the last {largest} days",
        f"median({hours_between('t.opened_at', 't.first_response_at')}) FILTER (WHERE {responded})",
    )
    add_value(
        f"median_resolution_hours_last_{largest}d",
        "hours",
        f"median hours to resolve a ticket, over resolutions in the last {largest} days",
        f"median({hours_between('t.opened_at', 't.resolved_at')}) FILTER (WHERE {resolved})",
    )
    add_value(
        f"reopened_ticket_share_last_{largest}d",
        "fraction",
        f"share of tickets resolved in the last {largest} days that had been reopened",
        "avg(CASE WHEN coalesce(t.reopened, false) THEN 1.0 ELSE 0.0 END) "
        f"FILTER (WHERE {resolved})",
    )
    add_value(
        f"mean_csat_last_{largest}d",
        "points",
        f"mean satisfaction score (1-5) received in the last {largest} days",
        "avg(t.csat_score) FILTER (WHERE t.csat_score IS NOT NULL AND "
        f"{in_window.format(column='csat_received_at')})",
    )
    specs.append(
        _spec(
            "last_csat_score",
            "numeric",
            "points",
            "satisfaction score (1-5) of the latest rated ticket",
        )
    )
    expressions["last_csat_score"] = "last_csat.value::DOUBLE"
    specs.append(
        _spec("days_since_last_ticket", "numeric", "days", "days since the last support ticket")
    )
    expressions["days_since_last_ticket"] = days_before_cutoff("last_ticket.value")

    aggregate_list = ",\n".join(f"{expr} AS {name}" for name, expr in aggregates.items())
    # Every aggregate above reads tickets opened in the window, open at the cutoff, or with a
    # response, resolution or CSAT stamped in the window; a ticket resolved (and answered and
    # rated) more than W days before the cutoff cannot change any of them, so it is left out of
    # the join. Its last stamp plus W days is when it stops counting (never while unresolved).
    aggregated = f"""
            SELECT t.customer_id, t.cutoff,
                   {aggregate_list}
            FROM (
                SELECT k.customer_id, k.cutoff, s.* EXCLUDE (customer_id, counts_until)
                FROM {KEYS} AS k
                JOIN (
                    SELECT *,
                           greatest(
                               opened_at,
                               coalesce(first_response_at, opened_at),
                               coalesce(resolved_at, opened_at),
                               coalesce(csat_received_at, opened_at)
                           ) + INTERVAL {largest} DAY AS counts_until
                    FROM support_tickets
                ) AS s
                  ON s.customer_id = k.customer_id AND s.opened_at < k.cutoff
                 AND (s.resolved_at IS NULL OR k.cutoff <= s.counts_until)
            ) AS t
            GROUP BY t.customer_id, t.cutoff"""
    # A CSAT is known at a cutoff once both it and its ticket are stamped before it; among the
    # known ones the latest received wins (ties: the highest ticket id). The running arg_max
    # over the time each became known (peers included) is that winner from then on, and the
    # as-of join takes the last one known before the cutoff.
    rated = """
            SELECT customer_id, known_at,
                   arg_max(csat_score, (csat_received_at, ticket_id)) OVER (
                       PARTITION BY customer_id ORDER BY known_at
                       RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
                   ) AS last_csat_score
            FROM (
                SELECT customer_id, csat_score, csat_received_at, ticket_id,
                       greatest(opened_at, csat_received_at) AS known_at
                FROM support_tickets
                WHERE csat_score IS NOT NULL AND csat_received_at IS NOT NULL
                  AND opened_at IS NOT NULL
            )"""
    steps = (
        ("agg", aggregated),
        ("last_ticket", latest_before_cutoff_sql("support_tickets", "opened_at", "opened_at")),
        ("_support_rated", rated),
        ("last_csat", latest_before_cutoff_sql("_support_rated", "last_csat_score", "known_at")),
    )
    sql = f"""
        SELECT {KEY_SELECT_LIST},
               {select_features(specs, expressions)}
        FROM {KEYS} AS k
        LEFT JOIN agg USING (customer_id, cutoff)
        LEFT JOIN last_ticket USING (customer_id, cutoff)
        LEFT JOIN last_csat USING (customer_id, cutoff)"""
    return FamilyQuery(sql=sql, specs=tuple(specs), steps=steps)
