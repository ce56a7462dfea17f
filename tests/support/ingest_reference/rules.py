"""Row rules of the data contract, for ``churn ingest``.

Each ``check_*`` function finds the rows of one typed table that break a rule and records them
in a :class:`RuleLog` under a rule label (``"<column>:<rule>"``, or a bare rule for whole-row
rules such as ``duplicate_row``). The log then says, per row, every rule it broke, and per
rule, how many rows broke it with a few examples. Column-level rules (nullability,
vocabularies, ranges, key uniqueness) run through pandera with lazy validation, so that all
failures are collected in one pass; its failure cases are mapped back to row positions.

Frames passed here must have a default ``RangeIndex``: positions are row numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from churn.domain.contract import ColumnSpec, OrderRule, TableSpec
from support.ingest_reference.coerce import LABEL_INVALID, validated_dtype

MISSING = "missing"
NOT_IN_VOCABULARY = "not_in_vocabulary"
DUPLICATE_ROW = "duplicate_row"
DUPLICATE_KEY = "duplicate_key"
FUTURE_DATED = "future_dated"
TOO_LARGE = "too_large"

EXAMPLES = 5
"""Example rows kept per rule in the report."""


@dataclass
class RuleLog:
    """The rules each row of one table broke.

    Attributes:
        rows: Number of rows in the table.
        masks: Rule label -> boolean array of the rows that broke it.
        columns: Rule label -> the columns whose original values illustrate it.
        notes: Rule label -> row -> example text, for rules without a column value to show.
    """

    rows: int
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    notes: dict[str, dict[int, str]] = field(default_factory=dict)

    def add(
        self,
        rule: str,
        mask: pd.Series | np.ndarray,
        columns: tuple[str, ...] = (),
        notes: dict[int, str] | None = None,
    ) -> None:
        """Record that the rows in ``mask`` broke ``rule``.

        Args:
            rule: Rule label, e.g. ``"mrr:out_of_range[0,inf]"``.
            mask: One boolean per row.
            columns: Columns whose original values illustrate the failure.
            notes: Example text per row, for rules that no column value illustrates.
        """
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        self.masks[rule] = self.masks[rule] | mask if rule in self.masks else mask
        self.columns.setdefault(rule, columns)
        if notes is not None:
            self.notes.setdefault(rule, {}).update(notes)

    def failed(self) -> np.ndarray:
        """One boolean per row: did it break any rule."""
        bad = np.zeros(self.rows, dtype=bool)
        for mask in self.masks.values():
            bad |= mask
        return bad

    def describe(self, positions: np.ndarray, column_order: Sequence[str]) -> list[str]:
        """The ``"rule; rule"`` text of each row in ``positions``.

        Rules are listed in ``column_order`` of their column, whole-row rules last, so that a
        row's failures read left to right like the table.
        """
        rank = {column: i for i, column in enumerate(column_order)}
        rules = sorted(
            self.masks,
            key=lambda r: rank.get(self.columns[r][0], len(rank)) if self.columns[r] else len(rank),
        )
        return ["; ".join(r for r in rules if self.masks[r][i]) for i in positions]

    def summarize(
        self, original: pd.DataFrame, sources: Mapping[str, str]
    ) -> dict[str, dict[str, Any]]:
        """Per rule, most frequent first: the row count and a few rows with original values.

        Args:
            original: The table as read, as text (user column names).
            sources: Column name used in rule labels -> column name in ``original``.

        Returns:
            ``{rule: {"count": n, "examples": [{"row": i, "value": text or None}]}}``.
        """
        out = {}
        for rule, mask in sorted(self.masks.items(), key=lambda item: -int(item[1].sum())):
            examples = []
            for i in np.flatnonzero(mask)[:EXAMPLES]:
                if rule in self.notes:
                    value = self.notes[rule].get(int(i))
                else:
                    cells = [original[sources.get(c, c)].iloc[i] for c in self.columns[rule]]
                    texts = ["<missing>" if pd.isna(c) else str(c) for c in cells]
                    value = ", ".join(texts) if texts else None
                examples.append({"row": int(i), "value": value})
            out[rule] = {"count": int(mask.sum()), "examples": examples}
        return out


def _range_check(col: ColumnSpec) -> tuple[pa.Check, str]:
    """The pandera check and rule name of a column's numeric bounds."""
    low = "-inf" if col.minimum is None else f"{col.minimum:g}"
    high = "inf" if col.maximum is None else f"{col.maximum:g}"
    if col.minimum is not None and col.maximum is not None:
        check = pa.Check.in_range(col.minimum, col.maximum)
    elif col.minimum is not None:
        check = pa.Check.ge(col.minimum)
    else:
        check = pa.Check.le(col.maximum)
    return check, f"out_of_range[{low},{high}]"


