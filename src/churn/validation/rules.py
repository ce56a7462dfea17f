"""Row rules of the data contract, for ``churn ingest``.

Each ``check_*`` function finds the rows of one typed table that break a rule and records them
in a :class:`RuleLog` under a rule label (``"<column>:<rule>"``, or a bare rule for whole-row
rules such as ``duplicate_row``). The log then says, per row, every rule it broke, and per
rule, how many rows broke it with a few examples. Every rule is evaluated column-wise over the
whole table (vectorized numpy/pandas; no per-row Python and no text rendering), so that
validating millions of rows costs about as much as reading them (issue #14). Column-level rules
(nullability, vocabularies, ranges) were pandera checks before; names and order are kept.

Frames passed here must have a default ``RangeIndex``: positions are row numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from churn.domain.contract import OrderRule, TableSpec
from churn.validation.coerce import LABEL_INVALID, is_arrow_text, validated_dtype
from churn.validation.lookup import KnownValues, find_positions, hash_arrow_text
from churn.validation.text import RawText, take_rows

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
        calls: How many times :meth:`add` or :meth:`add_each` was called.
        order: Rule label -> (the call that first logged it, its first row); masks are in
            the order of these keys.
    """

    rows: int
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    notes: dict[str, dict[int, str]] = field(default_factory=dict)
    calls: int = 0
    order: dict[str, tuple[int, int]] = field(default_factory=dict)

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
        self.calls += 1
        self._record(rule, mask, columns, notes)

    def add_each(self, column: str, failures: pd.Series, columns: tuple[str, ...]) -> None:
        """Record ``<column>:<rule>`` for each rule named in ``failures``, in order of first row.

        One call however many rules ``failures`` names, so that the count of calls, which
        orders rules across batches (:attr:`order`), does not depend on the data.

        Args:
            column: The column the rules are about.
            failures: Per row the rule it broke (missing: none), as the coercers return.
            columns: Columns whose original values illustrate the failures.
        """
        self.calls += 1
        for rule in failures.dropna().unique():
            self._record(f"{column}:{rule}", failures.eq(rule), columns, None)

    def _record(
        self,
        rule: str,
        mask: pd.Series | np.ndarray,
        columns: tuple[str, ...],
        notes: dict[int, str] | None,
    ) -> None:
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        if rule not in self.order:
            # The call that first logged the rule and its first row: sorting by both gives
            # the order rules were first logged in, also when a table is checked in batches.
            self.order[rule] = (self.calls, int(np.argmax(mask)))
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

    def summarize(self, original: RawText, sources: Mapping[str, str]) -> dict[str, dict[str, Any]]:
        """Per rule, most frequent first: the row count and a few rows with original values.

        Args:
            original: The table as read, rendered as text on demand (user column names).
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
                    cells = [original.cell(sources.get(c, c), int(i)) for c in self.columns[rule]]
                    texts = ["<missing>" if pd.isna(c) else str(c) for c in cells]
                    value = ", ".join(texts) if texts else None
                examples.append({"row": int(i), "value": value})
            out[rule] = {"count": int(mask.sum()), "examples": examples}
        return out


@dataclass(frozen=True)
class ColumnRules:
    """The column-level rules of one column of a typed table.

    Attributes:
        column: The column.
        dtype: The dtype conversion must have given it (a mismatch is a bug, not bad data).
        nullable: Whether a missing value is allowed (else rule ``missing``).
        allowed: The closed vocabulary (empty: open), rule ``not_in_vocabulary``.
        minimum: Lower bound (inclusive), or ``None``.
        maximum: Upper bound (inclusive), or ``None``.
        vocabulary_rule: The rule name of a value outside ``allowed``.
    """

    column: str
    dtype: Any
    nullable: bool
    allowed: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    vocabulary_rule: str = NOT_IN_VOCABULARY

    @property
    def range_rule(self) -> str:
        """``out_of_range[min,max]`` with ``inf`` for an open bound."""
        low = "-inf" if self.minimum is None else f"{self.minimum:g}"
        high = "inf" if self.maximum is None else f"{self.maximum:g}"
        return f"out_of_range[{low},{high}]"


def build_column_rules(
    spec: TableSpec, columns: Sequence[str], label_column: str | None = None
) -> list[ColumnRules]:
    """The column-level rules of a typed table, in contract column order.

    Args:
        spec: The contract table.
        columns: The contract columns present in the input; absent ones are not checked.
        label_column: Entity mode: the label column, which must be 0 or 1 (checked last).

    Returns:
        One entry per checked column.
    """
    out = [
        ColumnRules(
            col.name,
            validated_dtype(col.kind),
            col.nullable,
            tuple(col.allowed),
            col.minimum,
            col.maximum,
        )
        for col in spec.columns
        if col.name in columns
    ]
    if label_column is not None:
        out.append(ColumnRules(label_column, "Int8", False, (0, 1), vocabulary_rule=LABEL_INVALID))
    return out


def check_columns(
    frame: pd.DataFrame,
    column_rules: Sequence[ColumnRules],
    conversion_failed: Mapping[str, np.ndarray],
    log: RuleLog,
) -> None:
    """Log every row that breaks a column-level rule, one vectorized pass per column.

    Per column, in order: ``missing`` (a null in a non-nullable column), then the vocabulary
    or the range (only present values are checked). These were pandera checks before; the
    rules, their names and their order in the log are unchanged.

    Args:
        frame: The typed table.
        column_rules: From :func:`build_column_rules`.
        conversion_failed: Column -> rows whose value did not convert; such values are
            missing now, but their conversion rule already says why, so they are not also
            logged as ``missing``.
        log: Where failures go.

    Raises:
        RuntimeError: A column does not have the dtype conversion should have given it (a bug
            in coercion, not bad data).
    """
    for rule in column_rules:
        values = frame[rule.column]
        if values.dtype != pd.api.types.pandas_dtype(rule.dtype):
            raise RuntimeError(
                f"ingest: column {rule.column} has dtype {values.dtype} after conversion, "
                f"expected {rule.dtype}"
            )
        missing = values.isna().to_numpy()
        failed = conversion_failed.get(rule.column, np.zeros(len(frame), dtype=bool))
        if not rule.nullable:
            log.add(f"{rule.column}:{MISSING}", missing & ~failed, (rule.column,))
        if rule.allowed:
            outside = ~missing & ~values.isin(list(rule.allowed)).to_numpy()
            log.add(f"{rule.column}:{rule.vocabulary_rule}", outside & ~failed, (rule.column,))
        if rule.minimum is not None or rule.maximum is not None:
            numbers = values.to_numpy(dtype="float64", na_value=np.nan)
            with np.errstate(invalid="ignore"):
                outside = np.zeros(len(frame), dtype=bool)
                if rule.minimum is not None:
                    outside |= numbers < rule.minimum
                if rule.maximum is not None:
                    outside |= numbers > rule.maximum
            outside &= ~missing & ~failed
            log.add(f"{rule.column}:{rule.range_rule}", outside, (rule.column,))


def _is_cheap_to_hash(values: pd.Series) -> bool:
    """Numbers, booleans and datetimes hash as fixed-width integers; text is far slower."""
    dtype = values.dtype
    return (
        pd.api.types.is_numeric_dtype(dtype)
        or pd.api.types.is_bool_dtype(dtype)
        or isinstance(dtype, pd.DatetimeTZDtype)
        or pd.api.types.is_datetime64_dtype(dtype)
    )


def hash_rows(frame: pd.DataFrame) -> np.ndarray:
    """One 64-bit hash per row of ``frame`` (of its values, not its index).

    Equal rows get equal hashes, within one frame and across frames of the same columns and
    dtypes (a table hashed batch by batch); callers compare rows sharing a hash exactly.
    Arrow-backed text is hashed by DuckDB's ``hash`` (pandas hashes it through Python
    objects: 7.6 s against about 1 s for 16M customer ids), other columns by pandas; the
    column hashes are mixed as pandas' own ``combine_hash_arrays`` does.
    """
    width = len(frame.columns)
    text = [i for i in range(width) if is_arrow_text(frame.iloc[:, i])]
    text_hashes = dict(zip(text, hash_arrow_text([frame.iloc[:, i] for i in text]), strict=True))
    combined = np.full(len(frame), 0x345678, dtype=np.uint64)
    multiplier = np.uint64(1_000_003)
    with np.errstate(over="ignore"):
        for i in range(width):
            if i in text_hashes:
                hashed = text_hashes[i]
            else:
                hashed = pd.util.hash_pandas_object(frame.iloc[:, i], index=False).to_numpy()
            combined = (combined ^ hashed) * multiplier
            multiplier += np.uint64(82_520 + 2 * (width - i))
        combined += np.uint64(97_531)
    return combined


_BUCKET_BITS = 25
"""At most 2**25 buckets (a 256 MB count array) per round of :func:`find_shared_values`."""


def find_shared_values(values: np.ndarray) -> np.ndarray:
    """``pd.Series(values).duplicated(keep=False)`` of 64-bit hashes, as a numpy array.

    A hash table over millions of distinct values is slow (a cache miss per value), while
    almost every value is unique. So rows are first bucketed by slices of their bits with a
    count per bucket (``np.bincount``): a value alone in its bucket is alone in the column.
    Equal values share every bucket, so what remains is a superset of the answer, small
    enough for pandas' exact ``duplicated`` (the idea of a counting prefilter, as in
    radix-partitioned hash joins; written here from scratch).

    Args:
        values: ``uint64`` (or ``int64``) values, e.g. row hashes.

    Returns:
        One boolean per value: does it occur more than once.
    """
    bits = values.view(np.uint64) if values.dtype == np.int64 else values.astype(np.uint64)
    candidates = np.arange(len(bits))
    for shift in (0, 20, 39):  # three overlapping slices of 25 bits cover all 64
        if len(candidates) < 4096:
            break
        width = min(_BUCKET_BITS, max(12, int(np.ceil(np.log2(2 * len(candidates))))))
        buckets = ((bits[candidates] >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(
            np.int64
        )
        crowded = np.bincount(buckets, minlength=1 << width)[buckets] > 1
        candidates = candidates[crowded]
    shared = np.zeros(len(bits), dtype=bool)
    if len(candidates):
        shared[candidates] = pd.Series(bits[candidates]).duplicated(keep=False).to_numpy()
    return shared


def _take_frame_rows(frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    """``frame.iloc[positions]`` column by column with :func:`take_rows` (no chunk concat)."""
    return pd.DataFrame(
        {i: take_rows(frame.iloc[:, i], positions) for i in range(frame.shape[1])},
        index=frame.index[positions],
    ).set_axis(frame.columns, axis=1)


def find_duplicated_rows(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``frame.duplicated(keep="first")`` and, per duplicate, the row it copies.

    Exact, but computed on row hashes to be fast on millions of rows: rows can only be equal
    if their numbers and timestamps are, so those columns are hashed first (cheap) and only
    rows sharing that hash are hashed in full; only rows whose full hash repeats are then
    compared column by column by pandas. A hash collision can only cost time.

    Args:
        frame: Any table (at least one column).

    Returns:
        One boolean per row (True for every copy of an earlier row), and per row the position
        of the first row with the same full hash (meaningful where the boolean is True).
    """
    positions = np.arange(len(frame))
    cheap = [c for c in frame.columns if _is_cheap_to_hash(frame[c])]
    if cheap and len(cheap) < len(frame.columns):
        positions = np.flatnonzero(find_shared_values(hash_rows(frame[cheap])))
    duplicate = np.zeros(len(frame), dtype=bool)
    first = np.arange(len(frame))
    if len(positions) == 0:
        return duplicate, first
    hashes = hash_rows(_take_frame_rows(frame, positions))
    shared = find_shared_values(hashes)
    if shared.any():
        candidates = positions[shared]  # ascending, so "first" keeps its meaning
        duplicate[candidates] = (
            _take_frame_rows(frame, candidates).duplicated(keep="first").to_numpy()
        )
        lowest = pd.Series(candidates).groupby(hashes[shared]).transform("min").to_numpy()
        first[candidates] = lowest
    return duplicate, first


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
    duplicate, first = find_duplicated_rows(compare)
    if duplicate.any():
        # `first` names the original row in examples; a collision would merely mislabel one.
        notes = {int(i): f"same as row {first[i]}" for i in np.flatnonzero(duplicate)[:EXAMPLES]}
        log.add(DUPLICATE_ROW, duplicate, (), notes)
    if not key or not all(k in frame.columns for k in key):
        return
    # Rows without a full key already fail `missing`; exact copies are already handled.
    candidates = ~duplicate & frame[list(key)].notna().all(axis=1).to_numpy()
    positions = np.flatnonzero(candidates)
    mask = np.zeros(len(frame), dtype=bool)
    shared = frame.iloc[positions][list(key)].duplicated(keep=False).to_numpy()
    mask[positions[shared]] = True
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
    frame: pd.DataFrame, column: str, known: pd.Series | KnownValues, rule: str, log: RuleLog
) -> np.ndarray | None:
    """Log rows whose ``column`` names a value not in ``known`` (missing values are not logged).

    Args:
        frame: The typed table.
        column: The referencing column, e.g. ``customer_id``.
        known: Valid key values of the referenced table (a :class:`KnownValues` when the
            same keys are looked up batch after batch).
        rule: Rule name, e.g. ``unknown_customer``.
        log: Where failures go.

    Returns:
        Each row's position in ``known`` (-1: missing or unknown; see :func:`find_positions`),
        so a caller can tell which keys are referenced without hashing the values again;
        ``None`` when ``frame`` has no ``column``.
    """
    if column not in frame.columns:
        return None
    values = frame[column]
    if isinstance(known, KnownValues):
        positions = known.find_positions(values)
    else:
        positions = find_positions(values, known)
    unknown = values.notna().to_numpy() & (positions < 0)
    log.add(f"{column}:{rule}", unknown, (column,))
    return positions
