"""Pure feature computation: validated tables + population in, features frame + catalog out.

:func:`build_features` opens a private DuckDB session, registers the tables (frames copied once,
Parquet files scanned in place) and runs one SQL query per family. Each family returns exactly
one row per (customer, cutoff) key, stored as a file in key order; the population's rows then
take their family rows by key, in the population's original row order
(:mod:`churn.features.family_rows`).

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

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churn.background import BackgroundParquetWriter
from churn.config import FeaturesConfig
from churn.domain.catalog import FeatureSpec, catalog_frame, check_catalog, feature_dtypes
from churn.domain.contract import COLUMN_DTYPES, CONTRACT
from churn.domain.modes import Mode
from churn.errors import DataContractError, ResourceLimitError
from churn.features.common import (
    BUCKET_WINDOW,
    DAY_BUCKET,
    KEYS,
    build_bucket_grid,
    set_last_cutoff,
)
from churn.features.families import acquisition, billing, engagement, profile, support, usage
from churn.features.family_rows import FamilyRows, take_family_rows
from churn.features.personal import refuse_personal_columns, split_words
from churn.io import atomic_path, frame_to_arrow
from churn.sql import (
    connect,
    fetch_scalar,
    normalize_timestamps,
    quote_ident,
    quote_literal,
    to_naive_utc,
)

logger = logging.getLogger(__name__)

EVENT_FAMILIES: tuple[ModuleType, ...] = (acquisition, billing, usage, support, engagement)
"""Families of events mode, in output column order (pre-sale first, as in the journey)."""
ENTITY_FAMILIES: tuple[ModuleType, ...] = (profile,)
TableSource = pd.DataFrame | Path
"""A table as a pandas frame, or as the path of a Parquet file DuckDB scans itself."""
KEY_INDEX = "_key_index"
"""Temp table: every distinct (customer, cutoff) of the population with its dense ``_key``."""


_BIRTH_WORDS = frozenset({"birth", "dob", "birthdate", "birthday"})
_SQL_TYPES = {
    "string": "VARCHAR",
    "category": "VARCHAR",
    "timestamp": "TIMESTAMP",
    "float": "DOUBLE",
    "int": "BIGINT",
    "bool": "BOOLEAN",
}
"""Contract column kind -> DuckDB type of an absent column (as pandas' dtypes register)."""


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
    """Validate the population and return its keys with naive-UTC cutoffs."""
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
        }
    )


def _load_tables(
    con: duckdb.DuckDBPyConnection, prepared: Mapping[str, TableSource], keys: pd.DataFrame
) -> np.ndarray:
    """Register the tables in DuckDB with dense integer customer keys, and the population's keys.

    Every customer id of the population gets a dense integer (its position among the distinct
    ids); the tables' ids, text or integers, are matched as text, as :func:`_population_keys`
    reads them. Rows of customers outside the population are left out: every feature is a
    function of one customer's rows and the cutoff (see the module docstring), so they could
    not change any output row. The families then join and group on integers; the customers'
    text ids only come back with the population's own column.

    A frame is copied into DuckDB once (the families scan DuckDB's columns, not pandas'). A
    Parquet file becomes a view that scans the file where it lies at each use: copied, the
    tables held 170M usage events at 1M customers, which passed the default memory limit and
    were written out to the spill folder and read back (41 s of loading; 9 s as views, the
    two reads of the usage events included, and the same features, 2026-12-04).

    The population's distinct (customer, cutoff) pairs become the table ``KEY_INDEX`` with
    their key.

    Returns:
        The key of each population row (``KEY_INDEX._key``): dense, in order of first
        appearance of its (customer, cutoff), so rows without duplicates have key = row.
    """
    codes, ids = pd.factorize(keys["customer_id"])
    ids_frame = pd.DataFrame({"customer_id": pd.Series(ids, dtype="str"), "key": range(len(ids))})
    con.register("_customer_ids", ids_frame)
    con.execute(
        "CREATE TEMP TABLE _customer_key AS "
        "SELECT customer_id::VARCHAR AS customer_id, key::BIGINT AS key FROM _customer_ids"
    )
    con.unregister("_customer_ids")
    # Each distinct (customer, cutoff) gets a dense key in order of first appearance, so a
    # population without duplicates has key = row, and row i of a family file (stored in key
    # order) is key i (see _feature_batches).
    cutoff_codes, cutoffs = pd.factorize(keys["cutoff"])
    key, _ = pd.factorize(codes.astype("int64") * max(len(cutoffs), 1) + cutoff_codes)
    con.register(
        "_population_frame",
        pd.DataFrame({"customer_id": codes, "cutoff": keys["cutoff"], "_key": key}),
    )
    con.execute(
        f"CREATE TEMP TABLE {KEY_INDEX} AS SELECT customer_id, cutoff, min(_key) AS _key "
        "FROM _population_frame GROUP BY customer_id, cutoff"
    )
    con.unregister("_population_frame")
    for name, frame in prepared.items():
        kind = "VIEW" if isinstance(frame, Path) else "TABLE"
        if isinstance(frame, Path):
            source, columns = _parquet_source(name, frame)
        else:
            if "customer_id" not in frame.columns:
                raise DataContractError(f"table {name} has no column customer_id")
            source = f"_source_{name}"
            con.register(source, frame)
            columns = [f"t.{quote_ident(c)}" for c in frame.columns if c != "customer_id"]
        con.execute(
            f"CREATE TEMP {kind} {quote_ident(name)} AS "
            f"SELECT ids.key AS customer_id, {', '.join(columns)} "
            f"FROM {source} AS t JOIN _customer_key AS ids "
            "ON ids.customer_id = t.customer_id::VARCHAR"
        )
        if not isinstance(frame, Path):
            con.unregister(source)
    return key


