"""Frozen copy of ``churn.features.build`` before the integer-key and streaming rewrite.

Frozen on 2026-12-02, kept only for the parity test (tests/unit/features/test_write.py):
the rewrite must give the same features, bit for bit. Do not change it; delete it with the
test once the new code has lived through a release. (Two changes, both 2026-12-06: it runs the
current families' steps through ``create_step``, since a step may now be a builder; and in
``order_families`` order, leaving the steps a family keeps for later ones, since acquisition
now reads the usage family's first events.)

Original module docstring follows.

Pure feature computation: validated tables + population in, features frame + catalog out.

:func:`build_features` opens a private in-memory DuckDB session, registers the tables (zero-copy)
and runs one SQL query per family. Each family returns exactly one row per (customer, cutoff)
key, and the results are left-joined onto the population in its original row order.

A customer's features depend only on that customer's rows and the cutoff: there is no
population-wide statistic (no mean, rank or encoding), so computing customer shards separately
(the Spark engine calls this function per shard) gives the same values as one run. The one
data-wide choice, ``features.usage_event_types: auto``, is made once before sharding
(:func:`churn.stages.features.compute_features`) and only falls to this function when it is
called directly with ``auto``.

**Modes.** Events mode (the full contract) runs the five journey families, each skipped when
its tables are absent. Entity mode (``ingest.mode: entity``) runs only the ``profile`` family:
every ``customers`` column becomes a feature. The caller must drop the label column from
``customers`` first (:func:`churn.stages.features.prepare_tables` does). When ``mode`` is not
given it is inferred: entity mode exactly when ``customers`` is the only table (what entity
ingest writes; events mode always has ``subscriptions``), so shard workers that only pass
tables, population and config (the Spark engine) get the same mode as the driver.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType

import duckdb
import pandas as pd
import pyarrow as pa

from churn.config import FeaturesConfig
from churn.domain.catalog import FeatureSpec, catalog_frame, check_catalog, feature_dtypes
from churn.domain.contract import COLUMN_DTYPES, CONTRACT
from churn.domain.modes import Mode
from churn.errors import DataContractError
from churn.features.build import order_families
from churn.features.common import (
    DAY_BUCKET,
    KEYS,
    build_bucket_grid,
    create_step,
    set_last_cutoff,
)
from churn.features.families import acquisition, billing, engagement, profile, support, usage
from churn.features.personal import refuse_personal_columns, split_words
from churn.sql import connect, fetch_scalar, normalize_timestamps, quote_ident, to_naive_utc

logger = logging.getLogger(__name__)

EVENT_FAMILIES: tuple[ModuleType, ...] = (acquisition, billing, usage, support, engagement)
"""Families of events mode, in output column order (pre-sale first, as in the journey)."""
ENTITY_FAMILIES: tuple[ModuleType, ...] = (profile,)
_BIRTH_WORDS = frozenset({"birth", "dob", "birthdate", "birthday"})


@dataclass(frozen=True)
class FeatureResult:
    """Output of :func:`build_features`.

    Attributes:
        frame: ``customer_id``, ``cutoff``, ``label`` then the feature columns, one row per
            population row in the same order.
        catalog: One row per feature column (see :mod:`churn.domain.catalog`).
        skipped: What was left out and why. Keys are family names for whole families
            (``"support"``) and ``"<family>.<part>"`` for optional parts of a family
            (``"billing.subscription_changes"``).
    """

    frame: pd.DataFrame
    catalog: pd.DataFrame
    skipped: dict[str, str]


def _population_keys(population: pd.DataFrame) -> pd.DataFrame:
    """Validate the population and return its keys with naive-UTC cutoffs and row numbers."""
    missing = [c for c in ("customer_id", "cutoff") if c not in population.columns]
    if missing:
        raise ValueError(f"population lacks column(s) {missing}")
    cutoff = to_naive_utc(population["cutoff"].reset_index(drop=True))
    if cutoff.isna().any():
        raise ValueError("population has missing cutoffs")
    if (cutoff != cutoff.dt.normalize()).any():
        # Day-aligned cutoffs let windows and active days work on whole UTC days.
        raise ValueError("cutoffs must be at midnight UTC")
    return pd.DataFrame(
        {
            "customer_id": population["customer_id"].astype("str").reset_index(drop=True),
            "cutoff": cutoff,
            "_row": range(len(population)),
        }
    )


def _prepare_tables(tables: Mapping[str, pd.DataFrame], entity: bool) -> dict[str, pd.DataFrame]:
    """Normalise timestamps and add absent optional contract columns as typed nulls.

    Validated tables already carry every contract column; adding them here keeps the families'
    SQL valid on hand-made or sharded inputs too. Entity-mode customers keep all columns.
    """
    prepared: dict[str, pd.DataFrame] = {}
    for name, frame in tables.items():
        if name not in CONTRACT:
            continue
        if not entity:
            added = {}
            for column in CONTRACT[name].columns:
                if column.name in frame.columns:
                    continue
                dtype = COLUMN_DTYPES[column.kind]
                added[column.name] = pd.Series(pd.NA, index=frame.index, dtype=dtype)
            frame = frame.assign(**added) if added else frame
        prepared[name] = normalize_timestamps(frame)
    return prepared


def _refuse_personal_features(tables: Mapping[str, pd.DataFrame], cfg: FeaturesConfig) -> None:
    """Fail when a customer column that would become a feature looks like personal data.

    Every customer column but the id feeds a feature in entity mode (the profile family), and
    the text columns feed the acquisition family in events mode; checking them all is simple
    and also catches a personal column mapped onto a contract name.

    A column declared ``age`` in ``features.customer_attributes`` is exempt: only the whole
    years to the cutoff become a feature, never the date. A date of birth (its name says
    birth) declared anything else is refused even when allowed: it is only ever used as age.
    """
    if "customers" not in tables:
        return
    customers = tables["customers"]
    ages = {c for c, kind in cfg.customer_attributes.items() if kind == "age"}
    births = [
        c
        for c in customers.columns
        if c not in ages
        and _BIRTH_WORDS & set(split_words(c))
        and (c in cfg.customer_attributes or c in cfg.allow_personal_columns)
    ]
    if births:
        raise DataContractError(
            f"customers column(s) {births}: a date of birth may only become a feature as an "
            "age; declare it 'age' in features.customer_attributes"
        )
    columns = [c for c in customers.columns if c != "customer_id" and c not in ages]
    allowed = refuse_personal_columns(customers, columns, cfg.allow_personal_columns, "customers")
    if allowed:
        logger.warning(
            "personal column(s) %s used as features because features.allow_personal_columns "
            "lists them; their text values are pseudonymised",
            ", ".join(allowed),
        )


def _skip_reason(module: ModuleType, available: set[str]) -> str | None:
    missing = [t for t in module.REQUIRED_TABLES if t not in available]
    if missing:
        return f"table(s) {', '.join(missing)} absent"
    if module.ANY_OF_TABLES and not available & set(module.ANY_OF_TABLES):
        return f"none of the tables {', '.join(module.ANY_OF_TABLES)} is present"
    return None


def family_skip_reasons(available: Iterable[str], mode: Mode) -> dict[str, str | None]:
    """Say which feature families a run over these tables computes, and why others are skipped.

    The same table checks :func:`build_features` applies (parts of a family skipped for want
    of data, such as usage event types, are only known when the features are built).

    Args:
        available: Names of the tables present (validated tables by contract name).
        mode: ``ingest.mode``: events mode runs the journey families, entity mode the profile
            family.

    Returns:
        Family name -> ``None`` when it runs, else why it is skipped; in output column order.
    """
    present = set(available)
    families = ENTITY_FAMILIES if Mode(mode) is Mode.ENTITY else EVENT_FAMILIES
    return {module.FAMILY: _skip_reason(module, present) for module in families}


def build_features(
    tables: Mapping[str, pd.DataFrame],
    population: pd.DataFrame,
    cfg: FeaturesConfig,
    *,
    mode: Mode | None = None,
) -> FeatureResult:
    """Compute point-in-time features for every population row.

    Args:
        tables: Validated tables by contract name (absent optional tables skip families).
        population: Rows with ``customer_id``, ``cutoff`` (midnight UTC) and optionally
            ``label`` (a labels frame); duplicates are allowed and keep their order.
        cfg: Feature configuration (windows, vocabularies, DuckDB resources).
            ``usage_event_types: auto`` is resolved from the events before the population's
            earliest cutoff (:func:`churn.features.families.usage.resolve_usage_event_types`);
            callers that split the population (Spark shards, scoring) resolve it first.
        mode: ``ingest.mode``: :attr:`Mode.EVENTS` for the journey families, ``ENTITY`` for the
            profile family over the customer table (label column already removed); ``None``
            infers it from the tables (see the module docstring).

    Returns:
        The features frame, the catalog and the skipped families/parts.

    Raises:
        ValueError: If the population lacks keys or has cutoffs that are not midnight UTC, or
            if a family breaks the one-row-per-key contract or the catalog.
    """
    keys = _population_keys(population)
    entity = Mode(mode) is Mode.ENTITY if mode is not None else set(tables) == {"customers"}
    prepared = _prepare_tables(tables, entity)
    _refuse_personal_features(prepared, cfg)
    first_cutoff = keys["cutoff"].min() if len(keys) else None
    cfg = usage.resolve_usage_event_types(cfg, prepared, first_cutoff)
    families = ENTITY_FAMILIES if entity else EVENT_FAMILIES
    grid = build_bucket_grid(keys["cutoff"].unique(), cfg.windows_days)

    skipped: dict[str, str] = {}
    specs: list[FeatureSpec] = []
    con = connect(cfg.duckdb_threads, cfg.duckdb_memory_limit)
    try:
        for name, frame in prepared.items():
            con.register(name, frame)
        con.register("_population", keys)
        con.register(DAY_BUCKET, grid.day_bucket)
        con.execute(
            # The families select the key column the current code's _keys carries.
            f"CREATE TEMP TABLE {KEYS} AS SELECT row_number() OVER () AS _key, * "
            "FROM (SELECT DISTINCT customer_id, cutoff FROM _population)"
        )
        set_last_cutoff(con)
        n_keys = fetch_scalar(con, f"SELECT count(*) FROM {KEYS}")
        joined: list[str] = []
        for module in order_families(families):
            reason = _skip_reason(module, set(prepared))
            if reason is not None:
                skipped[module.FAMILY] = reason
                logger.info("feature family %s skipped: %s", module.FAMILY, reason)
                continue
            query = module.family_query(cfg, prepared)
            for part, why in query.skipped_parts.items():
                skipped[f"{module.FAMILY}.{part}"] = why
                logger.info("feature family %s: part %s skipped: %s", module.FAMILY, part, why)
            if not query.specs:
                continue
            table = f"_family_{module.FAMILY}"
            started = time.perf_counter()
            # The families are shared with the current code: run their steps (added later).
            for step, step_sql in query.steps:
                create_step(con, step, step_sql)
            con.execute(f"CREATE TEMP TABLE {table} AS {query.sql}")
            for step, _ in query.steps:
                if step not in getattr(module, "KEEPS", ()):
                    con.execute(f"DROP TABLE {step}")
            n_rows = fetch_scalar(con, f"SELECT count(*) FROM {table}")
            if n_rows != n_keys:
                raise ValueError(f"family {module.FAMILY} returned {n_rows} rows for {n_keys} keys")
            logger.debug(
                "feature family %s: %d features in %.2fs",
                module.FAMILY,
                len(query.specs),
                time.perf_counter() - started,
            )
            specs.extend(query.specs)
            joined.append(table)
        # Back to the families' own order (the run order put usage first).
        rank = {module.FAMILY: number for number, module in enumerate(families)}
        specs.sort(key=lambda spec: rank[spec.family])
        joined.sort(key=lambda name: rank[name.removeprefix("_family_")])
        skipped = dict(sorted(skipped.items(), key=lambda item: rank[item[0].split(".")[0]]))
        features = _fetch_features(con, joined, specs)
    finally:
        # Free DuckDB's family tables before the result is converted to pandas.
        con.close()
    features = _to_feature_frame(features, specs, len(keys))

    check_catalog(specs, features.columns)
    frame = pd.concat(
        [
            pd.DataFrame(
                {
                    "customer_id": keys["customer_id"],
                    "cutoff": population["cutoff"].reset_index(drop=True),
                    "label": (
                        population["label"].reset_index(drop=True)
                        if "label" in population.columns
                        else pd.Series(pd.NA, index=keys.index, dtype="Int8")
                    ),
                }
            ),
            features,
        ],
        axis=1,
    )
    return FeatureResult(frame=frame, catalog=catalog_frame(specs), skipped=skipped)


def _fetch_features(
    con: duckdb.DuckDBPyConnection, tables: list[str], specs: list[FeatureSpec]
) -> pa.Table | None:
    """Join the family tables onto the population in row order (an Arrow table)."""
    if not tables:
        return None
    joins = "\n".join(
        f"LEFT JOIN {t} ON {t}.customer_id = p.customer_id AND {t}.cutoff = p.cutoff"
        for t in tables
    )
    columns = ", ".join(quote_ident(spec.name) for spec in specs)
    return con.sql(
        f"SELECT {columns} FROM _population AS p {joins} ORDER BY p._row"
    ).to_arrow_table()


def _to_feature_frame(
    table: pa.Table | None, specs: list[FeatureSpec], n_rows: int
) -> pd.DataFrame:
    """Convert the Arrow result to pandas with the catalog dtypes, releasing Arrow buffers."""
    if table is None:
        return pd.DataFrame(index=pd.RangeIndex(n_rows))
    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    return frame.astype(feature_dtypes(specs))
