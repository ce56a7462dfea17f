"""``churn ingest``: validate raw tables against the data contract and quarantine bad rows.

The pure core :func:`validate_tables` takes the raw frames as read (user column names, text or
typed values) and returns, per table, the valid rows in contract dtypes, the quarantined rows as
read with every rule they broke, and a JSON-ready report. Problems with a whole table (a
required table or column missing, too many bad rows) raise
:class:`~churn.errors.DataContractError` instead: no partial output is better than a model
silently trained on a fraction of the data.

Row rules, as they appear in ``_failed_rules`` (``"column:rule; column:rule"``):

* ``<col>:not_a_number``, ``<col>:not_an_integer``, ``<col>:not_a_timestamp``,
  ``<col>:not_a_bool``: the value does not convert to the column's type.
* ``<col>:missing``: no value in a non-nullable column.
* ``<col>:not_in_vocabulary``: a value outside a closed vocabulary.
* ``<col>:out_of_range[min,max]``: a number outside its bounds (``inf`` for no bound).
* ``duplicate_row``: identical to an earlier row in every column that is kept (the first
  copy stays valid).
* ``<key>:duplicate_key``: rows that share a unique key but differ; all of them are
  quarantined, as there is no telling which one is right.
* ``<later>:before_<earlier>``: a timestamp before the one it must follow.
* ``<col>:future_dated``: a timestamp after the end of the ``as_of`` day (UTC). A
  subscription's ``ended_at`` is exempt: a paid-through end date after ``as_of`` is data.
* ``<event_time>:out_of_range[after_data_end]``: a row stamped after its table's data end,
  ``ingest.data_end`` or the end of the table's data density (a stray row months after the
  rest; see :mod:`churn.domain.data_end`).
* ``<col>:too_large[abs>L]``: a number larger in magnitude than ``ingest.max_abs_value``
  (finite but absurd; it would overflow the features to ``inf``).
* ``customer_id:unknown_customer``, ``subscription_id:unknown_subscription``: a reference to
  a customer or subscription that is not among the *valid* rows of its table.
* ``<label>:label_invalid`` (entity mode): a missing label or one that is not 0/1.
* ``<attribute>:not_a_number`` (entity mode): a value that does not parse in an attribute
  column inferred as numeric (at least 99% of its non-blank values parse; see
  :func:`~churn.validation.coerce.coerce_attribute`). The report's ``attribute_columns`` says
  per column the inferred type and the unparsable rows.

Value mappings (``ingest.tables.<t>.values``) compare codes, not Python types (``{1: monthly}``
matches 1, "1" and "1.0"); ``billing_period`` month counts 1/3/6/12 need no mapping. A
``not_in_vocabulary`` rule in the report carries a ``detail``: the most frequent source values
that missed, with their types, and the mapping's keys with theirs.

Whole-table rules: a required table with 0 rows is an error saying so (not thousands of
orphaned child rows); an optional table with 0 rows counts as absent (its feature family is
skipped, and the report says why), because "no rows" and "no table" must not give different
features. A table file named in ``ingest.tables.<t>.file`` must resolve inside the raw folder
unless ``ingest.allow_outside_raw`` is true.

The runner :func:`run_ingest` reads the raw directory, calls the core, and writes the outputs
only once everything has validated.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churn import io
from churn.config import DataSource, IngestConfig, Params, TableMapping
from churn.domain.contract import (
    BUILT_IN_VALUE_CODES,
    CONTRACT,
    ENTITY_CUSTOMER_COLUMNS,
    TableSpec,
    rename_to_contract,
)
from churn.domain.data_end import TableEnd, describe_end_mismatch, find_table_end
from churn.domain.modes import Mode, reference_timestamp
from churn.errors import DataContractError
from churn.layout import table_file_name
from churn.sql import utc_timestamp
from churn.stages.check_data import check_data, write_data_check
from support.ingest_reference import rules
from support.ingest_reference.coerce import (
    LABEL_INVALID,
    NOT_A_NUMBER,
    coerce_attribute,
    coerce_column,
    coerce_label,
    empty_column,
    to_text,
)

logger = logging.getLogger(__name__)

ROW_NUMBER = "_row_number"
FAILED_RULES = "_failed_rules"

UNKNOWN_CUSTOMER = "unknown_customer"
UNKNOWN_SUBSCRIPTION = "unknown_subscription"

# References other than customer_id, which the contract expresses as `references_customers`.
# Child table -> (column, parent table whose key it names, rule).
_PARENT_REFERENCES: dict[str, tuple[str, str, str]] = {
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
    """

    valid: dict[str, pd.DataFrame]
    quarantine: dict[str, pd.DataFrame]
    report: dict[str, Any]


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
    return dict(sorted(CONTRACT.items(), key=lambda item: item[0] in _PARENT_REFERENCES))