def _parquet_source(name: str, path: Path) -> tuple[str, list[str]]:
    """Return the scan of a table's Parquet file and its columns as :func:`_prepare_tables` would.

    Timestamps become naive UTC microseconds (``epoch_us`` is UTC whatever the session time
    zone), and absent contract columns typed nulls.

    Raises:
        DataContractError: If the file has no ``customer_id`` column.
    """
    schema = pq.read_schema(path)
    if "customer_id" not in schema.names:
        raise DataContractError(f"table {name} ({path}) has no column customer_id")
    columns = []
    for field in schema:
        if field.name == "customer_id":
            continue
        column = f"t.{quote_ident(field.name)}"
        if pa.types.is_timestamp(field.type):
            column = f"make_timestamp(epoch_us({column})) AS {quote_ident(field.name)}"
        columns.append(column)
    columns += [
        f"NULL::{_SQL_TYPES[column.kind]} AS {quote_ident(column.name)}"
        for column in CONTRACT[name].columns
        if column.name not in schema.names
    ]
    return f"read_parquet({quote_literal(str(path))})", columns


def _prepare_tables(tables: Mapping[str, TableSource], entity: bool) -> dict[str, TableSource]:
    """Normalise timestamps and add absent optional contract columns as typed nulls.

    Validated tables already carry every contract column; adding them here keeps the families'
    SQL valid on hand-made or sharded inputs too. Entity-mode customers keep all columns.
    Parquet paths stay paths (:func:`_load_tables` does the same in SQL), except ``customers``,
    read into pandas because its columns and values are checked in Python.
    """
    prepared: dict[str, TableSource] = {}
    for name, frame in tables.items():
        if name not in CONTRACT:
            continue
        if isinstance(frame, Path):
            if name != "customers":
                prepared[name] = frame
                continue
            frame = pd.read_parquet(frame)
        if not entity:
            added = {}
            for column in CONTRACT[name].columns:
                if column.name in frame.columns:
                    continue
                dtype = COLUMN_DTYPES[column.kind]
                # All missing, in the dtype's own missing value (pd.NA fails for float64).
                added[column.name] = pd.Series(index=frame.index, dtype=dtype)
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


@dataclass(frozen=True)
class FeatureSummary:
    """What :func:`write_features` returns: the catalog and skips of the file it wrote.

    Attributes:
        rows: Rows written (one per population row).
        catalog: One row per feature column (see :mod:`churn.domain.catalog`).
        skipped: As :attr:`FeatureResult.skipped`.
    """

    rows: int
    catalog: pd.DataFrame
    skipped: dict[str, str]


@dataclass
class _Session:
    """An open DuckDB session holding the family tables, ready for the final join."""

    con: duckdb.DuckDBPyConnection
    keys: pd.DataFrame
    row_keys: np.ndarray
    specs: list[FeatureSpec]
    family_rows: list[FamilyRows]
    skipped: dict[str, str]


