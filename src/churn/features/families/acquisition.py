"""Acquisition family: how the customer was won (the pre-sale journey).

Reads ``customers`` (known from ``converted_at``), ``presale_touchpoints`` and, for trial use,
``usage_events`` before ``converted_at``. A customer not yet converted at the cutoff has no
acquisition features (all missing). Pre-sale touches precede the conversion by definition, but
are still filtered by ``occurred_at < cutoff`` so that a mis-stamped row cannot leak.

Features:

* ``acquisition_channel``, ``segment``, ``country`` (categorical).
* ``campaign_stem`` (categorical): the ``campaign`` code without the period it names
  (``features.campaign_period_pattern``; :mod:`churn.features.campaign`). The raw code is not a
  feature: its period makes it a label that every new quarter replaces, never seen in training.
* ``days_lead_to_conversion``: fractional days from lead creation to conversion (NaN without a
  lead date); ``trial_days``: length of the free trial.
* With ``presale_touchpoints``: ``presale_{type}_touches`` for each contract touch type,
  ``docs_and_help_views_before_conversion`` (docs and help-center views) and
  ``total_presale_touches``; 0 without touches.
* With ``usage_events``: ``trial_usage_events`` (sum of quantity, missing quantity = 1) and
  ``trial_active_days`` (distinct UTC days) before the conversion; 0 without trial use.
* Declared customer attributes (``features.customer_attributes``, extra ``customers`` columns
  that ingest keeps): ``categorical`` ones become text features and ``numeric`` ones numbers,
  both named after the column (snake_case); an ``age`` one (a date such as the date of birth)
  becomes ``<column>_age_years``, the whole years from the date to the cutoff (NaN when the
  date is not before the cutoff), and the date itself never becomes a feature. They belong to
  this family (phase ``pre_sale``): like the channel, they describe who was won and are known
  at the sale; like every acquisition feature they are missing before the conversion.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from churn.config import FeaturesConfig
from churn.domain.catalog import KEY_COLUMNS, FeatureSpec, slug
from churn.domain.contract import CONTRACT, PRESALE_TOUCHPOINT_TYPES
from churn.domain.families import FAMILY_PHASES
from churn.errors import DataContractError
from churn.features.campaign import campaign_stems, campaign_stems_sql
from churn.features.common import (
    FIRST_USAGE,
    KEYS,
    FamilyQuery,
    age_years_sql,
    assemble_family_query,
    count_or_zero,
    spec_maker,
)
from churn.features.personal import pseudonym_sql, pseudonymize_sql, text_feature_sql
from churn.sql import days_between, quote_ident

FAMILY = "acquisition"
PHASE = FAMILY_PHASES[FAMILY]
REQUIRED_TABLES = ("customers",)
ANY_OF_TABLES: tuple[str, ...] = ()
CATEGORICAL_COLUMNS = (
    ("acquisition_channel", "channel that won the customer"),
    ("segment", "customer segment"),
    ("country", "customer country"),
)
CAMPAIGN_COLUMN = "campaign"
CAMPAIGN_STEM = ("campaign_stem", "campaign (period removed) credited with the conversion")
CONTENT_VIEWS = ("docs_view", "help_center_view")

_spec = spec_maker(FAMILY, PHASE)


def _when_converted(expression: str) -> str:
    """NULL for keys whose customer had not converted by the cutoff, else ``expression``."""
    return f"CASE WHEN c.customer_id IS NOT NULL THEN {expression} END"


def attribute_specs(
    cfg: FeaturesConfig, customers: pd.DataFrame
) -> tuple[list[FeatureSpec], dict[str, str]]:
    """Return the specs and SQL (over ``c``: the customer row and ``cutoff``) of the attributes.

    Raises:
        DataContractError: If a declared column is absent, is a contract column (it already
            has its own feature) or a key, or an ``age`` column is not a date.
    """
    contract_columns = set(CONTRACT["customers"].column_names)
    specs: list[FeatureSpec] = []
    expressions: dict[str, str] = {}
    for column, kind in cfg.customer_attributes.items():
        where = f"features.customer_attributes: customers.{column}"
        if column not in customers.columns:
            raise DataContractError(f"{where} is not in the customers table (run churn ingest)")
        if column in contract_columns:
            raise DataContractError(f"{where} is a contract column; it is a feature already")
        source = f"c.{quote_ident(column)}"
        words = slug(column).replace("_", " ")
        if kind == "age":
            if not pd.api.types.is_datetime64_any_dtype(customers[column].dtype):
                raise DataContractError(f"{where} is declared 'age' but does not hold dates")
            name = f"{slug(column)}_age_years"
            spec = _spec(name, "numeric", "years", f"age in years at the cutoff from {words}")
            expression = age_years_sql(source, "c.cutoff")
        elif kind == "numeric":
            name = slug(column)
            spec = _spec(name, "numeric", "", words)
            expression = f"{source}::DOUBLE"
        else:
            name = slug(column)
            spec = _spec(name, "categorical", "", words)
            expression = text_feature_sql(
                f"{source}::VARCHAR", column in cfg.allow_personal_columns
            )
        if name in KEY_COLUMNS or column in KEY_COLUMNS:
            raise DataContractError(f"{where} clashes with a key column of the features table")
        specs.append(spec)
        expressions[name] = expression
    return specs, expressions


def _text_column(feature: str) -> str:
    """Column of the ``_customer_text`` step holding a text feature's per-customer value."""
    return f"_text_{feature}"


