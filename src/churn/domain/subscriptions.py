"""Subscription state at a point in time, as SQL shared by labels and billing features."""

from __future__ import annotations

import logging

import pandas as pd

from churn.sql import utc_timestamp

logger = logging.getLogger(__name__)


def sql_timestamp(value: pd.Timestamp) -> str:
    """Render a timestamp as a naive-UTC SQL ``TIMESTAMP`` literal."""
    value = utc_timestamp(value).tz_localize(None)
    return f"TIMESTAMP '{value.isoformat(sep=' ')}'"


def active_subscriptions_sql(points: str, at: str = "cutoff", with_changes: bool = False) -> str:
    """SQL selecting the subscriptions active at a point in time, with their MRR then.

    Args:
        points: A relation with ``customer_id`` and ``cutoff`` columns (one row per key).
        at: SQL expression over ``points`` giving the instant to look at (``cutoff`` or, for a
            look-back, e.g. ``cutoff - INTERVAL 90 DAY``). Rows stamped at ``at`` are future.
        with_changes: Whether ``subscription_changes`` is registered. If so, a subscription's
            MRR is the ``mrr_after`` of its latest change effective before ``at`` (ties at the
            same instant: the highest ``mrr_after``, arbitrary but deterministic), else its
            starting ``mrr``.

    Returns:
        SQL with columns ``customer_id, cutoff, subscription_id, plan, billing_period,
        started_at, mrr``: one row per (point, subscription active at ``at``).
    """
    base = f"""
        SELECT q.customer_id, q.cutoff, q._at, s.subscription_id, s.plan, s.billing_period,
               s.started_at, s.mrr
        FROM (SELECT customer_id, cutoff, {at} AS _at FROM {points}) AS q
        JOIN subscriptions AS s
          ON s.customer_id = q.customer_id
         AND s.started_at < q._at
         AND (s.ended_at IS NULL OR s.ended_at >= q._at)"""
    return _with_mrr_at(base, with_changes)


def subscriptions_active_at_cutoffs_sql(cutoffs: str, with_changes: bool = False) -> str:
    """SQL selecting every customer's subscriptions active at each cutoff of ``cutoffs``.

    The rows :func:`active_subscriptions_sql` gives for the points "every (customer, cutoff)
    with a subscription active at the cutoff", without forming those points first: finding
    them is the same range join, so joining them back to the subscriptions only repeated it
    (the label population at a million customers, 16.5M rows: 18.0 -> 14.8 s, 2026-12-06).

    Args:
        cutoffs: A relation with a ``cutoff`` column (one row per cutoff).
        with_changes: As for :func:`active_subscriptions_sql`.

    Returns:
        SQL with the columns of :func:`active_subscriptions_sql`.
    """
    base = f"""
        SELECT s.customer_id, c.cutoff, c.cutoff AS _at, s.subscription_id, s.plan,
               s.billing_period, s.started_at, s.mrr
        FROM {cutoffs} AS c
        JOIN subscriptions AS s
          ON s.started_at < c.cutoff AND (s.ended_at IS NULL OR s.ended_at >= c.cutoff)
        -- As the join on customer_id of active_subscriptions_sql: no customer, no row.
        WHERE s.customer_id IS NOT NULL"""
    return _with_mrr_at(base, with_changes)


def _with_mrr_at(base: str, with_changes: bool) -> str:
    """``base`` (active subscriptions with the instant ``_at``) with each one's MRR then."""
    if not with_changes:
        return f"SELECT * EXCLUDE (_at) FROM ({base})"
    return f"""
        SELECT a.customer_id, a.cutoff, a.subscription_id, a.plan, a.billing_period,
               a.started_at, COALESCE(c.mrr_after, a.mrr) AS mrr
        FROM ({base}) AS a
        ASOF LEFT JOIN (
            SELECT subscription_id, effective_at, max(mrr_after) AS mrr_after
            FROM subscription_changes
            GROUP BY subscription_id, effective_at
        ) AS c
          ON c.subscription_id = a.subscription_id AND a._at > c.effective_at"""


def subscription_summary_sql(active: str) -> str:
    """SQL summarising active subscriptions per (customer, cutoff).

    Args:
        active: SQL from :func:`active_subscriptions_sql`.

    Returns:
        SQL with ``customer_id, cutoff, mrr`` (sum), ``active_subscriptions``, and ``plan``,
        ``billing_period``, ``top_started_at`` of the highest-MRR subscription (ties: the latest
        started, then the highest ``subscription_id``, so the choice is deterministic).
    """
    # A window ranking picks the top subscription; per-group ordered aggregates (first with
    # ORDER BY, arg_max on a struct) measured several times slower here.
    return f"""
        SELECT customer_id, cutoff, total_mrr AS mrr, active_subscriptions, plan,
               billing_period, started_at AS top_started_at
        FROM (
            SELECT customer_id, cutoff, plan, billing_period, started_at,
                   sum(mrr) OVER keys AS total_mrr,
                   count(*) OVER keys AS active_subscriptions,
                   row_number() OVER (
                       keys ORDER BY mrr DESC, started_at DESC, subscription_id DESC
                   ) AS rank
            FROM ({active})
            WINDOW keys AS (PARTITION BY customer_id, cutoff)
        )
        WHERE rank = 1"""