@contextlib.contextmanager
def _feature_session(
    tables: Mapping[str, TableSource],
    population: pd.DataFrame,
    cfg: FeaturesConfig,
    mode: Mode | None,
    scratch_dir: Path | None,
) -> Iterator[_Session]:
    """Load the tables into DuckDB and run every family query (see :func:`build_features`)."""
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
    with contextlib.ExitStack() as stack:
        if scratch_dir is None:
            scratch_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="churn_")))
        # Entered before the connection, so the connection closes before the files go.
        scratch_dir.mkdir(parents=True, exist_ok=True)
        family_dir = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="families_", dir=scratch_dir))
        )
        con = stack.enter_context(
            contextlib.closing(connect(cfg.duckdb_threads, cfg.duckdb_memory_limit))
        )
        # Past the memory limit DuckDB spills here instead of failing (sorts, joins, groups).
        con.execute(f"SET temp_directory = {quote_literal(str(scratch_dir))}")
        con.execute("SET enable_progress_bar = false")
        with _naming_memory_errors(cfg, "loading the tables", len(keys)):
            row_keys = _load_tables(con, prepared, keys)
            con.register(DAY_BUCKET, grid.day_bucket)
            con.register(BUCKET_WINDOW, grid.bucket_window)
            con.execute(
                f"CREATE TEMP TABLE {KEYS} AS SELECT customer_id, cutoff FROM {KEY_INDEX}"
            )
        set_last_cutoff(con)
        n_keys = fetch_scalar(con, f"SELECT count(*) FROM {KEYS}")
        family_rows: list[FamilyRows] = []
        for module in families:
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
            with _naming_memory_errors(cfg, f"the {module.FAMILY} family", n_keys):
                # A step's rows may be stored in any order (they are joined on keys): DuckDB
                # then streams instead of buffering to keep the order (support family at 300k
                # customers under 1.2 GB: 26.7 -> 14.8 s, 2026-12-03). The family table must
                # be stored in key order (the batches' range filters skip row groups by it),
                # which a CREATE ... ORDER BY only does while insertion order is preserved.
                con.execute("SET preserve_insertion_order = false")
                for step, step_sql in query.steps:
                    step_started = time.perf_counter()
                    con.execute(f"CREATE TEMP TABLE {step} AS {step_sql}")
                    logger.debug("feature family %s: step %s in %.2fs", module.FAMILY, step,
                                 time.perf_counter() - step_started)
                final_started = time.perf_counter()
                _create_family_table(con, table, query.sql, family_dir)
                logger.debug("feature family %s: final query in %.2fs", module.FAMILY,
                             time.perf_counter() - final_started)
                for step, _ in query.steps:
                    con.execute(f"DROP TABLE {step}")
            ((n_rows, n_matched),) = con.execute(
                f"SELECT count(*), count(DISTINCT _key) FROM {table}"
            ).fetchall()
            if n_rows != n_keys or n_matched != n_keys:
                raise ValueError(
                    f"family {module.FAMILY} returned {n_rows} rows for {n_keys} keys "
                    f"({n_matched} distinct population keys among them)"
                )
            logger.debug(
                "feature family %s: %d features in %.2fs",
                module.FAMILY,
                len(query.specs),
                time.perf_counter() - started,
            )
            specs.extend(query.specs)
            family_rows.append(
                FamilyRows(family_dir / f"{table}.parquet", [spec.name for spec in query.specs])
            )
        yield _Session(
            con=con,
            keys=keys,
            row_keys=row_keys,
            specs=specs,
            family_rows=family_rows,
            skipped=skipped,
        )


