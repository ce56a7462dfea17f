"""What the report reads: every input file, loaded once, tolerant of missing parts."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from churn.domain.catalog import read_catalog
from churn.errors import DataContractError

logger = logging.getLogger(__name__)


PLOT_NAMES = ("roc", "precision_recall", "calibration", "gains")


EXPLAIN_TABLES = ("global_importance", "family_importance", "phase_importance")


DEFAULT_SEGMENTS = ("plan", "acquisition_channel", "billing_period")


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


#: The train stage's record of the model every later stage used (in the reports directory).
MODEL_RECORD_FILE = "model.json"


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report can show; each field is ``None`` or empty when unavailable.

    Attributes:
        ingest: ``reports/ingest.json`` (rows in, valid, quarantined per table).
        train: ``reports/train.json`` (splits, metrics, gate decision).
        model: ``reports/model.json``: the model evaluate, explain and score used (the
            champion after the gate), and whether the model trained in this run was promoted.
        metrics: ``reports/metrics.json`` (test, baseline, segments, backtest, oracle).
        plots: Plot data frames by name (``roc``, ``precision_recall``, ``calibration``,
            ``gains``).
        catalog: Feature catalog (name, family, phase, kind, unit, description).
        explain_images: Explanation PNG bytes by file name.
        explain_tables: Explanation CSV tables by stem (see :data:`EXPLAIN_TABLES`).
        explain_summary: ``reports/explain/explain.json``.
        labels: Labels frame (customer, cutoff, label, mrr, plan, billing period, tenure).
        customers: Validated customers table (customer attributes such as the acquisition
            channel), when the runner is given one.
        scores: Scores frame of the latest scoring run.
        changes: Changes since the previous scoring run, when the score stage wrote them.
        segment_columns: Customer attributes to break scores down by.
        missing: Input name -> why it is unavailable (shown in the report).
        generated_at: Time stamp shown in the header; ``None`` keeps the output reproducible.
    """

    ingest: dict[str, Any] | None = None
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
    missing: Mapping[str, str] = field(default_factory=dict)
    generated_at: str | None = None

    def why(self, name: str) -> str:
        """Return why input ``name`` is unavailable (for "not available" notes)."""
        return self.missing.get(name, f"{name} was not provided")


def load_report_inputs(
    reports_dir: str | Path,
    labels_path: str | Path,
    scores_path: str | Path,
    customers_path: str | Path | None = None,
) -> ReportInputs:
    """Read the pipeline's outputs for the report, recording what is missing and why.

    Args:
        reports_dir: The ``reports/`` directory (JSON reports, ``plots/``, ``explain/``,
            ``feature_catalog.csv``).
        labels_path: Labels Parquet.
        scores_path: Scores file (Parquet or CSV); a changes file beside it is picked up.
        customers_path: Validated customers table for segment attributes the scores and
            labels lack (the acquisition channel); ``None`` to go without.

    Returns:
        The inputs; unreadable or absent ones are ``None``/empty with a reason in ``missing``.
    """
    reports_dir, labels_path, scores_path = Path(reports_dir), Path(labels_path), Path(scores_path)
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
        frame = attempt(name, reports_dir / "plots" / f"{name}.csv", pd.read_csv)
        if frame is not None:
            plots[name] = frame
    explain_dir = reports_dir / "explain"
    images, tables = {}, {}
    if explain_dir.is_dir():
        for path in sorted(explain_dir.glob("*.png")):
            png = attempt(path.name, path, _read_png)
            if png:
                images[path.name] = png
        for name in EXPLAIN_TABLES:
            frame = attempt(name, explain_dir / f"{name}.csv", pd.read_csv)
            if frame is not None:
                tables[name] = frame
    else:
        missing["explain"] = f"{explain_dir} does not exist (has the explain stage run?)"
    changes_path = find_changes_file(scores_path)
    if changes_path is None:
        missing["changes"] = (
            f"no earlier scores to compare with (no *changes* file beside {scores_path})"
        )
    return ReportInputs(
        ingest=attempt("ingest", reports_dir / "ingest.json", _read_json),
        train=attempt("train", reports_dir / "train.json", _read_json),
        model=attempt("model", reports_dir / MODEL_RECORD_FILE, _read_json),
        metrics=attempt("metrics", reports_dir / "metrics.json", _read_json),
        plots=plots,
        catalog=attempt("catalog", reports_dir / "feature_catalog.csv", read_catalog),
        explain_images=images,
        explain_tables=tables,
        explain_summary=attempt("explain_summary", explain_dir / "explain.json", _read_json),
        labels=attempt("labels", labels_path, _read_table),
        customers=attempt("customers", Path(customers_path), _read_table)
        if customers_path is not None
        else None,
        scores=attempt("scores", scores_path, _read_table),
        changes=attempt("changes", changes_path, _read_table) if changes_path else None,
        missing=missing,
    )


def find_changes_file(scores_path: str | Path) -> Path | None:
    """Return the "what changed" file the score stage wrote beside ``scores_path``, if any.

    The conventional name is ``<stem>_changes<suffix>``; any other ``*change*`` table in the
    same directory is accepted so a renamed file is still found.
    """
    scores_path = Path(scores_path)
    preferred = scores_path.with_name(f"{scores_path.stem}_changes{scores_path.suffix}")
    if preferred.exists():
        return preferred
    if not scores_path.parent.is_dir():
        return None
    candidates = sorted(
        p
        for p in scores_path.parent.iterdir()
        if re.search(r"change", p.name, re.IGNORECASE) and p.suffix in (".parquet", ".csv")
    )
    return candidates[0] if candidates else None


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