def campaign_stem_feature_sql(cfg: FeaturesConfig) -> str:
    """Return the SQL (over ``c``, whose ``_campaign_stem`` is joined) of ``campaign_stem``.

    A code that holds an e-mail address or phone number is pseudonymised as it is, before any
    digits are taken out of it; an allowed personal column pseudonymises every stem.
    """
    raw = f"c.{CAMPAIGN_COLUMN}::VARCHAR"
    stem = "c._campaign_stem"
    if CAMPAIGN_COLUMN in cfg.allow_personal_columns:
        return pseudonym_sql(stem)
    return f"CASE WHEN {pseudonymize_sql(raw)} = {raw} THEN {stem} ELSE {pseudonym_sql(raw)} END"


def family_query(cfg: FeaturesConfig, tables: Mapping[str, pd.DataFrame]) -> FamilyQuery:
    """Return the acquisition SQL and catalog entries."""
    specs = [_spec(name, "categorical", "", words) for name, words in CATEGORICAL_COLUMNS]
    # A mapped column may carry personal values (an e-mail column mapped onto campaign). The
    # text features depend on the customer alone: computed once per customer (the
    # _customer_text step), not once per cutoff (4.5 s of regular expressions at 1M customers,
    # 9.6M keys; 0.4 s per customer, 2026-12-06).
    texts = {
        name: text_feature_sql(f"c.{name}", name in cfg.allow_personal_columns)
        for name, _ in CATEGORICAL_COLUMNS
    }
    specs.append(_spec(CAMPAIGN_STEM[0], "categorical", "", CAMPAIGN_STEM[1]))
    texts[CAMPAIGN_STEM[0]] = campaign_stem_feature_sql(cfg)
    specs += [
        _spec("days_lead_to_conversion", "numeric", "days", "days from first lead to purchase"),
        _spec("trial_days", "numeric", "days", "days of free trial before purchase"),
    ]
    numbers = {
        "days_lead_to_conversion": days_between("c.lead_created_at", "c.converted_at"),
        "trial_days": "c.trial_days::DOUBLE",
    }
    attributes, attribute_sql = attribute_specs(cfg, tables["customers"])
    clashes = {spec.name for spec in attributes} & {spec.name for spec in specs}
    if clashes:
        raise DataContractError(
            f"features.customer_attributes: {sorted(clashes)} clash with acquisition features"
        )
    specs += attributes
    categorical = {spec.name for spec in attributes if spec.kind == "categorical"}
    texts |= {name: sql for name, sql in attribute_sql.items() if name in categorical}
    # c has no row for a key before the conversion, so every text feature is missing there.
    expressions = {name: f"c.{_text_column(name)}" for name in texts} | numbers
    expressions |= {
        name: _when_converted(sql) for name, sql in attribute_sql.items() if name not in texts
    }
    stems = campaign_stems(tables["customers"][CAMPAIGN_COLUMN], cfg.campaign_period_pattern)
    text_list = ", ".join(f"{sql} AS {_text_column(name)}" for name, sql in texts.items())
    steps = [
        ("campaign_stems", campaign_stems_sql(stems)),
        ("_customer_text", f"""
            SELECT c.customer_id, {text_list}
            FROM (
                SELECT cu.*, stems.stem AS _campaign_stem
                FROM customers AS cu
                LEFT JOIN campaign_stems AS stems
                  ON stems.code = cu.{CAMPAIGN_COLUMN}::VARCHAR
            ) AS c
        """),
        ("c", f"""
            SELECT k.customer_id, k.cutoff, cu.* EXCLUDE (customer_id),
                   t.* EXCLUDE (customer_id)
            FROM {KEYS} AS k
            JOIN customers AS cu
              ON cu.customer_id = k.customer_id AND cu.converted_at < k.cutoff
            JOIN _customer_text AS t ON t.customer_id = cu.customer_id
        """),
    ]
    joins = ["LEFT JOIN c USING (customer_id, cutoff)"]
    skipped: dict[str, str] = {}
    reads: tuple[str, ...] = ()

    if "presale_touchpoints" in tables:
        counts = []
        for touch in PRESALE_TOUCHPOINT_TYPES:
            name = f"presale_{touch}_touches"
            words = touch.replace("_", " ")
            specs.append(_spec(name, "numeric", "touches", f"{words} touches before purchase"))
            counts.append(
                f"count(*) FILTER (WHERE t.touchpoint_type = '{touch}') OVER running AS {name}"
            )
            expressions[name] = _when_converted(count_or_zero(f"touch.{name}"))
        content = ", ".join(f"'{v}'" for v in CONTENT_VIEWS)
        counts += [
            f"count(*) FILTER (WHERE t.touchpoint_type IN ({content})) OVER running "
            "AS docs_and_help_views_before_conversion",
            "count(*) OVER running AS total_presale_touches",
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
        # Running counts over each customer's touches (a touch's count includes every touch
        # at the same moment), and for each key those of its last touch before the cutoff:
        # one pass over the touches instead of one per cutoff (at 1M customers 10 s for the
        # join of every key with its earlier touches).
        steps += [
            ("_touch_running", f"""
            SELECT t.customer_id, t.occurred_at, {", ".join(counts)}
            FROM presale_touchpoints AS t
            WHERE t.occurred_at IS NOT NULL
            WINDOW running AS (
                PARTITION BY t.customer_id ORDER BY t.occurred_at
                RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
            )
        """),
            ("touch", f"""
            SELECT k.customer_id, k.cutoff, r.* EXCLUDE (customer_id, occurred_at)
            FROM {KEYS} AS k
            ASOF JOIN _touch_running AS r
              ON r.customer_id = k.customer_id AND k.cutoff > r.occurred_at
        """),
        ]
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
        # every cutoff where the features are not missing anyway. So only customers whose
        # first event (before the last cutoff, FIRST_USAGE from the usage family) precedes
        # their conversion can have a non-zero count where it is read, and only their events
        # are summed. Without any, DuckDB's join finds its build side empty and does not scan
        # the events at all: our simulator has no trial use, and re-reading 170M usage events
        # to find none took 19-23 s at 1M customers, in features and again in score.
        steps.append(
            ("trial", f"""
            SELECT u.customer_id,
                   sum(coalesce(u.quantity, 1)) AS trial_usage_events,
                   count(DISTINCT date_trunc('day', u.occurred_at)) AS trial_active_days
            FROM usage_events AS u
            JOIN (
                SELECT cu.customer_id, cu.converted_at
                FROM customers AS cu
                JOIN {FIRST_USAGE} AS f
                  ON f.customer_id = cu.customer_id AND f.first_event_at < cu.converted_at
            ) AS cu
              ON cu.customer_id = u.customer_id AND u.occurred_at < cu.converted_at
            GROUP BY u.customer_id
        """)
        )
        joins.append("LEFT JOIN trial USING (customer_id)")
        reads = (FIRST_USAGE,)
    else:
        skipped["trial_usage"] = "usage_events absent: trial use left out"

    return assemble_family_query(steps, joins, specs, expressions, skipped, reads)
