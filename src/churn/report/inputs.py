"""What the report reads: every input file, loaded once, tolerant of missing parts."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from churn.domain.catalog import read_catalog
from churn.errors import DataContractError
from churn.layout import (
    CHANGES_SUFFIX,
    CURVES_FILE,
    EXPLAIN_SUMMARY_FILE,
    EXPLAIN_TABLES,
    FIGURE_SUFFIX,
    PLOT_NAMES,
    TARGETS_FILE,
    explain_table_file_name,
    plot_file_name,
    sidecar_path,
)

logger = logging.getLogger(__name__)


DEFAULT_SEGMENTS = ("plan", "acquisition_channel", "billing_period")


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class ReportPaths:
    """Where each of the report's inputs is: every file or directory named explicitly.

    ``dvc.yaml`` passes each of these to ``churn report`` and declares it as a dependency, so the
    report never guesses a path. Only names *inside* a stage's output directory (plot CSVs,
    explanation files) and the changes sidecar beside the scores come from
    :mod:`churn.layout`, shared with the stages that write them.

    Attributes:
        ingest_report: JSON report of ``churn ingest``.
        train_report: JSON report of ``churn train``.
        model_record: ``churn train``'s record of the model every later stage used (the
            champion after the gate).
        metrics: Metrics JSON of ``churn evaluate``.
        plots_dir: Plot data directory of ``churn evaluate``.
        explain_dir: Output directory of ``churn explain``.
        catalog: Feature catalog CSV of ``churn features``.
        labels: Labels Parquet of ``churn label``.
        scores: Scores file of ``churn score``; its changes sidecar is read when present.
        customers: Validated customers table (segment attributes the scores and labels lack,
            such as the acquisition channel), or ``None`` to go without.
        data_check: ``churn ingest``'s data check JSON (tables, coverage, cutoffs, feature
            families), or ``None`` to go without.
        monitor: ``churn monitor``'s JSON (status, drift, estimated and realized
            performance), or ``None`` to go without.
        target_report: ``churn target``'s JSON (effects, policy comparison), or ``None``.
        targets_dir: ``churn target``'s output folder (the contact list and value curves),
            or ``None``.
    """

    ingest_report: Path
    train_report: Path
    model_record: Path
    metrics: Path
    plots_dir: Path
    explain_dir: Path
    catalog: Path
    labels: Path
    scores: Path
    customers: Path | None = None
    data_check: Path | None = None
    monitor: Path | None = None
    target_report: Path | None = None
    targets_dir: Path | None = None


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report can show; each field is ``None`` or empty when unavailable.

    Attributes:
        ingest: The ingest report (rows in, valid, quarantined per table).
        data_check: The data check (:mod:`churn.stages.check_data`), when the runner is given
            one.
        train: The train report (splits, metrics, gate decision).
        model: The train stage's model record: the model evaluate, explain and score used (the
            champion after the gate), and whether the model trained in this run was promoted.
        metrics: The evaluate metrics (test, baseline, segments, backtest, oracle).
        plots: Plot data frames by name (``roc``, ``precision_recall``, ``calibration``,
            ``gains``).
        catalog: Feature catalog (name, family, phase, kind, unit, description).
        explain_images: Explanation PNG bytes by file name.
        explain_tables: Explanation CSV tables by stem (see :data:`EXPLAIN_TABLES`).
        explain_summary: The explain stage's summary JSON.
        labels: Labels frame (customer, cutoff, label, mrr, plan, billing period, tenure).
        customers: Validated customers table (customer attributes such as the acquisition
            channel), when the runner is given one.
        scores: Scores frame of the latest scoring run.
        changes: Changes since the previous scoring run, when the score stage wrote them.
        segment_columns: Customer attributes to break scores down by.
        target: ``churn target``'s report, when the runner is given one.
        targets: This week's contacts (``targets.parquet``), when given.
        target_curves: Cumulative value against contacts per policy (``curves.parquet``).
        missing: Input name -> why it is unavailable (shown in the report).
        segmented_scores: ``scores`` with the segment attributes they lack joined
            (:func:`churn.report.data.with_segments`). :func:`churn.report.render.render_report`
            fills it once for the four sections that read it (the join was a tenth of the
            report's time, per section); ``None`` means each computes it.
        labels_per_cutoff: :func:`churn.report.data.per_cutoff` of ``labels``, filled once by
            the renderer for the two sections that read it (2.3 s each on a million
            customers' 9.6M label rows); ``None`` means each computes it.
        generated_at: Time stamp shown in the header; ``None`` keeps the output reproducible.
    """

    ingest: dict[str, Any] | None = None
    data_check: dict[str, Any] | None = None
    train: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    plots: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    catalog: pd.DataFrame | None = None
    explain_images: Mapping[str, bytes] = field(default_factory=dict)
    explain_tables: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    explain_summary: dict[str, Any] | None = None
    labels: pd.DataFrame | None = None
    customers: pd.DataFrame | None = None
    scores: pd.DataFrame | None = None
    changes: pd.DataFrame | None = None
    segment_columns: tuple[str, ...] = DEFAULT_SEGMENTS
    monitor: dict[str, Any] | None = None
    target: dict[str, Any] | None = None
    targets: pd.DataFrame | None = None
    target_curves: pd.DataFrame | None = None
    missing: Mapping[str, str] = field(default_factory=dict)
    segmented_scores: pd.DataFrame | None = None
    labels_per_cutoff: pd.DataFrame | None = None
    generated_at: str | None = None

    def why(self, name: str) -> str:
        """Return why input ``name`` is unavailable (for "not available" notes)."""
        return self.missing.get(name, f"{name} was not provided")