def build_features(
    tables: Mapping[str, TableSource],
    population: pd.DataFrame,
    cfg: FeaturesConfig,
    *,
    mode: Mode | None = None,
    scratch_dir: Path | None = None,
) -> FeatureResult:
    """Compute point-in-time features for every population row.

    Args:
        tables: Validated tables by contract name (absent optional tables skip families), as
            frames or as Parquet paths that DuckDB scans without pandas (``customers`` is
            always read into pandas: its columns and values are checked in Python).
        population: Rows with ``customer_id``, ``cutoff`` (midnight UTC) and optionally
            ``label`` (a labels frame); duplicates are allowed and keep their order.
        cfg: Feature configuration (windows, vocabularies, DuckDB resources).
            ``usage_event_types: auto`` is resolved from the events before the population's
            earliest cutoff (:func:`churn.features.families.usage.resolve_usage_event_types`);
            callers that split the population (Spark shards, scoring) resolve it first.
        mode: ``ingest.mode``: :attr:`Mode.EVENTS` for the journey families, ``ENTITY`` for the
            profile family over the customer table (label column already removed); ``None``
            infers it from the tables (see the module docstring).
        scratch_dir: Where DuckDB spills past ``cfg.duckdb_memory_limit`` (a temporary folder
            when not given); the caller removes it.

    Returns:
        The features frame, the catalog and the skipped families/parts.

    Raises:
        ValueError: If the population lacks keys or has cutoffs that are not midnight UTC, or
            if a family breaks the one-row-per-key contract or the catalog.
    """
    with _feature_session(tables, population, cfg, mode, scratch_dir) as session:
        features = (
            take_family_rows(session.family_rows, session.row_keys)
            if session.family_rows
            else None
        )
    specs = session.specs
    features = _to_feature_frame(features, specs, len(session.keys))
    check_catalog(specs, features.columns)
    frame = pd.concat([_key_frame(session.keys, population), features], axis=1)
    return FeatureResult(frame=frame, catalog=catalog_frame(specs), skipped=session.skipped)


def write_features(
    tables: Mapping[str, TableSource],
    population: pd.DataFrame,
    cfg: FeaturesConfig,
    out_path: Path,
    *,
    mode: Mode | None = None,
    scratch_dir: Path | None = None,
    batch_rows: int = 65_536,
) -> FeatureSummary:
    """Compute the features as :func:`build_features` and stream them to a Parquet file.

    The features never exist whole in pandas: DuckDB hands over ``batch_rows`` rows at a time
    (in population order), each batch gets the key columns and the catalog dtypes and is
    appended to the file, so memory is DuckDB's limit plus a batch. The file is written to a
    temporary sibling and renamed (:func:`churn.io.atomic_path`); read back, it equals
    ``build_features(...).frame`` written with :func:`churn.io.write_parquet`.

    Args:
        tables: As :func:`build_features`.
        population: As :func:`build_features`.
        cfg: As :func:`build_features`.
        out_path: The features Parquet file to write.
        mode: As :func:`build_features`.
        scratch_dir: Where DuckDB spills; by default the staging folder of ``out_path``
            (beside it, removed with it).
        batch_rows: Rows per batch (and row group).

    Returns:
        Rows written, the catalog and the skipped families/parts.
    """
    with (
        atomic_path(out_path) as tmp,
        # Spills go to the output's staging folder, removed with it (or after a kill).
        _feature_session(tables, population, cfg, mode, scratch_dir or tmp.parent) as session,
    ):
        specs, keys = session.specs, session.keys
        dtypes = feature_dtypes(specs)
        batches = _feature_batches(session.family_rows, session.row_keys, batch_rows)
        writer: BackgroundParquetWriter | None = None
        schema: pa.Schema | None = None
        start = 0
        with _naming_memory_errors(cfg, "the output batches", len(keys)):
            try:
                for features in batches:
                    stop = start + len(features)
                    features = features.astype(dtypes).set_axis(pd.RangeIndex(start, stop))
                    if writer is None:
                        check_catalog(specs, features.columns)
                    chunk = pd.concat(
                        [_key_frame(keys.iloc[start:stop], population.iloc[start:stop]), features],
                        axis=1,
                    )
                    # The first batch fixes the schema (with pandas' metadata, as to_parquet does).
                    table = frame_to_arrow(chunk, schema)
                    if writer is None:
                        schema = table.schema
                        # Encoded on a writer thread while DuckDB computes the next batch.
                        writer = BackgroundParquetWriter(tmp, schema)
                    writer.write_table(table)
                    start = stop
            finally:
                if writer is not None:
                    writer.close()
    return FeatureSummary(rows=start, catalog=catalog_frame(specs), skipped=session.skipped)


