"""The pure core of ``churn ingest``: :func:`validate_tables` over every table of a mode."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import pandas as pd

from churn.config import IngestConfig
from churn.domain.contract import CONTRACT
from churn.domain.data_end import TableEnd, describe_end_mismatch
from churn.domain.modes import Mode
from churn.errors import DataContractError
from churn.sql import utc_timestamp
from churn.stages.ingest.batches import BatchedTable, OpenSinks, validate_table_in_batches
from churn.stages.ingest.rows import table_references, validate_table
from churn.stages.ingest.tables import (
    IngestResult,
    check_tables,
    set_aside_empty_tables,
    table_specs,
)

logger = logging.getLogger(__name__)


class TableJob(Protocol):
    """A table being validated elsewhere (in a worker process: :mod:`.workers`)."""

    def result(self) -> tuple[dict[str, Any], pd.Index | None]:
        """Wait for it: the table's report entry and the customer ids its valid rows name
        (as :func:`~churn.stages.ingest.batches.validate_table_in_batches` returns them).

        Raises:
            DataContractError: As validating the table here would.
        """
        ...


StartTable = Callable[[str, pd.Timestamp, Mapping[str, pd.Series]], TableJob]
"""Start validating a table read in batches elsewhere: ``(table, future_from, parent keys)``,
the parent keys being the valid keys of the tables it references."""

WhileWaiting = Callable[[Mapping[str, pd.DataFrame], Sequence[str]], None]
"""Work to do while the workers finish: ``(valid frames, tables streamed here)`` of the tables
validated here (ingest counts the labels of the data check meanwhile)."""


def choose_tables_elsewhere(
    raw: Mapping[str, pd.DataFrame | BatchedTable], cfg: IngestConfig
) -> list[str]:
    """The tables validated in worker processes (``ingest.workers``), largest first.

    A table goes to a worker when it is read in batches, has at least
    ``ingest.worker_min_rows`` rows and no other table references it: its valid keys are
    then never needed here, and everything that comes back is its report entry and the
    customers it names. Ties in size go to the earlier table of the contract.
    """
    workers, min_rows = cfg.workers, cfg.worker_min_rows
    if workers == 0 or cfg.mode is Mode.ENTITY:
        return []
    specs = table_specs(cfg.mode)
    parents = {p for name, spec in specs.items() for _, p, _ in table_references(name, spec)}
    candidates = [
        name
        for name in specs
        if isinstance(raw.get(name), BatchedTable)
        and name not in parents
        and len(raw[name]) >= min_rows  # type: ignore[arg-type]
    ]
    ranked = sorted(candidates, key=lambda name: -len(raw[name]))  # type: ignore[arg-type]
    return ranked[:workers]


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
    raw: Mapping[str, pd.DataFrame | BatchedTable],
    cfg: IngestConfig,
    as_of: pd.Timestamp,
    *,
    customer_attributes: Mapping[str, str] | None = None,
    label_required: bool = True,
    open_sinks: OpenSinks | None = None,
    start_elsewhere: StartTable | None = None,
    while_waiting: WhileWaiting | None = None,
) -> IngestResult:
    """Validate raw tables against the contract and split their rows into valid and quarantined.

    Args:
        raw: Contract table name -> the user's frame as read (user column names; text or typed
            values), or a large table read in batches (events mode;
            :func:`~churn.stages.ingest.batches.validate_table_in_batches`). Tables not read in
            ``cfg.mode`` are ignored (and reported). The frames are not modified.
        cfg: Ingest configuration: mode, column mapping, time zone, quarantine limit.
        as_of: Rows stamped after the end of this day (UTC) are future-dated.
        customer_attributes: ``features.customer_attributes``: extra customer columns that
            events mode keeps (typed like contract columns) instead of ignoring.
        label_required: Entity mode: whether the label column must be present (``False`` when
            scoring a new file, where a label is only used for realized metrics if present).
        open_sinks: Where the valid and quarantined rows of the tables read in batches go
            (required when there are such tables); these tables are named in the result's
            ``streamed`` and have no frames in it.
        start_elsewhere: Starts validating a table read in batches in a worker process: the
            tables :func:`choose_tables_elsewhere` picks go there as soon as the tables they
            reference are validated, and the others are validated here meanwhile. Their
            outputs are the worker's; the result is the same as without. ``None``: every
            table here.
        while_waiting: Called once every table here is validated, before waiting for the
            first worker, with the valid frames held here and the tables streamed here (their
            files complete); not called when no table went to a worker.

    Returns:
        The valid and quarantined rows per present table held in memory and the report::

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
    raw, empty = set_aside_empty_tables(raw, cfg, specs)
    check_tables(raw, cfg, specs, label_required)

    valid: dict[str, pd.DataFrame] = {}
    quarantine: dict[str, pd.DataFrame] = {}
    tables: dict[str, dict[str, Any]] = {}
    valid_keys: dict[str, pd.Series] = {}
    streamed: list[str] = []
    referenced_customers: dict[str, pd.Index] = {}
    elsewhere = [] if start_elsewhere is None else choose_tables_elsewhere(raw, cfg)
    jobs: dict[str, TableJob] = {}
    done: set[str] = set()

    def start_ready_tables() -> None:
        """Start each table going elsewhere once the tables it references are validated."""
        assert start_elsewhere is not None or not elsewhere
        for table_name in elsewhere:
            needed = [p for _, p, _ in table_references(table_name, specs[table_name]) if p in raw]
            if table_name not in jobs and done.issuperset(needed):
                keys = {p: valid_keys[p] for p in needed if p in valid_keys}
                jobs[table_name] = start_elsewhere(table_name, future_from, keys)  # type: ignore[misc]

    start_ready_tables()
    for name, spec in specs.items():
        if name in elsewhere:
            continue
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
        table = raw[name]
        if isinstance(table, BatchedTable):
            if open_sinks is None or cfg.mode is Mode.ENTITY:
                raise ValueError(f"table {name}: batches need events mode and open_sinks")
            with open_sinks(name) as sinks:
                keys, tables[name], referenced = validate_table_in_batches(
                    name, spec, table, cfg, future_from, valid_keys, sinks, customer_attributes
                )
            streamed.append(name)
            if referenced is not None:
                referenced_customers[name] = referenced
            if keys is not None:
                valid_keys[name] = keys
        else:
            good, bad, report = validate_table(
                name, spec, table, cfg, future_from, valid_keys, customer_attributes
            )
            valid[name], quarantine[name], tables[name] = good, bad, report
            if len(spec.key) == 1:
                valid_keys[name] = good[spec.key[0]]
        done.add(name)
        start_ready_tables()
    if jobs and while_waiting is not None:
        while_waiting(valid, tuple(streamed))
    for name in elsewhere:
        tables[name], referenced = jobs[name].result()
        streamed.append(name)
        if referenced is not None:
            referenced_customers[name] = referenced
    # In the order of the contract, as when every table is validated here.
    tables = {name: tables[name] for name in specs if name in tables}
    referenced_customers = {
        name: referenced_customers[name] for name in specs if name in referenced_customers
    }

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
        streamed=tuple(n for n in order if n in streamed),
        referenced_customers=referenced_customers,
    )