def _mapping(cfg: IngestConfig, table: str) -> TableMapping:
    return cfg.tables.get(table) or TableMapping()


def _value_mappings(name: str, mapping: TableMapping) -> dict[str, dict[Any, str]]:
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


def _describe_vocabulary_failure(
    raw_values: pd.Series, failed: np.ndarray, codes: Mapping[Any, str], where: str
) -> str:
    """Say which source values missed the vocabulary and what the mapping's keys were.

    Both are shown with their types, so that a mapping written for text ("1") applied to a
    column of a different type, or keys that are not what the export holds, show at a glance.
    """
    missed = raw_values[failed]
    counts = (
        pd.DataFrame(
            {
                "value": missed.map(repr).to_numpy(),
                "type": missed.map(lambda v: type(v).__name__).to_numpy(),
            }
        )
        .value_counts(sort=True)
        .head(rules.EXAMPLES)
    )
    found = ", ".join(f"{value} ({kind}) x{n}" for (value, kind), n in counts.items())
    keys = ", ".join(f"{key!r} ({type(key).__name__})" for key in codes) or "none"
    return (
        f"source values not in the vocabulary (most frequent; column dtype "
        f"{raw_values.dtype}): {found}; {where} keys: {keys}"
    )


def _check_tables(
    raw: Mapping[str, pd.DataFrame],
    cfg: IngestConfig,
    specs: Mapping[str, TableSpec],
    label_required: bool = True,
) -> None:
    """Raise one error listing every missing required table and column."""
    problems = []
    for name, spec in specs.items():
        required = name == "customers" if cfg.mode is Mode.ENTITY else spec.required
        if name not in raw:
            file = _mapping(cfg, name).file
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
        frame, mapping = raw[name], _mapping(cfg, name)
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


