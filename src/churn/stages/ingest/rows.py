"""Validate one table of ``churn ingest``: convert, check every row rule, split the rows.

Every rule is evaluated column-wise over the whole table; only the rows that break a rule
(and the few examples of the report) are rendered as text (:class:`~churn.validation.text.RawText`),
which is what makes ingest run at about the speed of reading the tables (issue #14).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from churn.config import IngestConfig
from churn.domain.contract import CONTRACT, TableSpec, rename_to_contract
from churn.domain.data_end import TableEnd
from churn.domain.modes import Mode
from churn.errors import DataContractError
from churn.stages.ingest.ends import find_table_end_fast
from churn.stages.ingest.tables import (
    FAILED_RULES,
    PARENT_REFERENCES,
    ROW_NUMBER,
    UNKNOWN_CUSTOMER,
    map_value_codes,
    table_mapping,
    value_mappings,
)
from churn.validation import rules
from churn.validation.coerce import (
    LABEL_INVALID,
    NOT_A_NUMBER,
    coerce_attribute,
    coerce_column,
    coerce_label,
    empty_column,
)
from churn.validation.text import RawText, keep_rows

logger = logging.getLogger(__name__)


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


def validate_table(
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
    mapping = table_mapping(cfg, name)
    codes = value_mappings(name, mapping)
    renamed = rename_to_contract(raw_frame, mapping.columns)
    for column, column_codes in codes.items():
        if column in renamed.columns:
            renamed[column] = map_value_codes(renamed[column], column_codes)
    sources = {c: mapping.columns.get(c, c) for c in renamed.columns}
    original = RawText(raw_frame)  # text only for the rows shown: failing ones
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
    rules.check_columns(frame, rules.build_column_rules(spec, present, label), failed, log)
    numeric = [c for c in frame.columns if not (entity and c == cfg.label_column)]
    rules.check_magnitude(frame, numeric, cfg.max_abs_value, log)
    unconverted = pd.DataFrame(
        {
            c: original.column(sources[c], np.flatnonzero(mask)).reindex(frame.index)
            for c, mask in failed.items()
            if mask.any()
        },
        index=frame.index,
    )
    rules.check_duplicates(frame, spec.key, unconverted, log)
    rules.check_order(frame, spec.order_rules, log)
    rules.check_future_dated(frame, _future_checked_columns(name, spec), future_from, log)
    table_end = _check_data_end(name, frame, cfg, log)
    references = [PARENT_REFERENCES[name]] if name in PARENT_REFERENCES else []
    if spec.references_customers:
        references.insert(0, ("customer_id", "customers", UNKNOWN_CUSTOMER))
    for column, parent, rule in references:
        if parent in valid_keys:
            rules.check_reference(frame, column, valid_keys[parent], rule, log)

    bad = log.failed()
    valid = keep_rows(frame, ~bad)
    quarantine = original.rows(np.flatnonzero(bad)).reset_index(drop=True)
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
        "time_range": describe_table_end(table_end),
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
                codes.get(col.name, {}),
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
    column = CONTRACT[name].event_time
    if column is None or column not in frame.columns:
        return None
    # Only the event time of the rows still valid is read, without copying it (issue #14).
    table_end = find_table_end_fast(
        name, column, frame[column], ok, cfg.data_end_gap_days, explicit=cfg.data_end
    )
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


def describe_table_end(table_end: TableEnd | None) -> dict[str, Any] | None:
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
