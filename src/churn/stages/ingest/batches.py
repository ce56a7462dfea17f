"""Validate one large table in batches, with the same outputs as :func:`validate_table` (issue #14).

A table with more rows than ``ingest.batch_rows`` is never held whole: its valid and
quarantined rows are written batch by batch, so memory is bounded by the batch size plus a
few bytes of state per row. Most rules look at one row only
(:func:`~churn.stages.ingest.rows.prepare_rows`,
:func:`~churn.stages.ingest.rows.check_row_order_and_future`); these need the whole table,
and are kept exact as follows:

* **Whole floats** in text columns (an integer id column with gaps read as floats): written
  without ``.0`` only if *every* value of the column is whole. A first pass over just those
  columns decides it for the table (skipped when no text column is stored as floats).
* **Duplicate rows** (all but the first copy) and **duplicate keys** (all rows sharing a key
  but differing): the scan keeps one 64-bit hash per row (of every typed column) and one of
  the key. Rows whose hash is shared are candidates, a superset of every copy; they alone
  are read again and compared exactly by the in-memory functions
  (:func:`~churn.validation.rules.find_duplicated_rows`, ``duplicated``), so the same copy
  is kept and the same rows are quarantined, whatever the batch boundaries.
* **Data end** (the density of event days) and rows stamped after it: the scan keeps each
  row's event time (8 bytes) and whether it broke a one-row rule; with the duplicates known,
  the end is computed from the event times of the remaining rows, exactly as in memory.
* **Text formats**: pandas formats a datetime column as text from its finest value; the few
  values that decide it are collected over the whole column
  (:func:`~churn.validation.text.collect_format_witnesses`) and rendered with every batch.
* **References** (``customer_id`` in ``customers``): the parent's valid keys are known before
  its children are validated, as in memory.
* **Order of rules** in a row's ``_failed_rules`` and in the report: rules are ordered by
  the call that first logged them and their first row
  (:attr:`~churn.validation.rules.RuleLog.order`), which gives the in-memory order.
* **Share of bad rows**: checked on the table's totals by :func:`validate_tables`, after
  every table, as in memory; the outputs are only swapped in after that.

So a batched table is read three times (scan, candidates, validate-and-write) and its
one-row rules are evaluated twice; the candidates pass converts only the candidate rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from churn.config import IngestConfig
from churn.domain.contract import CONTRACT, TableSpec, rename_to_contract
from churn.domain.data_end import TableEnd
from churn.domain.modes import Mode
from churn.stages.ingest.ends import find_table_end_of_micros
from churn.stages.ingest.rows import (
    ATTRIBUTE_KINDS,
    OUT_OF_RANGE_AFTER_DATA_END,
    PreparedRows,
    add_vocabulary_details,
    build_table_report,
    check_row_order_and_future,
    describe_failed_rows,
    prepare_rows,
    table_references,
    vocabulary_rules,
)
from churn.stages.ingest.tables import table_mapping, value_mappings
from churn.validation import rules
from churn.validation.coerce import UTC_DTYPE, has_only_whole_floats
from churn.validation.lookup import KnownValues
from churn.validation.text import collect_format_witnesses, keep_rows

logger = logging.getLogger(__name__)

_TEXT_KINDS = frozenset({"string", "category"})
_NAT = np.iinfo(np.int64).min
"""``NaT`` as an integer (``asi8``)."""


@runtime_checkable
class BatchedTable(Protocol):
    """A raw table read in batches: each call of :meth:`batches` reads it from the start.

    Attributes:
        columns: The table's column names, as read.
        float_columns: The columns stored as floating point numbers (Parquet ``double``).
    """

    columns: pd.Index
    float_columns: tuple[str, ...]

    def __len__(self) -> int:
        """The number of rows."""
        ...

    def batches(self, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        """The rows in order, as frames like the whole table as read would give."""
        ...

    def take(self, positions: np.ndarray) -> pd.DataFrame:
        """The rows at ``positions`` (ascending), as the whole table as read would give them."""
        ...


class BatchSink(Protocol):
    """Where the batches of one output file go, in order."""

    def write(self, frame: pd.DataFrame) -> None:
        """Append ``frame``'s rows (same columns and dtypes in every call)."""
        ...


OpenSinks = Callable[[str], AbstractContextManager[tuple[BatchSink, BatchSink]]]
"""Table -> a context giving the sinks of its valid and its quarantined rows; leaving it
without an error completes both files."""


