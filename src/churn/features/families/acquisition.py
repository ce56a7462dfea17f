"""Acquisition family: how the customer was won (the pre-sale journey).

Reads ``customers`` (known from ``converted_at``), ``presale_touchpoints`` and, for trial use,
``usage_events`` before ``converted_at``. A customer not yet converted at the cutoff has no
acquisition features (all missing). Pre-sale touches precede the conversion by definition, but
are still filtered by ``occurred_at < cutoff`` so that a mis-stamped row cannot leak.

Features:

* ``acquisition_channel``, ``campaign``, ``segment``, ``country`` (categorical).
* ``days_lead_to_conversion``: fractional days from lead creation to conversion (NaN without a
  lead date); ``trial_days``: length of the free trial.
* With ``presale_touchpoints``: ``presale_{type}_touches`` for each contract touch type,
  ``docs_and_help_views_before_conversion`` (docs and help-center views) and
  ``total_presale_touches``; 0 without touches.
* With ``usage_events``: ``trial_usage_events`` (sum of quantity, missing quantity = 1) and
  ``trial_active_days`` (distinct UTC days) before the conversion; 0 without trial use.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from churn.config import FeaturesConfig
from churn.domain.contract import PRESALE_TOUCHPOINT_TYPES
from churn.domain.families import FAMILY_PHASES
from churn.features.common import (
    KEYS,
    FamilyQuery,
    assemble_family_query,
    count_or_zero,
    spec_maker,
)
from churn.features.personal import text_feature_sql
from churn.sql import days_between

FAMILY = "acquisition"
PHASE = FAMILY_PHASES[FAMILY]
REQUIRED_TABLES = ("customers",)
ANY_OF_TABLES: tuple[str, ...] = ()
CATEGORICAL_COLUMNS = (
    ("acquisition_channel", "channel that won the customer"),
    ("campaign", "marketing campaign credited with the conversion"),
    ("segment", "customer segment"),
    ("country", "customer country"),
)
CONTENT_VIEWS = ("docs_view", "help_center_view")

_spec = spec_maker(FAMILY, PHASE)


def _when_converted(expression: str) -> str:
    """NULL for keys whose customer had not converted by the cutoff, else ``expression``."""
    return f"CASE WHEN c.customer_id IS NOT NULL THEN {expression} END"


def family_query(cfg: FeaturesConfig, tables: Mapping[str, pd.DataFrame]) -> FamilyQuery:
    """Return the acquisition SQL and catalog entries."""
    specs = [_spec(name, "categorical", "", words) for name, words in CATEGORICAL_COLUMNS]
    # A mapped column may carry personal values (an e-mail column mapped onto campaign).
    expressions = {
        name: text_feature_sql(f"c.{name}", name in cfg.allow_personal_columns)
        for name, _ in CATEGORICAL_COLUMNS
    }
    specs += [
        _spec("days_lead_to_conversion", "numeric", "days", "days from first lead to purchase"),
        _spec("trial_days", "numeric", "days", "days of free trial before purchase"),
    ]
    expressions["days_lead_to_conversion"] = days_between("c.lead_created_at", "c.converted_at")
    expressions["trial_days"] = "c.trial_days::DOUBLE"
    ctes = [
        f"""c AS (
            SELECT k.customer_id, k.cutoff, cu.* EXCLUDE (customer_id)
            FROM {KEYS} AS k
            JOIN customers AS cu
              ON cu.customer_id = k.customer_id AND cu.converted_at < k.cutoff
        )"""
    ]
    joins = ["LEFT JOIN c USING (customer_id, cutoff)"]
    skipped: dict[str, str] = {}

    if "presale_touchpoints" in tables:
        counts = []
        for touch in PRESALE_TOUCHPOINT_TYPES:
            name = f"presale_{touch}_touches"
            words = touch.replace("_", " ")
            specs.append(_spec(name, "numeric", "touches", f"{words} touches before purchase"))
            counts.append(f"count(*) FILTER (WHERE t.touchpoint_type = '{touch}') AS {name}")
            expressions[name] = _when_converted(count_or_zero(f"touch.{name}"))
        content = ", ".join(f"'{v}'" for v in CONTENT_VIEWS)
        counts += [
            f"count(*) FILTER (WHERE t.touchpoint_type IN ({content})) "
            "AS docs_and_help_views_before_conversion",
            "count(*) AS total_presale_touches",
        ]
        specs += [
            _spec(
                "docs_and_help_views_before_conversion",
                "numeric",
                "views",
                "documentation and help-center views before purchase",
            ),
            _spec("total_presale_touches", "numeric", "touches", "marketing and sales touches"),
        ]
        for name in ("docs_and_help_views_before_conversion", "total_presale_touches"):
            expressions[name] = _when_converted(count_or_zero(f"touch.{name}"))
        ctes.append(
            f"""touch AS (
            SELECT k.customer_id, k.cutoff, {", ".join(counts)}
            FROM {KEYS} AS k
            JOIN presale_touchpoints AS t
              ON t.customer_id = k.customer_id AND t.occurred_at < k.cutoff
            GROUP BY k.customer_id, k.cutoff
        )"""
        )
        joins.append("LEFT JOIN touch USING (customer_id, cutoff)")
    else:
        skipped["presale_touchpoints"] = "table absent: pre-sale touch counts left out"

    if "usage_events" in tables:
        specs += [
            _spec(
                "trial_usage_events", "numeric", "events", "product usage events before purchase"
            ),
            _spec(
                "trial_active_days", "numeric", "days", "days with product usage before purchase"
            ),
        ]
        for name in ("trial_usage_events", "trial_active_days"):
            expressions[name] = _when_converted(count_or_zero(f"trial.{name}"))
        # Trial use is per customer, not per cutoff: it ends at the conversion, which is before
        # every cutoff where the features are not missing anyway.
        ctes.append(
            """trial AS (
            SELECT u.customer_id,
                   sum(coalesce(u.quantity, 1)) AS trial_usage_events,
                   count(DISTINCT date_trunc('day', u.occurred_at)) AS trial_active_days
            FROM usage_events AS u
            JOIN customers AS cu
              ON cu.customer_id = u.customer_id AND u.occurred_at < cu.converted_at
            GROUP BY u.customer_id
        )"""
        )
        joins.append("LEFT JOIN trial USING (customer_id)")
    else:
        skipped["trial_usage"] = "usage_events absent: trial use left out"

    return assemble_family_query(ctes, joins, specs, expressions, skipped)
