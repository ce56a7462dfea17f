"""Global explanations: which features, families and journey phases drive churn risk.

The pure core :func:`compute_global_importance` aggregates per-row SHAP contributions (log-odds)
into mean ``|SHAP|`` per feature, per family and per journey phase (pre-sale vs post-sale). The
runner :func:`run_explain` samples customers at the most recent cutoff, explains them with exact
TreeSHAP, writes tables, a summary and PNGs (beeswarm, bars, dependence plots), and logs the PNGs
to the training run's MLflow record when the model directory names one. MLflow is imported in a
helper process while the stage explains and draws (:func:`churn.tracking.artifacts.plot_logger`):
the stage runs on one core, and the import alone took about a third of its time.

A family's (phase's) importance is the *sum* of its features' mean ``|SHAP|``, i.e. the mean
over customers of the total absolute contribution of its features; its share divides by the sum
over all features. Absolute values are used because a global view asks how much a group moves
scores, in either direction.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churn.errors import DataContractError
from churn.io import atomic_directory, atomic_path, read_latest_rows, write_json, write_table
from churn.layout import EXPLAIN_SUMMARY_FILE, EXPLAIN_TABLES, explain_table_file_name
from churn.model.artifact import ChurnModel
from churn.model.importance import (
    SAMPLE_SEED,
    GlobalImportance,
    compute_global_importance,
    select_explain_sample,
)
from churn.model.scoring import ContributionsFn
from churn.tracking.artifacts import plot_logger

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from churn.config import Params

logger = logging.getLogger(__name__)


#: Features shown in the beeswarm and bar plots.
TOP_FEATURES_SHOWN = 20


#: Categorical levels shown one by one in a dependence plot (the rest are pooled).
MAX_LEVELS_SHOWN = 15


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _save(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def escape_plot_text(text: Any) -> str:
    """Return ``text`` as matplotlib shows it literally: every ``$`` escaped.

    Two ``$`` in a label start mathtext; a category value such as ``$\\frac{a}{b}$`` (data, not
    markup) would be rendered as a formula or crash the drawing.
    """
    return str(text).replace("$", r"\$")


def _bar(plt: Any, labels: list[str], values: np.ndarray, title: str, xlabel: str) -> Figure:
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(labels) + 1.4))
    ax.barh([escape_plot_text(label) for label in labels[::-1]], values[::-1], color="#3b6ea5")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    fig.tight_layout()
    return fig


def _dependence(
    plt: Any, name: str, values: pd.Series, shap_values: np.ndarray, levels: tuple[str, ...]
) -> Figure:
    """Scatter of a feature's raw value against its contribution (categories on a jittered axis)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    if levels:
        text = values.astype("object").where(values.notna(), None).map(str, na_action="ignore")
        known = text.where(text.isin(levels))  # unseen levels are scored as missing
        counts = known.value_counts()
        # High-cardinality columns (campaigns) get their most frequent levels, the rest pooled.
        labels = list(counts.index[:MAX_LEVELS_SHOWN])
        x = pd.Index(labels).get_indexer(known).astype(float)
        if len(counts) > len(labels):
            x[(x < 0) & known.notna().to_numpy()] = len(labels)
            labels.append(f"other ({len(counts) - len(labels)} levels)")
        if known.isna().any():
            x[known.isna().to_numpy()] = len(labels)
            labels.append("missing / unseen")
        jitter = np.random.default_rng(SAMPLE_SEED).uniform(-0.2, 0.2, len(x))
        ax.scatter(x + jitter, shap_values, s=8, alpha=0.5, color="#3b6ea5")
        shown = [escape_plot_text(label) for label in labels]
        ax.set_xticks(range(len(labels)), shown, rotation=30, ha="right")
    else:
        numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        ax.scatter(numeric, shap_values, s=8, alpha=0.5, color="#3b6ea5")
        missing = int(np.isnan(numeric).sum())
        if missing:
            ax.set_title(f"{missing} missing values not shown", fontsize=8, loc="right")
    ax.axhline(0.0, color="#888888", linewidth=0.8)
    ax.set_xlabel(escape_plot_text(name))
    ax.set_ylabel("SHAP contribution (log-odds)")
    fig.suptitle(f"Dependence: {escape_plot_text(name)}")
    fig.tight_layout()
    return fig


def _beeswarm(
    plt: Any, model: ChurnModel, sample: pd.DataFrame, values: np.ndarray, base: np.ndarray
) -> Figure:
    with warnings.catch_warnings():
        # On import, shap's colour module calls Colormap.set_bad/set_over/set_under, which
        # matplotlib 3.11 marks as pending deprecation; nothing we can change from here.
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning, module="shap")
        import shap
    explanation = shap.Explanation(
        values=values,
        base_values=base,
        data=model.prepare(sample),  # categories as level codes: colour shows low/high code
        feature_names=[escape_plot_text(name) for name in model.feature_names],
    )
    fig, ax = plt.subplots(figsize=(8.0, 0.4 * min(TOP_FEATURES_SHOWN, values.shape[1]) + 1.5))
    # shap's beeswarm shuffles and jitters the dots with NumPy's global random state (it takes
    # no generator): seeded here and restored after, so the same run draws the same picture.
    state = np.random.get_state()
    np.random.seed(SAMPLE_SEED)
    try:
        shap.plots.beeswarm(
            explanation, max_display=TOP_FEATURES_SHOWN, ax=ax, show=False, plot_size=None
        )
    finally:
        np.random.set_state(state)
    ax.set_xlabel("SHAP contribution (log-odds)")
    return fig


