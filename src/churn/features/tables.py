"""Feature inputs: the population's keys and the tables, as the families' SQL reads them.

:func:`prepare_tables` normalises the tables (timestamps in naive UTC, absent contract columns
as typed nulls) and :func:`refuse_personal_features` stops a customer column that looks like
personal data before it becomes a feature; :func:`load_tables` then registers them in the
features session's DuckDB connection with dense integer customer keys, and the population's
distinct (customer, cutoff) pairs as :data:`KEY_INDEX`. :mod:`churn.features.build` runs the
families on them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churn.config import FeaturesConfig
from churn.domain.contract import COLUMN_DTYPES, CONTRACT
from churn.errors import DataContractError
from churn.features.personal import refuse_personal_columns, split_words
from churn.sql import normalize_timestamps, quote_ident, quote_literal, to_naive_utc

logger = logging.getLogger(__name__)

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


def read_population_keys(population: pd.DataFrame) -> pd.DataFrame:
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


def load_tables(
    con: duckdb.DuckDBPyConnection, prepared: Mapping[str, TableSource], keys: pd.DataFrame
) -> np.ndarray:
    """Register the tables in DuckDB with dense integer customer keys, and the population's keys.

    Every customer id of the population gets a dense integer (its position among the distinct
    ids); the tables' ids, text or integers, are matched as text, as :func:`read_population_keys`
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
    # order) is key i (see churn.features.output_batches.read_feature_batches).
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
            source, columns = scan_parquet_table(name, frame)
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


def scan_parquet_table(name: str, path: Path) -> tuple[str, list[str]]:
    """Return the scan of a table's Parquet file and its columns as :func:`prepare_tables` would.

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


def prepare_tables(tables: Mapping[str, TableSource], entity: bool) -> dict[str, TableSource]:
    """Normalise timestamps and add absent optional contract columns as typed nulls.

    Validated tables already carry every contract column; adding them here keeps the families'
    SQL valid on hand-made or sharded inputs too. Entity-mode customers keep all columns.
    Parquet paths stay paths (:func:`load_tables` does the same in SQL), except ``customers``,
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


def refuse_personal_features(tables: Mapping[str, pd.DataFrame], cfg: FeaturesConfig) -> None:
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
