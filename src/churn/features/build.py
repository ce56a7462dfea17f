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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from churn.background import BackgroundParquetWriter
from churn.config import FeaturesConfig
from churn.domain.catalog import FeatureSpec, catalog_frame, check_catalog, feature_dtypes
from churn.domain.modes import Mode
from churn.errors import ResourceLimitError
from churn.features import output_batches
from churn.features.common import (
    DAY_BUCKET,
    KEYS,
    FamilyQuery,
    build_bucket_grid,
    create_step,
    set_last_cutoff,
)
from churn.features.families import acquisition, billing, engagement, profile, support, usage
from churn.features.family_rows import FamilyRows, take_family_rows
from churn.features.tables import (
    KEY_INDEX,
    TableSource,
    load_tables,
    prepare_tables,
    read_population_keys,
    refuse_personal_features,
)
from churn.io import atomic_path
from churn.sql import (
    connect,
    fetch_scalar,
    quote_literal,
)

logger = logging.getLogger(__name__)

EVENT_FAMILIES: tuple[ModuleType, ...] = (acquisition, billing, usage, support, engagement)
"""Families of events mode, in output column order (pre-sale first, as in the journey)."""
ENTITY_FAMILIES: tuple[ModuleType, ...] = (profile,)


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


def order_families(families: Sequence[ModuleType]) -> list[ModuleType]:
    """Return the order in which ``families`` run: those that keep tables for others first.

    A family may leave some of its steps in the session for later ones (its module's
    ``KEEPS``), which another family's query reads
    (:attr:`~churn.features.common.FamilyQuery.reads`): the usage family keeps each customer's
    first event for acquisition's trial use. Otherwise the families keep their order. The
    run order changes nothing in the output: columns, catalog and skips come in the families'
    own order.
    """
    keepers = [module for module in families if getattr(module, "KEEPS", ())]
    return keepers + [module for module in families if module not in keepers]