def _set_aside_empty_tables(
    raw: Mapping[str, pd.DataFrame], cfg: IngestConfig, specs: Mapping[str, TableSpec]
) -> tuple[dict[str, pd.DataFrame], set[str]]:
    """Refuse empty required tables; treat empty optional tables as absent.

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


def _validate_table(
    name: str,
    spec: TableSpec,
    raw_frame: pd.DataFrame,
    cfg: IngestConfig,
    future_from: pd.Timestamp,
    valid_keys: Mapping[str, pd.Series],
    customer_attributes: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Validate one table.

    Args:
        name: Contract table name.
        spec: Its contract (as relaxed for the mode).
        raw_frame: The table as read.
        cfg: Ingest configuration.
        future_from: Timestamps at or after this are future-dated.
        valid_keys: Table -> key values of its valid rows, for tables validated so far.
        customer_attributes: ``features.customer_attributes``: extra ``customers`` columns
            kept in events mode, and ``age`` columns read as dates in entity mode (see
            :func:`_keep_customer_attributes`).

    Returns:
        The valid rows, the quarantined rows and the table's report entry.
    """
    raw_frame = raw_frame.reset_index(drop=True)  # positions are row numbers from here on
    mapping = _mapping(cfg, name)
    value_mappings = _value_mappings(name, mapping)
    renamed = rename_to_contract(raw_frame, mapping.columns, value_mappings)
    sources = {c: mapping.columns.get(c, c) for c in renamed.columns}
    original = pd.DataFrame({c: to_text(raw_frame[c]) for c in raw_frame.columns})
    entity = cfg.mode is Mode.ENTITY
    log = rules.RuleLog(len(renamed))

    # Convert each column to its contract dtype, logging values that do not convert.
    typed: dict[str, pd.Series] = {}
    failed: dict[str, np.ndarray] = {}
    added = []
    for col in spec.columns:
        if col.name in renamed.columns:
            values, failures = coerce_column(renamed[col.name], col.kind, cfg.input_timezone)
            typed[col.name], failed[col.name] = values, failures.notna().to_numpy()
            for rule in failures.dropna().unique():
                log.add(f"{col.name}:{rule}", failures.eq(rule), (col.name,))
        elif not entity:
            # Entity mode keeps the columns it got: all-null ones would only become empty features.
            typed[col.name] = empty_column(col.kind, len(renamed))
            added.append(col.name)
    extras = [c for c in renamed.columns if c not in spec.column_names]
    attributes: dict[str, dict[str, Any]] = {}
    for column in extras if entity else ():
        if column == cfg.label_column:
            values, failures = coerce_label(renamed[column])
            failed[column] = failures.notna().to_numpy()
            log.add(f"{column}:{LABEL_INVALID}", failed[column], (column,))
        else:
            values, failures = coerce_attribute(renamed[column])
            failed[column] = failures.notna().to_numpy()
            log.add(f"{column}:{NOT_A_NUMBER}", failed[column], (column,))
            attributes[column] = {
                "type": "numeric" if pd.api.types.is_float_dtype(values.dtype) else "text",
                "unparsable_rows": int(failed[column].sum()),
            }
        typed[column] = values
    if name == "customers" and customer_attributes:
        # Entity mode keeps every column anyway; there only an age (a date) needs its type.
        declared = {c: k for c, k in customer_attributes.items() if not entity or k == "age"}
        kept = _keep_customer_attributes(renamed, declared, cfg, typed, failed, log)
        extras = [c for c in extras if c not in kept]
    frame = pd.DataFrame(typed, index=renamed.index)

    present = [c for c in spec.column_names if c in renamed.columns]
    # The label column is optional when scoring new entity rows (see validate_tables).
    label = cfg.label_column if entity and cfg.label_column in frame.columns else None
    schema, schema_rules = rules.build_schema(spec, present, label)
    rules.check_columns(frame, schema, schema_rules, failed, log)
    numeric = [c for c in frame.columns if not (entity and c == cfg.label_column)]
    rules.check_magnitude(frame, numeric, cfg.max_abs_value, log)
    unconverted = pd.DataFrame(
        {c: original[sources[c]].where(mask) for c, mask in failed.items() if mask.any()},
        index=frame.index,
    )
    rules.check_duplicates(frame, spec.key, unconverted, log)
    rules.check_order(frame, spec.order_rules, log)
    rules.check_future_dated(frame, _future_checked_columns(name, spec), future_from, log)
    table_end = _check_data_end(name, frame, cfg, log)
    references = [_PARENT_REFERENCES[name]] if name in _PARENT_REFERENCES else []
    if spec.references_customers:
        references.insert(0, ("customer_id", "customers", UNKNOWN_CUSTOMER))
    for column, parent, rule in references:
        if parent in valid_keys:
            rules.check_reference(frame, column, valid_keys[parent], rule, log)

    bad = log.failed()
    valid = frame.loc[~bad].reset_index(drop=True)
    quarantine = original.loc[bad].reset_index(drop=True)
    quarantine[ROW_NUMBER] = pd.Series(np.flatnonzero(bad), dtype="int64")
    quarantine[FAILED_RULES] = pd.Series(
        log.describe(np.flatnonzero(bad), list(frame.columns)), dtype="str"
    )
    balanced = len(valid) + len(quarantine) == len(renamed)
    if not balanced:
        raise AssertionError(
            f"ingest lost rows of {name}: {len(renamed)} in, "
            f"{len(valid)} valid + {len(quarantine)} quarantined"
        )
    report = {
        "present": True,
        "required": spec.required or entity,
        "rows_in": len(renamed),
        "rows_valid": len(valid),
        "rows_quarantined": len(quarantine),
        "quarantined_share": round(len(quarantine) / len(renamed), 6) if len(renamed) else 0.0,
        "rows_balanced": balanced,
        "columns": list(valid.columns),
        "added_columns": added,
        "ignored_columns": [] if entity else extras,
        "rules": log.summarize(original, sources),
        "time_range": _describe_table_end(table_end),
    }
    if entity:
        # Per attribute column: the inferred type and how many values did not parse.
        report["attribute_columns"] = attributes
    for col in spec.columns:
        rule = f"{col.name}:{rules.NOT_IN_VOCABULARY}"
        if rule in log.masks:
            detail = _describe_vocabulary_failure(
                raw_frame[sources[col.name]],
                log.masks[rule],
                value_mappings.get(col.name, {}),
                f"ingest.tables.{name}.values.{col.name}",
            )
            report["rules"][rule]["detail"] = detail
            logger.warning("table %s: %s", name, detail)
    return valid, quarantine, report


