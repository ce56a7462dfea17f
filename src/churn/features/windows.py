"""Windowed sums of bucketed aggregates: each key's window is a slice of its customer's buckets.

:func:`churn.features.common.bucketed_sql` sums a table per (customer, bucket), where the
buckets cut the time line at every cutoff and window start (see :mod:`churn.features.common`),
so a window ``[T - w, T)`` is exactly the buckets that start in it. Sorted by (customer,
bucket start), those buckets are one contiguous slice, found by a binary search for ``T - w``
and ``T``; each window sum is then a sum over a slice (``numpy.add.reduceat``).

Why not SQL: the same sums as a join of every key with its window's buckets and a GROUP BY
over the pairs (115M pairs into 9.5M keys with 21 sums at 1M customers) held more state than
DuckDB's default 4 GB limit and spilled: 38 s, 18 s with 12 GB (2026-12-06, see
docs/benchmarks-log.md). Here DuckDB only filters and sorts the buckets, a customer range at a
time, so Python holds one chunk's arrays (``chunk_rows`` buckets) and the finished rows go
back to DuckDB chunk by chunk.

NULL follows SQL's ``sum``: a window sum is NULL when no bucket of the window has a value (no
bucket at all, or only NULLs), and a key gets a row only when its largest window holds a
bucket, as an inner join of keys, windows and buckets would give. Integer sums are exact;
float sums add the slice's values in time order (DuckDB's parallel sum has no fixed order,
so both agree to rounding, and exactly for integer-valued data).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from churn.features.common import DAY_BUCKET, FIRST_BUCKET_DAY, KEYS, PREHISTORY
from churn.sql import fetch_scalar

CHUNK_ROWS = 4_000_000
"""Buckets per chunk: the arrays of one chunk (and the keys of its customers) in memory."""

_CHUNK_TABLE = "_windowed_chunk"
_RANGE = "/* customer range */"
_CODES_TABLE = "_windowed_customer_codes"
_INTEGER_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER"}
)


@dataclass(frozen=True)
class WindowedSums:
    """A family step computing windowed sums (see the module docstring).

    Called with the session's connection and the step's table name, it creates that table:
    ``customer_id``, ``cutoff`` and one column per output.

    Attributes:
        bucketed: A relation of :func:`churn.features.common.bucketed_sql`: ``customer_id``
            (the session's integer customer keys; other ids are coded in their sort order),
            ``bucket_start`` and the values.
        outputs: ``(name, expression over b, window_days)``, e.g.
            ``("usage_events_last_7d", "b.quantity", 7)``; the expression is evaluated per
            bucket and summed over the buckets of the window.
        chunk_rows: Buckets per chunk.
    """

    bucketed: str
    outputs: tuple[tuple[str, str, int], ...]
    chunk_rows: int = CHUNK_ROWS

    def __call__(self, con: duckdb.DuckDBPyConnection, table: str) -> None:
        create_windowed_sums(con, table, self.bucketed, self.outputs, self.chunk_rows)


def create_windowed_sums(
    con: duckdb.DuckDBPyConnection,
    table: str,
    bucketed: str,
    outputs: Sequence[tuple[str, str, int]],
    chunk_rows: int = CHUNK_ROWS,
) -> None:
    """Create ``table`` with each key's sums of ``bucketed`` over its windows.

    Args:
        con: The features session: ``_keys``, the bucket grid and the session variable
            :data:`~churn.features.common.FIRST_BUCKET_DAY` are set.
        table: The temporary table to create.
        bucketed: As :attr:`WindowedSums.bucketed`.
        outputs: As :attr:`WindowedSums.outputs`.
        chunk_rows: Buckets per chunk (at least 1).

    Raises:
        ValueError: If there are no outputs, ``chunk_rows`` is below 1 or an output's window
            does not start where the grid cuts the time line (its sums would be wrong).
    """
    if not outputs:
        raise ValueError("windowed sums need at least one output")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    expressions = list(dict.fromkeys(expression for _, expression, _ in outputs))
    values = [
        f"{expression}::{_sum_type(con, bucketed, expression)} AS _v{i}"
        for i, expression in enumerate(expressions)
    ]
    first_day = f"getvariable('{FIRST_BUCKET_DAY}')"
    _check_window_starts(con, sorted({days for _, _, days in outputs}))
    buckets_from, keys_from = f"{bucketed} AS b", f"{KEYS} AS k"
    # Days from the grid's first day to the last cutoff: every key's and bucket's day is below.
    last_day = fetch_scalar(con, f"SELECT date_diff('day', {first_day}, max(cutoff)) FROM {KEYS}")
    span = int(last_day or 0) + 1
    if _is_integer(con, KEYS, "b.customer_id") and _fits_codes(con, span):
        bucket_code, key_code = "b.customer_id", "k.customer_id"
    else:
        # Other ids (text, or integers too large to combine with a day) get integer codes in
        # their sort order, shared by both sides.
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {_CODES_TABLE} AS SELECT customer_id, "
            "row_number() OVER (ORDER BY customer_id) AS _code "
            f"FROM (SELECT DISTINCT customer_id FROM {KEYS})"
        )
        buckets_from += f" JOIN {_CODES_TABLE} AS bc ON bc.customer_id = b.customer_id"
        keys_from += f" JOIN {_CODES_TABLE} AS kc ON kc.customer_id = k.customer_id"
        bucket_code, key_code = "bc._code", "kc._code"
    in_grid = f"b.bucket_start > {PREHISTORY}"
    bucket_query = (
        f"SELECT {bucket_code} AS _code, date_diff('day', {first_day}, b.bucket_start) AS _day, "
        f"{', '.join(values)} FROM {buckets_from} WHERE {in_grid} AND {_RANGE} "
        f"ORDER BY {bucket_code}, b.bucket_start"
    )
    key_query = (
        f"SELECT {key_code} AS _code, k.customer_id, k.cutoff, "
        f"date_diff('day', {first_day}, k.cutoff) AS _day "
        f"FROM {keys_from} WHERE {_RANGE} ORDER BY {key_code}, k.cutoff"
    )
    n_buckets = int(fetch_scalar(con, f"SELECT count(*) FROM {buckets_from} WHERE {in_grid}"))
    ranges = _code_ranges(con, bucket_code, buckets_from, in_grid, n_buckets, chunk_rows)
    for number, (low, high) in enumerate(ranges):
        buckets = con.sql(bucket_query.replace(_RANGE, _range(bucket_code, low, high)))
        keys = con.sql(key_query.replace(_RANGE, _range(key_code, low, high)))
        sums = _window_sums(
            buckets.to_arrow_table(), keys.to_arrow_table(), outputs, expressions, span
        )
        con.register(_CHUNK_TABLE, sums)
        try:
            if number == 0:
                con.execute(f"CREATE TEMP TABLE {table} AS SELECT * FROM {_CHUNK_TABLE}")
            else:
                con.execute(f"INSERT INTO {table} SELECT * FROM {_CHUNK_TABLE}")
        finally:
            con.unregister(_CHUNK_TABLE)
    con.execute(f"DROP TABLE IF EXISTS {_CODES_TABLE}")


def _check_window_starts(con: duckdb.DuckDBPyConnection, windows: Sequence[int]) -> None:
    """Fail unless every key's window starts where a bucket starts (the grid's windows).

    Raises:
        ValueError: Naming a window the bucket grid was not cut for: its sums would take
            whole buckets across its start and be silently wrong.
    """
    days = ", ".join(f"({int(w)})" for w in windows)
    missing = con.execute(
        f"SELECT DISTINCT w.days FROM (SELECT DISTINCT cutoff FROM {KEYS}) AS k, "
        f"(VALUES {days}) AS w(days) WHERE NOT EXISTS (SELECT 1 FROM {DAY_BUCKET} AS g "
        "WHERE g.bucket_start = k.cutoff - to_days(w.days::INTEGER)) ORDER BY 1"
    ).fetchall()
    if missing:
        raise ValueError(
            f"windows {[row[0] for row in missing]} days: the bucket grid is not cut at their "
            "starts (build_bucket_grid with every window the sums use)"
        )


def _fits_codes(con: duckdb.DuckDBPyConnection, span: int) -> bool:
    """Whether ``customer_id * span + day`` stays within 64 bits for every key's integer id."""
    largest = fetch_scalar(con, f"SELECT max(abs(customer_id::HUGEINT)) FROM {KEYS}")
    return int(largest or 0) * span < 2**62