def _check_kept_tables(module: ModuleType, query: FamilyQuery, kept: set[str]) -> None:
    """Raise when a family's query reads a kept table no earlier family left in the session."""
    missing = [table for table in query.reads if table not in kept]
    if missing:
        raise ValueError(
            f"feature family {module.FAMILY} reads {missing}, which no family that ran before "
            "it left in the session"
        )


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
    keys = read_population_keys(population)
    entity = Mode(mode) is Mode.ENTITY if mode is not None else set(tables) == {"customers"}
    prepared = prepare_tables(tables, entity)
    refuse_personal_features(prepared, cfg)
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
            row_keys = load_tables(con, prepared, keys)
            con.register(DAY_BUCKET, grid.day_bucket)
            con.execute(
                f"CREATE TEMP TABLE {KEYS} AS SELECT _key, customer_id, cutoff FROM {KEY_INDEX}"
            )
        set_last_cutoff(con)
        n_keys = fetch_scalar(con, f"SELECT count(*) FROM {KEYS}")
        # Results by family, put back in the families' (output) order after the run order.
        done: dict[str, tuple[list[FeatureSpec], FamilyRows]] = {}
        skips: dict[str, dict[str, str]] = {module.FAMILY: {} for module in families}
        kept: set[str] = set()
        for module in order_families(families):
            reason = _skip_reason(module, set(prepared))
            if reason is not None:
                skips[module.FAMILY][module.FAMILY] = reason
                logger.info("feature family %s skipped: %s", module.FAMILY, reason)
                continue
            query = module.family_query(cfg, prepared)
            for part, why in query.skipped_parts.items():
                skips[module.FAMILY][f"{module.FAMILY}.{part}"] = why
                logger.info("feature family %s: part %s skipped: %s", module.FAMILY, part, why)
            if not query.specs:
                continue
            _check_kept_tables(module, query, kept)
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
                    create_step(con, step, step_sql)
                    logger.debug("feature family %s: step %s in %.2fs", module.FAMILY, step,
                                 time.perf_counter() - step_started)
                final_started = time.perf_counter()
                _create_family_table(con, table, query.sql, family_dir)
                logger.debug("feature family %s: final query in %.2fs", module.FAMILY,
                             time.perf_counter() - final_started)
                for step, _ in query.steps:
                    if step in getattr(module, "KEEPS", ()):
                        kept.add(step)
                    else:
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
            done[module.FAMILY] = (
                list(query.specs),
                FamilyRows(family_dir / f"{table}.parquet", [spec.name for spec in query.specs]),
            )
        family_rows: list[FamilyRows] = []
        for module in families:
            skipped |= skips[module.FAMILY]
            if module.FAMILY in done:
                specs.extend(done[module.FAMILY][0])
                family_rows.append(done[module.FAMILY][1])
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
    features = output_batches.convert_to_feature_frame(features, specs, len(session.keys))
    check_catalog(specs, features.columns)
    frame = pd.concat([output_batches.build_key_frame(session.keys, population), features], axis=1)
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
    split_at: int | None = None,
    split_path: Path | None = None,
    split_metadata: Mapping[str, str] | None = None,
) -> FeatureSummary:
    """Compute the features as :func:`build_features` and stream them to a Parquet file.

    The features never exist whole in pandas: DuckDB hands over ``batch_rows`` rows at a time
    (in population order), each batch gets the key columns and the catalog dtypes and is
    appended to the file, so memory is DuckDB's limit plus a batch. The first batch is
    assembled through pandas (its schema, pandas' metadata included, is the file's), the
    others in Arrow with the same arrays (:mod:`churn.features.output_arrow`). The file is
    written to a temporary sibling and renamed (:func:`churn.io.atomic_path`); read back, it equals
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
        split_at: With ``split_path``: the population rows from this position on go to
            ``split_path`` instead of ``out_path`` (the scoring cutoff's rows that ``churn
            score`` reuses, appended after the labels by the features stage). Each file then
            holds what :func:`write_features` would write for its own rows: every feature is a
            function of one (customer, cutoff) and its customer's rows, and the rows before
            ``split_at`` keep their keys, so ``out_path`` is the file the first rows alone give.
        split_path: The second Parquet file (written whole, even without rows).
        split_metadata: Key-value text added to ``split_path``'s schema metadata.

    Returns:
        Rows written (both files), the catalog and the skipped families/parts.
    """
    split = len(population) if split_path is None or split_at is None else split_at
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(out_path))
        # Entered second, so renamed first: the two files are renamed one after the other,
        # and the reader of the second checks what it was computed from (churn score).
        split_tmp = None if split_path is None else stack.enter_context(atomic_path(split_path))
        # Spills go to the output's staging folder, removed with it (or after a kill).
        session = stack.enter_context(
            _feature_session(tables, population, cfg, mode, scratch_dir or tmp.parent)
        )
        specs, keys = session.specs, session.keys
        dtypes = feature_dtypes(specs)
        batches = output_batches.read_feature_batches(
            session.family_rows, session.row_keys, batch_rows
        )
        writers: dict[Path, BackgroundParquetWriter] = {}
        schema: pa.Schema | None = None
        start = 0

        def write(path: Path, table: pa.Table) -> None:
            if path not in writers:
                assert schema is not None
                file_schema = schema
                if path == split_tmp and split_metadata:
                    metadata = {**(schema.metadata or {}), **split_metadata}
                    file_schema = schema.with_metadata(metadata)
                # Encoded on a writer thread while DuckDB computes the next batch.
                writers[path] = BackgroundParquetWriter(path, file_schema)
            # The writer compares schemas without their metadata: the split file's extra keys
            # need no copy of each table.
            writers[path].write_table(table)

        # Whether the batches after the first are assembled in Arrow (see _arrow_batch).
        in_arrow = True
        with _naming_memory_errors(cfg, "the output batches", len(keys)):
            try:
                for features in batches:
                    stop = start + features.num_rows
                    key_frame = output_batches.build_key_frame(
                        keys.iloc[start:stop], population.iloc[start:stop]
                    )
                    table = None
                    if schema is None:
                        check_catalog(specs, features.column_names)
                        # The first batch fixes the schema (with pandas' metadata, as to_parquet
                        # does), so it takes the pandas route.
                        table = output_batches.assemble_in_pandas(features, key_frame, dtypes, None)
                        schema = table.schema
                        # Both routes must agree on it, or every batch takes the pandas route.
                        in_arrow = output_batches.check_arrow_route(table, features, key_frame)
                    elif in_arrow:
                        table = output_batches.assemble_in_arrow(features, key_frame, schema)
                    if table is None:
                        table = output_batches.assemble_in_pandas(
                            features, key_frame, dtypes, schema
                        )
                    head = max(0, min(stop, split) - start)
                    # Without a split, head is every row (an empty first batch too: it makes
                    # the file's single writer, as before).
                    if head or split_tmp is None:
                        write(tmp, table.slice(0, head))
                    if split_tmp is not None and head < len(table):
                        write(split_tmp, table.slice(head))
                    start = stop
                assert schema is not None  # at least one (maybe empty) batch
                # Both files exist whatever the split: an empty one has every column.
                for path in (tmp, split_tmp):
                    if path is not None and path not in writers:
                        write(path, schema.empty_table())
            finally:
                for writer in writers.values():
                    writer.close()
    return FeatureSummary(rows=start, catalog=catalog_frame(specs), skipped=session.skipped)


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
    """Store a family's result in population key order.

    Every family selects its rows' ``_key`` from ``_keys``
    (:data:`~churn.features.common.KEY_SELECT_LIST`): joining the result to the key index on
    (customer, cutoff) again for it cost a join of every population row per family. Key order
    is what lets a batch read its rows by position
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
    query = f"SELECT * FROM ({sql}) ORDER BY _key"
    path = quote_literal(str(directory / f"{table}.parquet"))
    con.execute(f"COPY ({query}) TO {path} (FORMAT PARQUET)")
    con.execute(f"CREATE TEMP VIEW {table} AS SELECT * FROM read_parquet({path})")
