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

from .dispatch import (
    KERNEL_MIN_ROW_TREES,
    PREDICT_KERNEL_MIN_ROW_TREES,
    choose_backend,
    compute_contributions,
    compute_contributions_and_raw_scores,
    compute_raw_scores,
    explainer_for,
    start_compiling,
)
from .explainer import (
    DEFAULT_BLOCK_ROWS,
    DEFAULT_MAX_TABLE_BYTES,
    DEFAULT_MAX_UNIQUE_DEPTH,
    DEFAULT_PREDICT_BLOCK_ROWS,
    PREDICT_CONVERT_ROWS,
    FastTreeShap,
)
from .kernel import get_kernel, get_predict_kernel, numba_available

__all__ = [
    "DEFAULT_BLOCK_ROWS",
    "DEFAULT_MAX_TABLE_BYTES",
    "DEFAULT_MAX_UNIQUE_DEPTH",
    "DEFAULT_PREDICT_BLOCK_ROWS",
    "KERNEL_MIN_ROW_TREES",
    "PREDICT_CONVERT_ROWS",
    "PREDICT_KERNEL_MIN_ROW_TREES",
    "FastTreeShap",
    "choose_backend",
    "compute_contributions",
    "compute_contributions_and_raw_scores",
    "compute_raw_scores",
    "explainer_for",
    "get_kernel",
    "get_predict_kernel",
    "numba_available",
    "start_compiling",
]