def _feature_batches(
    families: list[FamilyRows], row_keys: np.ndarray, batch_rows: int
) -> Iterator[pd.DataFrame]:
    """Yield the feature columns in population order, ``batch_rows`` rows at a time.

    A batch takes each family's rows of its population rows' keys from the family's file
    (:class:`churn.features.family_rows.FamilyRows`: row ``i`` of a family file is key ``i``),
    decoding only the row groups that hold them, and puts the families' columns side by side;
    without duplicates a batch's keys ascend, so every row group is decoded once. Holding
    the whole population at once would need every family's columns in memory together
    (out of memory at 200k customers under a 1 GB limit when it was one DuckDB join). Always
    yields at least one (maybe empty) frame, so an empty population still writes a file with
    every column.
    """
    n_rows = len(row_keys)
    for start in range(0, max(n_rows, 1), batch_rows):
        stop = min(start + batch_rows, n_rows)
        if not families:
            yield pd.DataFrame(index=pd.RangeIndex(stop - start))
            continue
        table = take_family_rows(families, row_keys[start:stop])
        yield table.to_pandas(split_blocks=True)


def _key_frame(keys: pd.DataFrame, population: pd.DataFrame) -> pd.DataFrame:
    """The key columns of the output: text ids, the population's own cutoffs and labels."""
    index = keys.index
    label = (
        population["label"].set_axis(index)
        if "label" in population.columns
        else pd.Series(pd.NA, index=index, dtype="Int8")
    )
    return pd.DataFrame(
        {
            "customer_id": keys["customer_id"],
            "cutoff": population["cutoff"].set_axis(index),
            "label": label,
        }
    )


@contextlib.contextmanager
def _naming_memory_errors(cfg: FeaturesConfig, work: str, rows: int) -> Iterator[None]:
    """Turn DuckDB running out of memory during ``work`` into an error naming the knobs.

    Raises:
        ResourceLimitError: From DuckDB's ``OutOfMemoryException``.
    """
    try:
        yield
    except duckdb.OutOfMemoryException as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ResourceLimitError(
            f"features: DuckDB ran out of memory computing {work} for {rows:,} (customer, "
            f"cutoff) rows under features.duckdb_memory_limit = {cfg.duckdb_memory_limit} with "
            f"features.duckdb_threads = {cfg.duckdb_threads} ({first_line}). Past the limit "
            "DuckDB spills to disk, but not every part of this work can: raise "
            "features.duckdb_memory_limit in params.yaml (or lower features.duckdb_threads)"
        ) from exc


def _create_family_table(
    con: duckdb.DuckDBPyConnection, table: str, sql: str, directory: Path
) -> None:
    """Store a family's result with the population key of each row, in key order.

    A row whose (customer, cutoff) is not a population key gets a null key (the caller's
    count check catches it). Key order is what lets a batch read its rows by position
    (:class:`churn.features.family_rows.FamilyRows`: row ``i`` is key ``i``), and a
    ``COPY ... ORDER BY`` (like a ``CREATE ... ORDER BY``) stores its rows in that order only
    while DuckDB preserves insertion order (with ``preserve_insertion_order = false`` it writes
    sorted runs side by side), so it is switched on here.

    The result goes to a Parquet file in ``directory`` and ``table`` becomes a view of it, so
    the finished families hold no DuckDB memory while the next one runs: at 1M
    customers under the default 4 GB limit the fifth family (engagement) ran out of memory
    beside the four family tables before it, although it finished alone in 33 s (2026-12-04).
    """
    con.execute("SET preserve_insertion_order = true")
    query = (
        f"SELECT i._key, f.* FROM ({sql}) AS f "
        f"LEFT JOIN {KEY_INDEX} AS i ON i.customer_id = f.customer_id AND i.cutoff = f.cutoff "
        "ORDER BY i._key"
    )
    path = quote_literal(str(directory / f"{table}.parquet"))
    con.execute(f"COPY ({query}) TO {path} (FORMAT PARQUET)")
    con.execute(f"CREATE TEMP VIEW {table} AS SELECT * FROM read_parquet({path})")


def _to_feature_frame(
    table: pa.Table | None, specs: list[FeatureSpec], n_rows: int
) -> pd.DataFrame:
    """Convert the Arrow result to pandas with the catalog dtypes, releasing Arrow buffers."""
    if table is None:
        return pd.DataFrame(index=pd.RangeIndex(n_rows))
    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    return frame.astype(feature_dtypes(specs))