_ATTRIBUTE_KINDS = {"categorical": "category", "numeric": "float", "age": "timestamp"}
"""``features.customer_attributes`` kind -> the contract kind its column is converted to."""


def _keep_customer_attributes(
    renamed: pd.DataFrame,
    customer_attributes: Mapping[str, str],
    cfg: IngestConfig,
    typed: dict[str, pd.Series],
    failed: dict[str, np.ndarray],
    log: rules.RuleLog,
) -> list[str]:
    """Convert the declared extra customer columns into ``typed``; return their names.

    A declared column is converted like a contract column of its kind (``age``: a timestamp),
    and a value that does not convert quarantines its row under ``<column>:<rule>``, as for
    the contract columns: a declared attribute is part of the data the user vouches for.

    Raises:
        DataContractError: If a declared column is not in the customers table.
    """
    missing = [c for c in customer_attributes if c not in renamed.columns]
    if missing:
        raise DataContractError(
            f"table 'customers': column(s) {missing} declared in features.customer_attributes "
            "are missing; remove them there or add them to the export"
        )
    for column, kind in customer_attributes.items():
        values, failures = coerce_column(
            renamed[column], _ATTRIBUTE_KINDS[kind], cfg.input_timezone
        )
        typed[column], failed[column] = values, failures.notna().to_numpy()
        for rule in failures.dropna().unique():
            log.add(f"{column}:{rule}", failures.eq(rule), (column,))
    return list(customer_attributes)


SCHEDULED_END_COLUMNS: dict[str, tuple[str, ...]] = {"subscriptions": ("ended_at",)}
"""Timestamps that may lie after ``as_of``: a paid-through end is known before it happens."""

OUT_OF_RANGE_AFTER_DATA_END = "out_of_range[after_data_end]"


def _future_checked_columns(name: str, spec: TableSpec) -> list[str]:
    """The timestamp columns of ``name`` that the future-dated rule applies to."""
    exempt = SCHEDULED_END_COLUMNS.get(name, ())
    return [c for c in spec.timestamp_columns if c not in exempt]


def _check_data_end(
    name: str, frame: pd.DataFrame, cfg: IngestConfig, log: rules.RuleLog
) -> TableEnd | None:
    """Quarantine rows stamped after the table's data end; return the end (None: no times).

    The end is found among rows that broke no other rule, so that, e.g., a future-dated row
    cannot mark the bulk as stray.
    """
    ok = ~log.failed()
    table_end = find_table_end(name, frame.loc[ok], cfg.data_end_gap_days, explicit=cfg.data_end)
    if table_end is None or table_end.stray_rows == 0:
        return table_end
    column = table_end.column
    stray = ok & (frame[column] > table_end.end).to_numpy()
    notes = {
        int(i): f"{frame[column].iloc[i]} is {table_end.reason}"
        for i in np.flatnonzero(stray)[: rules.EXAMPLES]
    }
    log.add(f"{column}:{OUT_OF_RANGE_AFTER_DATA_END}", stray, (column,), notes)
    logger.warning(
        "table %s: %d row(s) stamped after its data end %s quarantined as out_of_range: %s",
        name,
        table_end.stray_rows,
        table_end.end.date(),
        table_end.reason,
    )
    return table_end


def _describe_table_end(table_end: TableEnd | None) -> dict[str, Any] | None:
    """JSON-ready time range of one table: its last date seen, data end and stray rows."""
    if table_end is None:
        return None
    return {
        "column": table_end.column,
        "last_seen": table_end.last_seen.isoformat(),
        "data_end": table_end.end.isoformat(),
        "stray_rows": table_end.stray_rows,
        "stray_reason": table_end.reason,
    }