def _is_integer(con: duckdb.DuckDBPyConnection, relation: str, expression: str) -> bool:
    """Whether ``expression`` over ``relation AS b`` has an integer type."""
    (kind,) = con.sql(f"SELECT {expression} FROM {relation} AS b LIMIT 0").types
    return str(kind) in _INTEGER_TYPES


def _sum_type(con: duckdb.DuckDBPyConnection, relation: str, expression: str) -> str:
    """BIGINT for an integer expression over ``relation AS b`` (exact sums), else DOUBLE."""
    return "BIGINT" if _is_integer(con, relation, expression) else "DOUBLE"


def _code_ranges(
    con: duckdb.DuckDBPyConnection,
    code: str,
    buckets_from: str,
    in_grid: str,
    n_buckets: int,
    chunk_rows: int,
) -> list[tuple[int | None, int | None]]:
    """Half-open customer code ranges of about ``chunk_rows`` buckets each (open at both ends)."""
    chunks = max(1, math.ceil(n_buckets / chunk_rows))
    if chunks == 1:
        return [(None, None)]
    quantiles = ", ".join(str(i / chunks) for i in range(1, chunks))
    edges = fetch_scalar(
        con, f"SELECT approx_quantile({code}, [{quantiles}]) FROM {buckets_from} WHERE {in_grid}"
    )
    cuts = sorted({int(edge) for edge in edges})
    bounds: list[int | None] = [None, *cuts, None]
    return list(itertools.pairwise(bounds))


