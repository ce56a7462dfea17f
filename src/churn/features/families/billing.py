"""Billing family: contract, revenue and price history known at the cutoff.

Reads ``subscriptions`` by ``started_at`` (an ``ended_at`` at or after the cutoff is unknown:
the subscription is active), ``subscription_changes`` by ``effective_at`` and, for tenure,
``customers.converted_at``. "Active" and "MRR at T" are the label stage's definitions
(:func:`churn.domain.subscriptions.active_subscriptions_sql`).

Features (``W`` is the largest window, ``w`` each window):

* ``tenure_days``: whole days since the earlier of the first subscription start and the
  conversion (NaN if neither is before the cutoff).
* ``mrr_at_cutoff``: MRR summed over active subscriptions (0 when none is active).
* ``mrr_change_{W}d``: MRR now minus MRR ``W`` days earlier (0 when nothing was active then);
  ``mrr_change_pct_{W}d``: the same relative to the earlier MRR (NaN when it was 0).
* ``plan``, ``billing_period``: of the highest-MRR active subscription (categorical).
* ``days_to_renewal``: days to the next billing date of that subscription (every 12 months for
  annual contracts, 6 for semiannual, 3 for quarterly, monthly otherwise), counting a billing
  date at the cutoff as 0.
* ``active_subscriptions``: subscriptions active at the cutoff.
* ``previous_churns``: earlier lapses, i.e. subscriptions started after every earlier one had
  ended (for an active customer, each lapse was followed by a re-subscription).
* With ``subscription_changes``: ``subscription_upgrades_last_{w}d``,
  ``subscription_downgrades_last_{w}d``, ``discounts_started_last_{w}d``,
  ``price_increases_last_{w}d`` and ``discount_active_at_cutoff`` (1 if an active subscription's
  latest discount change before the cutoff is a start; simultaneous start and end count as end).
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from churn.config import FeaturesConfig
from churn.domain.contract import BILLING_PERIOD_MONTHS
from churn.domain.families import FAMILY_PHASES
from churn.domain.subscriptions import active_subscriptions_sql, subscription_summary_sql
from churn.features.common import (
    KEYS,
    FamilyQuery,
    assemble_family_query,
    count_or_zero,
    days_before_cutoff,
    spec_maker,
)
from churn.sql import days_between

FAMILY = "billing"
PHASE = FAMILY_PHASES[FAMILY]
REQUIRED_TABLES = ("subscriptions",)
ANY_OF_TABLES: tuple[str, ...] = ()

CHANGE_COUNTS = (
    ("upgrade", "subscription_upgrades", "subscription upgrades"),
    ("downgrade", "subscription_downgrades", "subscription downgrades"),
    ("discount_start", "discounts_started", "discounts started"),
    ("price_increase", "price_increases", "price increases"),
)

_spec = spec_maker(FAMILY, PHASE)


def _next_renewal_sql(started: str, period: str) -> str:
    """SQL for the first anniversary of ``started`` at or after the cutoff.

    ``date_diff('month')`` counts month boundaries, so ``started + n months`` falls in the
    cutoff's month and ``started + (n - 1) months`` before the cutoff; one step forward at most
    is needed. Month arithmetic clamps to the month's end (Jan 31 + 1 month = Feb 28/29).
    """
    # Every contract billing period renews every N months; anything else (missing) monthly.
    whens = " ".join(f"WHEN {period} = '{p}' THEN {n}" for p, n in BILLING_PERIOD_MONTHS.items())
    months = f"(CASE {whens} ELSE 1 END)"
    elapsed = f"({months} * (date_diff('month', {started}, cutoff) // {months}))"
    candidate = f"({started} + to_months({elapsed}))"
    return (
        f"CASE WHEN {candidate} < cutoff "
        f"THEN {started} + to_months({elapsed} + {months}) ELSE {candidate} END"
    )


def family_query(cfg: FeaturesConfig, tables: Mapping[str, pd.DataFrame]) -> FamilyQuery:
    """Return the billing SQL and catalog entries."""
    with_changes = "subscription_changes" in tables
    with_customers = "customers" in tables
    largest = max(cfg.windows_days)
    skipped = (
        {}
        if with_changes
        else {"subscription_changes": "table absent: change counts and discount flag left out"}
    )

    specs = [
        _spec("tenure_days", "numeric", "days", "days since the customer's first purchase"),
        _spec("mrr_at_cutoff", "numeric", "currency/month", "monthly recurring revenue"),
        _spec(
            f"mrr_change_{largest}d",
            "numeric",
            "currency/month",
            f"change in monthly recurring revenue over the last {largest} days",
        ),
        _spec(
            f"mrr_change_pct_{largest}d",
            "numeric",
            "fraction",
            f"relative change in monthly recurring revenue over the last {largest} days",
        ),
        _spec("plan", "categorical", "", "plan of the main subscription"),
        _spec("billing_period", "categorical", "", "billing period of the main subscription"),
        _spec("days_to_renewal", "numeric", "days", "days until the next renewal date"),
        _spec("active_subscriptions", "numeric", "subscriptions", "active subscriptions"),
        _spec(
            "previous_churns",
            "numeric",
            "lapses",
            "earlier lapses of all subscriptions before re-subscribing",
        ),
    ]
    first_seen = "least(h.first_start, cv.converted_at)" if with_customers else "h.first_start"
    expressions = {
        "tenure_days": f"floor({days_before_cutoff(first_seen)})",
        "mrr_at_cutoff": count_or_zero("now.mrr"),
        f"mrr_change_{largest}d": "(coalesce(now.mrr, 0) - coalesce(past.mrr, 0))::DOUBLE",
        f"mrr_change_pct_{largest}d": (
            "CASE WHEN past.mrr > 0 THEN (coalesce(now.mrr, 0) - past.mrr) / past.mrr END"
        ),
        "plan": "now.plan",
        "billing_period": "now.billing_period",
        "days_to_renewal": days_between(
            "cutoff", _next_renewal_sql("now.top_started_at", "now.billing_period")
        ),
        "active_subscriptions": count_or_zero("now.active_subscriptions"),
        "previous_churns": count_or_zero("h.previous_churns"),
    }
    steps = [
        ("now_active", active_subscriptions_sql(KEYS, "cutoff", with_changes)),
        ("now", subscription_summary_sql("now_active")),
        (
            "past",
            subscription_summary_sql(
                active_subscriptions_sql(KEYS, f"cutoff - INTERVAL {largest} DAY", with_changes)
            ),
        ),
        ("h", f"""
            SELECT customer_id, cutoff, min(started_at) AS first_start,
                   count(*) FILTER (WHERE started_at > previous_end) AS previous_churns
            FROM (
                SELECT k.customer_id, k.cutoff, s.started_at,
                       -- An end at or after the cutoff is unknown at the cutoff: still open.
                       max(CASE WHEN s.ended_at < k.cutoff THEN s.ended_at
                                ELSE 'infinity'::TIMESTAMP END) OVER (
                           PARTITION BY k.customer_id, k.cutoff
                           ORDER BY s.started_at, s.subscription_id
                           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
                       ) AS previous_end
                FROM {KEYS} AS k
                JOIN subscriptions AS s
                  ON s.customer_id = k.customer_id AND s.started_at < k.cutoff
            )
            GROUP BY customer_id, cutoff
        """),
    ]
    joins = [
        "LEFT JOIN now USING (customer_id, cutoff)",
        "LEFT JOIN past USING (customer_id, cutoff)",
        "LEFT JOIN h USING (customer_id, cutoff)",
    ]
    if with_customers:
        steps.append(
            ("cv", f"""
            SELECT k.customer_id, k.cutoff, min(c.converted_at) AS converted_at
            FROM {KEYS} AS k
            JOIN customers AS c ON c.customer_id = k.customer_id AND c.converted_at < k.cutoff
            GROUP BY k.customer_id, k.cutoff
        """)
        )
        joins.append("LEFT JOIN cv USING (customer_id, cutoff)")
    if with_changes:
        counts = []
        for w in cfg.windows_days:
            for change_type, stem, words in CHANGE_COUNTS:
                name = f"{stem}_last_{w}d"
                specs.append(_spec(name, "numeric", "changes", f"{words} in the last {w} days"))
                expressions[name] = count_or_zero(f"ch.{name}")
                counts.append(
                    f"count(*) FILTER (WHERE c.change_type = '{change_type}' "
                    f"AND c.effective_at >= k.cutoff - INTERVAL {w} DAY) AS {name}"
                )
        specs.append(
            _spec(
                "discount_active_at_cutoff",
                "numeric",
                "flag",
                "flag for a discount running at the cutoff (1 yes, 0 no)",
            )
        )
        expressions["discount_active_at_cutoff"] = count_or_zero("disc.discount_active")
        steps.append(
            ("ch", f"""
            SELECT k.customer_id, k.cutoff, {", ".join(counts)}
            FROM {KEYS} AS k
            JOIN subscription_changes AS c
              ON c.customer_id = k.customer_id
             AND c.effective_at < k.cutoff
             AND c.effective_at >= k.cutoff - INTERVAL {largest} DAY
            GROUP BY k.customer_id, k.cutoff
        """)
        )
        steps.append(
            ("disc", """
            SELECT a.customer_id, a.cutoff,
                   max(CASE WHEN d.change_type = 'discount_start' THEN 1 ELSE 0 END)
                       AS discount_active
            FROM now_active AS a
            ASOF LEFT JOIN (
                -- 'discount_end' sorts first: a start and an end at one instant count as end.
                SELECT subscription_id, effective_at, min(change_type) AS change_type
                FROM subscription_changes
                WHERE change_type IN ('discount_start', 'discount_end')
                GROUP BY subscription_id, effective_at
            ) AS d
              ON d.subscription_id = a.subscription_id AND a.cutoff > d.effective_at
            GROUP BY a.customer_id, a.cutoff
        """)
        )
        joins += [
            "LEFT JOIN ch USING (customer_id, cutoff)",
            "LEFT JOIN disc USING (customer_id, cutoff)",
        ]
    return assemble_family_query(steps, joins, specs, expressions, skipped)
