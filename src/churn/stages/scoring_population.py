"""The scoring cutoff and its population, shared by ``churn score`` and ``churn features``.

``churn score`` scores the customers active at a cutoff (by default the day after the data's
latest event). ``churn features`` computes those customers' features too, in the same pass over
the events as the training rows' (one more cutoff among about two dozen), and writes them to a
second file that ``churn score`` reads instead of computing them again, after checking that the
file was computed from the same validated tables and configuration
(:func:`describe_scoring_inputs`, :func:`read_scoring_rows`). At a million customers the score's
own pass over the 170M usage events took about 60 s of its 105 s; the extra cutoff cost the
features stage about 24 s (docs/benchmarks-log.md, entry "2026-12-07, 06:00-").

Decision: the features stage computes the scoring rows only when the scoring cutoff comes after
every labeled cutoff (so no customer-cutoff is both a training and a scoring row), in events
mode with the local engine; otherwise, or when the file does not match, ``churn score`` computes
the features itself, as before, and logs why.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from churn.domain.catalog import MRR_FEATURE
from churn.domain.contract import CONTRACT, TIMESTAMP_DTYPE
from churn.domain.modes import Mode
from churn.errors import DataContractError
from churn.io import (
    atomic_path,
    fingerprint_parquet_files,
    frame_to_arrow,
    read_parquet_frame,
    read_time_statistics,
)
from churn.layout import table_file_name
from churn.sql import connect, fetch_scalar, quote_ident, quote_literal, utc_midnight, utc_timestamp

if TYPE_CHECKING:
    from churn.config import Params

logger = logging.getLogger(__name__)

POPULATION_TABLES = ("customers", "subscriptions", "subscription_changes")
"""Tables :func:`build_population` reads (in pandas) in events mode."""


def choose_cutoff(
    tables: Mapping[str, pd.DataFrame | Path],
    configured: dt.date | None,
    entity_as_of: dt.date | None = None,
) -> pd.Timestamp:
    """Return the scoring cutoff (UTC midnight).

    A configured date wins. In entity mode (``entity_as_of`` given, or ``None`` meaning the run
    date) the cutoff is that date, as in ``churn label``. Otherwise it is the day *after* the
    latest known-at time (each contract table's ``event_time``, so a scheduled future
    ``ended_at`` cannot push it ahead): cutoffs are exclusive, so every row in the data is known
    at that cutoff and nothing is left out. A table given as a Parquet path is read by DuckDB
    (its ``event_time`` column only).

    Raises:
        DataContractError: If no configured date and no event timestamp exist.
    """
    if configured is not None:
        return utc_midnight(configured)
    if entity_as_of is not None:
        return utc_midnight(entity_as_of)
    latest: pd.Timestamp | None = None
    for name, table in tables.items():
        column = CONTRACT[name].event_time if name in CONTRACT else None
        value = None if column is None else find_latest_time(table, column)
        if value is not None:
            latest = value if latest is None else max(latest, value)
    if latest is None:
        raise DataContractError(
            "cannot choose a cutoff: the validated tables hold no event timestamps; "
            "set score.cutoff in params.yaml or pass --cutoff YYYY-MM-DD"
        )
    return (latest.floor("D") + pd.Timedelta(days=1)).as_unit("us")


def find_latest_time(table: pd.DataFrame | Path, column: str) -> pd.Timestamp | None:
    """Return the latest value of a timestamp column in UTC, or ``None`` if it has none.

    Args:
        table: A frame, or a Parquet file: the maximum of its row groups' statistics when every
            row group has them (exact for timestamps, and no row is read), else DuckDB scans
            the one column.
        column: The timestamp column (naive values are read as UTC).
    """
    if isinstance(table, pd.DataFrame):
        if column not in table.columns or not table[column].notna().any():
            return None
        return utc_timestamp(table[column].max())
    if column not in pq.read_schema(table).names:
        return None
    statistics = read_time_statistics(table, column)
    if statistics is not None:
        return None if statistics.empty else utc_timestamp(statistics["high"].max())
    with contextlib.closing(connect(memory_limit="1GB")) as con:
        # epoch_us reads naive values as UTC and aware ones in UTC.
        latest_us = fetch_scalar(
            con,
            f"SELECT max(epoch_us({quote_ident(column)})) "
            f"FROM read_parquet({quote_literal(str(table))})",
        )
    return None if latest_us is None else pd.Timestamp(int(latest_us), unit="us", tz="UTC")


def build_population(
    tables: Mapping[str, pd.DataFrame | Path], cutoff: pd.Timestamp, params: Params
) -> pd.DataFrame:
    """Return the customers to score at ``cutoff`` as label rows (label missing).

    Events mode: customers with an active subscription
    (:func:`churn.labels.build.active_population`).
    Entity mode: every customer in the customer table.
    """
    if params.ingest.mode is not Mode.ENTITY:
        from churn.labels.build import active_population

        return active_population(tables, cutoff, params.label)
    customers = tables["customers"].reset_index(drop=True)
    return pd.DataFrame(
        {
            "customer_id": customers["customer_id"].astype("str"),
            "cutoff": pd.Series(cutoff, index=customers.index, dtype=TIMESTAMP_DTYPE),
            "label": pd.Series(pd.NA, index=customers.index, dtype="Int8"),
            "mrr": pd.to_numeric(customers.get("mrr", np.nan), errors="coerce"),
        }
    )


def lacks_mrr(columns: Sequence[str]) -> bool:
    """Whether features with ``columns`` hold no MRR: scoring then takes the population's own
    (revenue at risk needs it even when the model does not use it as a feature)."""
    return MRR_FEATURE not in columns and "mrr" not in columns


SCORING_ROWS_KEY = "churn.scoring_rows"
"""Schema metadata key of the scoring rows' file: JSON with the cutoff and the fingerprint of
what they were computed from, or why there are none."""


def describe_scoring_inputs(params: Params, validated_dir: Path) -> str:
    """Return the fingerprint of what the scoring rows depend on.

    The validated tables (each file's name, size and Parquet footer,
    :func:`churn.io.fingerprint_parquet_files`) and the configuration that decides the cutoff,
    the population and the features: ``features`` (as configured, before ``churn score`` pins
    the model's usage event types), ``label``, ``ingest.mode`` and ``score.cutoff``.
    """
    validated_dir = Path(validated_dir)
    files = {
        name: validated_dir / table_file_name(name)
        for name in CONTRACT
        if (validated_dir / table_file_name(name)).exists()
    }
    config = json.dumps(
        {
            "features": params.features.model_dump(mode="json"),
            "label": params.label.model_dump(mode="json"),
            "ingest.mode": str(params.ingest.mode),
            "score.cutoff": None if params.score.cutoff is None else str(params.score.cutoff),
        },
        sort_keys=True,
    )
    return fingerprint_parquet_files(files, config)


def plan_scoring_rows(
    params: Params,
    tables: Mapping[str, pd.DataFrame | Path],
    labels: pd.DataFrame,
) -> tuple[pd.DataFrame | None, pd.Timestamp | None, str]:
    """Return the scoring population the features stage adds to the labels, or why none.

    Args:
        params: All parameters.
        tables: The validated tables, the population's (:data:`POPULATION_TABLES`) as frames.
        labels: The labels the features stage computes features for.

    Returns:
        ``(population, cutoff, note)``: the customers ``churn score`` would score and its
        cutoff, or ``(None, cutoff or None, why not)``; none either when the population's key
        columns (``customer_id``, ``cutoff``, ``label``) differ in type from the labels'.
    """
    if params.ingest.mode is Mode.ENTITY:
        return None, None, "entity mode: churn score computes its own features"
    if params.features.engine != "local":
        return None, None, f"features.engine {params.features.engine}: only the local engine"
    try:
        cutoff = choose_cutoff(tables, params.score.cutoff)
    except DataContractError as exc:
        return None, None, str(exc)
    if len(labels) and cutoff <= utc_timestamp(labels["cutoff"].max()):
        return (
            None,
            cutoff,
            (
                f"the scoring cutoff {cutoff:%Y-%m-%d} is not after every labeled cutoff (last "
                f"{utc_timestamp(labels['cutoff'].max()):%Y-%m-%d})"
            ),
        )
    population = build_population(tables, cutoff, params)
    if population.empty:
        return None, cutoff, f"no customer is active at the scoring cutoff {cutoff:%Y-%m-%d}"
    keys = ["customer_id", "cutoff", "label"]
    if not all(
        name in labels.columns and labels[name].dtype == population[name].dtype for name in keys
    ):
        # Appended, they would change the labels' own key columns (the training file).
        return None, cutoff, f"the labels' key columns {keys} differ in type from the population's"
    return population, cutoff, f"{len(population):,} customers at {cutoff:%Y-%m-%d}"


def scoring_rows_metadata(
    fingerprint: str | None, cutoff: pd.Timestamp | None, note: str
) -> dict[str, str]:
    """The scoring rows' schema metadata (:data:`SCORING_ROWS_KEY`); ``fingerprint`` ``None``:
    the file holds no rows, and ``note`` says why."""
    record = {
        "fingerprint": fingerprint,
        "cutoff": None if cutoff is None else utc_timestamp(cutoff).isoformat(),
        "note": note,
    }
    return {SCORING_ROWS_KEY: json.dumps(record, sort_keys=True)}


def write_no_scoring_rows(path: Path, note: str) -> None:
    """Write a scoring rows file without rows, ``note`` saying why (a DVC output always
    exists); :func:`read_scoring_rows` reads the note back as its reason."""
    empty = pd.DataFrame(
        {
            "customer_id": pd.Series(dtype="str"),
            "cutoff": pd.Series(dtype=TIMESTAMP_DTYPE),
            "label": pd.Series(dtype="Int8"),
        }
    )
    table = frame_to_arrow(empty)
    metadata = {**(table.schema.metadata or {}), **scoring_rows_metadata(None, None, note)}
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(metadata), tmp)


def read_scoring_rows(
    path: Path,
    fingerprint: str,
    cutoff: pd.Timestamp,
    feature_names: Sequence[str],
) -> tuple[pd.DataFrame | None, str]:
    """Return the features stage's scoring rows if they fit this scoring run, or why not.

    They fit when the file's fingerprint is ``fingerprint`` (same validated tables and
    configuration), its cutoff is ``cutoff`` and it holds every feature of the model; and when
    the features hold MRR (revenue at risk; without it, scoring merges the population's own,
    which the file does not keep).

    Returns:
        ``(frame, note)``: the rows as :func:`churn.stages.score.build_scoring_features` gives
        them, or ``(None, why not)``.
    """
    path = Path(path)
    if not path.exists():
        return None, f"{path} does not exist"
    try:
        schema = pq.read_schema(path)
        record = json.loads((schema.metadata or {}).get(SCORING_ROWS_KEY.encode(), b"null"))
    except (OSError, ValueError) as exc:
        return None, f"{path} is not a scoring rows file: {exc}"
    if not isinstance(record, dict):
        return None, f"{path} has no {SCORING_ROWS_KEY} metadata"
    if record.get("fingerprint") is None:
        return None, f"the features stage computed no scoring rows: {record.get('note')}"
    if record["fingerprint"] != fingerprint:
        return None, "they were computed from other validated tables or another configuration"
    if record.get("cutoff") != utc_timestamp(cutoff).isoformat():
        return None, f"they are at {record.get('cutoff')}, not at {utc_timestamp(cutoff)}"
    columns = schema.names
    missing = [name for name in feature_names if name not in columns]
    if missing:
        return None, f"they lack the model's features {missing[:5]}"
    if lacks_mrr(columns):
        return None, "their features hold no MRR"
    return read_parquet_frame(path), f"read from {path}"