def draw_plots(
    model: ChurnModel,
    sample: pd.DataFrame,
    values: np.ndarray,
    base: np.ndarray,
    importance: GlobalImportance,
    out_dir: Path,
    dependence_features: int,
) -> list[Path]:
    """Write the explanation PNGs into ``out_dir`` and return their paths."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a batch machine; set here, never at import
    import matplotlib.pyplot as plt

    top = importance.features.head(TOP_FEATURES_SHOWN)
    figures = {
        "shap_beeswarm.png": lambda: _beeswarm(plt, model, sample, values, base),
        "importance_features.png": lambda: _bar(
            plt,
            list(top["feature"]),
            top["mean_abs_shap"].to_numpy(),
            "Feature importance",
            "mean |SHAP| (log-odds)",
        ),
        "importance_families.png": lambda: _bar(
            plt,
            list(importance.families["family"]),
            importance.families["share"].to_numpy(),
            "Share of mean |SHAP| by feature family",
            "share",
        ),
        "importance_phases.png": lambda: _bar(
            plt,
            list(importance.phases["phase"]),
            importance.phases["share"].to_numpy(),
            "Share of mean |SHAP| by journey phase",
            "share",
        ),
    }
    position = {name: j for j, name in enumerate(model.feature_names)}
    for name in importance.features["feature"].head(dependence_features):
        figures[f"dependence_{_safe_name(name)}.png"] = lambda name=name: _dependence(
            plt,
            name,
            sample[name],
            values[:, position[name]],
            model.categorical_levels.get(name, ()),
        )
    written = []
    for file_name, draw in figures.items():
        fig = draw()
        try:
            _save(fig, out_dir / file_name)
        finally:
            plt.close(fig)
        written.append(out_dir / file_name)
    return written


def run_explain(
    params: Params,
    features_path: str | Path,
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    contributions_fn: ContributionsFn | None = None,
) -> dict[str, Any]:
    """Explain the model globally on a sample of the latest cutoff and write the results.

    Writes into ``out_dir``: ``global_importance.csv`` (feature, family, phase, mean_abs_shap,
    share), ``family_importance.csv``, ``phase_importance.csv``, ``explain.json`` (summary) and
    PNGs: ``shap_beeswarm.png``, ``importance_features.png``, ``importance_families.png``,
    ``importance_phases.png`` and ``dependence_<feature>.png`` for the top
    ``explain.dependence_features`` features.

    Args:
        params: Pipeline parameters (``explain`` section).
        features_path: Feature table from ``churn features``.
        model_dir: The exported champion (``churn train --model-dir``; its ``registry.json``
            names the MLflow run the plots are logged to), the model score uses too.
        out_dir: Output directory.
        contributions_fn: Contributions kernel (default ``model.contributions``).

    Returns:
        The summary written to ``explain.json``.
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    with plot_logger(model_dir) as log_plots:
        return _explain(params, features_path, model_dir, out_dir, contributions_fn, log_plots)


def _explain(  # run_explain's work, with the plots' logging under way
    params: Params,
    features_path: str | Path,
    model_dir: Path,
    out_dir: Path,
    contributions_fn: ContributionsFn | None,
    log_plots: Callable[[Sequence[Path]], str | None],
) -> dict[str, Any]:
    model = ChurnModel.load(model_dir)
    # The sample comes from the latest cutoff: only its rows are read.
    features = read_latest_rows(features_path)
    sample = select_explain_sample(features, params.explain.sample_rows, SAMPLE_SEED)
    values, base = (contributions_fn or model.contributions)(sample)
    if values.shape[1] != len(model.feature_names):
        raise DataContractError("contributions do not have one column per model feature")
    importance = compute_global_importance(
        pd.DataFrame(values, columns=list(model.feature_names)), model.catalog
    )
    # The folder is one unit: written into a staging folder beside it and swapped in whole,
    # so a failure (or a kill) midway leaves the previous explanation, never a mix.
    with atomic_directory(out_dir) as staging:
        tables = (importance.features, importance.families, importance.phases)
        for name, table in zip(EXPLAIN_TABLES, tables, strict=True):
            write_table(table, staging / explain_table_file_name(name), "csv")
        plots = draw_plots(
            model, sample, values, base, importance, staging, params.explain.dependence_features
        )
        run_id = log_plots(plots)
        cutoff = sample["cutoff"].max() if "cutoff" in sample.columns else None
        summary = {
            "cutoff": None if cutoff is None else pd.Timestamp(cutoff).isoformat(),
            "rows_explained": len(sample),
            "sample_seed": SAMPLE_SEED,
            "mean_base_value": float(np.mean(base)),
            "top_features": importance.features.head(10)[["feature", "mean_abs_shap"]].to_dict(
                "records"
            ),
            "family_share": dict(
                zip(importance.families["family"], importance.families["share"], strict=True)
            ),
            "phase_share": dict(
                zip(importance.phases["phase"], importance.phases["share"], strict=True)
            ),
            "plots": [path.name for path in plots],
            "mlflow_run_id": run_id,
        }
        write_json(summary, staging / EXPLAIN_SUMMARY_FILE)
    logger.info("explained %d customers -> %s", len(sample), out_dir)
    return summary
