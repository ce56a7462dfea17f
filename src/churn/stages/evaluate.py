"""The ``churn evaluate`` stage: metrics, plots data, backtest and oracle comparison."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from churn.config import Params
from churn.domain.catalog import KEY_COLUMNS
from churn.errors import ModelError
from churn.layout import (
    BASELINE_FILE,
    REGISTRY_FILE,
    TEST_PREDICTIONS_FILE,
    TRUTH_CUSTOMER_MONTHS,
    plot_file_name,
    table_file_name,
)
from churn.model.evaluation import (
    evaluate_models,
    flatten_for_mlflow,
    refit_backtest_cutoff,
    run_rolling_backtest,
)
from churn.model.metrics import make_jsonable
from churn.stages.backtest_workers import count_backtest_workers, refit_side_by_side

logger = logging.getLogger(__name__)


TRUTH_FILE = table_file_name(TRUTH_CUSTOMER_MONTHS)


def run_evaluate(
    params: Params,
    features_path: Path,
    model_dir: Path,
    truth_dir: Path | None,
    metrics_path: Path,
    plots_dir: Path,
    labels_path: Path | None = None,
) -> dict[str, Any]:
    """Evaluate the exported model and write metrics, plot data and test predictions.

    Args:
        params: All parameters.
        features_path: Features Parquet.
        model_dir: The exported champion (``churn train --model-dir``: ChurnModel files,
            ``baseline.json``, ``registry.json`` naming its version and run, to which the
            metrics are also logged), each file verified against ``manifest.json`` before it is
            parsed. Train keeps it on the champion after the gate, so these metrics describe the
            same model as explain and score.
        truth_dir: Simulator truth directory; oracle metrics are computed only when it holds
            ``customer_months.parquet``. With ``data.source: files`` the simulate stage leaves
            only a marker there, so own data gets every metric except the oracle ones (nothing
            else downstream, report or explanation, needs the truth).
        metrics_path: Nested metrics JSON.
        plots_dir: Directory for ``roc.csv``, ``precision_recall.csv``, ``calibration.csv``,
            ``gains.csv`` and ``test_predictions.parquet``.
        labels_path: Labels with the churn time. With it and a survival head in
            ``model_dir``, ``metrics["horizons"]`` holds the head at every horizon on the test
            rows and both model forms compared on one split (docs/survival.md).

    Returns:
        The metrics written to ``metrics_path``.
    """
    from churn.io import atomic_directory, read_frame, write_json, write_parquet, write_table
    from churn.model.artifact import ChurnModel
    from churn.model.baseline import load_baseline
    from churn.model.verification import verify_manifest
    from churn.tracking.runs import log_eval_metrics

    model_dir, plots_dir = Path(model_dir), Path(plots_dir)
    model = ChurnModel.load(model_dir)
    baseline_path = model_dir / BASELINE_FILE
    if not baseline_path.exists():
        raise ModelError(f"baseline not found at {baseline_path}; run 'churn train' first")
    verify_manifest(model_dir, required=(BASELINE_FILE,))
    baseline = load_baseline(baseline_path)
    features = read_frame(features_path)
    truth = None
    if truth_dir is not None and (Path(truth_dir) / TRUTH_FILE).exists():
        truth = pd.read_parquet(Path(truth_dir) / TRUTH_FILE)
    elif truth_dir is not None:
        logger.info("no %s in %s: no oracle metrics", TRUTH_FILE, truth_dir)

    evaluation = evaluate_models(features, model, baseline, params, truth)
    tuned = model.metadata.get("tuned_params") or {}
    backtest_params = params.model_copy(update={"train": params.train.model_copy(update=tuned)})
    # The backtest refits on exactly the exported model's features and catalog; the cutoff
    # training already fitted is scored with the exported model, the others are refitted side
    # by side in worker processes reading the features file themselves.
    columns = [*KEY_COLUMNS, *model.feature_names]
    model_frame = features[columns]
    horizons = measure_horizons(features, model_dir, labels_path, model.catalog, params, truth)
    del features  # the model's columns are a copy; free the rest before workers read theirs

    def refit(cutoffs: list[pd.Timestamp]) -> list[dict[str, Any]]:
        workers = count_backtest_workers(backtest_params, len(cutoffs))
        if workers == 0:
            return [
                refit_backtest_cutoff(model_frame, model.catalog, backtest_params, cutoff)
                for cutoff in cutoffs
            ]
        return refit_side_by_side(
            Path(features_path), columns, model.catalog, backtest_params, cutoffs, workers
        )

    backtest, notes = run_rolling_backtest(
        model_frame, model.catalog, backtest_params, fitted=(model, baseline), refit=refit
    )
    metrics = make_jsonable(
        {
            **evaluation.metrics,
            "backtest": backtest,
            **({} if horizons is None else {"horizons": horizons}),
            "notes": evaluation.metrics["notes"] + notes,
        }
    )
    # The plots folder (a DVC output) is swapped in whole: no mixed set, no staging inside it.
    with atomic_directory(plots_dir) as staging:
        for name, table in evaluation.plots.items():
            write_table(table, staging / plot_file_name(name), fmt="csv")
        write_parquet(evaluation.predictions, staging / TEST_PREDICTIONS_FILE)
    write_json(metrics, metrics_path)
    test = evaluation.metrics["test"]
    logger.info(
        "test ROC AUC %.3f (baseline %.3f), top-decile lift %.2f",
        test["roc_auc"],
        evaluation.metrics["baseline"]["test"]["roc_auc"],
        test["lift_top_decile"],
    )
    registry_path = model_dir / REGISTRY_FILE
    if registry_path.exists():
        from churn.model.horizon_evaluation import flatten_horizons_for_mlflow

        logged = {**flatten_for_mlflow(metrics), **flatten_horizons_for_mlflow(horizons)}
        log_eval_metrics(json.loads(registry_path.read_text()), logged)
    return metrics


def measure_horizons(
    features: pd.DataFrame,
    model_dir: Path,
    labels_path: Path | None,
    catalog: pd.DataFrame,
    params: Params,
    truth: pd.DataFrame | None,
) -> dict[str, Any] | None:
    """Return the survival head's metrics per horizon and the model-form comparison, or None.

    ``None`` without labels or without a survival head in ``model_dir`` (classifier only).
    """
    from churn.io import read_frame
    from churn.model.horizon_evaluation import (
        attach_churn_times,
        compare_model_forms,
        evaluate_horizons,
    )
    from churn.model.survival import SurvivalHead, has_survival_head

    if labels_path is None or not has_survival_head(model_dir):
        return None
    frame = attach_churn_times(features, read_frame(labels_path))
    head = SurvivalHead.load(model_dir)
    try:
        comparison, _ = compare_model_forms(frame, catalog, params, truth)
        note = None
    except ModelError as exc:  # e.g. too few cutoffs for the longest horizon's purge window
        comparison, note = None, f"model forms not compared: {exc}"
        logger.warning(note)
    return {
        "model_form": params.train.model_form,
        "test": evaluate_horizons(frame, head, params, truth),
        "comparison": comparison,
        "comparison_note": note,
    }
