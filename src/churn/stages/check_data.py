"""``churn check-data``: what the validated data holds and what training will make of it.

A look before training, written by ``churn ingest`` to ``reports/data_check.json`` right after
validation, printed by ``churn check-data`` and shown in the HTML report. The pure core
:func:`check_data` takes the validated tables and the parameters and returns a JSON-ready
dict:

* per contract table of the mode: present or absent (and whether it is required), rows, the
  first and last value of its event-time column, its coverage (the share of the customers in
  ``customers`` with at least one row; ``customers`` itself is 1 by definition) and the columns
  ingest ignored (in the raw file but not mapped to the contract; known only when ingest's
  report is given, else ``None``);
* the cutoff schedule with, per cutoff, the population, whether it is labeled (and why not)
  and its churn rate, from the label library's own functions
  (:func:`churn.labels.plausibility.describe_cutoff_counts` of
  :func:`churn.labels.build.count_labels`), so the check and ``churn label`` agree;
* per feature family whether it runs or why it is skipped
  (:func:`churn.features.build.family_skip_reasons`).

Decisions: a problem that stops the labels (no population, no subscriptions) does not stop the
check: its text is reported under ``cutoff_problem`` with no cutoffs, because the check exists
to show such problems before training. Implausible churn rates are listed under
``label_problems`` (``churn label`` stops on them). Coverage counts distinct customer ids of
the table that are among the ``customers`` ids.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from churn.config import Params
from churn.console import render_table
from churn.domain.contract import CONTRACT
from churn.domain.modes import Mode, reference_date
from churn.errors import ChurnError
from churn.features.build import family_skip_reasons
from churn.io import read_tables, write_json
from churn.labels.build import count_labels, count_labels_at, label_counts_agree
from churn.labels.entity import build_entity_labels
from churn.labels.plausibility import (
    describe_cutoff_counts,
    find_implausible_cutoffs,
    summarize_labels,
)
from churn.labels.schedule import build_cutoffs, data_end

logger = logging.getLogger(__name__)


def _iso(value: Any) -> str | None:
    """A timestamp as ISO text (``None`` when missing)."""
    return None if value is None or pd.isna(value) else pd.Timestamp(value).isoformat()


@runtime_checkable
class TableFacts(Protocol):
    """Tables that know their rows and a time column's range without being read (ingest's
    validated files answer from their footers:
    :class:`churn.stages.validated_tables.ValidatedTables`)."""

    def row_count(self, name: str) -> int:
        """The rows of table ``name``."""
        ...

    def time_range(
        self, name: str, column: str
    ) -> tuple[pd.Timestamp | None, pd.Timestamp | None] | None:
        """The first and last value of ``column`` (UTC), ``None`` without the column."""
        ...


def _describe_table(
    name: str,
    tables: Mapping[str, pd.DataFrame],
    customer_ids: pd.Index | None,
    ignored_columns: list[str] | None,
    referenced: pd.Index | None = None,
) -> dict[str, Any]:
    """Rows, time range, coverage and ignored columns of one present table.

    ``referenced`` (the distinct customer ids the table's rows name) stands in for the
    frame's ``customer_id`` column when given; with it, tables that are :class:`TableFacts`
    are not read at all.
    """
    spec = CONTRACT[name]
    frame = None
    if isinstance(tables, TableFacts):
        rows = tables.row_count(name)
        found = tables.time_range(name, spec.event_time) if spec.event_time else None
        column = spec.event_time if found is not None else None
        first, last = found if found is not None else (None, None)
    else:
        frame = tables[name]
        rows = len(frame)
        column = spec.event_time if spec.event_time in frame.columns else None
        times = frame[column].dropna() if column else pd.Series(dtype="object")
        first, last = (times.min(), times.max()) if len(times) else (None, None)
    if referenced is None:
        frame = tables[name] if frame is None else frame
        if "customer_id" in frame.columns:
            referenced = pd.Index(frame["customer_id"].dropna().unique())
    coverage = None
    if customer_ids is not None and len(customer_ids) and referenced is not None:
        covered = referenced.astype("str")
        coverage = round(len(covered.intersection(customer_ids)) / len(customer_ids), 6)
    return {
        "present": True,
        "required": spec.required,
        "rows": rows,
        "time_column": column,
        "first": _iso(first),
        "last": _iso(last),
        "coverage": coverage,
        "ignored_columns": ignored_columns,
    }


@dataclass(frozen=True)
class EarlyLabelCounts:
    """The label counts of some of the tables, counted before the others were validated.

    Attributes:
        end: The data end of those tables.
        cutoffs: Their cutoff schedule.
        counts: :func:`churn.labels.build.count_labels_at` of the schedule at ``end``.
    """

    end: pd.Timestamp
    cutoffs: list[pd.Timestamp]
    counts: pd.DataFrame


def _find_data_end(tables: Mapping[str, pd.DataFrame], params: Params) -> pd.Timestamp:
    return data_end(
        tables,
        gap_days=params.ingest.data_end_gap_days,
        explicit=params.ingest.data_end,
        as_of=reference_date(params.ingest.as_of),
    )


def count_labels_early(
    tables: Mapping[str, pd.DataFrame], params: Params
) -> EarlyLabelCounts | None:
    """Count the labels of the tables validated so far, for :func:`check_data` to reuse.

    Ingest calls it while a worker process still validates a large event table
    (:mod:`churn.stages.ingest.workers`): the labels read only the label tables, which are
    done, and the event tables move the counts only through the data end and the schedule's
    start. :func:`check_data` reuses the counts when the schedule of every table is the same
    and the two data ends give the same counts
    (:func:`churn.labels.build.label_counts_agree`), and counts again otherwise.

    Returns:
        The counts, or ``None`` in entity mode or when the labels cannot be counted yet (the
        check then counts them itself, and reports the problem).
    """
    if params.ingest.mode is Mode.ENTITY:
        return None
    try:
        end = _find_data_end(tables, params)
        cutoffs = build_cutoffs(tables, params.label, end)
        if not cutoffs:
            return None
        return EarlyLabelCounts(end, cutoffs, count_labels_at(tables, params.label, cutoffs, end))
    except ChurnError:
        return None


def _describe_cutoffs(
    tables: Mapping[str, pd.DataFrame], params: Params, early: EarlyLabelCounts | None = None
) -> tuple[pd.Timestamp | None, list[dict[str, object]], str | None]:
    """The data end, the cutoff rows of :func:`describe_cutoff_counts` and a problem that
    stopped them. In events mode the labels are counted per cutoff, not built
    (:func:`churn.labels.build.count_labels`: the same counts as ``churn label``'s rows), or
    taken from ``early`` when they are the same (:func:`count_labels_early`)."""
    as_of = reference_date(params.ingest.as_of)
    end = None
    try:
        if params.ingest.mode is Mode.ENTITY:
            if "customers" not in tables:
                return None, [], "no customers table"
            labels = build_entity_labels(tables["customers"], params.ingest.label_column, as_of)
            counts = summarize_labels(labels)
        else:
            end = _find_data_end(tables, params)
            counts = None
            if early is not None:
                cutoffs = build_cutoffs(tables, params.label, end)
                if cutoffs == early.cutoffs and label_counts_agree(
                    cutoffs, params.label, early.end, end
                ):
                    counts = early.counts
                    logger.debug("data check: the label counts of %s reused", early.end)
            if counts is None:
                counts = count_labels(tables, params.label, end)
    except ChurnError as exc:
        return end, [], str(exc)
    return end, describe_cutoff_counts(counts, params.label, end), None


def check_data(
    tables: Mapping[str, pd.DataFrame],
    params: Params,
    *,
    ingest_report: Mapping[str, Any] | None = None,
    referenced_customers: Mapping[str, pd.Index] | None = None,
    early_label_counts: EarlyLabelCounts | None = None,
) -> dict[str, Any]:
    """Describe the validated tables, the cutoff schedule and the feature families that run.

    Args:
        tables: Validated tables by contract name (absent optional tables are not keys).
            Tables that are :class:`TableFacts` (and ``DensityEnds``, ``EarliestTimes`` of
            :mod:`churn.labels.schedule`) answer the rows, time ranges and data ends
            themselves, so a file need not be read.
        params: All parameters (``ingest`` for mode, as_of and data end; ``label`` for the
            schedule and horizon).
        ingest_report: ``reports/ingest.json`` (or the report of
            :func:`churn.stages.ingest.validate_tables`): the source of the ignored columns.
        referenced_customers: Table -> the distinct customer ids its rows name, for tables
            handed over without their ``customer_id`` column (ingest reads its big tables
            back with their timestamps only; the ids come from its reference check).
        early_label_counts: Label counts of the tables validated before the others
            (:func:`count_labels_early`), reused when they are the same; the check is the same
            with or without them.

    Returns:
        A JSON-ready dict::

            {"mode", "as_of", "data_end", "customers",
             "tables": {table: {"present": true, "required", "rows", "time_column", "first",
                                "last", "coverage", "ignored_columns"}
                        | {"present": false, "required"}},
             "cutoffs": [describe_cutoffs rows], "labeled_cutoffs", "unlabeled_cutoffs",
             "cutoff_problem", "label_problems",
             "families": {family: {"runs": bool, "reason": str | None}}}
    """
    mode = Mode(params.ingest.mode)
    names = ["customers"] if mode is Mode.ENTITY else list(CONTRACT)
    customers = tables.get("customers")
    customer_ids = (
        pd.Index(customers["customer_id"].dropna().astype("str").unique())
        if customers is not None and "customer_id" in customers.columns
        else None
    )
    reported = (ingest_report or {}).get("tables", {})
    described: dict[str, dict[str, Any]] = {}
    for name in names:
        if name not in tables:
            described[name] = {"present": False, "required": CONTRACT[name].required}
            continue
        ignored = reported.get(name, {}).get("ignored_columns") if ingest_report else None
        referenced = (referenced_customers or {}).get(name)
        described[name] = _describe_table(name, tables, customer_ids, ignored, referenced)
    end, cutoffs, problem = _describe_cutoffs(tables, params, early_label_counts)
    families = family_skip_reasons([n for n in names if n in tables], mode)
    return {
        "mode": str(mode),
        "as_of": reference_date(params.ingest.as_of).isoformat(),
        "data_end": _iso(end),
        "customers": None if customer_ids is None else len(customer_ids),
        "tables": described,
        "cutoffs": cutoffs,
        "labeled_cutoffs": sum(1 for row in cutoffs if row["labeled"]),
        "unlabeled_cutoffs": sum(1 for row in cutoffs if not row["labeled"]),
        "cutoff_problem": problem,
        "label_problems": find_implausible_cutoffs(cutoffs, params.label),
        "families": {
            family: {"runs": reason is None, "reason": reason}
            for family, reason in families.items()
        },
    }


def _share(value: object) -> str:
    return "-" if value is None else f"{float(value):.1%}"  # type: ignore[arg-type]


def render_data_check(check: Mapping[str, Any]) -> str:
    """Render the check as three plain-text tables: tables, cutoffs and feature families."""
    table_rows = []
    for name, info in check["tables"].items():
        if not info["present"]:
            status = "MISSING (required)" if info["required"] else "absent (optional)"
            table_rows.append((name, status, "-", "-", "-", "-", "-"))
            continue
        ignored = info["ignored_columns"]
        table_rows.append(
            (
                name,
                "present",
                f"{info['rows']:,}",
                (info["first"] or "-")[:10],
                (info["last"] or "-")[:10],
                _share(info["coverage"]),
                "?" if ignored is None else (", ".join(ignored) or "-"),
            )
        )
    parts = [
        render_table(
            f"data check ({check['mode']} mode, as of {check['as_of']}, data end "
            f"{(check['data_end'] or '-')[:10]})",
            ["table", "status", "rows", "first", "last", "coverage", "ignored columns"],
            table_rows,
        )
    ]
    cutoff_rows = [
        (
            row["cutoff"],
            f"{row['population']:,}",
            "yes" if row["labeled"] else f"no: {row['unlabeled_reason']}",
            _share(row["churn_rate"]),
        )
        for row in check["cutoffs"]
    ]
    parts.append(
        render_table(
            f"cutoffs: {check['labeled_cutoffs']} labeled, {check['unlabeled_cutoffs']} unlabeled",
            ["cutoff", "population", "labeled", "churn rate"],
            cutoff_rows,
        )
    )
    if check["cutoff_problem"]:
        parts.append(f"no cutoffs: {check['cutoff_problem']}")
    parts.extend(f"implausible: {problem}" for problem in check["label_problems"])
    parts.append(
        render_table(
            "feature families",
            ["family", "runs"],
            [
                (family, "yes" if info["runs"] else f"skipped: {info['reason']}")
                for family, info in check["families"].items()
            ],
        )
    )
    return "\n".join(parts)


def write_data_check(check: Mapping[str, Any], path: Path) -> None:
    """Write the check as JSON (atomically) and log its tables."""
    write_json(dict(check), Path(path))
    logger.info("%s", render_data_check(check))


def run_check_data(
    params: Params,
    validated_dir: Path,
    ingest_report_path: Path | None = None,
    out_path: Path | None = None,
) -> dict[str, Any]:
    """Read the validated tables, check them, print the tables and optionally write the JSON.

    Args:
        params: All parameters.
        validated_dir: Directory of validated tables (``data/validated``).
        ingest_report_path: ``reports/ingest.json`` for the ignored columns; absent or
            ``None``: they are shown as unknown.
        out_path: Where to write the JSON; ``None``: not written.

    Returns:
        The check.
    """
    tables = read_tables(validated_dir, list(CONTRACT))
    ingest_report = None
    if ingest_report_path is not None and Path(ingest_report_path).is_file():
        ingest_report = json.loads(Path(ingest_report_path).read_text())
    check = check_data(tables, params, ingest_report=ingest_report)
    if out_path is not None:
        write_json(check, Path(out_path))
    print(render_data_check(check))
    return check
