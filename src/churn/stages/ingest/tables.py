"""Table-level checks of ``churn ingest``: which tables a mode reads, required tables and columns.

Also the names shared by the ingest modules: the quarantine's extra columns, the reference
rules and :class:`IngestResult`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

from churn.config import IngestConfig, TableMapping
from churn.domain.contract import (
    BUILT_IN_VALUE_CODES,
    CONTRACT,
    ENTITY_CUSTOMER_COLUMNS,
    TableSpec,
    map_codes,
)
from churn.domain.modes import Mode
from churn.errors import DataContractError
from churn.validation.coerce import is_arrow_text

ROW_NUMBER = "_row_number"
FAILED_RULES = "_failed_rules"

UNKNOWN_CUSTOMER = "unknown_customer"
UNKNOWN_SUBSCRIPTION = "unknown_subscription"

# References other than customer_id, which the contract expresses as `references_customers`.
# Child table -> (column, parent table whose key it names, rule).
PARENT_REFERENCES: dict[str, tuple[str, str, str]] = {
    "subscription_changes": ("subscription_id", "subscriptions", UNKNOWN_SUBSCRIPTION),
}


@dataclass(frozen=True)
class IngestResult:
    """What :func:`validate_tables` returns.

    Attributes:
        valid: Table -> valid rows, canonical columns in contract dtypes.
        quarantine: Table -> bad rows as read (text), plus ``_row_number`` and
            ``_failed_rules``.
        report: JSON-ready summary (see :func:`validate_tables`).
        streamed: Tables validated in batches: their rows went to their sinks as they were
            validated, and they are in neither ``valid`` nor ``quarantine``.
        referenced_customers: Streamed table with a ``customer_id`` -> the distinct valid
            customer ids its valid rows name (the data check's coverage of that table,
            without reading its ids back).
    """

    valid: dict[str, pd.DataFrame]
    quarantine: dict[str, pd.DataFrame]
    report: dict[str, Any]
    streamed: tuple[str, ...] = ()
    referenced_customers: dict[str, pd.Index] = dataclasses.field(default_factory=dict)


def table_specs(mode: Mode) -> dict[str, TableSpec]:
    """The contract tables read in ``mode``, in validation order (parents before children).

    Entity mode reads only ``customers``, where ``converted_at`` is optional: an entity-level
    export is a snapshot of customers with a label, not a history. It also types and checks
    the entity-only columns (``mrr``, :data:`~churn.domain.contract.ENTITY_CUSTOMER_COLUMNS`).
    """
    if Mode(mode) is Mode.ENTITY:
        spec = CONTRACT["customers"]
        columns = (
            tuple(
                dataclasses.replace(c, required=False, nullable=True)
                if c.name == "converted_at"
                else c
                for c in spec.columns
            )
            + ENTITY_CUSTOMER_COLUMNS
        )
        return {"customers": dataclasses.replace(spec, columns=columns)}
    # Stable sort: contract order, except that tables referencing a non-customer parent come
    # after every table they could reference.
    return dict(sorted(CONTRACT.items(), key=lambda item: item[0] in PARENT_REFERENCES))


def table_mapping(cfg: IngestConfig, table: str) -> TableMapping:
    return cfg.tables.get(table) or TableMapping()


def value_mappings(name: str, mapping: TableMapping) -> dict[str, dict[Any, str]]:
    """The table's value mappings: the built-in codes (month counts), then the user's.

    The user's mapping comes last, so that a key of theirs wins over a built-in one.
    """
    merged: dict[str, dict[Any, str]] = {
        column: dict(codes)
        for (table, column), codes in BUILT_IN_VALUE_CODES.items()
        if table == name
    }
    for column, codes in mapping.values.items():
        merged[column] = {**merged.get(column, {}), **codes}
    return merged


def map_value_codes(values: pd.Series, mapping: Mapping[Any, str]) -> pd.Series:
    """:func:`~churn.domain.contract.map_codes` of a column, once per distinct text value.

    ``map_codes`` reads each cell's code in Python (a second per million rows). A text
    column's result depends only on the text, so its distinct values are mapped and the
    result is spread back, as text (missing stays missing). Other dtypes go through
    ``map_codes`` as they are: there ``1`` and ``1.0`` are equal as values but not as text.

    Args:
        values: A column as read.
        mapping: {source value (any scalar): contract value}.

    Returns:
        The mapped column: ``str`` for a text column, else ``object`` (as ``map_codes``).
    """
    if not is_arrow_text(values):
        return map_codes(values, mapping)
    positions, distinct = pd.factorize(values, use_na_sentinel=True)
    mapped = map_codes(pd.Series(distinct, dtype=values.dtype), mapping).astype("str")
    rows = pa.array(positions, mask=positions < 0)  # missing values stay missing
    spread = pa.array(mapped.array, pa.large_string()).take(rows)
    return spread.to_pandas().set_axis(values.index)


def check_tables(
    raw: Mapping[str, Any],
    cfg: IngestConfig,
    specs: Mapping[str, TableSpec],
    label_required: bool = True,
) -> None:
    """Raise one error listing every missing required table and column.

    ``raw`` holds frames or tables read in batches: only their ``columns`` are looked at.
    """
    problems = []
    for name, spec in specs.items():
        required = name == "customers" if cfg.mode is Mode.ENTITY else spec.required
        if name not in raw:
            file = table_mapping(cfg, name).file
            where = (
                f"ingest.tables.{name}.file = '{file}' is not in the raw directory"
                if file
                else f"put {name}.parquet or {name}.csv in the raw directory, or set "
                f"ingest.tables.{name}.file"
            )
            if required:
                problems.append(
                    f"required table '{name}' is missing ({cfg.mode} mode needs it): {where}"
                )
            continue
        frame, mapping = raw[name], table_mapping(cfg, name)
        have = ", ".join(map(str, frame.columns)) or "none"
        duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        if duplicated:
            problems.append(f"table '{name}': duplicate column name(s) {duplicated}")
        wanted = {c.name: mapping.columns.get(c.name, c.name) for c in spec.columns if c.required}
        wanted |= {contract: user for contract, user in mapping.columns.items()}
        if cfg.mode is Mode.ENTITY and label_required:
            wanted[cfg.label_column] = cfg.label_column
        for contract_name, user_name in wanted.items():
            if user_name not in frame.columns:
                via = "" if user_name == contract_name else f" (mapped from '{user_name}')"
                problems.append(
                    f"table '{name}': column '{contract_name}'{via} is missing; "
                    f"the table has: {have}"
                )
        to_contract = {user: contract for contract, user in mapping.columns.items()}
        final = pd.Index([to_contract.get(c, c) for c in frame.columns])
        clashes = sorted({str(c) for c in final[final.duplicated()]} - set(duplicated))
        if clashes:
            problems.append(
                f"table '{name}': column(s) {clashes} appear twice once the mapping "
                f"ingest.tables.{name}.columns is applied; drop or rename one of each"
            )
    if problems:
        raise DataContractError("input violates the data contract:\n  - " + "\n  - ".join(problems))


def set_aside_empty_tables(
    raw: Mapping[str, Any], cfg: IngestConfig, specs: Mapping[str, TableSpec]
) -> tuple[dict[str, Any], set[str]]:
    """Refuse empty required tables; treat empty optional tables as absent.

    ``raw`` holds frames or tables read in batches (anything with a length).

    Returns:
        The tables with rows, and the names of the optional tables set aside as empty.

    Raises:
        DataContractError: Naming every required table that has 0 rows.
    """
    empty = {name for name in specs if name in raw and len(raw[name]) == 0}
    required = [
        name
        for name in specs
        if name in empty and (name == "customers" if cfg.mode == "entity" else specs[name].required)
    ]
    if required:
        raise DataContractError(
            "input violates the data contract:\n  - "
            + "\n  - ".join(f"{name} has 0 rows (a required table)" for name in required)
        )
    return {name: frame for name, frame in raw.items() if name not in empty}, empty