def _range(code: str, low: int | None, high: int | None) -> str:
    conditions = ["TRUE"]
    if low is not None:
        conditions.append(f"{code} >= {low}")
    if high is not None:
        conditions.append(f"{code} < {high}")
    return " AND ".join(conditions)


def _window_sums(
    buckets: pa.Table,
    keys: pa.Table,
    outputs: Sequence[tuple[str, str, int]],
    expressions: Sequence[str],
    span: int,
) -> pa.Table:
    """One chunk's rows: the keys whose largest window holds a bucket, with every sum."""
    bucket_customer = buckets.column("_code").to_numpy().astype(np.int64)
    key_customer = keys.column("_code").to_numpy().astype(np.int64)
    # (customer, day) as one sortable integer; buckets arrive sorted by it.
    codes = bucket_customer * span + buckets.column("_day").to_numpy().astype(np.int64)
    key_codes = key_customer * span + keys.column("_day").to_numpy().astype(np.int64)
    ends = np.searchsorted(codes, key_codes, side="left")
    starts = {
        days: np.searchsorted(codes, key_codes - days, side="left")
        for days in sorted({days for _, _, days in outputs})
    }
    kept = ends > starts[max(starts)]
    ends = ends[kept]
    starts = {days: start[kept] for days, start in starts.items()}
    kept_keys = keys.select(["customer_id", "cutoff"]).filter(pa.array(kept))
    columns: dict[str, pa.Array] = {
        name: kept_keys.column(name).combine_chunks() for name in ("customer_id", "cutoff")
    }
    position = {expression: i for i, expression in enumerate(expressions)}
    prepared = [_values_and_counts(buckets.column(f"_v{i}")) for i in range(len(expressions))]
    for name, expression, days in outputs:
        values, counts = prepared[position[expression]]
        start = starts[days]
        present = counts[ends] - counts[start] > 0
        columns[name] = pa.array(_slice_sums(values, start, ends), mask=~present)
    return pa.table(columns)


def _values_and_counts(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """The values with NULL as 0 and one 0 appended (a slice may end one past the last
    value), and the running count of non-NULL values from 0."""
    values = pc.fill_null(column, 0).to_numpy()
    values = np.append(values, values.dtype.type(0))
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    counts = np.zeros(len(valid) + 1, dtype=np.int64)
    np.cumsum(valid, out=counts[1:])
    return values, counts


def _slice_sums(padded: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``padded[starts[i]:ends[i]].sum()`` for every i (0 for an empty slice).

    ``padded`` ends with one value past every slice (as :func:`_values_and_counts` returns).

    ``reduceat`` sums between consecutive indices, so starts and ends are interleaved and
    every other result kept; keys in (customer, cutoff) order keep the discarded gaps short.
    """
    if not len(starts):
        return np.zeros(0, dtype=padded.dtype)
    indices = np.empty(2 * len(starts), dtype=np.int64)
    indices[0::2] = starts
    indices[1::2] = ends
    sums = np.add.reduceat(padded, indices)[0::2]
    sums[starts == ends] = 0
    return sums
