"""The evaluate stage's fits side by side: one worker process per fit, one thread each.

The evaluate stage fits models that are independent of each other: the rolling backtest's
refits and the model-form comparison (a survival head and one classifier per horizon,
:mod:`churn.model.horizon_evaluation`). LightGBM on two threads gains little over one (about
1.24x on the 2-core machine, and less under load), so running the fits in separate processes
with one LightGBM thread each uses the cores for the whole fit, not only for the parts that
parallelise well; one pool serves both kinds of fit, so neither waits for the other.

What crosses the process boundary is plain data, never a fitted model: a refit's task names
the features Parquet file (which the worker reads itself, only the rows and columns it needs),
a model-form fit's the Arrow IPC file of the comparison's rows that the stage wrote once
(:func:`write_model_form_rows`); the catalog goes as Arrow IPC bytes, the parameters as JSON
and cutoffs as text; each result is a dict of numbers and text, with probabilities as float64
bytes. Workers are started with ``spawn`` (no fork of a parent holding big frames, DuckDB or
MLflow state).
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churn.config import Params, parse_params
from churn.domain.catalog import CUTOFF, KEY_COLUMNS
from churn.errors import ModelError
from churn.io import (
    decode_frame,
    encode_frame,
    find_filtered_positions,
    read_frame_positions,
    read_parquet_frame,
    set_up_process_memory,
)
from churn.model.backtest import refit_backtest_cutoff
from churn.model.hazard import PERIOD_FEATURE, RENEWAL_FEATURE
from churn.model.horizon_evaluation import (
    ModelFormPlan,
    fit_classifier_form,
    fit_hazard_form,
    plan_model_forms,
    summarize_model_forms,
)

if TYPE_CHECKING:
    from threadpoolctl import ThreadpoolLimiter

HAZARD_FORM = "hazard"
"""The task form of the comparison's survival head (the others are horizons in days)."""

logger = logging.getLogger(__name__)


def log_fit_completion(future: Future[Any], what: str) -> Future[Any]:
    """Log (debug) when ``future`` finishes, with the time since it was submitted.

    With the order of submission these lines tell which fits set the stage's wall time (at
    100k customers: the six fits are about 100 s of work for two workers, 2026-12-04).

    Args:
        future: A fit's future, just submitted.
        what: What the fit is, for the log line.

    Returns:
        ``future`` itself.
    """
    submitted = time.perf_counter()

    def report(done: Future[Any]) -> None:
        # exception() of a cancelled future raises: a cancelled fit is named as such.
        outcome = ("cancelled" if done.cancelled()
                   else "failed" if done.exception() is not None else "done")
        logger.debug("%s %s %.1f s after submission", what, outcome,
                     time.perf_counter() - submitted)

    future.add_done_callback(report)
    return future


def use_one_thread(params: Params) -> Params:
    """Return ``params`` with ``train.num_threads`` 1: what every fit worker runs with."""
    return params.model_copy(update={"train": params.train.model_copy(update={"num_threads": 1})})


def read_backtest_frame(
    path: str | Path, columns: Sequence[str], cutoff: pd.Timestamp
) -> pd.DataFrame:
    """Read the features a refit as of ``cutoff`` needs: ``columns``, rows up to ``cutoff``.

    The backtest split ignores rows after its cutoff, so leaving them unread changes nothing
    but the memory a worker needs; the kept rows keep their order (LightGBM's result depends
    on it).
    """
    frame = read_parquet_frame(path, columns=list(columns), filters=[(CUTOFF, "<=", cutoff)])
    return frame.reset_index(drop=True)


def list_categorical_columns(columns: Sequence[str], catalog: pd.DataFrame) -> list[str]:
    """Return the key columns and the catalog's categorical features among ``columns``, in
    their order: what a refit reads of every row (:func:`refit_backtest_from_file`)."""
    categorical = set(catalog.loc[catalog["kind"] == "categorical", "name"])
    return [c for c in columns if c in KEY_COLUMNS or c in categorical]