def load_report_inputs(paths: ReportPaths) -> ReportInputs:
    """Read the pipeline's outputs for the report, recording what is missing and why.

    Args:
        paths: Where every input is.

    Returns:
        The inputs; unreadable or absent ones are ``None``/empty with a reason in ``missing``.
    """
    missing: dict[str, str] = {}

    def attempt(name: str, path: Path, reader: Callable[[Path], Any]) -> Any:
        if not path.exists():
            missing[name] = f"{path} does not exist (has its pipeline stage run?)"
            return None
        try:
            return reader(path)
        except (OSError, ValueError, TypeError, KeyError, DataContractError) as exc:
            missing[name] = f"could not read {path}: {type(exc).__name__}: {exc}"
            return None

    plots: dict[str, pd.DataFrame] = {}
    for name in PLOT_NAMES:
        frame = attempt(name, Path(paths.plots_dir) / plot_file_name(name), pd.read_csv)
        if frame is not None:
            plots[name] = frame
    explain_dir = Path(paths.explain_dir)
    images, tables = {}, {}
    if explain_dir.is_dir():
        for path in sorted(explain_dir.glob(f"*{FIGURE_SUFFIX}")):
            png = attempt(path.name, path, _read_png)
            if png:
                images[path.name] = png
        for name in EXPLAIN_TABLES:
            frame = attempt(name, explain_dir / explain_table_file_name(name), pd.read_csv)
            if frame is not None:
                tables[name] = frame
    else:
        missing["explain"] = f"{explain_dir} does not exist (has the explain stage run?)"
    target = targets = target_curves = None
    if paths.target_report is not None and paths.targets_dir is not None:
        target = attempt("target", Path(paths.target_report), _read_json)
        targets = attempt("target", Path(paths.targets_dir) / TARGETS_FILE, _read_table)
        target_curves = attempt("target", Path(paths.targets_dir) / CURVES_FILE, _read_table)
    else:
        missing["target"] = "the report was not given the outputs of 'churn target'"
    scores_path = Path(paths.scores)
    changes_path = find_changes_file(scores_path)
    if changes_path is None:
        missing["changes"] = (
            f"no earlier scores to compare with (no {sidecar_path(scores_path, CHANGES_SUFFIX)})"
        )
    return ReportInputs(
        ingest=attempt("ingest", Path(paths.ingest_report), _read_json),
        data_check=attempt("data_check", Path(paths.data_check), _read_json)
        if paths.data_check is not None
        else None,
        train=attempt("train", Path(paths.train_report), _read_json),
        model=attempt("model", Path(paths.model_record), _read_json),
        metrics=attempt("metrics", Path(paths.metrics), _read_json),
        plots=plots,
        catalog=attempt("catalog", Path(paths.catalog), read_catalog),
        explain_images=images,
        explain_tables=tables,
        explain_summary=attempt(
            "explain_summary", explain_dir / EXPLAIN_SUMMARY_FILE, _read_json
        ),
        labels=attempt("labels", Path(paths.labels), _read_table),
        customers=attempt("customers", Path(paths.customers), _read_table)
        if paths.customers is not None
        else None,
        scores=attempt("scores", scores_path, _read_table),
        changes=attempt("changes", changes_path, _read_table) if changes_path else None,
        monitor=attempt("monitor", Path(paths.monitor), _read_json)
        if paths.monitor is not None
        else None,
        target=target,
        targets=targets,
        target_curves=target_curves,
        missing=missing,
    )


def find_changes_file(scores_path: str | Path) -> Path | None:
    """Return the "what changed" sidecar the score stage wrote beside ``scores_path``, if any.

    The name is :func:`churn.layout.sidecar_path` with :data:`churn.layout.CHANGES_SUFFIX`, the
    one the score stage writes (``<stem>_changes.parquet`` whatever the scores' format). Other
    files are not guessed at: a stale or unrelated table must not pass for this run's changes.
    """
    path = sidecar_path(scores_path, CHANGES_SUFFIX)
    return path if path.exists() else None


def _read_png(path: Path) -> bytes:
    # Embedded as image/png whatever it holds: refuse anything else rather than show a
    # broken image (or smuggle other content into the page).
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    return data


def _read_json(path: Path) -> dict[str, Any]:
    payload = json.loads(path.read_text())
    if not isinstance(payload, dict):
        raise ValueError(f"expected a JSON object, got {type(payload).__name__}")
    return payload


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix.lower() == ".csv":
        # Identifiers stay text (leading zeros); numbers are parsed for the charts and sums.
        return pd.read_csv(path, dtype={"customer_id": str})
    return pd.read_parquet(path)
