"""Usage family: how much and how recently the customer uses the product.

Reads ``usage_events`` by ``occurred_at`` (a row at or after the cutoff is future). An event's
weight is its ``quantity`` (missing: 1). Counts are 0 without events; recency is NaN when the
customer never had such an event before the cutoff, and the trend is NaN without a baseline.

Features (windows ``w`` from ``features.windows_days``):

* ``usage_active_days_last_{w}d``: distinct UTC days with any event.
* ``usage_events_last_{w}d``: events (sum of quantity) of every type.
* ``usage_{type}_events_last_{w}d``: the same for each type in ``features.usage_event_types``;
  other types count in the totals only.
* ``usage_events_per_active_day_last_{w}d`` and ``usage_{type}_events_per_active_day_last_{w}d``:
  those events divided by the active days of the same window, so a customer of two weeks
  compares fairly with one of a year; NaN when the window has no active day (no rate exists).
* ``usage_trend_{r}d_vs_prior_{p}d``: daily event rate over the last ``r`` days (the
  second-largest window) divided by the rate over the ``p`` days before them (up to the largest
  window); NaN when the earlier period had no events. Needs two windows.
* ``days_since_last_event``: fractional days since the latest event before the cutoff;
  ``days_since_last_login`` the same for type ``login``, only when ``login`` is one of the
  counted types (a login feature on data without logins would be missing everywhere).

Besides its features the family leaves :data:`~churn.features.common.FIRST_USAGE` (each
customer's first event) in the session for acquisition's trial use, which runs after it.

**Event types from the data.** ``features.usage_event_types: auto`` picks the
``features.usage_event_types_top`` most frequent types (by number of rows; ties by name; a type
whose feature name clashes with a more frequent one's is skipped) among the events **before the
earliest cutoff of the population** (:func:`choose_usage_event_types`). Every cutoff computed
is at or after that one, so the choice only uses rows known before each cutoff. Training
computes the labels' cutoffs, so the types come from the history before the first label
cutoff. Scoring must not choose again (its data would change the model's columns): it takes
the types from the model's feature names (:func:`usage_event_types_of_model`). The resolution
happens once, before any engine runs (:func:`resolve_usage_event_types`), so Spark shards all
see the same fixed list.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from churn.config import FeaturesConfig
from churn.domain.catalog import FeatureSpec, slug
from churn.domain.families import FAMILY_PHASES
from churn.features.common import (
    FIRST_USAGE,
    KEY_SELECT_LIST,
    KEYS,
    FamilyQuery,
    count_or_zero,
    days_before_cutoff,
    latest_before_cutoff_sql,
    select_features,
    spec_maker,
)
from churn.features.time_chunks import ChunkedBuckets, events_per_range
from churn.features.windows import WindowedSums
from churn.sql import connect, epoch_micros, quote_literal

FAMILY = "usage"
PHASE = FAMILY_PHASES[FAMILY]
REQUIRED_TABLES = ("usage_events",)
ANY_OF_TABLES: tuple[str, ...] = ()
KEEPS = (FIRST_USAGE,)
"""Steps this family leaves in the session for later families (see the module docstring)."""
LOGIN_EVENT_TYPE = "login"
AUTO = "auto"
_TYPE_FEATURE = re.compile(r"usage_(?P<key>.+)_events_(?:per_active_day_)?last_[0-9]+d")

logger = logging.getLogger(__name__)

_spec = spec_maker(FAMILY, PHASE)


def choose_usage_event_types(
    events: pd.DataFrame | Path, before: pd.Timestamp, top: int
) -> tuple[str, ...]:
    """Return the ``top`` most frequent event types among the events before ``before``.

    Args:
        events: ``usage_events`` with ``occurred_at`` (naive or aware UTC) and ``event_type``,
            as a frame or a Parquet file; DuckDB counts (no per-row Python work).
        before: Only rows stamped strictly before it count (the earliest cutoff).
        top: How many types to keep.

    Returns:
        Types by decreasing number of rows (ties by name); a type whose feature name (its
        slug) equals a more frequent type's is skipped, so every type has its own columns.
    """
    return rank_usage_event_types(count_usage_event_types(events, before), top)


def count_usage_event_types(
    events: pd.DataFrame | Path, before: pd.Timestamp | None = None
) -> dict[str, int]:
    """Return the number of rows of each ``event_type`` (missing types left out).

    Args:
        events: ``usage_events`` as a frame or a Parquet file; DuckDB counts, so a file is
            never read into pandas.
        before: When given, only rows whose ``occurred_at`` (naive or aware UTC) is strictly
            before it count.
    """
    where = "event_type IS NOT NULL"
    columns = ["event_type"]
    if before is not None:
        # epoch_us reads naive values as UTC and aware ones in UTC, as epoch_micros does.
        where += f" AND epoch_us(occurred_at) < {epoch_micros(before)}"
        columns.append("occurred_at")
    with contextlib.closing(connect(memory_limit="1GB")) as con:
        con.execute("SET enable_progress_bar = false")
        if isinstance(events, Path):
            source = f"read_parquet({quote_literal(str(events))})"
        else:
            con.register("_events", events[columns])
            source = "_events"
        rows = con.execute(
            f"SELECT event_type::VARCHAR, count(*) FROM {source} WHERE {where} GROUP BY ALL"
        ).fetchall()
    return dict(rows)


def rank_usage_event_types(counts: Mapping[str, int], top: int) -> tuple[str, ...]:
    """Return the ``top`` types of ``counts`` (type -> rows), as :func:`choose_usage_event_types`.

    Separate so that an engine counting elsewhere (Spark) applies the very same rule.
    """
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    chosen: dict[str, str] = {}
    for event_type, _ in ranked:
        key = slug(event_type)
        if key and key not in chosen:
            chosen[key] = event_type
        if len(chosen) == top:
            break
    return tuple(chosen.values())


def resolve_usage_event_types(
    cfg: FeaturesConfig,
    tables: Mapping[str, pd.DataFrame | Path],
    first_cutoff: pd.Timestamp | None,
) -> FeaturesConfig:
    """Return ``cfg`` with ``usage_event_types: auto`` replaced by the types chosen from data.

    An explicit list is returned unchanged. Without ``usage_events`` (or without cutoffs) the
    list is empty: only the totals are computed (the family is skipped anyway without events).
    """
    if cfg.usage_event_types != AUTO:
        return cfg
    events = tables.get("usage_events")
    empty = isinstance(events, pd.DataFrame) and events.empty
    if events is None or first_cutoff is None or empty:
        types: tuple[str, ...] = ()
    else:
        types = choose_usage_event_types(events, first_cutoff, cfg.usage_event_types_top)
    logger.info(
        "usage event types from the events before %s: %s",
        "(no cutoff)" if first_cutoff is None else f"{pd.Timestamp(first_cutoff):%Y-%m-%d}",
        ", ".join(types) or "none",
    )
    return cfg.model_copy(update={"usage_event_types": types})


def usage_event_types_of_model(
    feature_names: Iterable[str], events: pd.DataFrame | Path | None
) -> tuple[str, ...]:
    """Return the event types a model's usage features were built from.

    Feature names hold a type's slug, not the type itself: the type is the most frequent
    ``event_type`` of ``events`` (a frame or a Parquet file, counted by
    :func:`count_usage_event_types`; ties by name) with that slug, or the slug itself when no
    event has it (its counts are then 0, as they would be for any spelling).
    ``days_since_last_login`` brings ``login`` back even if every ``usage_login_*`` count was
    dropped from the model.
    """
    names = list(feature_names)
    keys = dict.fromkeys(match["key"] for name in names if (match := _TYPE_FEATURE.fullmatch(name)))
    if "days_since_last_login" in names:
        keys.setdefault(slug(LOGIN_EVENT_TYPE), None)
    spelled: dict[str, str] = {}
    if events is not None and not (isinstance(events, pd.DataFrame) and events.empty):
        counts = count_usage_event_types(events)
        for event_type, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            spelled.setdefault(slug(event_type), event_type)
    return tuple(spelled.get(key, key) for key in keys)


def family_query(cfg: FeaturesConfig, tables: Mapping[str, pd.DataFrame | Path]) -> FamilyQuery:
    """Return the usage SQL and catalog entries for the configured windows and event types."""
    windows = cfg.windows_days
    if cfg.usage_event_types == AUTO:
        raise ValueError("usage_event_types 'auto' must be resolved before the family runs")
    types = {slug(t): t for t in cfg.usage_event_types}
    with_login = LOGIN_EVENT_TYPE in cfg.usage_event_types
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
        for key in types:
            name = f"usage_{key}_events_last_{w}d"
            specs.append(
                _spec(
                    name,
                    "numeric",
                    "events",
                    f"{key.replace('_', ' ')} events in the last {w} days",
                )
            )
            outputs.append((name, f"b.q_{key}", w))
    for name, _, _ in outputs:
        expressions[name] = count_or_zero(f"win.{name}")
    rated = {"usage_events": "product usage"}
    rated |= {f"usage_{key}_events": key.replace("_", " ") for key in types}
    for w in windows:
        active = f"win.usage_active_days_last_{w}d"
        for events, words in rated.items():
            name = f"{events}_per_active_day_last_{w}d"
            specs.append(
                _spec(
                    name,
                    "numeric",
                    "",
                    f"{words} events per active day in the last {w} days",
                )
            )
            expressions[name] = (
                f"CASE WHEN coalesce({active}, 0) > 0 "
                f"THEN coalesce(win.{events}_last_{w}d, 0)::DOUBLE / {active} END"
            )

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
    if with_login:
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
    # Each customer's first event, for acquisition's trial use (FIRST_USAGE): one more minimum
    # in this pass over the events instead of a pass of its own there.
    mins = {"first_event_at": "occurred_at"}
    # The buckets are read by four steps: each step its own statement (FamilyQuery.steps).
    buckets, windows_table = "_usage_buckets", "_usage_windows"
    last_event, last_login = "_usage_last_event", "_usage_last_login"
    # Past a range's worth of events, a time-ordered file is aggregated a time range at a time
    # (churn.features.time_chunks): one statement over 170M events spilled at 1M customers.
    source = tables["usage_events"]
    bucketed = ChunkedBuckets(
        "usage_events",
        "occurred_at",
        sums,
        maxes,
        day_mask=True,
        path=source if isinstance(source, Path) else None,
        max_events=events_per_range(cfg.duckdb_memory_limit),
        mins=mins,
    )
    steps = (
        (buckets, bucketed),
        (windows_table, WindowedSums(buckets, tuple(outputs))),
        (last_event, latest_before_cutoff_sql(buckets, "last_event_at")),
        (last_login, latest_before_cutoff_sql(buckets, "last_login_at")),
        (
            FIRST_USAGE,
            f"SELECT customer_id, min(first_event_at) AS first_event_at FROM {buckets} "
            "GROUP BY customer_id",
        ),
    )
    sql = f"""
        SELECT {KEY_SELECT_LIST},
               {select_features(specs, expressions)}
        FROM {KEYS} AS k
        LEFT JOIN {windows_table} AS win USING (customer_id, cutoff)
        LEFT JOIN {last_event} AS last_event USING (customer_id, cutoff)
        LEFT JOIN {last_login} AS last_login USING (customer_id, cutoff)"""
    return FamilyQuery(sql=sql, specs=tuple(specs), steps=steps)