def build_schema(
    spec: TableSpec, columns: Sequence[str], label_column: str | None = None
) -> tuple[pa.DataFrameSchema, dict[tuple[str, int], str]]:
    """Build the pandera schema of the column-level rules of a typed table.

    Args:
        spec: The contract table.
        columns: The contract columns present in the input; absent ones are not checked.
        label_column: Entity mode: the label column, which must be 0 or 1.

    Returns:
        The schema, and (column, check number) -> rule name, which translates pandera's
        failure cases back into rule names.
    """
    schema_columns: dict[str, pa.Column] = {}
    rules: dict[tuple[str, int], str] = {}
    for col in spec.columns:
        if col.name not in columns:
            continue
        checks: list[pa.Check] = []
        if col.allowed:
            rules[(col.name, len(checks))] = NOT_IN_VOCABULARY
            checks.append(pa.Check.isin(list(col.allowed)))
        if col.minimum is not None or col.maximum is not None:
            check, rule = _range_check(col)
            rules[(col.name, len(checks))] = rule
            checks.append(check)
        schema_columns[col.name] = pa.Column(
            validated_dtype(col.kind), checks=checks, nullable=col.nullable
        )
    if label_column is not None:
        rules[(label_column, 0)] = LABEL_INVALID
        schema_columns[label_column] = pa.Column("Int8", pa.Check.isin([0, 1]), nullable=False)
    return pa.DataFrameSchema(schema_columns, name=spec.name), rules


def _failure_masks(
    exc: SchemaErrors, rows: int, rules: Mapping[tuple[str, int], str], table: str
) -> dict[tuple[str, str], np.ndarray]:
    """Turn pandera's failure cases into (column, rule) -> failing-row mask."""
    cases = exc.failure_cases
    if cases["index"].isna().any():
        # Failures without a row (a wrong dtype) mean coercion has a bug, not that data is bad.
        raise RuntimeError(f"ingest: table {table} failed schema-level checks:\n{cases}")
    masks: dict[tuple[str, str], np.ndarray] = {}
    groups = cases.groupby(["column", "check", "check_number"], dropna=False, sort=False)
    for (column, check, number), group in groups:
        if check == "not_nullable":
            rule = MISSING
        elif pd.notna(number) and (column, int(number)) in rules:
            rule = rules[(column, int(number))]
        else:
            raise RuntimeError(f"ingest: unexpected pandera check {check!r} on {table}.{column}")
        mask = masks.setdefault((str(column), rule), np.zeros(rows, dtype=bool))
        mask[group["index"].astype("int64").to_numpy()] = True
    return masks


def check_columns(
    frame: pd.DataFrame,
    schema: pa.DataFrameSchema,
    rules: Mapping[tuple[str, int], str],
    conversion_failed: Mapping[str, np.ndarray],
    log: RuleLog,
) -> None:
    """Run ``schema`` lazily on ``frame`` and log every failing row under its rule.

    Args:
        frame: The typed table.
        schema: From :func:`build_schema`.
        rules: From :func:`build_schema`.
        conversion_failed: Column -> rows whose value did not convert; such values are
            missing now, but their conversion rule already says why, so they are not also
            logged as ``missing``.
        log: Where failures go.
    """
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as exc:
        masks = _failure_masks(exc, len(frame), rules, schema.name or "?")
        for (column, rule), mask in masks.items():
            failed = conversion_failed.get(column, np.zeros(len(frame), dtype=bool))
            log.add(f"{column}:{rule}", mask & ~failed, (column,))


