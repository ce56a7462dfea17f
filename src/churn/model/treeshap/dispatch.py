"""Which backend explains or scores a call, the per-booster explainer cache, compile-ahead.

Each public function takes a booster and a prepared matrix and returns the numbers of
LightGBM's own ``pred_contrib`` or raw scores, from :class:`~.explainer.FastTreeShap`'s numba
kernels when the call is large enough to repay compiling them (:func:`choose_backend`), else
from LightGBM itself.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from .explainer import FastTreeShap, lightgbm_contributions, lightgbm_raw_scores
from .kernel import numba_available

if TYPE_CHECKING:
    import lightgbm as lgb


logger = logging.getLogger(__name__)

# Rows x trees below which compute_contributions calls LightGBM's pred_contrib rather than
# compiling the kernel. Measured 2026-12-03 (quiet, 2 cores): pred_contrib costs 0.5-2.9 us of
# CPU per row-tree on our models (2.9 us on the 100k run's 251-tree model and its test rows),
# the kernel 0.1-0.4 us, building the tables and compiling 2.6-3.5 s; at 1.5M row-trees the
# two were even (4.4 s against 4.1 s), so below 1M pred_contrib is the cheaper one.
KERNEL_MIN_ROW_TREES = 1_000_000
# The same for raw scores (compute_raw_scores). Measured 2026-12-04 on the 1M run's model (500
# trees, depth 5, 109 features, 786k rows; load about 1): LightGBM's predict 17.2-18.3 s of CPU
# (about 45 ns per row-tree), the kernel 8.2-8.8 s (about 21 ns), compiling it 2.0-2.4 s; so the
# kernel pays from about 100M row-trees (200k rows of a 500-tree model).
PREDICT_KERNEL_MIN_ROW_TREES = 100_000_000


_CACHE_LOCK = threading.Lock()
# booster -> (fingerprint, explainer). Weak keys: a booster that is dropped frees its tables.
_CACHE: weakref.WeakKeyDictionary[Any, tuple[tuple[int, int, int], FastTreeShap]] = (
    weakref.WeakKeyDictionary()
)


def _fingerprint(booster: lgb.Booster) -> tuple[int, int, int]:
    """Cheap identity of a booster's trees: catches continued training, not leaf edits."""
    return (booster.current_iteration(), booster.num_trees(), int(booster.best_iteration))


def explainer_for(booster: lgb.Booster) -> FastTreeShap:
    """Return the cached :class:`FastTreeShap` of ``booster``, building it on first use."""
    key = _fingerprint(booster)
    with _CACHE_LOCK:
        cached = _CACHE.get(booster)
        if cached is not None and cached[0] == key:
            return cached[1]
        explainer = FastTreeShap(booster)
        # The cache holds the booster weakly only if its value does too: a strong reference
        # from the explainer would keep every booster ever explained alive.
        explainer._booster = None
        _CACHE[booster] = (key, explainer)
        return explainer


def choose_backend(booster: lgb.Booster, n_rows: int, min_row_trees: int | None = None) -> str:
    """Pick the backend for one call: ``"numba"`` or ``"lightgbm"`` (``pred_contrib``, or
    ``predict`` for :func:`compute_raw_scores` with its own threshold).

    The numba kernel is several times faster per row but is compiled in every process on first
    use (2.5-3 s of CPU on a quiet machine, twice that under load; numba's on-disk cache is
    off because its index is a pickle). Below :data:`KERNEL_MIN_ROW_TREES` rows x trees,
    LightGBM's own ``pred_contrib`` costs less than that compilation alone, so small calls
    (an explanation sample, a small scoring run, a test pipeline) never compile. The choice
    depends only on the call's size, never on what ran before in the process, so the same
    input always gets the same numbers (the two agree to ~1e-14 anyway).

    Args:
        booster: The booster to explain.
        n_rows: Rows in the call.
        min_row_trees: The threshold; ``None`` is :data:`KERNEL_MIN_ROW_TREES` (TreeSHAP),
            :func:`compute_raw_scores` passes :data:`PREDICT_KERNEL_MIN_ROW_TREES`.

    Returns:
        ``"lightgbm"`` for calls below the threshold, else ``"numba"``.
    """
    work = int(n_rows) * int(booster.num_trees())
    threshold = KERNEL_MIN_ROW_TREES if min_row_trees is None else min_row_trees
    return "lightgbm" if work < threshold else "numba"


