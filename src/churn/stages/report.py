"""The ``churn report`` stage: load the inputs, render, write the HTML atomically."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import replace
from pathlib import Path

from churn.config import Params
from churn.io import write_text
from churn.report.inputs import ReportPaths, load_report_inputs
from churn.report.render import render_report

logger = logging.getLogger(__name__)


def run_report(
    params: Params,
    inputs_paths: ReportPaths,
    out_path: str | Path,
) -> None:
    """Load the pipeline's outputs, render the report and write it atomically.

    Args:
        params: Pipeline parameters (``report`` section; segments from ``evaluate``).
        inputs_paths: Where each input is (every stage report, plots and explanation
            directories, catalog, labels, scores, optional customers table).
        out_path: Destination HTML file.
    """
    inputs = load_report_inputs(inputs_paths)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    inputs = replace(inputs, segment_columns=tuple(params.evaluate.segments), generated_at=stamp)
    for name, why in sorted(inputs.missing.items()):
        logger.info("report: %s not available: %s", name, why)
    write_text(render_report(inputs, params.report), out_path)
    logger.info("wrote %s", out_path)
