"""Fast exact path-dependent TreeSHAP for LightGBM boosters.

:class:`FastTreeShap` returns the same numbers as ``booster.predict(X, pred_contrib=True)``
(which is also what ``shap.TreeExplainer`` returns for LightGBM: it calls ``pred_contrib``)
with about a tenth of the CPU time on our model shapes (``benchmarks/bench_treeshap.py``), so
a scoring run can explain every customer.

How it works (the idea of "Fast TreeSHAP v2": Yang 2021, *Fast TreeSHAP: Accelerating SHAP Value
Computation for Trees*, arXiv:2109.09847; this is our own implementation of that idea):

For one leaf with value ``v``, let ``F`` be the distinct features split on along its root path
(``d = |F|``), ``z_j`` the share of training rows that follows the leaf's path at the splits on
feature ``j`` (product of child count / node count over those splits, the "cover"), and
``A(x)`` the set of features whose path conditions row ``x`` satisfies (a feature split twice on
the path must satisfy both conditions). Path-dependent TreeSHAP attributes the leaf exactly as
the Shapley values of the game ``f(T) = v * prod_{j in T} [j in A] * prod_{j in F \\ T} z_j``.
Because ``[j in A]`` is 0 or 1, the attribution depends on ``x`` only through ``A`` (one of
``2**d`` subsets), so it can be tabulated once per model:

* ``M[B] = v * sum_{T subset of B} W(|T|, d) * prod_{j in F \\ T} z_j``, with Shapley weights
  ``W(k, d) = k! (d - k - 1)! / d!``;
* feature ``i`` not in ``A``: ``phi_i = -M[A]``;
* feature ``i`` in ``A``: ``phi_i = (1 - z_i) / z_i * M[A \\ {i}]`` (the ``1 / z_i`` cancels the
  ``z_i`` that every term of ``M[A \\ {i}]`` carries).

Both cases read ``M[A & ~bit_i]``, so explaining a row costs, per tree, one condition test per
internal node plus one table read and one add per (leaf, path feature): ``O(L * D)`` instead of
the ``O(L * D**2)`` of the classic recursion. The kernel is compiled with numba (lazily, on
first use) and runs rows in parallel on all cores. :func:`compute_contributions` calls it only
when a call is large enough to repay the compilation (:func:`choose_backend`). Having tested
every split of a tree, the kernel also walks the row's own path to its leaf and adds the leaf
value, so it returns the raw scores too, bit for bit LightGBM's
(:func:`compute_contributions_and_raw_scores`: scoring needs both, and a second walk of the
trees cost about 10% more than this one; measured 2026-12-06, docs/benchmarks-log.md).

Fallbacks (documented, never silent about the reason: see :attr:`FastTreeShap.fallback_reason`):
``booster.predict(X, pred_contrib=True)`` is used instead when numba does not import, when a
leaf's path has more than ``max_unique_depth`` distinct features (the table has ``2**d``
entries) or the tables would exceed ``max_table_bytes``, for multiclass, linear-tree or
averaged (random forest) models, and for a tree with an empty child (zero cover makes the
``1 / z_i`` form undefined).

Costs and limits: the tables hold ``2**d`` doubles per leaf (about 1 MiB for our default model
of 400 depth-5 trees, 25 MiB at depth 8 with 63 leaves; ``max_unique_depth`` 12 caps a leaf at
32 KiB). Building them takes well under a second for the default model, and numba compiles
the kernel once per process on first use (a few seconds; ``cache=False``), or earlier on a
thread when a stage knows a large call is coming (:func:`start_compiling`). Inputs follow
LightGBM's dense-matrix semantics: values with ``|x| <= 1e-35`` read as 0, NaN as missing,
categorical codes truncated toward zero like ``static_cast<int>``. Parallel calls from several
Python threads need a thread-safe numba threading layer (``omp`` or ``tbb``; the fallback
``workqueue`` layer is not).
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from .kernel import compile_for, get_kernel, get_predict_kernel, numba_available
from .tables import (
    MAX_SUPPORTED_UNIQUE_DEPTH,
    FlatEnsemble,
    PredictionLayout,
    UnsupportedModelError,
    build_prediction_layout,
    flatten_ensemble,
)

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

DEFAULT_MAX_UNIQUE_DEPTH = 12
DEFAULT_MAX_TABLE_BYTES = 1 << 30
# Rows per parallel work item. The kernel runs every tree over a block of rows before moving
# on, so a tree's nodes and tables are loaded once per block; larger blocks amortise that
# better (it matters for deep trees, whose tables are large) until the block's input and
# output rows (256 x 71 doubles is ~145 KiB each) no longer fit in L2.
DEFAULT_BLOCK_ROWS = 256
# Rows per work item of the prediction kernel: its rows are copied feature-major into a block
# (1024 x 109 doubles, under 1 MiB); 1024 was fastest of 64-4096 on the model above.
DEFAULT_PREDICT_BLOCK_ROWS = 1024
# Rows of a matrix that is not C-contiguous float64 converted for the prediction kernel at a
# time (64 blocks of rows per call).
PREDICT_CONVERT_ROWS = 64 * DEFAULT_PREDICT_BLOCK_ROWS


class FastTreeShap:
    """Exact path-dependent TreeSHAP for a LightGBM booster, equal to ``pred_contrib``.

    The model is parsed and the per-leaf tables are built once, in the constructor; the object
    is then reused across batches (and is safe to share between threads). It is a snapshot: a
    booster changed afterwards (more training, ``set_leaf_output``) needs a new instance.

    Attributes:
        num_iteration: Iterations explained; ``None`` means the same default as
            ``booster.predict`` (the best iteration if early stopping recorded one, else all).
        n_features: Number of model input columns.
        fallback_reason: Why ``pred_contrib`` is used instead of the fast kernel, or ``None``.
    """

    def __init__(
        self,
        booster: lgb.Booster,
        *,
        num_iteration: int | None = None,
        max_unique_depth: int = DEFAULT_MAX_UNIQUE_DEPTH,
        max_table_bytes: int = DEFAULT_MAX_TABLE_BYTES,
        block_rows: int = DEFAULT_BLOCK_ROWS,
    ) -> None:
        """Parse the booster and precompute the per-leaf subset tables.

        Args:
            booster: A trained LightGBM booster (binary or regression: one tree per iteration).
            num_iteration: Number of iterations to explain, as in ``booster.predict``.
            max_unique_depth: Largest number of distinct features on one leaf path handled by
                the tables (each such leaf holds ``2**d`` doubles); deeper models fall back.
            max_table_bytes: Memory cap for all tables together; larger models fall back.
            block_rows: Rows per parallel work item of the kernel.
        """
        if not 1 <= max_unique_depth <= MAX_SUPPORTED_UNIQUE_DEPTH:
            raise ValueError(
                f"max_unique_depth must be in 1..{MAX_SUPPORTED_UNIQUE_DEPTH}, "
                f"got {max_unique_depth}"
            )
        self._booster: lgb.Booster | None = booster
        self._booster_ref = weakref.ref(booster)
        self.num_iteration = num_iteration
        self.n_features = int(booster.num_feature())
        self.block_rows = max(1, int(block_rows))
        self.fallback_reason: str | None = None
        self._ensemble: FlatEnsemble | None = None
        self._layout: PredictionLayout | None = None  # built on the first predict_raw
        if not numba_available():
            self.fallback_reason = "numba is not installed or does not import"
        else:
            try:
                self._ensemble = flatten_ensemble(
                    booster.dump_model(num_iteration=num_iteration),
                    max_unique_depth=max_unique_depth,
                    max_table_bytes=max_table_bytes,
                    model_text=lambda: booster.model_to_string(num_iteration=num_iteration),
                )
            except UnsupportedModelError as exc:
                self.fallback_reason = str(exc)
        if self.fallback_reason is not None:
            logger.info("FastTreeShap uses LightGBM pred_contrib: %s", self.fallback_reason)

    @property
    def booster(self) -> lgb.Booster:
        """The explained booster."""
        booster = self._booster if self._booster is not None else self._booster_ref()
        if booster is None:  # only for cache-held explainers, which die with their booster
            raise RuntimeError("the explained booster no longer exists")
        return booster

    @property
    def backend(self) -> str:
        """``"numba"`` for the table kernel, ``"lightgbm"`` for the pred_contrib fallback."""
        return "lightgbm" if self._ensemble is None else "numba"

    @property
    def table_bytes(self) -> int:
        """Memory held by the precomputed tables (0 when falling back)."""
        return 0 if self._ensemble is None else self._ensemble.table_bytes

    def _check_matrix(self, X: np.ndarray) -> np.ndarray:
        """Return ``X`` as an array, or raise ValueError unless 2-D with ``n_features`` columns."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"expected a 2-D array with {self.n_features} columns, got shape {X.shape}"
            )
        return X

    def shap_values(self, X: np.ndarray) -> np.ndarray:
        """Return SHAP values laid out exactly like ``booster.predict(X, pred_contrib=True)``.

        Args:
            X: ``(n, n_features)`` numeric matrix in booster feature order (e.g.
                :meth:`ChurnModel.prepare`); NaN means missing.

        Returns:
            ``(n, n_features + 1)`` float64 array: per-feature contributions (raw score,
            log-odds for binary models), then the expected value (base) in the last column.

        Raises:
            ValueError: If ``X`` is not 2-D with ``n_features`` columns.
        """
        return self.shap_values_and_raw(X)[0]

    def shap_values_and_raw(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return :meth:`shap_values` and :meth:`predict_raw` of ``X`` from one walk of the trees.

        The kernel finds each row's leaf from the split tests it makes anyway and sums the
        leaves in LightGBM's order, so the raw scores equal ``booster.predict(X,
        raw_score=True)`` bit for bit, as :meth:`predict_raw`'s do; without the kernel (a
        fallback) both come from LightGBM.

        Raises:
            ValueError: If ``X`` is not 2-D with ``n_features`` columns.
        """
        X = self._check_matrix(X)
        if self._ensemble is None:
            return (
                _lightgbm_contributions(self.booster, X, self.num_iteration),
                _lightgbm_raw_scores(self.booster, X, self.num_iteration),
            )
        # float32 -> float64 is exact, like LightGBM's own conversion.
        X = np.ascontiguousarray(X, dtype=np.float64)
        flat = self._ensemble
        out = np.zeros((X.shape[0], self.n_features + 1), dtype=np.float64)
        raw = np.zeros(X.shape[0], dtype=np.float64)
        if X.shape[0] and flat.slot_meta.size:
            get_kernel()(*self._shap_arguments(X, out, raw))
        elif X.shape[0]:  # only single-leaf trees: nothing to explain, the leaves still add up
            raw = self.predict_raw(X)
        out[:, -1] = flat.expected_value
        return out, raw

    def _shap_arguments(self, X: np.ndarray, out: np.ndarray, raw: np.ndarray) -> tuple[Any, ...]:
        """The TreeSHAP kernel's arguments: one place, so compiling ahead sees the real types."""
        flat = self._ensemble
        assert flat is not None
        return (
            X,
            out,
            self.block_rows,
            flat.node_start,
            flat.slot_start,
            flat.node_word,
            flat.node_threshold,
            flat.node_cat_start,
            flat.node_cat_words,
            flat.cat_bits,
            flat.slot_meta,
            flat.slot_target,
            flat.slot_coef,
            flat.tables,
            flat.max_tree_nodes,
            raw,
            flat.leaf_start,
            flat.leaf_value,
        )

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        """Return raw scores equal, bit for bit, to ``booster.predict(X, raw_score=True)``.

        The same trees, decision rule and order of additions as LightGBM (see
        :func:`churn.model.treeshap.kernel.get_predict_kernel`); without the kernel (a model
        the tables cannot hold, no numba) it calls ``booster.predict`` itself.

        Args:
            X: ``(n, n_features)`` numeric matrix in booster feature order; NaN means missing.

        Returns:
            ``(n,)`` float64 raw scores (log-odds for a binary model).

        Raises:
            ValueError: If ``X`` is not 2-D with ``n_features`` columns.
        """
        X = self._check_matrix(X)
        if self._ensemble is None:
            return _lightgbm_raw_scores(self.booster, X, self.num_iteration)
        out = np.zeros(X.shape[0], dtype=np.float64)
        # The kernel reads float64 rows. Another matrix (the survival head's float32
        # person-periods, millions of rows at a million customers) is converted a slice at a time,
        # so no float64 copy of the whole of it is made; float32 -> float64 is exact, like
        # LightGBM's own conversion, and rows are independent, so the scores are the same.
        whole = X.dtype == np.float64 and X.flags.c_contiguous
        step = max(1, X.shape[0]) if whole else PREDICT_CONVERT_ROWS
        kernel = get_predict_kernel()
        for start in range(0, X.shape[0], step):
            kernel(
                *self._predict_arguments(
                    np.ascontiguousarray(X[start : start + step], dtype=np.float64),
                    out[start : start + step],
                )
            )
        return out

    def _predict_arguments(self, X: np.ndarray, out: np.ndarray) -> tuple[Any, ...]:
        """The prediction kernel's arguments (its layout built on first use)."""
        assert self._ensemble is not None
        if self._layout is None:
            self._layout = build_prediction_layout(self._ensemble)
        layout = self._layout
        return (
            X,
            out,
            DEFAULT_PREDICT_BLOCK_ROWS,
            layout.node_start,
            layout.n_internal,
            layout.depth,
            layout.node_word,
            layout.node_threshold,
            layout.node_cat_start,
            layout.node_cat_words,
            self._ensemble.cat_bits,
            layout.leaf_start,
            layout.leaf_value,
        )

    def compile_kernels(self, *, contributions: bool = True, raw_scores: bool = True) -> None:
        """Compile the numba kernels :meth:`shap_values` and :meth:`predict_raw` call, without
        running them (nothing to do when this explainer falls back to LightGBM).

        Numba compiles a kernel on its first call, for the argument types of that call; this
        compiles it for exactly the types those methods pass (float64 C-ordered rows and this
        explainer's arrays), so their first call finds it ready. See :func:`start_compiling`.

        Args:
            contributions: Compile the TreeSHAP kernel.
            raw_scores: Compile the prediction kernel.
        """
        if self._ensemble is None:
            return
        n = self.n_features
        if contributions:
            compile_for(
                get_kernel(),
                self._shap_arguments(np.zeros((1, n)), np.zeros((1, n + 1)), np.zeros(1)),
            )
        if raw_scores:
            compile_for(
                get_predict_kernel(), self._predict_arguments(np.zeros((1, n)), np.zeros(1))
            )


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


def _lightgbm_contributions(
    booster: lgb.Booster, X: np.ndarray, num_iteration: int | None = None
) -> np.ndarray:
    """LightGBM's own ``pred_contrib`` as float64, laid out like ``FastTreeShap.shap_values``."""
    raw = booster.predict(X, pred_contrib=True, num_iteration=num_iteration)
    return np.asarray(raw, dtype=np.float64)


def _lightgbm_raw_scores(
    booster: lgb.Booster, X: np.ndarray, num_iteration: int | None = None
) -> np.ndarray:
    """LightGBM's own raw scores as float64 (``booster.predict(..., raw_score=True)``)."""
    raw = booster.predict(X, raw_score=True, num_iteration=num_iteration)
    return np.asarray(raw, dtype=np.float64)


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
        raw = _lightgbm_contributions(booster, matrix)
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
        population_rows: As :func:`compute_raw_scores`.

    Returns:
        ``(contributions, base, raw)`` with shapes ``(n, n_features)``, ``(n,)`` and ``(n,)``.
    """
    if choose_backend(booster, len(matrix)) == "lightgbm":
        both = _lightgbm_contributions(booster, matrix)
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
        return _lightgbm_raw_scores(booster, matrix)
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
