"""Validate one table of ``churn ingest``: convert, check every row rule, split the rows.

Every rule is evaluated column-wise over the whole table; only the rows that break a rule
(and the few examples of the report) are rendered as text (:class:`~churn.validation.text.RawText`),
which is what makes ingest run at about the speed of reading the tables (issue #14).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


def describe_vocabulary_failure(
    missed: pd.Series, dtype: Any, codes: Mapping[Any, str], where: str
) -> str:
    """Say which source values missed the vocabulary and what the mapping's keys were.

    Both are shown with their types, so that a mapping written for text ("1") applied to a
    column of a different type, or keys that are not what the export holds, show at a glance.

    Args:
        missed: The source values that missed, in row order.
        dtype: The dtype of the source column.
        codes: The column's value mapping.
        where: The parameter that holds the mapping.

    Returns:
        One line of text.
    """
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
        f"{dtype}): {found}; {where} keys: {keys}"
    )


@dataclass
class PreparedRows:
    """One table (or one batch of it) converted, with its column-level rules checked.

    Attributes:
        raw_frame: The rows as read (default ``RangeIndex``).
        frame: The typed rows: contract columns in contract dtypes, added and kept columns.
        original: ``raw_frame`` rendered as text on demand.
        sources: Column name in ``frame`` -> its name in ``raw_frame``.
        codes: The table's value mappings.
        failed: Column -> rows whose value did not convert.
        added: Contract columns absent from the input (added all missing).
        extras: Input columns that are not kept.
        attributes: Entity mode: per attribute column its inferred type and unparsable rows.
        log: The rules broken so far.
    """

    raw_frame: pd.DataFrame
    frame: pd.DataFrame
    original: RawText
    sources: dict[str, str]
    codes: dict[str, dict[Any, str]]
    failed: dict[str, np.ndarray]
    added: list[str]
    extras: list[str]
    attributes: dict[str, dict[str, Any]]
    log: rules.RuleLog

    def unconverted(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Per converted column the original text where it did not convert (missing elsewhere).

        Args:
            columns: The columns to give (a batch: those failing anywhere in the table);
                ``None``: the columns with a failure here.
        """
        if columns is None:
            columns = [c for c, mask in self.failed.items() if mask.any()]
        return pd.DataFrame(
            {
                c: self.original.column(
                    self.sources[c], np.flatnonzero(self.failed[c])
                ).reindex(self.frame.index)
                for c in columns
            },
            index=self.frame.index,
        )


def prepare_rows(
    name: str,
    spec: TableSpec,
    raw_frame: pd.DataFrame,
    cfg: IngestConfig,
    customer_attributes: Mapping[str, str] | None = None,
    *,
    whole_floats: Mapping[str, bool] | None = None,
    witnesses: Mapping[str, pd.Series] | None = None,
) -> PreparedRows:
    """Convert a table's columns and check the rules that look at one row's columns only.

    The rules checked here (conversion, ``missing``, vocabulary, range, ``too_large``) give
    the same answer for a row whether it is checked with its whole table or in a batch, once
    ``whole_floats`` and ``witnesses`` describe the whole table.

    Args:
        name: Contract table name.
        spec: Its contract (as relaxed for the mode).
        raw_frame: The table (or a batch of it) as read.
        cfg: Ingest configuration.
        customer_attributes: See :func:`validate_table`.
        whole_floats: Text column -> whether every value of the whole table is a whole
            number (:func:`~churn.validation.coerce.coerce_string`); ``None``: ``raw_frame``
            is the whole table.
        witnesses: See :class:`~churn.validation.text.RawText`.

    Returns:
        The converted rows and the rules they broke so far.
    """
    raw_frame = raw_frame.reset_index(drop=True)  # positions are row numbers from here on
    whole_floats = whole_floats or {}
    mapping = table_mapping(cfg, name)
    codes = value_mappings(name, mapping)
    renamed = rename_to_contract(raw_frame, mapping.columns)
    for column, column_codes in codes.items():
        if column in renamed.columns:
            renamed[column] = map_value_codes(renamed[column], column_codes)
    sources = {c: mapping.columns.get(c, c) for c in renamed.columns}
    original = RawText(raw_frame, witnesses)  # text only for the rows shown: failing ones
    entity = cfg.mode is Mode.ENTITY
    log = rules.RuleLog(len(renamed))

    # Convert each column to its contract dtype, logging values that do not convert.
    typed: dict[str, pd.Series] = {}
    failed: dict[str, np.ndarray] = {}
    added = []
    for col in spec.columns:
        if col.name in renamed.columns:
            values, failures = coerce_column(
                renamed[col.name], col.kind, cfg.input_timezone, whole_floats.get(col.name)
            )
            typed[col.name], failed[col.name] = values, failures.notna().to_numpy()
            log.add_each(col.name, failures, (col.name,))
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
        kept = _keep_customer_attributes(renamed, declared, cfg, typed, failed, log, whole_floats)
        extras = [c for c in extras if c not in kept]
    frame = pd.DataFrame(typed, index=renamed.index)

    present = [c for c in spec.column_names if c in renamed.columns]
    # The label column is optional when scoring new entity rows (see validate_tables).
    label = cfg.label_column if entity and cfg.label_column in frame.columns else None
    rules.check_columns(frame, rules.build_column_rules(spec, present, label), failed, log)
    numeric = [c for c in frame.columns if not (entity and c == cfg.label_column)]
    rules.check_magnitude(frame, numeric, cfg.max_abs_value, log)
    return PreparedRows(
        raw_frame, frame, original, sources, codes, failed, added, extras, attributes, log
    )


