"""Value coercion for ``churn ingest``: turn raw columns into contract types, row by row.

Raw tables arrive as read from CSV (every column text) or Parquet (typed, or text). Each helper
here converts one column to its contract dtype and says, per row, why a value could not be
converted, so that ingest can quarantine exactly the bad rows instead of failing the table.

The contract-column coercers return a :class:`Coerced` pair: the typed values (missing where
the input was missing *or* unconvertible) and a rule name per row (``<NA>`` where the value
converted or was missing in the input). Missing input values are not failures here (except for
the entity-mode label): nullability is a separate rule
(:func:`churn.validation.rules.check_columns`).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churn.domain.contract import COLUMN_DTYPES, NUMERIC_SHARE, TIMESTAMP_DTYPE

UTC_DTYPE = TIMESTAMP_DTYPE
"""The dtype of every validated timestamp column."""

NOT_A_NUMBER = "not_a_number"
NOT_AN_INTEGER = "not_an_integer"
NOT_A_TIMESTAMP = "not_a_timestamp"
NOT_A_BOOL = "not_a_bool"
LABEL_INVALID = "label_invalid"

_TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "1.0"})
_FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "0.0"})
_LABEL_TRUE = frozenset({"1", "1.0", "true", "yes"})
_LABEL_FALSE = frozenset({"0", "0.0", "false", "no"})

# An explicit UTC offset ("Z", "+02:00", "-0500", "+02") after a time of day. The time part is
# required because a bare date such as "2025-01-01" also ends in "-<two digits>".
_OFFSET_RE = re.compile(
    r"[T ]\d{1,2}(?::?\d{2}(?::?\d{2}(?:[.,]\d+)?)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$",
    re.IGNORECASE,
)

# Integers beyond this are not exactly representable as float64, so they cannot be trusted.
_MAX_SAFE_INTEGER = 2.0**53

# The same pattern for Arrow's RE2 engine, for ASCII text only: there Python's Unicode `\d`
# and `\s` are the ASCII digits and [\t\n\v\f\r\x1c-\x1f ] (RE2's `\s` lacks \v and
# \x1c-\x1f), and Python's `$` also matches before a final newline. Text with other
# characters goes through `_OFFSET_RE` itself, so both give the same answer on every value.
_ASCII_OFFSET_RE2 = (
    r"(?i)[T ][0-9]{1,2}(?::?[0-9]{2}(?::?[0-9]{2}(?:[.,][0-9]+)?)?)?[\t\n\x0b\f\r\x1c-\x1f ]*"
    r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)\n?$"
)


class Coerced(NamedTuple):
    """A column converted to its contract dtype.

    Attributes:
        values: The typed values, missing where the input was missing or unconvertible.
        failures: Per row, the name of the rule the value broke (``<NA>`` if none).
    """

    values: pd.Series
    failures: pd.Series


def _object_to_text(value: Any) -> str | None:
    """Render one Python object as text; datetimes as ISO 8601 so they keep their offset."""
    if isinstance(value, str):
        return value
    if isinstance(value, dt.date):  # also datetime and pd.Timestamp
        return None if value is pd.NaT else value.isoformat()
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):  # list-like cells: pd.isna returns an array
        pass
    return str(value)


def to_text(values: pd.Series) -> pd.Series:
    """Render a column as pandas ``str`` exactly as read (missing stays missing).

    Args:
        values: Any column.

    Returns:
        A ``str`` column with the same index.
    """
    if values.dtype == object:
        values = values.map(_object_to_text)
    return values.astype("str")


def is_arrow_text(values: pd.Series) -> bool:
    """Whether ``values`` is text stored in Arrow (the validated tables' string dtype).

    Such columns take the Arrow compute paths of validation (blank cells, offsets, lookups,
    hashes, row selection); other dtypes take pandas' own.
    """
    dtype = values.dtype
    return isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"


def _is_blank(text: pd.Series) -> np.ndarray:
    """``text.str.strip().eq("")`` without building the stripped copy of every cell.

    For Arrow-backed text, pandas strips with Arrow's ``utf8_trim_whitespace``; a cell strips
    to nothing exactly when it is empty or all of it is whitespace by the same definition
    (Arrow's ``utf8_is_space``; the tests compare both on every code point).
    """
    if not is_arrow_text(text):
        return text.str.strip().eq("").to_numpy(dtype=bool)
    values = pa.array(text.array)
    blank = pc.or_(pc.equal(pc.binary_length(values), 0), pc.utf8_is_space(values))
    return np.asarray(blank.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def to_clean_text(values: pd.Series) -> pd.Series:
    """Like :func:`to_text`, but blank (whitespace-only) cells become missing.

    CSV exports often write an empty or space-only cell for "no value"; treating it as a value
    would turn every such cell into a type failure.
    """
    text = to_text(values)
    blank = _is_blank(text)
    # Copying 17M cells to blank out none of them cost more than the check itself.
    return text.where(~blank) if blank.any() else text


def _rules_where(failed: np.ndarray, rule: str, index: pd.Index) -> pd.Series:
    """A ``str`` column holding ``rule`` where ``failed`` and missing elsewhere.

    Built as an Arrow array: a pandas ``str`` column made from Python objects costs about a
    second per 17M rows, this a few milliseconds.
    """
    text = pa.large_string()
    rules = pc.if_else(pa.array(failed, pa.bool_()), pa.scalar(rule, text), pa.scalar(None, text))
    return rules.to_pandas().set_axis(index)


def _failures(present: pd.Series, converted: pd.Series, rule: str) -> pd.Series:
    """Name ``rule`` on rows that had a value but did not convert."""
    failed = (present & converted.isna()).to_numpy(dtype=bool)
    return _rules_where(failed, rule, present.index)


def _none_failed(index: pd.Index) -> pd.Series:
    return pa.nulls(len(index), pa.large_string()).to_pandas().set_axis(index)


def has_only_whole_floats(values: pd.Series) -> bool:
    """Whether every present value of a float column is a whole number below 2**53."""
    finite = values.dropna()
    return bool(finite.eq(np.floor(finite)).all() and finite.abs().lt(_MAX_SAFE_INTEGER).all())


def coerce_string(values: pd.Series, whole: bool | None = None) -> Coerced:
    """Convert a column to pandas ``str`` (identifiers and category columns).

    Whole floats read from Parquet (``123.0``, typical of an integer id column with gaps) are
    written without the ``.0`` so they match the same id stored as text elsewhere; only when
    every value of the column is whole (:func:`has_only_whole_floats`).

    Args:
        values: The raw column.
        whole: For a float column: whether all of the *table's* values are whole, when
            ``values`` is a batch of it; ``None``: decided on ``values``.

    Returns:
        The text column; text conversion never fails.
    """
    if pd.api.types.is_float_dtype(values.dtype) and (
        has_only_whole_floats(values) if whole is None else whole
    ):
        values = values.astype("Int64")
    return Coerced(to_clean_text(values), _none_failed(values.index))


# One comma between digits and no point: a decimal comma ("29,85"). Exactly three digits after
# it ("1,234") could as well be a thousands separator, so such text is not guessed.
_DECIMAL_COMMA_RE = re.compile(r"^[+-]?\d*,(?:\d{1,2}|\d{4,})$")


def _decimal_points(text: pd.Series) -> pd.Series:
    """Rewrite decimal commas ("29,85", "-0,5") as points; other text is left as it is."""
    comma = text.str.match(_DECIMAL_COMMA_RE, na=False)
    return text.where(~comma, text.str.replace(",", ".", regex=False))


def coerce_float(values: pd.Series) -> Coerced:
    """Convert a column to ``float64``; text that is not a finite number fails ``not_a_number``.

    Blank cells are missing, not failures. A decimal comma (``"29,85"``, as European exports
    write it) is read as a decimal point; ``"1,234"`` is ambiguous (a thousands separator?) and
    fails ``not_a_number`` rather than being guessed.

    Args:
        values: The raw column.

    Returns:
        The ``float64`` column and per-row failures.
    """
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        numbers = values.astype("float64")
        present = values.notna()
    else:
        text = to_clean_text(values)
        present = text.notna()
        numbers = pd.to_numeric(_decimal_points(text.str.strip()), errors="coerce")
        numbers = numbers.astype("float64")
    # Infinity parses as a number but is never a meaningful amount, count or score.
    numbers = numbers.where(np.isfinite(numbers))
    return Coerced(numbers, _failures(present, numbers, NOT_A_NUMBER))


def coerce_int(values: pd.Series) -> Coerced:
    """Convert a column to nullable ``Int64``.

    Args:
        values: The raw column.

    Returns:
        The ``Int64`` column and per-row failures (``not_a_number``, or ``not_an_integer`` for
        numbers with a fractional part).
    """
    numbers, failures = coerce_float(values)
    fractional = numbers.notna() & (
        numbers.ne(np.floor(numbers)) | numbers.abs().ge(_MAX_SAFE_INTEGER)
    )
    failures = failures.mask(fractional, NOT_AN_INTEGER)
    integers = numbers.where(~fractional).astype("Int64")
    return Coerced(integers, failures)


def _parse_words(
    values: pd.Series, true_words: frozenset[str], false_words: frozenset[str]
) -> pd.Series:
    """Map yes/no-like values to a nullable ``boolean`` column (unknown words: missing)."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("boolean")
    if pd.api.types.is_numeric_dtype(values.dtype):
        numbers = values.astype("float64")
        return numbers.map({1.0: True, 0.0: False}).astype("boolean")
    words = to_clean_text(values).str.strip().str.lower()
    mapping = dict.fromkeys(true_words, True) | dict.fromkeys(false_words, False)
    return words.map(mapping).astype("boolean")


def coerce_bool(values: pd.Series) -> Coerced:
    """Convert a column to nullable ``boolean`` (true/false, yes/no, t/f, y/n, 1/0).

    Args:
        values: The raw column.

    Returns:
        The ``boolean`` column and per-row failures (``not_a_bool``).
    """
    flags = _parse_words(values, _TRUE_WORDS, _FALSE_WORDS)
    present = to_clean_text(values).notna()
    return Coerced(flags, _failures(present, flags, NOT_A_BOOL))


def coerce_label(values: pd.Series) -> Coerced:
    """Convert an entity-mode churn label to ``Int8`` (1 churned, 0 stayed).

    Accepts 0/1, true/false and yes/no in any case. Unlike other columns a missing label is a
    failure too: a customer without a label can be neither trained on nor evaluated.

    Args:
        values: The raw label column.

    Returns:
        The ``Int8`` column and per-row failures (``label_invalid``).
    """
    flags = _parse_words(values, _LABEL_TRUE, _LABEL_FALSE)
    labels = flags.astype("Int8")
    present = pd.Series(True, index=values.index)
    return Coerced(labels, _failures(present, labels, LABEL_INVALID))


def coerce_attribute(values: pd.Series, numeric_share: float = NUMERIC_SHARE) -> Coerced:
    """Convert an entity-mode attribute column: numbers to ``float64``, anything else to ``str``.

    The inference rule: a text column is numeric when at least ``numeric_share`` (99%) of its
    non-blank values parse as finite numbers (decimal commas included, see
    :func:`coerce_float`); the values that do not parse then fail ``not_a_number`` (the rows are
    quarantined and counted under the column's rule), rather than turning the whole column
    into a category. Below that share it is text: a column of codes with a few letters stays
    categorical without losing any value. Blank cells are missing either way.

    Args:
        values: The raw attribute column.
        numeric_share: Share of non-blank values that must parse for the column to be numeric.

    Returns:
        The converted column and per-row failures (only for a numeric column's unparsable
        values; text conversion never fails).
    """
    no_failures = _none_failed(values.index)
    if pd.api.types.is_bool_dtype(values.dtype):
        # Text, like the "true"/"false" a CSV export of the same column would hold.
        return Coerced(to_clean_text(values), no_failures)
    if pd.api.types.is_numeric_dtype(values.dtype):
        return Coerced(values.astype("float64"), no_failures)
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(
        values.dtype
    ):
        return Coerced(to_clean_text(values), no_failures)
    numbers, failures = coerce_float(values)
    present = int(to_clean_text(values).notna().sum())
    parsed = int(numbers.notna().sum())
    if present and parsed >= numeric_share * present:
        return Coerced(numbers, failures)
    return Coerced(to_clean_text(values), no_failures)


def _localize(naive: pd.Series, timezone: str) -> pd.Series:
    """Read naive wall-clock times in ``timezone`` and convert them to UTC.

    Wall-clock times that occur twice (the hour repeated when DST ends) are read as the first
    occurrence (summer time), like ``zoneinfo`` with ``fold=0``; times that do not exist (the
    hour skipped when DST starts) are moved forward to the first valid instant. Both are
    deterministic and off by at most an hour, which is better than quarantining the row.
    """
    naive = naive.dt.as_unit("us")
    if timezone == "UTC":
        return naive.dt.tz_localize("UTC")
    local = naive.dt.tz_localize(
        timezone, ambiguous=np.ones(len(naive), dtype=bool), nonexistent="shift_forward"
    )
    return local.dt.tz_convert("UTC")


def _parse_iso(value: str) -> pd.Timestamp | None:
    """Parse one ISO 8601 string, or return ``None`` when it is not one."""
    try:
        stamp = pd.to_datetime(value, format="ISO8601")
    except ValueError:
        return None
    return None if stamp is pd.NaT else stamp


def has_utc_offset(text: pd.Series) -> pd.Series:
    """Per value: does it end in an explicit UTC offset (``_OFFSET_RE``); missing: False.

    Evaluated by Arrow's regex engine on ASCII text (one vectorised pass instead of a Python
    call per row, issue #14) and by Python's ``re`` on the rare other values.

    Args:
        text: A ``str`` column.

    Returns:
        A boolean column with the same index.
    """
    if not is_arrow_text(text):
        return text.str.contains(_OFFSET_RE, na=False)
    values = pa.array(text.array)
    found = pc.match_substring_regex(values, pattern=_ASCII_OFFSET_RE2)
    found = np.asarray(found.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    other = np.flatnonzero(
        ~pc.string_is_ascii(values).fill_null(True).to_numpy(zero_copy_only=False)
    )
    for i in other:
        found[i] = _OFFSET_RE.search(text.iloc[i]) is not None
    return pd.Series(found, index=text.index)


def _parse_text_timestamps(text: pd.Series, timezone: str) -> pd.Series:
    """Parse ISO 8601 text; values with an offset keep it, naive ones are read in ``timezone``.

    pandas refuses to parse offset and naive strings together (and ``utc=True`` would read
    the naive ones as UTC), so the two groups are parsed separately. ``text`` must have a
    unique index.
    """
    has_offset = has_utc_offset(text.str.strip())
    naive_text = text[~has_offset & text.notna()]
    aware_text = text[has_offset]
    try:
        naive = pd.to_datetime(naive_text, format="ISO8601", errors="coerce")
    except ValueError:
        # pandas found offsets the pattern does not know ("+2") among naive values, and will
        # not mix them; sort those out one by one (slow, but only on such unusual input).
        aware = naive_text.map(lambda v: getattr(_parse_iso(v), "tzinfo", None) is not None)
        aware = aware.astype(bool)
        aware_text = pd.concat([aware_text, naive_text[aware]])
        naive = pd.to_datetime(naive_text[~aware], format="ISO8601", errors="coerce")
    if isinstance(naive.dtype, pd.DatetimeTZDtype):
        # Every value of the "naive" group had such an offset: they are instants already.
        aware_text = pd.concat([aware_text, naive_text])
        naive = pd.Series([], dtype="datetime64[us]")
    # RFC 3339 allows a lowercase "z", which pandas does not read.
    aware_text = aware_text.str.strip().str.replace(r"z$", "Z", regex=True)
    parts = [
        pd.to_datetime(aware_text, utc=True, format="ISO8601", errors="coerce").dt.as_unit("us"),
        _localize(naive, timezone),
    ]
    parts = [part for part in parts if len(part)]
    if not parts:
        return pd.Series(pd.NaT, index=text.index, dtype=UTC_DTYPE)
    return pd.concat(parts).reindex(text.index).astype(UTC_DTYPE)


def parse_timestamps(values: pd.Series, timezone: str) -> Coerced:
    """Convert a column to ``datetime64[us, UTC]``.

    Accepts typed timestamps (aware: converted; naive: read in ``timezone``), Python datetime
    objects, and ISO 8601 text with mixed offsets (``...+02:00``, ``...Z``) or none. Naive
    values are wall-clock times in ``timezone`` (an IANA zone, so DST is honoured). Other text
    (``01/02/2025``, whose day and month order is ambiguous) fails ``not_a_timestamp`` rather
    than being guessed.

    Args:
        values: The raw column.
        timezone: IANA zone for naive values.

    Returns:
        The UTC column and per-row failures (``not_a_timestamp``).
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        stamps = values.dt.tz_convert("UTC").astype(UTC_DTYPE)
        return Coerced(stamps, _none_failed(values.index))
    if pd.api.types.is_datetime64_dtype(values.dtype):
        stamps = _localize(values, timezone).astype(UTC_DTYPE)
        return Coerced(stamps, _none_failed(values.index))
    text = to_clean_text(values)
    present = text.notna()
    if pd.api.types.is_numeric_dtype(values.dtype):
        # Epoch numbers are ambiguous (seconds? milliseconds?): refuse rather than guess.
        stamps = pd.Series(pd.NaT, index=values.index, dtype=UTC_DTYPE)
    else:
        stamps = _parse_text_timestamps(text, timezone)
    return Coerced(stamps, _failures(present, stamps, NOT_A_TIMESTAMP))


def empty_column(kind: str, length: int) -> pd.Series:
    """An all-missing column of the validated dtype for a contract column kind.

    Args:
        kind: Contract column kind (``string``, ``category``, ``timestamp``, ``float``,
            ``int``, ``bool``).
        length: Number of rows.

    Returns:
        The column, with a default ``RangeIndex``.
    """
    return pd.Series([None] * length, dtype=validated_dtype(kind))


def validated_dtype(kind: str) -> Any:
    """The dtype a validated column of contract kind ``kind`` has (:data:`COLUMN_DTYPES`)."""
    return COLUMN_DTYPES[kind]


def coerce_column(
    values: pd.Series, kind: str, timezone: str, whole: bool | None = None
) -> Coerced:
    """Convert a raw column to the validated dtype of contract kind ``kind``.

    Args:
        values: The raw column.
        kind: Contract column kind.
        timezone: IANA zone for naive timestamps.
        whole: Text kinds: see :func:`coerce_string`.

    Returns:
        The typed column and per-row failures.
    """
    if kind == "timestamp":
        return parse_timestamps(values, timezone)
    if kind == "float":
        return coerce_float(values)
    if kind == "int":
        return coerce_int(values)
    if kind == "bool":
        return coerce_bool(values)
    return coerce_string(values, whole)