def check_duplicates(
    frame: pd.DataFrame,
    key: tuple[str, ...],
    unconverted: pd.DataFrame,
    log: RuleLog,
) -> None:
    """Log exact duplicate rows (all but the first) and rows sharing a key with other content.

    Args:
        frame: The typed table (the columns that will be written).
        key: Columns that must be unique together (empty: no key).
        unconverted: Per converted column, the original text where the value did not convert
            (missing elsewhere); it takes part in the comparison so that two different
            unparseable values are not taken for equal.
        log: Where failures go.
    """
    compare = pd.concat([frame, unconverted.add_prefix("__raw__")], axis=1)
    duplicate = compare.duplicated(keep="first").to_numpy()
    if duplicate.any():
        # Only to name the original row in examples; a collision would merely mislabel one.
        hashes = pd.util.hash_pandas_object(compare, index=False).to_numpy()
        first = pd.Series(np.arange(len(frame))).groupby(hashes).transform("min").to_numpy()
        notes = {int(i): f"same as row {first[i]}" for i in np.flatnonzero(duplicate)[:EXAMPLES]}
        log.add(DUPLICATE_ROW, duplicate, (), notes)
    if not key or not all(k in frame.columns for k in key):
        return
    # Rows without a full key already fail `missing`; exact copies are already handled.
    candidates = ~duplicate & frame[list(key)].notna().all(axis=1).to_numpy()
    positions = np.flatnonzero(candidates)
    # pandera's multi-column uniqueness misreports rows on a non-default index: validate a
    # reindexed subset and map its rows back through `positions`.
    subset = frame.loc[candidates, list(key)].reset_index(drop=True)
    schema = pa.DataFrameSchema(
        {k: pa.Column(nullable=True) for k in key}, unique=list(key), report_duplicates="all"
    )
    mask = np.zeros(len(frame), dtype=bool)
    try:
        schema.validate(subset, lazy=True)
    except SchemaErrors as exc:
        hits = exc.failure_cases["index"].dropna().astype("int64").unique()
        mask[positions[hits]] = True
    log.add(f"{'+'.join(key)}:{DUPLICATE_KEY}", mask, key)


def check_order(frame: pd.DataFrame, order_rules: Sequence[OrderRule], log: RuleLog) -> None:
    """Log rows whose ``later`` timestamp is before their ``earlier`` one (both present)."""
    for rule in order_rules:
        if rule.earlier in frame.columns and rule.later in frame.columns:
            early = frame[rule.later] < frame[rule.earlier]  # False where either is missing
            log.add(f"{rule.later}:before_{rule.earlier}", early, (rule.later,))


def check_future_dated(
    frame: pd.DataFrame, columns: Sequence[str], future_from: pd.Timestamp, log: RuleLog
) -> None:
    """Log rows with a timestamp at or after ``future_from`` in any of ``columns``."""
    for column in columns:
        if column in frame.columns:
            log.add(f"{column}:{FUTURE_DATED}", frame[column] >= future_from, (column,))


def check_magnitude(
    frame: pd.DataFrame, columns: Sequence[str], limit: float, log: RuleLog
) -> None:
    """Log rows whose number in any of ``columns`` exceeds ``limit`` in magnitude.

    A finite but absurd quantity (1.5e308) is valid as a float, yet sums and ratios built on it
    overflow to ``inf``; it is quarantined like any other impossible value. The rule label
    carries the limit: ``<column>:too_large[abs>1e+12]``.

    Args:
        frame: The typed table.
        columns: Numeric columns to check (non-numeric ones are skipped).
        limit: The largest magnitude accepted (``ingest.max_abs_value``).
        log: Where failures go.
    """
    for column in columns:
        values = frame[column] if column in frame.columns else None
        if values is None or pd.api.types.is_bool_dtype(values):
            continue
        if not pd.api.types.is_numeric_dtype(values):
            continue
        magnitude = values.astype("float64").abs()
        log.add(
            f"{column}:{TOO_LARGE}[abs>{limit:g}]", (magnitude > limit).fillna(False), (column,)
        )


def check_reference(
    frame: pd.DataFrame, column: str, known: pd.Series, rule: str, log: RuleLog
) -> None:
    """Log rows whose ``column`` names a value not in ``known`` (missing values are not logged).

    Args:
        frame: The typed table.
        column: The referencing column, e.g. ``customer_id``.
        known: Valid key values of the referenced table.
        rule: Rule name, e.g. ``unknown_customer``.
        log: Where failures go.
    """
    if column in frame.columns:
        unknown = frame[column].notna() & ~frame[column].isin(known)
        log.add(f"{column}:{rule}", unknown, (column,))