def check_row_order_and_future(
    name: str, spec: TableSpec, frame: pd.DataFrame, future_from: pd.Timestamp, log: rules.RuleLog
) -> None:
    """The other rules that look at one row only: timestamp order and future-dated values."""
    rules.check_order(frame, spec.order_rules, log)
    rules.check_future_dated(frame, _future_checked_columns(name, spec), future_from, log)


def table_references(name: str, spec: TableSpec) -> list[tuple[str, str, str]]:
    """The (column, parent table, rule) references ``name`` must satisfy, in checking order."""
    references = [PARENT_REFERENCES[name]] if name in PARENT_REFERENCES else []
    if spec.references_customers:
        references.insert(0, ("customer_id", "customers", UNKNOWN_CUSTOMER))
    return references


def describe_failed_rows(
    prepared: PreparedRows, bad: np.ndarray, offset: int = 0
) -> pd.DataFrame:
    """The quarantine rows: the rows as read, their row numbers and the rules they broke.

    Args:
        prepared: The table or batch.
        bad: One boolean per row: quarantined.
        offset: Row number of the first row (a batch: the rows before it).
    """
    positions = np.flatnonzero(bad)
    quarantine = prepared.original.rows(positions).reset_index(drop=True)
    quarantine[ROW_NUMBER] = pd.Series(positions + offset, dtype="int64")
    quarantine[FAILED_RULES] = pd.Series(
        prepared.log.describe(positions, list(prepared.frame.columns)), dtype="str"
    )
    return quarantine


def build_table_report(
    spec: TableSpec,
    cfg: IngestConfig,
    counts: tuple[int, int, int],
    prepared: PreparedRows,
    columns: list[str],
    summary: dict[str, dict[str, Any]],
    table_end: TableEnd | None,
) -> dict[str, Any]:
    """The report entry of one present table (``rules`` without vocabulary details).

    Args:
        spec: The table's contract.
        cfg: Ingest configuration.
        counts: Rows in, valid and quarantined.
        prepared: The table (or its last batch: columns and attributes are the same in all).
        columns: The columns of the valid rows.
        summary: Per rule its count and examples
            (:meth:`~churn.validation.rules.RuleLog.summarize`).
        table_end: The table's data end.
    """
    rows_in, rows_valid, rows_quarantined = counts
    entity = cfg.mode is Mode.ENTITY
    balanced = rows_valid + rows_quarantined == rows_in
    report = {
        "present": True,
        "required": spec.required or entity,
        "rows_in": rows_in,
        "rows_valid": rows_valid,
        "rows_quarantined": rows_quarantined,
        "quarantined_share": round(rows_quarantined / rows_in, 6) if rows_in else 0.0,
        "rows_balanced": balanced,
        "columns": columns,
        "added_columns": prepared.added,
        "ignored_columns": [] if entity else prepared.extras,
        "rules": summary,
        "time_range": describe_table_end(table_end),
    }
    if entity:
        # Per attribute column: the inferred type and how many values did not parse.
        report["attribute_columns"] = prepared.attributes
    return report