def compute_contributions(
    booster: lgb.Booster, matrix: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact TreeSHAP contributions of ``booster`` on a prepared feature matrix.

    The precomputation is cached per booster, so calling this batch after batch parses the
    model once. Small calls use ``pred_contrib`` instead (see :func:`choose_backend`). This
    module stays a leaf: it knows boosters and matrices, not churn models
    (``ChurnModel.contributions`` prepares the matrix and calls this).

    Args:
        booster: A LightGBM binary booster.
        matrix: Feature matrix in the booster's column order (NaN means missing).

    Returns:
        ``(contributions, base)`` with shapes ``(n, n_features)`` and ``(n,)``, equal to
        LightGBM's ``pred_contrib`` (max abs difference ~1e-14).
    """
    if choose_backend(booster, len(matrix)) == "lightgbm":
        raw = lightgbm_contributions(booster, matrix)
    else:
        raw = explainer_for(booster).shap_values(matrix)
    return raw[:, :-1], raw[:, -1]


def compute_contributions_and_raw_scores(
    booster: lgb.Booster, matrix: np.ndarray, *, population_rows: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`compute_contributions` and :func:`compute_raw_scores` of the same rows.

    When the contributions come from the kernel, so do the raw scores, from the same walk of
    the trees (:meth:`FastTreeShap.shap_values_and_raw`; scoring 600k customers of a 500-tree
    model no longer walks them a second time); else each is computed as its own function does.
    The numbers are those two functions' either way.

    Args:
        booster: A LightGBM binary booster.
        matrix: Feature matrix in the booster's column order (NaN means missing).
        population_rows: As :func:`compute_raw_scores`; the contributions' backend is chosen
            by it too, so every batch of a population, and any part of it explained apart,
            gets the same numbers to the bit.

    Returns:
        ``(contributions, base, raw)`` with shapes ``(n, n_features)``, ``(n,)`` and ``(n,)``.
    """
    rows = len(matrix) if population_rows is None else max(population_rows, len(matrix))
    if choose_backend(booster, rows) == "lightgbm":
        both = lightgbm_contributions(booster, matrix)
        raw = compute_raw_scores(booster, matrix, population_rows=population_rows)
        return both[:, :-1], both[:, -1], raw
    both, raw = explainer_for(booster).shap_values_and_raw(matrix)
    return both[:, :-1], both[:, -1], raw


def compute_raw_scores(
    booster: lgb.Booster, matrix: np.ndarray, *, population_rows: int | None = None
) -> np.ndarray:
    """Raw scores of ``booster`` on a prepared feature matrix, equal to LightGBM's bit for bit.

    Large calls (:func:`choose_backend`) walk the trees with the numba kernel of the cached
    :class:`FastTreeShap`, which advances a block of rows level by level so their walks'
    memory loads overlap (a plain root-to-leaf walk per row, tried first, was only about 10%
    faster than LightGBM, whose predictions were most of the monitor stage at a million
    customers: 75 s for 6M rows); small calls use ``booster.predict`` and never compile.

    Args:
        booster: A LightGBM binary booster.
        matrix: Feature matrix in the booster's column order (NaN means missing).
        population_rows: When ``matrix`` is one batch of a larger population, that
            population's rows: the backend is then chosen by the whole population's size,
            since compiling the kernel is paid once per process, not per batch (target
            explains a million rows in 200k-row batches, each just under the threshold on
            its own). Both backends give the same numbers to the bit, so only the time
            depends on it. ``None``: the call's own rows.

    Returns:
        ``(n,)`` float64 raw scores.
    """
    rows = len(matrix) if population_rows is None else max(population_rows, len(matrix))
    if choose_backend(booster, rows, PREDICT_KERNEL_MIN_ROW_TREES) == "lightgbm":
        return lightgbm_raw_scores(booster, matrix)
    return explainer_for(booster).predict_raw(matrix)


def start_compiling(
    booster: lgb.Booster, rows: int, *, contributions: bool = True, raw_scores: bool = True
) -> threading.Thread | None:
    """Start compiling, on a thread, the kernels that calls of ``rows`` rows would compile.

    A stage that knows a large explanation is coming (score, target) starts this before its
    other work: numba's compilation (2-3.5 s per process, mostly Python that holds the GIL)
    then overlaps that work's stretches without the GIL (DuckDB queries, Parquet reads,
    LightGBM) instead of delaying the first call. Which kernels is decided as
    :func:`compute_contributions` and :func:`compute_raw_scores` decide for ``rows`` rows, so
    a small run compiles nothing. The numbers do not depend on it: a call finds the kernel
    compiled or compiles it itself (waiting for this thread when it is halfway through).
    A failure here is logged and left to that first call, which then raises it.

    Args:
        booster: The booster about to be explained.
        rows: The largest number of rows one call (or one population, see
            ``compute_raw_scores``'s ``population_rows``) is expected to have.
        contributions: Whether contributions will be asked for (``False``: raw scores only,
            so only the prediction kernel may be compiled).
        raw_scores: Whether raw scores will be asked for on their own (``False`` when every
            raw score comes with its contributions, from the TreeSHAP kernel's walk:
            :func:`compute_contributions_and_raw_scores`).

    Returns:
        The started thread (not a daemon: a process that ends early waits for it rather than
        stopping it inside LLVM), or ``None`` when neither kernel would be used.
    """
    contributions = contributions and choose_backend(booster, rows) == "numba"
    raw_scores = raw_scores and (
        choose_backend(booster, rows, PREDICT_KERNEL_MIN_ROW_TREES) == "numba"
    )
    if not (contributions or raw_scores) or not numba_available():
        return None

    def compile_ahead() -> None:
        try:
            explainer_for(booster).compile_kernels(
                contributions=contributions, raw_scores=raw_scores
            )
        except Exception:  # the first call compiles again and raises it
            logger.warning("compiling the TreeSHAP kernels ahead failed", exc_info=True)

    thread = threading.Thread(target=compile_ahead, name="churn-compile-kernels")
    thread.start()
    return thread