def _summarize_data_ends(
    tables: Mapping[str, Mapping[str, Any]], cfg: IngestConfig
) -> dict[str, Any]:
    """Per table last date and data end, the overall data end and a warning on mismatches."""
    ends = {
        name: TableEnd(
            name,
            info["time_range"]["column"],
            pd.Timestamp(info["time_range"]["last_seen"]),
            pd.Timestamp(info["time_range"]["data_end"]),
            info["time_range"]["stray_rows"],
            info["time_range"]["stray_reason"],
        )
        for name, info in tables.items()
        if info.get("present") and info.get("time_range")
    }
    warning = describe_end_mismatch(ends, cfg.data_end_gap_days)
    if warning:
        logger.warning(warning)
    overall = max((e.end for e in ends.values()), default=None)
    return {
        "configured": None if cfg.data_end is None else cfg.data_end.isoformat(),
        "overall": None if overall is None else overall.isoformat(),
        "tables": {name: e.end.date().isoformat() for name, e in ends.items()},
        "last_seen": {name: e.last_seen.date().isoformat() for name, e in ends.items()},
        "warning": warning,
    }


def _share_problem(name: str, report: Mapping[str, Any], limit: float) -> str:
    """Explain why a table has too many bad rows, naming its top rules and example values."""
    lines = [
        f"table '{name}': {report['rows_quarantined']} of {report['rows_in']} rows "
        f"({report['quarantined_share']:.1%}) quarantined, above ingest.max_quarantine_share "
        f"= {limit:.1%}; top rules:"
    ]
    for rule, info in list(report["rules"].items())[:3]:
        shown = ", ".join(f"row {e['row']}: {e['value']!r}" for e in info["examples"][:3])
        lines.append(f"      {rule} on {info['count']} row(s), e.g. {shown}")
        if "detail" in info:
            lines.append(f"        {info['detail']}")
    return "\n".join(lines)


def validate_tables(
    raw: Mapping[str, pd.DataFrame],
    cfg: IngestConfig,
    as_of: pd.Timestamp,
    *,
    customer_attributes: Mapping[str, str] | None = None,
    label_required: bool = True,
) -> IngestResult:
    """Validate raw tables against the contract and split their rows into valid and quarantined.

    Args:
        raw: Contract table name -> the user's frame as read (user column names; text or typed
            values). Tables not read in ``cfg.mode`` are ignored (and reported). The frames
            are not modified.
        cfg: Ingest configuration: mode, column mapping, time zone, quarantine limit.
        as_of: Rows stamped after the end of this day (UTC) are future-dated.
        customer_attributes: ``features.customer_attributes``: extra customer columns that
            events mode keeps (typed like contract columns) instead of ignoring.
        label_required: Entity mode: whether the label column must be present (``False`` when
            scoring a new file, where a label is only used for realized metrics if present).

    Returns:
        The valid and quarantined rows per present table and the report::

            {"mode", "as_of", "input_timezone", "max_quarantine_share",
             "rows_in", "rows_valid", "rows_quarantined", "rows_balanced",
             "ignored_tables": [...],
             "tables": {table: {"present": true, "required", "rows_in", "rows_valid",
                                "rows_quarantined", "quarantined_share", "rows_balanced",
                                "columns", "added_columns", "ignored_columns",
                                "rules": {rule: {"count", "examples": [{"row", "value"}]}}}
                        | {"present": false, "required": false, "feature_family", "note"}}}

    Raises:
        DataContractError: A required table or column is missing (all are listed), or a
            table's quarantined share exceeds ``cfg.max_quarantine_share``.
    """
    stamp = utc_timestamp(as_of)
    future_from = stamp.normalize() + pd.Timedelta(days=1)
    specs = table_specs(cfg.mode)
    raw, empty = _set_aside_empty_tables(raw, cfg, specs)
    _check_tables(raw, cfg, specs, label_required)

    valid: dict[str, pd.DataFrame] = {}
    quarantine: dict[str, pd.DataFrame] = {}
    tables: dict[str, dict[str, Any]] = {}
    valid_keys: dict[str, pd.Series] = {}
    for name, spec in specs.items():
        if name not in raw:
            why = "has 0 rows, so it counts as absent" if name in empty else "absent"
            note = (
                f"table {name} {why}: the {spec.feature_family}-family features that need it "
                "will be skipped"
            )
            logger.warning(note)
            tables[name] = {
                "present": False,
                "required": False,
                "feature_family": spec.feature_family,
                "note": note,
                **({"empty": True} if name in empty else {}),
            }
            continue
        good, bad, report = _validate_table(
            name, spec, raw[name], cfg, future_from, valid_keys, customer_attributes
        )
        valid[name], quarantine[name], tables[name] = good, bad, report
        if len(spec.key) == 1:
            valid_keys[name] = good[spec.key[0]]

    over = [
        _share_problem(name, t, cfg.max_quarantine_share)
        for name, t in tables.items()
        if t["present"] and t["rows_quarantined"] > cfg.max_quarantine_share * t["rows_in"]
    ]
    if over:
        raise DataContractError("too many bad rows:\n  - " + "\n  - ".join(over))

    order = [n for n in CONTRACT if n in tables]
    present = [tables[n] for n in order if tables[n]["present"]]
    report = {
        "mode": cfg.mode,
        "as_of": stamp.date().isoformat(),
        "input_timezone": cfg.input_timezone,
        "max_quarantine_share": cfg.max_quarantine_share,
        "rows_in": sum(t["rows_in"] for t in present),
        "rows_valid": sum(t["rows_valid"] for t in present),
        "rows_quarantined": sum(t["rows_quarantined"] for t in present),
        "rows_balanced": all(t["rows_balanced"] for t in present),
        "ignored_tables": sorted(set(raw) - set(specs)),
        "data_end": _summarize_data_ends(tables, cfg),
        "tables": {n: tables[n] for n in order},
    }
    return IngestResult(
        valid={n: valid[n] for n in order if n in valid},
        quarantine={n: quarantine[n] for n in order if n in quarantine},
        report=report,
    )