def vocabulary_rules(spec: TableSpec) -> list[tuple[str, str]]:
    """(column, rule label) of the vocabulary rule of each contract column."""
    return [(col.name, f"{col.name}:{rules.NOT_IN_VOCABULARY}") for col in spec.columns]


def add_vocabulary_details(
    name: str,
    spec: TableSpec,
    report: dict[str, Any],
    missed: Mapping[str, pd.Series],
    dtypes: Mapping[str, Any],
    codes: Mapping[str, Mapping[Any, str]],
) -> None:
    """Add a ``detail`` to each vocabulary rule of the report and log it.

    Args:
        name: Contract table name.
        spec: Its contract (as relaxed for the mode).
        report: The table's report entry.
        missed: Column -> the source values that missed its vocabulary (row order).
        dtypes: Column -> dtype of its source column.
        codes: The table's value mappings.
    """
    for column, rule in vocabulary_rules(spec):
        if rule in report["rules"] and column in missed:
            detail = describe_vocabulary_failure(
                missed[column],
                dtypes[column],
                codes.get(column, {}),
                f"ingest.tables.{name}.values.{column}",
            )
            report["rules"][rule]["detail"] = detail
            logger.warning("table %s: %s", name, detail)


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
    prepared = prepare_rows(name, spec, raw_frame, cfg, customer_attributes)
    frame, log = prepared.frame, prepared.log
    rules.check_duplicates(frame, spec.key, prepared.unconverted(), log)
    check_row_order_and_future(name, spec, frame, future_from, log)
    table_end = _check_data_end(name, frame, cfg, log)
    for column, parent, rule in table_references(name, spec):
        if parent in valid_keys:
            rules.check_reference(frame, column, valid_keys[parent], rule, log)

    bad = log.failed()
    valid = keep_rows(frame, ~bad)
    quarantine = describe_failed_rows(prepared, bad)
    rows_in = len(frame)
    if len(valid) + len(quarantine) != rows_in:
        raise AssertionError(
            f"ingest lost rows of {name}: {rows_in} in, "
            f"{len(valid)} valid + {len(quarantine)} quarantined"
        )
    report = build_table_report(
        spec,
        cfg,
        (rows_in, len(valid), len(quarantine)),
        prepared,
        list(valid.columns),
        log.summarize(prepared.original, prepared.sources),
        table_end,
    )
    raw = prepared.raw_frame
    missed = {
        column: raw[prepared.sources[column]][log.masks[rule]]
        for column, rule in vocabulary_rules(spec)
        if rule in log.masks
    }
    dtypes = {column: raw[prepared.sources[column]].dtype for column in missed}
    add_vocabulary_details(name, spec, report, missed, dtypes, prepared.codes)
    return valid, quarantine, report


ATTRIBUTE_KINDS = {"categorical": "category", "numeric": "float", "age": "timestamp"}
"""``features.customer_attributes`` kind -> the contract kind its column is converted to."""


def _keep_customer_attributes(
    renamed: pd.DataFrame,
    customer_attributes: Mapping[str, str],
    cfg: IngestConfig,
    typed: dict[str, pd.Series],
    failed: dict[str, np.ndarray],
    log: rules.RuleLog,
    whole_floats: Mapping[str, bool],
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
            renamed[column], ATTRIBUTE_KINDS[kind], cfg.input_timezone, whole_floats.get(column)
        )
        typed[column], failed[column] = values, failures.notna().to_numpy()
        log.add_each(column, failures, (column,))
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
