"""Engagement family: onboarding, self-service content, community and NPS after the sale.

Reads ``postsale_touchpoints`` by ``occurred_at`` and ``nps_responses`` by ``responded_at``;
each part runs when its table is present. Onboarding needs ``customers.converted_at`` too.

Features (``w`` each window, ``W`` the largest):

* ``onboarding_steps_completed_first_30d``, ``onboarding_emails_opened_first_30d``: touches in
  the 30 days from the conversion that happened before the cutoff (NaN when the customer had
  not converted by the cutoff).
* ``help_center_views_last_{w}d``, ``community_posts_last_{w}d``, ``webinars_attended_last_{W}d``.
* ``last_nps_score``; ``nps_trend``: last minus previous score (NaN with fewer than two
  responses); ``days_since_last_nps``; ``last_nps_promoter`` (score 9-10) and
  ``last_nps_detractor`` (0-6) as 1/0 flags. All NaN without a response before the cutoff.
  Responses at the same instant are ordered by score (highest last), deterministically.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from churn.config import FeaturesConfig
from churn.domain.families import FAMILY_PHASES
from churn.features.common import (
    KEYS,
    FamilyQuery,
    assemble_family_query,
    bucketed_sql,
    count_or_zero,
    days_before_cutoff,
    spec_maker,
)
from churn.features.windows import WindowedSums

FAMILY = "engagement"
PHASE = FAMILY_PHASES[FAMILY]
REQUIRED_TABLES: tuple[str, ...] = ()
ANY_OF_TABLES = ("postsale_touchpoints", "nps_responses")
ONBOARDING_DAYS = 30
PROMOTER_MIN = 9
DETRACTOR_MAX = 6

_spec = spec_maker(FAMILY, PHASE)


def _touch(kind: str) -> str:
    return f"CASE WHEN touchpoint_type = '{kind}' THEN 1 ELSE 0 END"


def family_query(cfg: FeaturesConfig, tables: Mapping[str, pd.DataFrame]) -> FamilyQuery:
    """Return the engagement SQL and catalog entries for the parts whose tables exist."""
    largest = max(cfg.windows_days)
    specs = []
    expressions: dict[str, str] = {}
    steps: list[tuple[str, str]] = []
    joins: list[str] = []
    skipped: dict[str, str] = {}

    if "postsale_touchpoints" in tables:
        outputs: list[tuple[str, str, int]] = []
        for w in cfg.windows_days:
            outputs.append((f"help_center_views_last_{w}d", "b.help_views", w))
            specs.append(
                _spec(
                    f"help_center_views_last_{w}d",
                    "numeric",
                    "views",
                    f"help-center views in the last {w} days",
                )
            )
        for w in cfg.windows_days:
            outputs.append((f"community_posts_last_{w}d", "b.community_posts", w))
            specs.append(
                _spec(
                    f"community_posts_last_{w}d",
                    "numeric",
                    "posts",
                    f"community posts in the last {w} days",
                )
            )
        outputs.append((f"webinars_attended_last_{largest}d", "b.webinars", largest))
        specs.append(
            _spec(
                f"webinars_attended_last_{largest}d",
                "numeric",
                "webinars",
                f"webinars attended in the last {largest} days",
            )
        )
        for name, _, _ in outputs:
            expressions[name] = count_or_zero(f"win.{name}")
        sums = {
            "help_views": _touch("help_center_view"),
            "community_posts": _touch("community_post"),
            "webinars": _touch("webinar"),
        }
        steps += [
            ("tb", bucketed_sql("postsale_touchpoints", "occurred_at", sums)),
            ("win", WindowedSums("tb", tuple(outputs))),
        ]
        joins.append("LEFT JOIN win USING (customer_id, cutoff)")
        if "customers" in tables:
            for name, _kind, words in (
                ("onboarding_steps_completed", "onboarding_step_completed", "steps completed"),
                ("onboarding_emails_opened", "onboarding_email_open", "emails opened"),
            ):
                feature = f"{name}_first_{ONBOARDING_DAYS}d"
                specs.append(
                    _spec(
                        feature,
                        "numeric",
                        words.split()[0],
                        f"onboarding {words} in the first {ONBOARDING_DAYS} days",
                    )
                )
                expressions[feature] = (
                    f"CASE WHEN onb.converted THEN {count_or_zero(f'onb.{feature}')} END"
                )
            # The onboarding touches first (their types, in each customer's first days), so
            # that a key meets only those and not every post-sale touch of its customer.
            steps.append(
                ("_onboarding_touches", f"""
            SELECT t.customer_id, t.occurred_at, t.touchpoint_type
            FROM postsale_touchpoints AS t
            JOIN customers AS c
              ON c.customer_id = t.customer_id
             AND t.occurred_at >= c.converted_at
             AND t.occurred_at < c.converted_at + INTERVAL {ONBOARDING_DAYS} DAY
            WHERE t.touchpoint_type IN ('onboarding_step_completed', 'onboarding_email_open')
        """)
            )
            steps.append(
                ("onb", f"""
            SELECT k.customer_id, k.cutoff, true AS converted,
                   count(t.occurred_at) FILTER (
                       WHERE t.touchpoint_type = 'onboarding_step_completed'
                   ) AS onboarding_steps_completed_first_{ONBOARDING_DAYS}d,
                   count(t.occurred_at) FILTER (
                       WHERE t.touchpoint_type = 'onboarding_email_open'
                   ) AS onboarding_emails_opened_first_{ONBOARDING_DAYS}d
            FROM {KEYS} AS k
            JOIN customers AS c
              ON c.customer_id = k.customer_id AND c.converted_at < k.cutoff
            LEFT JOIN _onboarding_touches AS t
              ON t.customer_id = k.customer_id AND t.occurred_at < k.cutoff
            GROUP BY k.customer_id, k.cutoff
        """)
            )
            joins.append("LEFT JOIN onb USING (customer_id, cutoff)")
        else:
            skipped["onboarding"] = "customers absent: onboarding counts left out"
    else:
        skipped["postsale_touchpoints"] = "table absent: onboarding and content use left out"

    if "nps_responses" in tables:
        specs += [
            _spec(
                "last_nps_score", "numeric", "points", "points on the latest NPS response (0-10)"
            ),
            _spec(
                "nps_trend", "numeric", "points", "change in NPS points since the response before"
            ),
            _spec("days_since_last_nps", "numeric", "days", "days since the latest NPS response"),
            _spec(
                "last_nps_promoter",
                "numeric",
                "flag",
                "flag for a promoter latest NPS response (1 yes, 0 no)",
            ),
            _spec(
                "last_nps_detractor",
                "numeric",
                "flag",
                "flag for a detractor latest NPS response (1 yes, 0 no)",
            ),
        ]
        expressions |= {
            "last_nps_score": "nps.scores[1]::DOUBLE",
            "nps_trend": "(nps.scores[1] - nps.scores[2])::DOUBLE",
            "days_since_last_nps": days_before_cutoff("nps.last_at"),
            "last_nps_promoter": f"(nps.scores[1] >= {PROMOTER_MIN})::INTEGER::DOUBLE",
            "last_nps_detractor": f"(nps.scores[1] <= {DETRACTOR_MAX})::INTEGER::DOUBLE",
        }
        steps.append(
            ("nps", f"""
            SELECT k.customer_id, k.cutoff,
                   -- The two latest scores, latest first (ties: higher score counts as later).
                   arg_max(n.score, (n.responded_at, n.score), 2) AS scores,
                   max(n.responded_at) AS last_at
            FROM {KEYS} AS k
            JOIN nps_responses AS n
              ON n.customer_id = k.customer_id AND n.responded_at < k.cutoff
            GROUP BY k.customer_id, k.cutoff
        """)
        )
        joins.append("LEFT JOIN nps USING (customer_id, cutoff)")
    else:
        skipped["nps_responses"] = "table absent: NPS features left out"

    return assemble_family_query(steps, joins, specs, expressions, skipped)
