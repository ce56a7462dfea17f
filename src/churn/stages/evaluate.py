"""The ``churn evaluate`` stage: metrics, plots data, backtest and oracle comparison."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from concurrent.futures import Executor, Future
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from churn.config import Params
from churn.domain.catalog import CUTOFF, KEY_COLUMNS
from churn.errors import ModelError
from churn.layout import (
    BASELINE_FILE,
    REGISTRY_FILE,
    TEST_PREDICTIONS_FILE,
    TRUTH_CUSTOMER_MONTHS,
    plot_file_name,
    table_file_name,
)
from churn.model.backtest import (
    finish_backtest,
    score_exported_cutoffs,
    select_backtest_cutoffs,
    split_backtest_cutoffs,
)
from churn.model.evaluation import evaluate_models, flatten_for_mlflow
from churn.model.horizon_evaluation import (
    ModelFormPlan,
    compare_model_forms,
    plan_model_forms,
)
from churn.model.metrics import make_jsonable
from churn.model.split import Split, take_rows
from churn.model.survival import has_survival_head
from churn.stages.evaluation_rows import (
    EvaluationRows,
    attach_file_churn_times,
    read_evaluation_rows,
)
from churn.stages.fit_memory import (
    can_refit_beside_metrics,
    count_fit_workers,
    estimate_refit_bytes,
    estimate_worker_bytes,
    read_available_memory,
    read_own_memory,
)
from churn.stages.fit_workers import (
    collect_backtest_refits,
    collect_model_forms,
    limit_native_threads,
    list_categorical_columns,
    open_fit_pool,
    refit_backtest,
    submit_backtest_refits,
    submit_model_form_fits,
    use_one_thread,
    write_model_form_rows,
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
    from churn.io import (
        atomic_directory,
        release_arrow_memory,
        write_json,
        write_parquet,
        write_table,
    )
    from churn.model.artifact import ChurnModel
    from churn.model.baseline import load_baseline
    from churn.model.verification import verify_manifest
    from churn.tracking.runs import connect_training_run, log_run_metrics

    model_dir, plots_dir = Path(model_dir), Path(plots_dir)
    features_path = Path(features_path)
    model = ChurnModel.load(model_dir)
    baseline_path = model_dir / BASELINE_FILE
    if not baseline_path.exists():
        raise ModelError(f"baseline not found at {baseline_path}; run 'churn train' first")
    verify_manifest(model_dir, required=(BASELINE_FILE,))
    baseline = load_baseline(baseline_path)
    truth_path = None if truth_dir is None else Path(truth_dir) / TRUTH_FILE
    if truth_path is not None and not truth_path.exists():
        logger.info("no %s in %s: no oracle metrics", TRUTH_FILE, truth_dir)
        truth_path = None

    tuned = model.metadata.get("tuned_params") or {}
    backtest_params = params.model_copy(update={"train": params.train.model_copy(update=tuned)})
    compare = labels_path is not None and has_survival_head(model_dir)
    rows = read_evaluation_rows(
        features_path, Path(labels_path) if compare else None, model.catalog, params
    )
    # numba compiles the kernels the test rows' predictions and explanations will use while
    # the comparison is planned and its rows read, instead of at the first prediction (at a
    # million customers this process's metrics run before the refits start, so its delays add
    # to the stage's time). The test rows bound both calls from above.
    model.start_compiling(len(rows.frame))
    fits = params.evaluate.backtest_cutoffs
    fits += 1 + len(params.label.horizons_days) if compare else 0
    # The backtest refits on exactly the exported model's features and catalog, reading the
    # rows up to its cutoff from the file (a worker does the same).
    columns = [*KEY_COLUMNS, *model.feature_names]
    # The backtest's splits of the keys, made once for the refits' memory and the plan below.
    splits = split_backtest_cutoffs(
        rows.keys, backtest_params, select_backtest_cutoffs(rows.keys, backtest_params)[0]
    )
    bytes_per_worker = estimate_fit_bytes(rows, backtest_params, columns, model.catalog, splits)
    workers = count_fit_workers(
        backtest_params,
        fits,
        bytes_per_worker=bytes_per_worker,
        available_bytes=read_available_memory(),
    )
    if workers == 0 and count_fit_workers(backtest_params, fits) > 0:
        # No room for workers: the fits run here with the one thread a worker would use.
        params, backtest_params = use_one_thread(params), use_one_thread(backtest_params)
    # Every independent fit of this stage (the model-form comparison's, the backtest's) goes to
    # one pool of worker processes. The comparison's fits are submitted before the in-process
    # work so that the workers fit while this process computes the test metrics; the refits
    # join them when memory allows, else they start once the test rows are let go.
    with ExitStack() as stack:
        # What the workers read besides the features file (the comparison's rows, 0.13 GB
        # at a million customers), in the system's temporary folder (TMPDIR); removed after
        # the pool has shut down (the exit stack unwinds in reverse).
        scratch = (
            Path(stack.enter_context(TemporaryDirectory(prefix="churn-evaluate-")))
            if workers
            else None
        )
        pool = open_fit_pool(workers) if workers else None
        if pool is not None:
            # On an error here, fits not yet started are dropped rather than run to no use.
            stack.callback(pool.shutdown, wait=True, cancel_futures=True)
        comparison: ModelFormComparison | None = None
        if rows.comparison is not None:
            assert labels_path is not None  # for the type checker: a comparison needs labels
            comparison = start_model_form_comparison(
                pool, scratch, rows.comparison, model.catalog, params, note=rows.comparison_note
            )
        elif compare:
            comparison = ModelFormComparison(None, None, None, rows.comparison_note)
        plan = score_exported_cutoffs(
            rows.keys, backtest_params, fitted=(model, baseline), rows=rows.frame, splits=splits
        )
        # The refits queue behind the comparison's fits, so the workers do not wait for the
        # metrics below, when memory allows it (can_refit_beside_metrics).
        early_refits = None
        if (
            pool is not None
            and plan.pending
            and can_refit_beside_metrics(
                workers, bytes_per_worker, read_own_memory(), read_available_memory()
            )
        ):
            logger.info(
                "backtest: %d refit(s) in %d worker process(es), beside the metrics",
                len(plan.pending),
                workers,
            )
            early_refits = submit_backtest_refits(
                pool, features_path, columns, model.catalog, backtest_params, plan.pending
            )
        truth = None
        if truth_path is not None:
            truth = read_truth_months(truth_path, find_earliest_truth_cutoff(rows, comparison))
        evaluation = evaluate_models(rows.frame, model, baseline, params, truth, split=rows.split,
                                     known=plan.scored.values())
        head_on_test = None
        if rows.churn_times is not None:
            # The oracle at the label horizon on the same test rows is computed once.
            predictions = evaluation.predictions
            known_oracle = (
                {params.label.horizon_days: predictions["oracle_probability"].to_numpy()}
                if "oracle_probability" in predictions
                else {}
            )
            head_on_test = measure_head_on_test(rows, model_dir, params, truth, known_oracle)
        horizons = None
        if comparison is not None and comparison.futures is None:
            # Fitted here: done before the backtest's refits so that their rows and the
            # comparison's are not held at once.
            compared, note = finish_model_form_comparison(comparison, model.catalog, params, truth)
            comparison = ModelFormComparison(None, None, None, note, compared)
            rows = rows.without_comparison()

        # Nothing reads the test rows after this: let them go before the refits run, and hand
        # the freed pages back to the system. At 1M customers this process then holds 1.48 GB
        # beside the two refit workers instead of 2.27 GB (letting go alone: 2.27 GB; the
        # stage's processes together 11.8 GB instead of 12.6 GB at their peak, 2026-12-05).
        rows = rows.without_test_rows()
        release_arrow_memory()
        # MLflow's import and store (about 2 s) while the workers refit, not after them.
        registry_path = model_dir / REGISTRY_FILE
        training_run = (
            connect_training_run(json.loads(registry_path.read_text()))
            if registry_path.exists()
            else None
        )
        if early_refits is not None:
            refitted = collect_backtest_refits(early_refits)
        else:
            if pool is not None and plan.pending:
                logger.info(
                    "backtest: %d refit(s) in %d worker process(es)", len(plan.pending), workers
                )
            refitted = refit_backtest(
                pool, features_path, columns, model.catalog, backtest_params, plan.pending
            )
        backtest, notes = finish_backtest(plan, refitted)
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
    if training_run is not None:
        from churn.model.horizon_evaluation import flatten_horizons_for_mlflow

        logged = {**flatten_for_mlflow(metrics), **flatten_horizons_for_mlflow(horizons)}
        log_run_metrics(training_run, logged)
    return metrics


def find_earliest_truth_cutoff(
    rows: EvaluationRows, comparison: ModelFormComparison | None
) -> pd.Timestamp | None:
    """Return the earliest cutoff of the rows the stage measures against the truth.

    Those are the model's test rows (the test metrics, the reason agreement and the head on
    test) and the model-form comparison's test rows; the backtest reads no truth. ``None``
    when there are none (nothing then needs the truth).
    """
    cutoffs = [rows.frame[CUTOFF]]
    if comparison is not None and comparison.frame is not None and comparison.plan is not None:
        cutoffs.append(take_rows(comparison.frame[[CUTOFF]], comparison.plan.split.test)[CUTOFF])
    earliest = pd.concat(cutoffs, ignore_index=True).min()
    return None if pd.isna(earliest) else pd.Timestamp(earliest)


def read_truth_months(path: Path, earliest_cutoff: pd.Timestamp | None) -> pd.DataFrame:
    """Read the simulator's ``customer_months`` truth from the month before ``earliest_cutoff``.

    Everything the stage computes from the truth starts at a measured row's cutoff: the oracle
    takes the months whose churn ends (``end_if_churned``, on or after the month's start and
    before the next month's) lie in a window starting at a cutoff, and the reason agreement the
    months starting at a cutoff. A month's churn ends inside the month, so the months before
    the earliest cutoff's month end before it and change no number: they are not read, except
    the one just before, kept as a margin (a test checks the numbers). At 1M customers
    the whole truth is 11.9M rows (1.5 GB as a frame, 3.8 GB while read) held by the stage's
    process while its fit workers run, and a default run's test rows use the last few of its
    24 months. A truth without ``month_start`` is read whole (the metrics then say what is
    missing).

    Args:
        path: The ``customer_months`` Parquet file.
        earliest_cutoff: :func:`find_earliest_truth_cutoff` (``None``: read whole).
    """
    from churn.io import read_parquet_frame

    schema = pq.read_schema(path)
    if earliest_cutoff is None or "month_start" not in schema.names:
        return read_parquet_frame(path)
    since = pd.Timestamp(earliest_cutoff)
    since = since.tz_localize("UTC") if since.tz is None else since.tz_convert("UTC")
    since -= pd.DateOffset(months=1)
    zone = getattr(schema.field("month_start").type, "tz", None)
    # The filter's value must carry the column's zone (none: naive UTC, as cutoffs are UTC).
    since = since.tz_convert(zone) if zone else since.tz_localize(None)
    return read_parquet_frame(path, filters=[("month_start", ">=", since)])


def estimate_fit_bytes(
    rows: EvaluationRows,
    params: Params,
    columns: list[str],
    catalog: pd.DataFrame,
    splits: Mapping[pd.Timestamp, Split | None],
) -> int:
    """Return the memory the largest of the stage's fits is expected to need in a worker: a
    backtest refit on ``columns`` at one of ``splits``' cutoffs
    (:func:`churn.stages.fit_memory.estimate_refit_bytes`) or a model-form fit, which reads the
    comparison's rows and columns."""
    thin = len(list_categorical_columns(columns, catalog))
    largest = estimate_refit_bytes(rows.keys, params, splits, len(columns), thin)
    if rows.comparison is not None:
        comparison = estimate_worker_bytes(len(rows.comparison), len(rows.comparison.columns))
        largest = max(largest, comparison)
    return largest


@dataclass
class ModelFormComparison:
    """The model-form comparison under way: its frame and plan, and the fits' futures (none
    when the fits run in this process, or when the comparison could not be planned); once
    finished without the frame, its ``result`` and ``note``."""

    frame: pd.DataFrame | None
    plan: ModelFormPlan | None
    futures: dict[str, Future[dict[str, Any]]] | None
    note: str | None = None
    result: dict[str, Any] | None = None


def start_model_form_comparison(
    pool: Executor | None,
    scratch: Path | None,
    frame: pd.DataFrame,
    catalog: pd.DataFrame,
    params: Params,
    *,
    note: str | None = None,
) -> ModelFormComparison:
    """Plan the model-form comparison on ``frame`` and submit its fits to ``pool`` (if any).

    ``frame`` is :attr:`EvaluationRows.comparison`. With a pool it is written once to
    ``scratch`` (:func:`churn.stages.fit_workers.write_model_form_rows`) and every worker plans
    and fits on that same frame. A comparison that cannot be planned (e.g. a slice without a
    live feature) comes back with a note and no fits. ``note`` (e.g. that the comparison runs
    on a sample of the customers) goes into the metrics.
    """
    try:
        plan = plan_model_forms(frame, catalog, params)
    except ModelError as exc:
        note = f"model forms not compared: {exc}"
        logger.warning(note)
        return ModelFormComparison(None, None, None, note)
    futures = None
    if pool is not None:
        assert scratch is not None  # for the type checker: a pool comes with its scratch
        rows_path = write_model_form_rows(frame, scratch)
        futures = submit_model_form_fits(pool, rows_path, catalog, params, plan)
    return ModelFormComparison(frame, plan, futures, note)


def finish_model_form_comparison(
    comparison: ModelFormComparison,
    catalog: pd.DataFrame,
    params: Params,
    truth: pd.DataFrame | None,
) -> tuple[dict[str, Any] | None, str | None]:
    """Return the comparison's metrics and note: the workers' fits summarised, or the fits
    run here when there are no workers; ``(None, note)`` when a fit fails."""
    if comparison.frame is None or comparison.plan is None:
        return comparison.result, comparison.note
    try:
        if comparison.futures is None:
            with limit_native_threads():  # as in a worker: the same numbers
                compared = compare_model_forms(comparison.frame, catalog, params, truth)
        else:
            compared = collect_model_forms(
                comparison.frame, comparison.plan, params, comparison.futures, truth
            )
        return compared, comparison.note
    except ModelError as exc:  # e.g. a slice of the comparison's split holds no churn event
        note = f"model forms not compared: {exc}"
        logger.warning(note)
        return None, note


def measure_head_on_test(
    rows: EvaluationRows,
    model_dir: Path,
    params: Params,
    truth: pd.DataFrame | None,
    known_oracle: Mapping[int, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Return the exported survival head's metrics per horizon on the classifier's test rows
    (:func:`churn.model.horizon_evaluation.evaluate_horizons`, which takes ``known_oracle``)."""
    from churn.model.horizon_evaluation import evaluate_horizons
    from churn.model.survival import SurvivalHead

    assert rows.churn_times is not None
    test = attach_file_churn_times(rows.frame, rows.churn_times)
    head = SurvivalHead.load(model_dir)
    return evaluate_horizons(
        test, head, params, truth, split=rows.split, known_oracle=known_oracle
    )