def read_raw_tables(
    raw_dir: Path, cfg: IngestConfig
) -> tuple[dict[str, pd.DataFrame], dict[str, Path]]:
    """Read the raw tables of ``cfg.mode`` that are present in ``raw_dir``.

    Returns:
        Table -> frame as read, and table -> the file it came from.

    Raises:
        DataContractError: If ``raw_dir`` does not exist, a table file cannot be read, or an
            explicit ``file`` resolves outside ``raw_dir`` (unless ``allow_outside_raw``).
    """
    if not raw_dir.is_dir():
        raise DataContractError(f"raw directory {raw_dir} does not exist")
    frames: dict[str, pd.DataFrame] = {}
    sources: dict[str, Path] = {}
    for name in table_specs(cfg.mode):
        path = io.find_table_file(
            raw_dir, name, _mapping(cfg, name).file, allow_outside=cfg.allow_outside_raw
        )
        if path is None:
            continue
        try:
            frames[name] = io.read_frame(path)
        except (ValueError, OSError) as exc:  # pyarrow and CSV parser errors subclass these
            raise DataContractError(f"cannot read table '{name}' from {path}: {exc}") from exc
        sources[name] = path
    return frames, sources


def print_summary(report: Mapping[str, Any]) -> None:
    """Print a table of rows in / valid / quarantined and the top rules per table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"churn ingest (as of {report['as_of']}, {report['mode']} mode)")
    table.add_column("table")
    for header in ("rows in", "valid", "quarantined"):
        table.add_column(header, justify="right")
    table.add_column("top rules", overflow="fold")
    for name, info in report["tables"].items():
        if not info["present"]:
            table.add_row(name, "-", "-", "-", "absent")
            continue
        top = ", ".join(f"{r} ({v['count']})" for r, v in list(info["rules"].items())[:3])
        table.add_row(
            name,
            f"{info['rows_in']:,}",
            f"{info['rows_valid']:,}",
            f"{info['rows_quarantined']:,}",
            top or "-",
        )
    Console().print(table)


def log_data_ends(report: Mapping[str, Any]) -> None:
    """Log per table the last date seen, its data end and stray rows (the report's time ranges)."""
    from churn.console import log_table

    rows = [
        (
            name,
            info["time_range"]["last_seen"][:10],
            info["time_range"]["data_end"][:10],
            f"{info['time_range']['stray_rows']:,}",
        )
        for name, info in report["tables"].items()
        if info.get("present") and info.get("time_range")
    ]
    log_table(logger, "data end per table", ["table", "last date seen", "data end", "stray"], rows)


def choose_raw_dir(source: DataSource, files_dir: Path, simulated_dir: Path | None) -> Path:
    """Return the raw folder ``data.source`` selects.

    Both folders are declared dependencies of the stage (``dvc.yaml``); only one is read.
    Without ``simulated_dir`` (a caller passing a single folder, as before ``data.source``
    existed) ``files_dir`` is read whatever the source says.

    Args:
        source: ``data.source``: ``"files"`` (the user's folder) or ``"simulator"``.
        files_dir: The user's folder of CSV or Parquet files (``data/raw``).
        simulated_dir: The simulate stage's tables (``data/simulated/raw``), or ``None``.

    Returns:
        The folder to read the raw tables from.
    """
    if source == "simulator" and simulated_dir is not None:
        return Path(simulated_dir)
    return Path(files_dir)


def run_ingest(
    config: IngestConfig,
    raw_dir: Path,
    out_dir: Path,
    quarantine_dir: Path,
    report_path: Path,
    *,
    customer_attributes: Mapping[str, str] | None = None,
    params: Params | None = None,
    data_check_path: Path | None = None,
) -> IngestResult:
    """Validate the raw tables and write valid tables, quarantine files and the report.

    Everything is validated before anything is written, so a table-level error leaves the
    previous outputs untouched; the two output folders are then each swapped in whole
    (:func:`churn.io.atomic_directory`). Every present table gets a quarantine file, empty if
    no row was bad, so that the set of outputs does not depend on the data; files of tables no
    longer present are gone (the folders hold only what this run wrote).

    Args:
        config: The ``ingest`` section of the parameters.
        raw_dir: Directory with the raw tables (CSV or Parquet).
        out_dir: Directory for ``<table>.parquet`` validated tables.
        quarantine_dir: Directory for ``<table>.parquet`` quarantined rows.
        report_path: JSON report.
        customer_attributes: ``features.customer_attributes`` (extra customer columns kept).
        params: All parameters, for the data check (cutoff schedule, families); with
            ``data_check_path``.
        data_check_path: Where to write the data check of the valid tables
            (:func:`churn.stages.check_data.check_data`), after the tables; ``None`` (or no
            ``params``): not written.

    Returns:
        The validation result, its report completed with the source file of each table.

    Raises:
        DataContractError: See :func:`validate_tables`; also for an unreadable input.
    """
    raw_dir, out_dir, quarantine_dir = Path(raw_dir), Path(out_dir), Path(quarantine_dir)
    as_of = reference_timestamp(config.as_of)
    frames, sources = read_raw_tables(raw_dir, config)
    result = validate_tables(frames, config, as_of, customer_attributes=customer_attributes)
    report = copy.deepcopy(result.report)
    for name, path in sources.items():
        report["tables"][name]["source"] = str(path)

    # Each output folder is swapped in whole (a kill leaves the old set, and no staging folder
    # inside these DVC outputs); tables no longer in the input simply are not in the new set.
    with (
        io.atomic_directory(out_dir) as valid_staging,
        io.atomic_directory(quarantine_dir) as quarantine_staging,
    ):
        for name, frame in result.valid.items():
            io.write_parquet(frame, valid_staging / table_file_name(name))
            io.write_parquet(result.quarantine[name], quarantine_staging / table_file_name(name))
        for name in CONTRACT:
            if name not in result.valid and (out_dir / table_file_name(name)).exists():
                logger.info("table %s is no longer in the input: dropped from %s", name, out_dir)
    io.write_json(report, report_path)
    print_summary(report)
    log_data_ends(report)
    if params is not None and data_check_path is not None:
        check = check_data(result.valid, params, ingest_report=report)
        write_data_check(check, Path(data_check_path))
    return dataclasses.replace(result, report=report)