def refit_backtest_from_file(
    features_path: str | Path,
    columns: Sequence[str],
    catalog: pd.DataFrame,
    params: Params,
    cutoff: pd.Timestamp,
) -> dict[str, Any]:
    """Refit the backtest as of ``cutoff``, reading only what the refit uses from the file.

    Of the rows up to ``cutoff`` only the keys, the label and the categorical features are
    read for all (the split, the sample and the categorical levels need every training row);
    the sampled training rows, validation and test are then read with every one of
    ``columns`` (:func:`churn.model.backtest.refit_backtest_cutoff`'s ``read_rows``). At a
    million customers that is about a third of the training rows' floats instead of all of
    them, the largest part of the stage's memory. The entry equals a refit on the whole rows
    (a test checks it). A features folder (not one file) is read whole up to ``cutoff``.
    """
    path = Path(features_path)
    positions = find_filtered_positions(path, [(CUTOFF, "<=", cutoff)]) if path.is_file() else None
    if positions is None:
        frame = read_backtest_frame(path, columns, cutoff)
        return refit_backtest_cutoff(frame, catalog, params, cutoff)
    thin = read_frame_positions(path, positions, list_categorical_columns(columns, catalog))

    def read_rows(kept: np.ndarray) -> pd.DataFrame:
        rows = read_frame_positions(path, positions[kept], list(columns))
        rows.index = pd.Index(kept)
        return rows

    return refit_backtest_cutoff(thin, catalog, params, cutoff, read_rows)


def _worker_params(task: dict[str, Any]) -> Params:
    # One thread per process: the processes, not LightGBM's threads, share the cores.
    return use_one_thread(parse_params(task["params"], source="fit task"))


def refit_in_worker(task: dict[str, Any]) -> dict[str, Any]:
    """Worker entry point: read the task's features, refit as of its cutoff, return the entry."""
    params = _worker_params(task)
    cutoff = pd.Timestamp(task["cutoff"])
    return refit_backtest_from_file(
        task["features_path"], task["columns"], decode_frame(task["catalog"]), params, cutoff
    )


def limit_native_threads() -> ThreadpoolLimiter:
    """Limit every native thread pool of this process (OpenMP, OpenBLAS) to one thread.

    The returned limiter restores the previous limits when used as a context manager (the
    stage's own process, fitting without workers); a fit worker keeps the limit for its life
    (:func:`set_up_fit_worker`). Either way a fit gives the same numbers, to the last bit,
    wherever it runs.
    """
    # LightGBM's import loads every runtime the fits use (its OpenMP, scikit-learn's OpenMP and
    # both OpenBLAS copies), and a limit applies only to the runtimes already loaded.
    import lightgbm  # noqa: F401
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def set_up_fit_worker() -> None:
    """Set up a fit worker process: allocations like every command's, one thread per native
    thread pool (OpenMP, OpenBLAS; :func:`limit_native_threads`).

    The workers share the cores as processes, and each LightGBM fit already trains on one
    thread; but LightGBM's binning and predictions, scikit-learn's loss functions and the
    matrix products of the logistic baseline and the Platt calibrator would otherwise start a
    thread per core in every worker, which then compete with the other workers for the same
    cores. A 100k refit alone took 13.9-14.8 s of CPU with them and 12.3-12.8 s without, for
    as much wall time or 0.4 s more (2026-12-08, docs/benchmarks-log.md). One thread also makes
    a worker's numbers independent of the machine's core count: OpenBLAS splits a long dot
    product across its threads, which moves the last bit of, e.g., the calibrated log loss.
    """
    # Each worker allocates like the command that started it (churn.io.memory).
    set_up_process_memory()
    limit_native_threads()  # not restored: the limit holds for the worker's life