@dataclass
class _Scan:
    """What the first pass keeps of a table: a few bytes per row."""

    rows: int
    one_row_bad: np.ndarray | None
    row_hash: np.ndarray | None
    key_hash: np.ndarray | None
    key_present: np.ndarray
    event_micros: np.ndarray | None
    failing_columns: set[str] = field(default_factory=set)
    witnesses: dict[str, pd.Series] = field(default_factory=dict)


@dataclass
class _Rule:
    """One rule's totals over the batches."""

    order: tuple[int, int]
    count: int
    examples: list[dict[str, Any]]


_PART = 1 << 24
"""Values per part in :func:`find_repeated_hashes` (the bucket counts stay effective)."""


def find_repeated_hashes(hashes: np.ndarray) -> np.ndarray:
    """The positions of values that occur more than once in ``hashes`` (sorted).

    :func:`~churn.validation.rules.find_shared_values` part by part: its bucket arrays take
    about 40 bytes per value and stop separating values beyond 2**25 of them, so the values
    are split by their top bits into parts of about 2**24 (equal values fall in the same
    part). At 1M customers (170M hashes) that is 11 parts of about 1 GB of temporaries each
    instead of 7 GB at once.

    Args:
        hashes: 64-bit values (``uint64``), one per row.

    Returns:
        The positions whose value another position shares, ascending.
    """
    parts = -(-len(hashes) // _PART)
    if parts <= 1:
        return np.flatnonzero(rules.find_shared_values(hashes))
    bits = int(np.ceil(np.log2(parts)))
    top = np.empty(len(hashes), dtype=np.uint16)  # bits <= 16 up to 2**40 rows
    for start in range(0, len(hashes), _PART):
        top[start : start + _PART] = hashes[start : start + _PART] >> np.uint64(64 - bits)
    found = []
    for part in range(1 << bits):
        positions = np.flatnonzero(top == part)
        if len(positions):
            found.append(positions[rules.find_shared_values(hashes[positions])])
    return np.sort(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)


def _find_whole_floats(
    name: str,
    spec: TableSpec,
    table: BatchedTable,
    cfg: IngestConfig,
    customer_attributes: Mapping[str, str] | None,
) -> dict[str, bool]:
    """Per text column stored as floats: is every value of the table whole (one pass)."""
    mapping = table_mapping(cfg, name)
    codes = value_mappings(name, mapping)
    text_columns = [c.name for c in spec.columns if c.kind in _TEXT_KINDS]
    if name == "customers" and customer_attributes and cfg.mode is not Mode.ENTITY:
        text_columns += [
            c for c, kind in customer_attributes.items() if ATTRIBUTE_KINDS[kind] in _TEXT_KINDS
        ]
    # Mapped values are no longer floats (map_codes gives objects): no decision needed.
    wanted = {
        mapping.columns.get(c, c): c
        for c in text_columns
        if c not in codes and mapping.columns.get(c, c) in table.float_columns
    }
    if not wanted:
        return {}
    whole = dict.fromkeys(wanted.values(), True)
    for batch in table.batches(list(wanted)):
        renamed = rename_to_contract(batch, mapping.columns)
        for column in whole:
            values = renamed[column]
            if pd.api.types.is_float_dtype(values.dtype):
                whole[column] = whole[column] and has_only_whole_floats(values)
    return whole


def _scan(
    name: str,
    spec: TableSpec,
    table: BatchedTable,
    cfg: IngestConfig,
    future_from: pd.Timestamp,
    customer_attributes: Mapping[str, str] | None,
    whole_floats: Mapping[str, bool],
) -> _Scan:
    """First pass: the one-row rules, row hashes, event times and text-format witnesses."""
    rows = len(table)
    event = CONTRACT[name].event_time
    keyed = bool(spec.key)
    scan = _Scan(
        rows=rows,
        one_row_bad=np.zeros(rows, dtype=bool),
        row_hash=np.zeros(rows, dtype=np.uint64),
        key_hash=np.zeros(rows, dtype=np.uint64) if keyed else None,
        key_present=np.zeros(rows if keyed else 0, dtype=bool),
        event_micros=None,
    )
    start = 0
    for batch in table.batches():
        prepared = prepare_rows(
            name, spec, batch, cfg, customer_attributes, whole_floats=whole_floats
        )
        frame, log = prepared.frame, prepared.log
        check_row_order_and_future(name, spec, frame, future_from, log)
        stop = start + len(frame)
        assert scan.one_row_bad is not None and scan.row_hash is not None
        scan.one_row_bad[start:stop] = log.failed()
        scan.failing_columns |= {c for c, mask in prepared.failed.items() if mask.any()}
        scan.witnesses = collect_format_witnesses(scan.witnesses, prepared.raw_frame)
        # Every typed column, text included: hashing the text costs about 1 s per 17M rows,
        # but numbers and timestamps alone (the in-memory prefilter) leave about 5% of the
        # rows as candidates (times to the second collide), and the candidates are re-read.
        scan.row_hash[start:stop] = rules.hash_rows(frame)
        if keyed and all(k in frame.columns for k in spec.key):
            assert scan.key_hash is not None
            scan.key_hash[start:stop] = rules.hash_rows(frame[list(spec.key)])
            scan.key_present[start:stop] = frame[list(spec.key)].notna().all(axis=1).to_numpy()
        if event is not None and event in frame.columns:
            if scan.event_micros is None:
                scan.event_micros = np.full(rows, _NAT, dtype=np.int64)
            stamps = frame[event].astype(UTC_DTYPE).array.asi8
            scan.event_micros[start:stop] = np.asarray(stamps)
        start = stop
    if start != rows:
        raise AssertionError(f"table {name}: {rows} rows announced, {start} read")
    return scan


def _read_rows(
    name: str,
    spec: TableSpec,
    table: BatchedTable,
    cfg: IngestConfig,
    customer_attributes: Mapping[str, str] | None,
    whole_floats: Mapping[str, bool],
    scan: _Scan,
    positions: np.ndarray,
) -> PreparedRows:
    """The rows at ``positions`` (sorted), converted and with the one-row rules checked."""
    raw = table.take(positions)
    assert len(raw) == len(positions)
    return prepare_rows(
        name,
        spec,
        raw,
        cfg,
        customer_attributes,
        whole_floats=whole_floats,
        witnesses=scan.witnesses,
    )


def _find_duplicates(
    name: str,
    spec: TableSpec,
    table: BatchedTable,
    cfg: IngestConfig,
    customer_attributes: Mapping[str, str] | None,
    whole_floats: Mapping[str, bool],
    scan: _Scan,
) -> tuple[np.ndarray, dict[int, int], np.ndarray]:
    """Second pass, over the candidates only: exact duplicate rows and duplicate keys.

    Returns:
        The positions of duplicate rows (sorted), the row each copies, and the positions of
        rows sharing a key with different content (sorted).
    """
    row_candidates = find_repeated_hashes(scan.row_hash)
    key_candidates = np.zeros(0, dtype=np.int64)
    if scan.key_hash is not None:
        present = np.flatnonzero(scan.key_present)
        key_candidates = present[find_repeated_hashes(scan.key_hash[present])]
    # Only the candidates are needed from here on.
    scan.row_hash = scan.key_hash = None
    scan.key_present = np.zeros(0, dtype=bool)
    positions = np.union1d(row_candidates, key_candidates).astype(np.int64)
    if len(positions) == 0:
        return positions, {}, positions
    prepared = _read_rows(
        name, spec, table, cfg, customer_attributes, whole_floats, scan, positions
    )
    frame = prepared.frame
    ordered = [c for c in prepared.failed if c in scan.failing_columns]
    compare = pd.concat([frame, prepared.unconverted(ordered).add_prefix("__raw__")], axis=1)
    duplicate, first = rules.find_duplicated_rows(compare)
    copies = {int(positions[i]): int(positions[first[i]]) for i in np.flatnonzero(duplicate)}
    key_rows = np.zeros(0, dtype=np.int64)
    if spec.key and all(k in frame.columns for k in spec.key):
        keys = frame[list(spec.key)]
        candidates = ~duplicate & keys.notna().all(axis=1).to_numpy()
        shared = keys[candidates].duplicated(keep=False).to_numpy()
        key_rows = positions[np.flatnonzero(candidates)[shared]]
    return positions[duplicate], copies, key_rows


def _find_table_end(
    name: str, cfg: IngestConfig, scan: _Scan, ok: np.ndarray
) -> tuple[TableEnd | None, np.ndarray]:
    """The table's data end among the rows that broke no rule so far, and the stray rows."""
    column = CONTRACT[name].event_time
    none = np.zeros(0, dtype=np.int64)
    if column is None or scan.event_micros is None:
        return None, none
    considered = ok & (scan.event_micros != _NAT)
    table_end = find_table_end_of_micros(
        name,
        column,
        scan.event_micros[considered],
        cfg.data_end_gap_days,
        explicit=cfg.data_end,
    )
    if table_end is None or table_end.stray_rows == 0:
        return table_end, none
    stray = np.flatnonzero(considered & (scan.event_micros > table_end.end.value // 1000))
    logger.warning(
        "table %s: %d row(s) stamped after its data end %s quarantined as out_of_range: %s",
        name,
        table_end.stray_rows,
        table_end.end.date(),
        table_end.reason,
    )
    return table_end, stray


def _rows_in(positions: np.ndarray, start: int, stop: int) -> np.ndarray:
    """The positions (sorted) in ``[start, stop)``, relative to ``start``."""
    lo, hi = np.searchsorted(positions, [start, stop])
    return positions[lo:hi] - start


def _mask(rows: int, positions: np.ndarray) -> np.ndarray:
    mask = np.zeros(rows, dtype=bool)
    mask[positions] = True
    return mask


def validate_table_in_batches(
    name: str,
    spec: TableSpec,
    table: BatchedTable,
    cfg: IngestConfig,
    future_from: pd.Timestamp,
    valid_keys: Mapping[str, pd.Series],
    sinks: tuple[BatchSink, BatchSink],
    customer_attributes: Mapping[str, str] | None = None,
) -> tuple[pd.Series | None, dict[str, Any], pd.Index | None]:
    """:func:`~churn.stages.ingest.rows.validate_table` of a table read in batches.

    The valid and quarantined rows go to ``sinks`` batch by batch instead of being returned;
    they, the report entry and the valid keys are those ``validate_table`` gives for the
    whole table.

    Args:
        name: Contract table name.
        spec: Its contract (events mode).
        table: The table as read in batches.
        cfg: Ingest configuration.
        future_from: Timestamps at or after this are future-dated.
        valid_keys: Table -> key values of its valid rows, for tables validated so far.
        sinks: Where the valid rows and the quarantined rows go.
        customer_attributes: ``features.customer_attributes`` (see ``validate_table``).

    Returns:
        The key values of the valid rows (a single-column key; else ``None``), the table's
        report entry, and the distinct customer ids its valid rows name (``None`` when the
        table has no ``customer_id`` or no customers were validated before it).
    """
    whole = _find_whole_floats(name, spec, table, cfg, customer_attributes)
    scan = _scan(name, spec, table, cfg, future_from, customer_attributes, whole)
    duplicates, copies, key_rows = _find_duplicates(
        name, spec, table, cfg, customer_attributes, whole, scan
    )
    assert scan.one_row_bad is not None
    ok = ~scan.one_row_bad
    ok[duplicates] = False
    ok[key_rows] = False
    table_end, stray = _find_table_end(name, cfg, scan, ok)
    # What the last pass needs is positions (few); the per-row state goes.
    del ok
    scan.one_row_bad = scan.event_micros = None
    event = CONTRACT[name].event_time
    key_rule = f"{'+'.join(spec.key)}:{rules.DUPLICATE_KEY}"
    first_copies = duplicates[: rules.EXAMPLES]
    first_stray = stray[: rules.EXAMPLES]

    valid_sink, quarantine_sink = sinks
    found: dict[str, _Rule] = {}
    missed: dict[str, list[pd.Series]] = {}
    dtypes: dict[str, Any] = {}
    keys: list[pd.Series] = []
    counts = [0, 0]
    start, prepared, columns = 0, None, []
    # Which valid customers the valid rows name, from the reference check's own lookups (the
    # data check's coverage; reading the ids back from the written file cost more than the
    # validation at 300k customers).
    customers = valid_keys.get("customers")
    covered = np.zeros(0 if customers is None else len(customers), dtype=bool)
    # Each parent's keys are indexed once for all the batches (KnownValues).
    known = {
        parent: KnownValues(valid_keys[parent])
        for _, parent, _ in table_references(name, spec)
        if parent in valid_keys
    }
    for batch in table.batches():
        prepared = prepare_rows(
            name,
            spec,
            batch,
            cfg,
            customer_attributes,
            whole_floats=whole,
            witnesses=scan.witnesses,
        )
        frame, log = prepared.frame, prepared.log
        rows = len(frame)
        stop = start + rows
        # The rules that need the whole table, logged in the order validate_table logs them.
        copied = _mask(rows, _rows_in(duplicates, start, stop))
        notes = {
            int(i - start): f"same as row {copies[int(i)]}"
            for i in first_copies
            if start <= i < stop
        }
        log.add(rules.DUPLICATE_ROW, copied, (), notes)
        if spec.key and all(k in frame.columns for k in spec.key):
            log.add(key_rule, _mask(rows, _rows_in(key_rows, start, stop)), spec.key)
        check_row_order_and_future(name, spec, frame, future_from, log)
        if table_end is not None and event is not None:
            late = _rows_in(stray, start, stop)
            stamps = frame[event]
            notes = {
                int(i - start): f"{stamps.iloc[int(i - start)]} is {table_end.reason}"
                for i in first_stray
                if start <= i < stop
            }
            log.add(f"{event}:{OUT_OF_RANGE_AFTER_DATA_END}", _mask(rows, late), (event,), notes)
        customer_positions = None
        for column, parent, rule in table_references(name, spec):
            if parent in known:
                positions = rules.check_reference(frame, column, known[parent], rule, log)
                if (column, parent) == ("customer_id", "customers"):
                    customer_positions = positions

        bad = log.failed()
        if customer_positions is not None:
            referenced = customer_positions[~bad]
            covered[referenced[referenced >= 0]] = True
        valid = keep_rows(frame, ~bad)
        quarantine = describe_failed_rows(prepared, bad, offset=start)
        valid_sink.write(valid)
        quarantine_sink.write(quarantine)
        counts[0] += len(valid)
        counts[1] += len(quarantine)
        columns = list(valid.columns)
        if len(spec.key) == 1:
            keys.append(valid[spec.key[0]])
        _merge_rules(found, log, prepared, start)
        for column, rule in vocabulary_rules(spec):
            if rule in log.masks:
                source = prepared.raw_frame[prepared.sources[column]]
                missed.setdefault(column, []).append(source[log.masks[rule]])
                dtypes.setdefault(column, source.dtype)
        start = stop
    assert prepared is not None  # a batched table has rows
    if counts[0] + counts[1] != scan.rows:
        raise AssertionError(
            f"ingest lost rows of {name}: {scan.rows} in, "
            f"{counts[0]} valid + {counts[1]} quarantined"
        )
    report = build_table_report(
        spec,
        cfg,
        (scan.rows, counts[0], counts[1]),
        prepared,
        columns,
        _summarize_rules(found),
        table_end,
    )
    add_vocabulary_details(
        name,
        spec,
        report,
        {c: pd.concat(parts, ignore_index=True) for c, parts in missed.items()},
        dtypes,
        prepared.codes,
    )
    valid_key = pd.concat(keys, ignore_index=True) if keys else None
    referenced_customers = (
        None
        if customers is None or "customer_id" not in columns
        else pd.Index(customers[covered].astype("str").unique())
    )
    return valid_key, report, referenced_customers


def _merge_rules(
    found: dict[str, _Rule], log: rules.RuleLog, prepared: PreparedRows, start: int
) -> None:
    """Add a batch's rules to the totals: counts, the first examples, the first logging."""
    summary = log.summarize(prepared.original, prepared.sources)
    for rule, info in summary.items():
        call, row = log.order[rule]
        order = (call, row + start)
        examples = [{"row": e["row"] + start, "value": e["value"]} for e in info["examples"]]
        if rule not in found:
            found[rule] = _Rule(order, info["count"], examples[: rules.EXAMPLES])
            continue
        total = found[rule]
        total.order = min(total.order, order)
        total.count += info["count"]
        total.examples = (total.examples + examples)[: rules.EXAMPLES]


def _summarize_rules(found: Mapping[str, _Rule]) -> dict[str, dict[str, Any]]:
    """:meth:`~churn.validation.rules.RuleLog.summarize` of the whole table's rules.

    Rules in the order they were first logged, then most frequent first (a stable sort).
    """
    logged = sorted(found.items(), key=lambda item: item[1].order)
    ranked = sorted(logged, key=lambda item: -item[1].count)
    return {rule: {"count": r.count, "examples": r.examples} for rule, r in ranked}
