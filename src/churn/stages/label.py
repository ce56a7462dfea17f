"""The ``churn label`` stage: read validated tables, build labels, check them, write them.

The label core reads three tables whole (the SQL joins subscriptions, their changes and
customers) and of every other table only timestamps: the data end looks at every timestamp
column and the history start at each event table's first event time. So the runner hands the
core :class:`churn.stages.validated_tables.ValidatedTables`, which reads those three once and
answers the two questions about the others from their files (see that module).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from churn.config import Params
from churn.console import log_table
from churn.domain.contract import CONTRACT
from churn.domain.modes import Mode, reference_date
from churn.errors import ChurnError, DataContractError
from churn.io import write_json, write_parquet
from churn.labels.build import build_labels
from churn.labels.entity import build_entity_labels
from churn.labels.plausibility import (
    check_label_plausibility,
    describe_cutoffs,
    find_implausible_cutoffs,
)
from churn.labels.schedule import data_end
from churn.stages.validated_tables import ValidatedTables

logger = logging.getLogger(__name__)


def run_label(
    params: Params, validated_dir: Path, out_path: Path, report_path: Path | None = None
) -> dict[str, Any]:
    """Read validated tables, build and check labels, log a summary and write them atomically.

    The report (``reports/labels.json``) is written even when the labels are implausible, so
    that the failing cutoffs can be inspected; the labels file is then not written.

    Args:
        params: All parameters (``ingest.mode`` picks events or entity mode; ``ingest.as_of``,
            ``ingest.data_end`` and ``ingest.data_end_gap_days`` fix the end of the data).
        validated_dir: Directory of validated tables.
        out_path: Labels Parquet file.
        report_path: JSON report: data end, horizon, grace and per cutoff the population,
            churners, churn rate and why it is unlabeled; ``None``: no report.

    Returns:
        The report.

    Raises:
        DataContractError: If a required table or column is missing, or a labeled cutoff's
            churn rate is implausible (see
            :func:`churn.labels.plausibility.find_implausible_cutoffs`).
        EmptyPopulationError: If no customer is in any population.
    """
    tables = ValidatedTables(validated_dir, list(CONTRACT))
    end = None
    # As in ingest: no as_of means the run date (paid-through ends after it are not data).
    as_of = reference_date(params.ingest.as_of)
    if params.ingest.mode is Mode.ENTITY:
        if "customers" not in tables:
            raise DataContractError(f"entity mode: no customers table in {validated_dir}")
        labels = build_entity_labels(tables["customers"], params.ingest.label_column, as_of)
        logger.info("entity mode: one cutoff (%s) for %d customers", as_of, len(labels))
    else:
        if not tables:
            raise DataContractError(f"no validated tables in {validated_dir}")
        try:
            end = data_end(
                tables,
                gap_days=params.ingest.data_end_gap_days,
                explicit=params.ingest.data_end,
                as_of=as_of,
            )
        except ChurnError:
            end = None  # build_labels raises the clearer error (missing or empty table)
        labels = build_labels(tables, params.label, end)
    cutoffs = describe_cutoffs(labels, params.label, end)
    log_table(
        logger,
        f"labels: {len(labels):,} rows over {len(cutoffs)} cutoff(s); data end "
        f"{'-' if end is None else end.date()}",
        ["cutoff", "population", "churned", "churn rate"],
        [
            (
                row["cutoff"],
                f"{row['population']:,}",
                f"{row['churners']:,}" if row["labeled"] else "-",
                f"{row['churn_rate']:.2%}"
                if row["labeled"]
                else f"unobserved (scoring): {row['unlabeled_reason']}",
            )
            for row in cutoffs
        ],
    )
    problems = find_implausible_cutoffs(cutoffs, params.label)
    report = {
        "mode": params.ingest.mode,
        "data_end": None if end is None else end.isoformat(),
        "horizon_days": params.label.horizon_days,
        "grace_days": params.label.grace_days,
        "max_churn_rate": params.label.max_churn_rate,
        "max_rate_ratio": params.label.max_rate_ratio,
        "rows": len(labels),
        "labeled_cutoffs": sum(1 for row in cutoffs if row["labeled"]),
        "problems": problems,
        "cutoffs": cutoffs,
    }
    if report_path is not None:
        write_json(report, Path(report_path))
    check_label_plausibility(cutoffs, params.label)  # after the report, which explains a stop
    write_parquet(labels, out_path)
    logger.info("wrote %s", out_path)
    return report
