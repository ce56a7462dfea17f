"""The ``churn evaluate`` stage: metrics, plots data, backtest and oracle comparison."""

from __future__ import annotations

import json
import logging
from concurrent.futures import Executor, Future
from contextlib import ExitStack
from dataclasses import dataclass
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
from churn.model.backtest import refit_backtest_cutoff, run_rolling_backtest
from churn.model.evaluation import evaluate_models, flatten_for_mlflow
from churn.model.horizon_evaluation import (
    ModelFormPlan,
    compare_model_forms,
    plan_model_forms,
    read_churn_times,
)
from churn.model.metrics import make_jsonable
from churn.model.survival import has_survival_head
from churn.stages.fit_workers import (
    build_model_form_frame,
    collect_model_forms,
    count_fit_workers,
    estimate_worker_bytes,
    keep_columns,
    list_model_form_columns,
    open_fit_pool,
    read_available_memory,
    submit_backtest_refits,
    submit_model_form_fits,
    use_one_thread,
)

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

    tuned = model.metadata.get("tuned_params") or {}
    backtest_params = params.model_copy(update={"train": params.train.model_copy(update=tuned)})
    compare = labels_path is not None and has_survival_head(model_dir)
    fits = params.evaluate.backtest_cutoffs
    fits += 1 + len(params.label.horizons_days) if compare else 0
    # Each worker reads at most every row of the file (the backtest's refits read the rows up
    # to their cutoff, the comparison's the rows of its cutoffs) and about all its columns.
    workers = count_fit_workers(
        backtest_params,
        fits,
        bytes_per_worker=estimate_worker_bytes(len(features), len(features.columns)),
        available_bytes=read_available_memory(),
    )
    if workers == 0 and count_fit_workers(backtest_params, fits) > 0:
        # No room for workers: the fits run here with the one thread a worker would use.
        params, backtest_params = use_one_thread(params), use_one_thread(backtest_params)
    # Every independent fit of this stage (the model-form comparison's, the backtest's) goes to
    # one pool of worker processes, submitted before the in-process work so that the workers
    # fit while this process computes the test metrics.
    with ExitStack() as stack:
        pool = open_fit_pool(workers) if workers else None
        if pool is not None:
            # On an error here, fits not yet started are dropped rather than run to no use.
            stack.callback(pool.shutdown, wait=True, cancel_futures=True)
        comparison: ModelFormComparison | None = None
        churn_times: pd.DataFrame | None = None
        if compare:
            assert labels_path is not None  # for the type checker: compare implies labels
            # Read once: the comparison's frame and the head on test both attach them.
            churn_times = read_churn_times(labels_path)
            comparison = start_model_form_comparison(
                pool,
                Path(features_path),
                Path(labels_path),
                features,
                churn_times,
                model.catalog,
                params,
            )
        evaluation = evaluate_models(features, model, baseline, params, truth)
        head_on_test = None
        if churn_times is not None:
            head_on_test = measure_head_on_test(features, model_dir, churn_times, params, truth)
        # The backtest refits on exactly the exported model's features and catalog; the cutoff
        # training already fitted is scored with the exported model, the others are refitted
        # in the pool's workers, which read the features file themselves.
        columns = [*KEY_COLUMNS, *model.feature_names]
        model_frame = keep_columns(features, columns)  # shared with features, not copied
        del features

        def refit(cutoffs: list[pd.Timestamp]) -> list[dict[str, Any]]:
            if pool is None:
                return [
                    refit_backtest_cutoff(model_frame, model.catalog, backtest_params, cutoff)
                    for cutoff in cutoffs
                ]
            logger.info("backtest: %d refit(s) in %d worker process(es)", len(cutoffs), workers)
            futures = submit_backtest_refits(
                pool, Path(features_path), columns, model.catalog, backtest_params, cutoffs
            )
            return [future.result() for future in futures]

        backtest, notes = run_rolling_backtest(
            model_frame, model.catalog, backtest_params, fitted=(model, baseline), refit=refit
        )
        horizons = None
        if comparison is not None:
            compared, note = finish_model_form_comparison(comparison, model.catalog, params, truth)
            horizons = {
                "model_form": params.train.model_form,
                "test": head_on_test,
                "comparison": compared,
                "comparison_note": note,
            }
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


@dataclass
class ModelFormComparison:
    """The model-form comparison under way: its frame and plan, and the fits' futures (none
    when the fits run in this process, or when the comparison could not be planned)."""

    frame: pd.DataFrame | None
    plan: ModelFormPlan | None
    futures: dict[str, Future[dict[str, Any]]] | None
    note: str | None = None


def start_model_form_comparison(
    pool: Executor | None,
    features_path: Path,
    labels_path: Path,
    features: pd.DataFrame,
    churn_times: pd.DataFrame,
    catalog: pd.DataFrame,
    params: Params,
) -> ModelFormComparison:
    """Plan the model-form comparison and submit its fits to ``pool`` (if any).

    The frame is built from ``features`` (the file's rows, already in memory; its columns are
    shared, not copied) and ``churn_times`` (:func:`read_churn_times` of ``labels_path``) by the
    function each worker applies to what it reads from ``features_path`` and ``labels_path``
    (:func:`build_model_form_frame`), so this process and the workers plan
    the same split (a test checks the two frames equal). Reading the file again here added
    1.6 GB to the stage's peak at 100k customers. A comparison that cannot be planned (e.g.
    too few cutoffs for the longest horizon's purge window) comes back with a note and no fits.
    """
    columns = list_model_form_columns(list(features.columns), catalog)
    frame = build_model_form_frame(features, churn_times, columns)
    try:
        plan = plan_model_forms(frame, catalog, params)
    except ModelError as exc:
        note = f"model forms not compared: {exc}"
        logger.warning(note)
        return ModelFormComparison(None, None, None, note)
    futures = None
    if pool is not None:
        futures = submit_model_form_fits(
            pool, features_path, labels_path, columns, catalog, params, plan
        )
    return ModelFormComparison(frame, plan, futures)


def finish_model_form_comparison(
    comparison: ModelFormComparison,
    catalog: pd.DataFrame,
    params: Params,
    truth: pd.DataFrame | None,
) -> tuple[dict[str, Any] | None, str | None]:
    """Return the comparison's metrics and note: the workers' fits summarised, or the fits
    run here when there are no workers; ``(None, note)`` when a fit fails."""
    if comparison.frame is None or comparison.plan is None:
        return None, comparison.note
    try:
        if comparison.futures is None:
            return compare_model_forms(comparison.frame, catalog, params, truth), None
        return collect_model_forms(
            comparison.frame, comparison.plan, params, comparison.futures, truth
        ), None
    except ModelError as exc:  # e.g. a slice of the comparison's split holds no churn event
        note = f"model forms not compared: {exc}"
        logger.warning(note)
        return None, note


def measure_head_on_test(
    features: pd.DataFrame,
    model_dir: Path,
    churn_times: pd.DataFrame,
    params: Params,
    truth: pd.DataFrame | None,
) -> dict[str, Any]:
    """Return the exported survival head's metrics per horizon on the classifier's test rows
    (:func:`churn.model.horizon_evaluation.evaluate_horizons`); ``churn_times`` as
    :func:`read_churn_times` returns them."""
    from churn.model.horizon_evaluation import attach_churn_times, evaluate_horizons
    from churn.model.survival import SurvivalHead

    frame = attach_churn_times(features, churn_times)
    return evaluate_horizons(frame, SurvivalHead.load(model_dir), params, truth)
