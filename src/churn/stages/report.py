"""The ``churn report`` stage: load the inputs, render, write the HTML atomically."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import replace
from pathlib import Path

from churn.config import Params
from churn.io import write_text
from churn.report.inputs import load_report_inputs
from churn.report.render import render_report

logger = logging.getLogger(__name__)


def run_report(
    params: Params,
    reports_dir: str | Path,
    labels_path: str | Path,
    scores_path: str | Path,
    out_path: str | Path,
    validated_dir: str | Path | None = None,
) -> None:
    """Load the pipeline's outputs, render the report and write it atomically.

    Args:
        params: Pipeline parameters (``report`` section; segments from ``evaluate``).
        reports_dir: The ``reports/`` directory.
        labels_path: Labels Parquet.
        scores_path: Scores file.
        out_path: Destination HTML file.
        validated_dir: Directory of validated tables; its ``customers.parquet`` supplies
            customer attributes (acquisition channel) for the segment tables. Optional.
    """
    customers = None if validated_dir is None else Path(validated_dir) / "customers.parquet"
    inputs = load_report_inputs(reports_dir, labels_path, scores_path, customers)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    inputs = replace(inputs, segment_columns=tuple(params.evaluate.segments), generated_at=stamp)
    for name, why in sorted(inputs.missing.items()):
        logger.info("report: %s not available: %s", name, why)
    write_text(render_report(inputs, params.report), out_path)
    logger.info("wrote %s", out_path)