def open_fit_pool(workers: int) -> ProcessPoolExecutor:
    """Return a pool of ``workers`` spawned processes for :func:`submit_backtest_refits` and
    :func:`submit_model_form_fits` (use it as a context manager); the target stage's T-learner
    cross-check uses it too (:mod:`churn.stages.tlearner_checks`). Each worker is set up by
    :func:`set_up_fit_worker`."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=set_up_fit_worker,
    )


def submit_backtest_refits(
    pool: Executor,
    features_path: Path,
    columns: Sequence[str],
    catalog: pd.DataFrame,
    params: Params,
    cutoffs: Sequence[pd.Timestamp],
) -> list[Future[dict[str, Any]]]:
    """Submit one backtest refit per cutoff; each future gives its backtest entry.

    Args:
        pool: The pool (:func:`open_fit_pool`).
        features_path: The features Parquet file (the cached features: nothing is recomputed).
        columns: Key columns and the model's features, read by each worker.
        catalog: The model's feature catalog.
        params: All parameters (as the serial backtest would use them).
        cutoffs: The cutoffs to refit.
    """
    catalog_bytes = encode_frame(catalog)
    params_json = params.model_dump(mode="json")
    return [
        log_fit_completion(
            pool.submit(
                refit_in_worker,
                {
                    "features_path": str(features_path),
                    "columns": list(columns),
                    "catalog": catalog_bytes,
                    "params": params_json,
                    "cutoff": cutoff.isoformat(),
                },
            ),
            f"backtest refit {cutoff:%Y-%m-%d}",
        )
        for cutoff in cutoffs
    ]


def refit_backtest(
    pool: Executor | None,
    features_path: Path,
    columns: Sequence[str],
    catalog: pd.DataFrame,
    params: Params,
    cutoffs: Sequence[pd.Timestamp],
) -> list[dict[str, Any]]:
    """Refit the backtest at ``cutoffs``: side by side in ``pool``'s workers, or one after
    another here without one; each reads its rows from ``features_path``.

    Returns:
        The entries, in the order of ``cutoffs``.
    """
    if not cutoffs:
        return []
    if pool is None:
        with limit_native_threads():  # as in a worker: the same numbers
            return [
                refit_backtest_from_file(features_path, columns, catalog, params, cutoff)
                for cutoff in cutoffs
            ]
    return collect_backtest_refits(
        submit_backtest_refits(pool, features_path, columns, catalog, params, cutoffs)
    )


def collect_backtest_refits(futures: Sequence[Future[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Wait for the refits of :func:`submit_backtest_refits`; their entries, in order."""
    return [future.result() for future in futures]


def refit_side_by_side(
    features_path: Path,
    columns: Sequence[str],
    catalog: pd.DataFrame,
    params: Params,
    cutoffs: Sequence[pd.Timestamp],
    workers: int,
) -> list[dict[str, Any]]:
    """Refit the backtest at each cutoff in ``workers`` spawned processes; entries in order.

    Args:
        features_path: The features Parquet file (the cached features: nothing is recomputed).
        columns: Key columns and the model's features, read by each worker.
        catalog: The model's feature catalog.
        params: All parameters (as the serial backtest would use them).
        cutoffs: The cutoffs to refit.
        workers: Worker processes (at least 1).

    Returns:
        One backtest entry per cutoff, in the order of ``cutoffs``.
    """
    logger.info("backtest: %d refit(s) in %d worker process(es)", len(cutoffs), workers)
    with open_fit_pool(workers) as pool:
        return refit_backtest(pool, features_path, columns, catalog, params, cutoffs)


def list_model_form_columns(features_columns: Sequence[str], catalog: pd.DataFrame) -> list[str]:
    """Return the feature-file columns the model-form comparison reads, in file order.

    The keys, the catalog's features and the contract schedule's columns (the survival head
    builds its decision points from them even where the catalog leaves them out).
    """
    wanted = {*KEY_COLUMNS, *catalog["name"], RENEWAL_FEATURE, PERIOD_FEATURE}
    return [column for column in features_columns if column in wanted]


def describe_plan_rows(plan: ModelFormPlan) -> dict[str, int]:
    """Return the plan's rows per slice: what a worker's own plan must match."""
    return {k: int(v) for k, v in plan.split.describe()["sizes"].items()}


#: The file of the stage's scratch folder that hands the comparison's rows to its workers.
MODEL_FORM_ROWS_FILE = "model_form_rows.arrow"


