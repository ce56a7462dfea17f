"""Usage family: how much and how recently the customer uses the product.

Reads ``usage_events`` by ``occurred_at`` (a row at or after the cutoff is future). An event's
weight is its ``quantity`` (missing: 1). Counts are 0 without events; recency is NaN when the
customer never had such an event before the cutoff, and the trend is NaN without a baseline.

Features (windows ``w`` from ``features.windows_days``):

* ``usage_active_days_last_{w}d``: distinct UTC days with any event.
* ``usage_events_last_{w}d``: events (sum of quantity) of every type.
* ``usage_{type}_events_last_{w}d``: the same for each type in ``features.usage_event_types``;
  other types count in the totals only.
* ``usage_trend_{r}d_vs_prior_{p}d``: daily event rate over the last ``r`` days (the
  second-largest window) divided by the rate over the ``p`` days before them (up to the largest
  window); NaN when the earlier period had no events. Needs two windows.
* ``days_since_last_event``, ``days_since_last_login``: fractional days since the latest event
  (of type ``login``) before the cutoff.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from churn.config import FeaturesConfig
from churn.domain.catalog import FeatureSpec, slug
from churn.domain.families import FAMILY_PHASES
from churn.features.common import (
    KEYS,
    FamilyQuery,
    bucketed_sql,
    count_or_zero,
    days_before_cutoff,
    latest_before_cutoff_sql,
    select_features,
    spec_maker,
    windowed_sql,
)
from churn.sql import quote_literal

FAMILY = "usage"
PHASE = FAMILY_PHASES[FAMILY]
REQUIRED_TABLES = ("usage_events",)
ANY_OF_TABLES: tuple[str, ...] = ()
LOGIN_EVENT_TYPE = "login"

_spec = spec_maker(FAMILY, PHASE)


def family_query(cfg: FeaturesConfig, tables: Mapping[str, pd.DataFrame]) -> FamilyQuery:
    """Return the usage SQL and catalog entries for the configured windows and event types."""
    windows = cfg.windows_days
    types = {slug(t): t for t in cfg.usage_event_types}
    specs: list[FeatureSpec] = []
    expressions: dict[str, str] = {}
    outputs: list[tuple[str, str, int]] = []
    for w in windows:
        name = f"usage_active_days_last_{w}d"
        specs.append(
            _spec(name, "numeric", "days", f"days with product usage in the last {w} days")
        )
        outputs.append((name, "bit_count(b.day_mask)", w))
        name = f"usage_events_last_{w}d"
        specs.append(_spec(name, "numeric", "events", f"product usage events in the last {w} days"))
        outputs.append((name, "b.quantity", w))
        for key, event_type in types.items():
            name = f"usage_{key}_events_last_{w}d"
            specs.append(
                _spec(
                    name,
                    "numeric",
                    "events",
                    f"{event_type.replace('_', ' ')} events in the last {w} days",
                )
            )
            outputs.append((name, f"b.q_{key}", w))
    for name, _, _ in outputs:
        expressions[name] = count_or_zero(f"win.{name}")

    if len(windows) >= 2:
        recent, largest = windows[-2], windows[-1]
        prior = largest - recent
        name = f"usage_trend_{recent}d_vs_prior_{prior}d"
        specs.append(
            _spec(
                name,
                "numeric",
                "ratio",
                f"ratio of the daily usage rate in the last {recent} days to the "
                f"{prior} days before",
            )
        )
        recent_sum = f"coalesce(win.usage_events_last_{recent}d, 0)"
        prior_sum = f"(coalesce(win.usage_events_last_{largest}d, 0) - {recent_sum})"
        expressions[name] = (
            f"CASE WHEN {prior_sum} > 0 "
            f"THEN ({recent_sum} / {recent}.0) / ({prior_sum} / {prior}.0) END"
        )
    specs.append(
        _spec("days_since_last_event", "numeric", "days", "days since the last usage event")
    )
    expressions["days_since_last_event"] = days_before_cutoff("last_event.value")
    specs.append(_spec("days_since_last_login", "numeric", "days", "days since the last login"))
    expressions["days_since_last_login"] = days_before_cutoff("last_login.value")

    sums = {"quantity": "coalesce(quantity, 1)"}
    sums |= {
        f"q_{key}": f"CASE WHEN event_type = {quote_literal(t)} THEN coalesce(quantity, 1) END"
        for key, t in types.items()
    }
    maxes = {
        "last_event_at": "occurred_at",
        "last_login_at": f"CASE WHEN event_type = {quote_literal(LOGIN_EVENT_TYPE)} "
        "THEN occurred_at END",
    }
    sql = f"""
        WITH ub AS MATERIALIZED ({bucketed_sql("usage_events", "occurred_at", sums, maxes, True)}),
        win AS ({windowed_sql("ub", outputs)}),
        last_event AS ({latest_before_cutoff_sql("ub", "last_event_at")}),
        last_login AS ({latest_before_cutoff_sql("ub", "last_login_at")})
        SELECT k.customer_id, k.cutoff,
               {select_features(specs, expressions)}
        FROM {KEYS} AS k
        LEFT JOIN win USING (customer_id, cutoff)
        LEFT JOIN last_event USING (customer_id, cutoff)
        LEFT JOIN last_login USING (customer_id, cutoff)"""
    return FamilyQuery(sql=sql, specs=tuple(specs))
