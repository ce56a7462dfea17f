"""Evaluation on the held-out test cutoff(s): metrics, segments, oracle check, plot data.

The core (:func:`evaluate_models`) scores the exported model and the baseline on the test rows
of the same split training used (:func:`churn.model.split.split_by_time`), and optionally
compares with the simulator's ground truth (:mod:`churn.model.oracle`); the rolling backtest,
which retrains on earlier cutoffs, is :mod:`churn.model.backtest`. The evaluate stage does the
I/O: ``metrics.json`` (nested, for ``dvc metrics``), curve CSVs (``dvc plots``),
``test_predictions.parquet`` (for the report), and ``eval_*`` metrics on the training run in
MLflow.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churn.config import Params
from churn.model.baseline import predict_baseline
from churn.model.explanation_check import compute_reason_agreement
from churn.model.metrics import (
    TOP_DECILE,
    build_calibration_table,
    build_gains_curve,
    build_pr_curve,
    build_roc_curve,
    compute_lift,
    compute_pr_auc,
    compute_roc_auc,
    downsample_curve,
    summarize_ranking,
)
from churn.model.oracle import check_model_below_oracle, compute_oracle_probabilities
from churn.model.split import Split, label_array, split_by_time, take_file_rows, take_rows

if TYPE_CHECKING:
    from churn.model.artifact import ChurnModel
    from churn.model.backtest import ScoredTestRows
    from churn.model.baseline import LogisticBaseline

logger = logging.getLogger(__name__)


REVENUE_COLUMNS = ("mrr_at_cutoff", "mrr")


MAX_SEGMENT_LEVELS = 50


MAX_CURVE_POINTS = 500


@dataclass
class Evaluation:
    """What :func:`evaluate_models` produced.

    Attributes:
        metrics: The nested metrics (the content of ``metrics.json``).
        plots: Curve tables by name (``roc``, ``precision_recall``, ``calibration``, ``gains``).
        predictions: Test rows with label, model, baseline (and oracle) probabilities.
    """

    metrics: dict[str, Any]
    plots: dict[str, pd.DataFrame] = field(default_factory=dict)
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame)


def summarize_segments(
    test: pd.DataFrame, columns: tuple[str, ...] | list[str], predictions: pd.DataFrame
) -> tuple[dict[str, Any], list[str]]:
    """Return ROC AUC per level of each segment column (model and baseline), and notes.

    Columns absent from the frame, with more than 50 levels, and levels holding a single class
    are skipped and named in the notes. Missing values form the level ``missing``.
    """
    segments: dict[str, Any] = {}
    notes: list[str] = []
    labels = predictions["label"].to_numpy()
    for column in columns:
        if column not in test.columns:
            notes.append(f"segment {column!r} skipped: not a column of the features frame")
            continue
        values = test[column].astype("object").where(test[column].notna(), "missing")
        values = values.astype(str).to_numpy()
        levels = sorted(set(values))
        if len(levels) > MAX_SEGMENT_LEVELS:
            notes.append(f"segment {column!r} skipped: {len(levels)} levels")
            continue
        segments[column] = {}
        for level in levels:
            mask = values == level
            y = labels[mask]
            if y.min() == y.max():
                notes.append(f"segment {column}={level} skipped: one class ({mask.sum()} rows)")
                continue
            segments[column][level] = {
                "n": int(mask.sum()),
                "positives": int(y.sum()),
                "roc_auc": compute_roc_auc(y, predictions["churn_probability"].to_numpy()[mask]),
                "baseline_roc_auc": compute_roc_auc(
                    y, predictions["baseline_probability"].to_numpy()[mask]
                ),
            }
    return segments, notes


def build_plot_tables(
    labels: np.ndarray, probabilities: np.ndarray, bins: int
) -> dict[str, pd.DataFrame]:
    """Return the curve tables for ``dvc plots``, each at most 500 rows."""
    calibration = build_calibration_table(labels, probabilities, bins)
    return {
        "roc": downsample_curve(build_roc_curve(labels, probabilities), MAX_CURVE_POINTS),
        "precision_recall": downsample_curve(
            build_pr_curve(labels, probabilities), MAX_CURVE_POINTS
        ),
        "calibration": calibration[["mean_predicted", "fraction_positive"]],
        "gains": downsample_curve(build_gains_curve(labels, probabilities), MAX_CURVE_POINTS),
    }


def evaluate_models(
    features: pd.DataFrame,
    model: ChurnModel,
    baseline: LogisticBaseline,
    params: Params,
    truth: pd.DataFrame | None = None,
    *,
    split: Split | None = None,
    known: Iterable[ScoredTestRows] = (),
) -> Evaluation:
    """Score the model and the baseline on the test rows and collect every metric.

    Args:
        features: The features frame.
        model: The exported ChurnModel.
        baseline: The exported baseline.
        params: All parameters (evaluate, train, label, ingest sections).
        truth: Simulator ``customer_months`` for the oracle, or ``None``.
        split: The split of the features file, made on its keys, when ``features`` holds
            only some of its rows (at least the test rows) indexed by file position
            (:func:`churn.model.split.take_file_rows`). Default: ``features`` is the whole
            file and is split here.
        known: Scores of the model and the baseline on some cutoffs' test rows
            (:attr:`churn.model.backtest.BacktestPlan.scored`); when one holds exactly this
            split's test rows (the same file positions in the same order), its scores are
            used instead of predicting the rows again. They are the same numbers.

    Returns:
        The evaluation (metrics without the backtest, plot tables, test predictions).
    """
    cfg = params.evaluate
    if split is None:
        split = split_by_time(features, params.train, params.label, mode=params.ingest.mode)
        test = take_rows(features, split.test)
    else:
        test = take_file_rows(features, split.test)
    labels = label_array(test)
    predictions = test[["customer_id", "cutoff"]].reset_index(drop=True)
    predictions["label"] = labels
    same = next((k for k in known if np.array_equal(k.positions, split.test)), None)
    if same is not None:
        raw, baseline_probabilities = same.raw, same.baseline
    else:  # raw once: the calibrated probabilities and the raw ranking share it
        raw, baseline_probabilities = model.predict_raw(test), predict_baseline(baseline, test)
    predictions["churn_probability"] = model.calibrator.transform(raw)
    predictions["baseline_probability"] = baseline_probabilities
    notes = list(split.notes)
    evaluated_on = split.describe()["cutoffs"]["test"]
    trained_on = model.metadata.get("test_cutoffs")
    if trained_on is not None and trained_on != evaluated_on:
        notes.append(f"the model was tested on {trained_on} at training; here on {evaluated_on}")
    revenue_column = next((c for c in REVENUE_COLUMNS if c in test.columns), None)
    revenue = None if revenue_column is None else test[revenue_column].to_numpy(dtype=float)
    if revenue is None:
        notes.append(f"no revenue column ({' or '.join(REVENUE_COLUMNS)}): no revenue capture")

    def summarize(probabilities: pd.Series) -> dict[str, Any]:
        return summarize_ranking(
            labels,
            probabilities.to_numpy(),
            bins=cfg.calibration_bins,
            top_fractions=cfg.top_fractions,
            revenue=revenue,
        )

    metrics: dict[str, Any] = {
        "split": {
            "mode": split.mode,
            "test_cutoffs": evaluated_on,
            "n_test": int(labels.size),
        },
        "test": summarize(predictions["churn_probability"]),
        "baseline": {"test": summarize(predictions["baseline_probability"])},
    }
    # Ranking quality of the booster before calibration: a calibrator with few steps ties
    # customers together and costs ranking quality, and this makes that cost visible.
    metrics["test"]["raw_roc_auc"] = compute_roc_auc(labels, raw)
    metrics["test"]["raw_pr_auc"] = compute_pr_auc(labels, raw)
    if truth is not None:
        oracle = compute_oracle_probabilities(test, truth, params.label.horizon_days)
        predictions["oracle_probability"] = oracle
        oracle_auc = compute_roc_auc(labels, oracle)
        metrics["test"]["oracle_roc_auc"] = oracle_auc
        metrics["test"]["oracle_lift_top_decile"] = compute_lift(labels, oracle, TOP_DECILE)
        metrics["test"]["roc_auc_ratio_to_oracle"] = metrics["test"]["roc_auc"] / oracle_auc
        accepted = check_model_below_oracle(
            labels, metrics["test"]["roc_auc"], oracle_auc, model, params
        )
        if accepted is not None:
            notes.append(accepted)
        metrics["explanations"] = compute_reason_agreement(
            model, test, truth, TOP_DECILE, predictions["churn_probability"].to_numpy()
        )
    metrics["segments"], segment_notes = summarize_segments(test, cfg.segments, predictions)
    metrics["notes"] = notes + segment_notes
    plots = build_plot_tables(
        labels, predictions["churn_probability"].to_numpy(), cfg.calibration_bins
    )
    return Evaluation(metrics=metrics, plots=plots, predictions=predictions)


def flatten_for_mlflow(metrics: dict[str, Any]) -> dict[str, float]:
    """Return ``eval_``-prefixed scalar metrics of the ``test``, ``baseline.test`` and
    ``explanations`` blocks."""
    flat: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}_{key}", item)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[prefix] = float(value)

    walk("eval_test", metrics.get("test", {}))
    walk("eval_baseline_test", metrics.get("baseline", {}).get("test", {}))
    walk("eval_explanations", metrics.get("explanations", {}))  # reason agreement (simulated)
    return flat