def write_model_form_rows(frame: pd.DataFrame, folder: Path) -> Path:
    """Write the model-form comparison's rows for its workers; return the file.

    The stage holds them already (:attr:`churn.stages.evaluation_rows.EvaluationRows.comparison`,
    the rows of the comparison's cutoffs and customer sample with their churn times). Each of
    the four fits reading them again from the features and labels files cost about 3.5 s of
    CPU at a million customers and 0.8 s at 100k (2026-12-08), for the same frame. As every
    frame that crosses to a worker, it goes as Arrow IPC (:func:`churn.io.encode_frame`), never
    a pickle.

    Args:
        frame: The comparison's rows.
        folder: The stage's scratch folder (removed with the pool).
    """
    path = Path(folder) / MODEL_FORM_ROWS_FILE
    path.write_bytes(encode_frame(frame))
    return path


def fit_model_form_in_worker(task: dict[str, Any]) -> dict[str, Any]:
    """Worker entry point: fit one model form of the comparison and return its test
    probabilities (float64 bytes and shape) and, for the hazard form, the head's metadata."""
    params = _worker_params(task)
    frame = decode_frame(Path(task["rows_path"]).read_bytes())
    plan = plan_model_forms(frame, decode_frame(task["catalog"]), params)
    expected = task["rows"]
    if describe_plan_rows(plan) != expected:
        # Never fit on other rows than the stage summarises: that would mismatch silently.
        raise ModelError(
            f"the model-form worker planned {describe_plan_rows(plan)} rows per slice from "
            f"{task['rows_path']}, the stage {expected}: not the rows the stage planned on"
        )
    metadata: dict[str, Any] = {}
    if task["form"] == HAZARD_FORM:
        probabilities, metadata = fit_hazard_form(frame, plan, params)
    else:
        probabilities = fit_classifier_form(frame, plan, params, int(task["form"]))
    values = np.ascontiguousarray(probabilities, dtype="float64")
    return {"values": values.tobytes(), "shape": list(values.shape), "metadata": metadata}


def _decode_probabilities(result: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(result["values"], dtype="float64").reshape(result["shape"])


def submit_model_form_fits(
    pool: Executor,
    rows_path: Path,
    catalog: pd.DataFrame,
    params: Params,
    plan: ModelFormPlan,
) -> dict[str, Future[dict[str, Any]]]:
    """Submit the comparison's fits: the survival head first (the longest), then one
    classifier per horizon. Returns form (``"hazard"`` or the horizon as text) -> future.

    Each worker reads the comparison's rows from ``rows_path`` (:func:`write_model_form_rows`),
    plans the split on them and checks that its plan has the stage's rows per slice (a
    mismatch is a :class:`ModelError`).

    Args:
        pool: The pool (:func:`open_fit_pool`).
        rows_path: The comparison's rows, as :func:`write_model_form_rows` wrote them.
        catalog: The model's feature catalog.
        params: All parameters.
        plan: The stage's plan of the comparison on those rows.
    """
    base: dict[str, Any] = {
        "rows_path": str(rows_path),
        "catalog": encode_frame(catalog),
        "params": params.model_dump(mode="json"),
        "rows": describe_plan_rows(plan),
    }
    forms = [HAZARD_FORM, *(str(h) for h in params.label.horizons_days)]
    return {
        form: log_fit_completion(
            pool.submit(fit_model_form_in_worker, {**base, "form": form}), f"model form {form}"
        )
        for form in forms
    }


def collect_model_forms(
    frame: pd.DataFrame,
    plan: ModelFormPlan,
    params: Params,
    futures: dict[str, Future[dict[str, Any]]],
    truth: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Wait for :func:`submit_model_form_fits`' fits and summarise them like
    :func:`churn.model.horizon_evaluation.compare_model_forms` (``frame`` and ``plan`` as the
    workers built them)."""
    hazard = futures[HAZARD_FORM].result()
    classifiers = {
        horizon: _decode_probabilities(futures[str(horizon)].result())
        for horizon in params.label.horizons_days
    }
    return summarize_model_forms(
        frame,
        plan,
        params,
        (_decode_probabilities(hazard), hazard["metadata"]),
        classifiers,
        truth,
    )
