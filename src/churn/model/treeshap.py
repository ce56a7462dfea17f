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
when a call is large enough to repay the compilation (:func:`choose_backend`).

Fallbacks (documented, never silent about the reason: see :attr:`FastTreeShap.fallback_reason`):
``booster.predict(X, pred_contrib=True)`` is used instead when numba does not import, when a
leaf's path has more than ``max_unique_depth`` distinct features (the table has ``2**d``
entries) or the tables would exceed ``max_table_bytes``, for multiclass, linear-tree or
averaged (random forest) models, and for a tree with an empty child (zero cover makes the
``1 / z_i`` form undefined).

Costs and limits: the tables hold ``2**d`` doubles per leaf (about 1 MiB for our default model
of 400 depth-5 trees, 25 MiB at depth 8 with 63 leaves; ``max_unique_depth`` 12 caps a leaf at
32 KiB). Building them takes well under a second for the default model, and numba compiles
the kernel once per process on first use (a few seconds; ``cache=False``). Inputs follow
LightGBM's dense-matrix semantics: values with ``|x| <= 1e-35`` read as 0, NaN as missing,
categorical codes truncated toward zero like ``static_cast<int>``. Parallel calls from several
Python threads need a thread-safe numba threading layer (``omp`` or ``tbb``; the fallback
``workqueue`` layer is not).
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from math import factorial
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import lightgbm as lgb


logger = logging.getLogger(__name__)

# LightGBM's kZeroThreshold is the float literal 1e-35f stored in a double. Dense input values
# with |x| <= kZeroThreshold are dropped before prediction (read back as 0.0), and its
# missing_type "Zero" test is |x| <= kZeroThreshold: both must use this exact value.
K_ZERO_THRESHOLD = float(np.float32(1e-35))
# static_cast<int>(double) of a value >= 2**31 is out of range; on x86-64 it yields INT_MIN,
# which LightGBM's categorical test sends right like any negative category.
_INT32_LIMIT = 2147483648.0

# Rows x trees below which compute_contributions calls LightGBM's pred_contrib rather than
# compiling the kernel. Measured 2026-12-03 (quiet, 2 cores): pred_contrib costs 0.5-2.9 us of
# CPU per row-tree on our models (2.9 us on the 100k run's 251-tree model and its test rows),
# the kernel 0.1-0.4 us, building the tables and compiling 2.6-3.5 s; at 1.5M row-trees the
# two were even (4.4 s against 4.1 s), so below 1M pred_contrib is the cheaper one.
KERNEL_MIN_ROW_TREES = 1_000_000

DEFAULT_MAX_UNIQUE_DEPTH = 12
DEFAULT_MAX_TABLE_BYTES = 1 << 30
# Rows per parallel work item. The kernel runs every tree over a block of rows before moving
# on, so a tree's nodes and tables are loaded once per block; larger blocks amortise that
# better (it matters for deep trees, whose tables are large) until the block's input and
# output rows (256 x 71 doubles is ~145 KiB each) no longer fit in L2.
DEFAULT_BLOCK_ROWS = 256


class _UnsupportedModelError(Exception):
    """The model has a shape the table kernel does not handle; use pred_contrib instead."""


# Bit layout of the packed per-node and per-slot words (one 64-bit load instead of several
# arrays: the kernel is bound by loads, and packing them made it ~25% faster).
_NODE_FEATURE_BITS = 24  # node word bits 0-23: split feature
_NODE_LEFT_SHIFT = 24  # bits 24-39: left child (local index)
_NODE_RIGHT_SHIFT = 40  # bits 40-55: right child (local index)
_NODE_SLOT_SHIFT = 56  # bits 56-59: position of the split feature in the path's feature set
_NODE_IS_CAT_BIT = 60
_NODE_NAN_LEFT_BIT = 61  # where NaN goes
_NODE_ZERO_LEFT_BIT = 62  # where 0.0 (and |x| <= kZeroThreshold) goes
_SLOT_SHIFT_SHIFT = 16  # slot meta bits 0-15: leaf (local index); bits 16-23: bit position s
_SLOT_KEEP_SHIFT = 24  # bits 24-39: (2**d - 1) & ~(1 << s), the table-index mask
_TARGET_FEATURE_SHIFT = 40  # slot target bits 0-39: table offset; bits 40-63: feature
_MAX_LOCAL_NODES = 1 << 16
_MAX_FEATURES = 1 << 24
_MAX_TABLE_ENTRIES = 1 << 40
# Slot positions are 4 bits and table-index masks 16 bits wide.
MAX_SUPPORTED_UNIQUE_DEPTH = 16


@dataclass(frozen=True)
class _FlatEnsemble:
    """All trees flattened into the arrays the kernel reads.

    Per tree ``t``, internal nodes are ``node_start[t]:node_start[t + 1]`` in pre-order (a parent
    before its children). Children are local indices into one per-tree space: internal node
    ``k`` is ``k``, leaf ``j`` is ``n_internal + j``. Each (leaf, distinct path feature) pair is
    a "slot" (``slot_start[t]:slot_start[t + 1]``): the kernel walks a tree's slots in one flat
    loop whose trip count is the same for every row, so its exit branch predicts well (a
    per-leaf inner loop of 1..d iterations mispredicted once per leaf). Single-leaf trees have
    no nodes and no slots (they only add to ``expected_value``).
    """

    n_features: int
    expected_value: float
    n_leaves: int
    node_start: np.ndarray  # uint64 (n_trees + 1,)
    slot_start: np.ndarray  # uint64 (n_trees + 1,)
    node_word: np.ndarray  # uint64, packed (see _NODE_*)
    node_threshold: np.ndarray  # float64 (numerical splits)
    node_cat_start: np.ndarray  # uint64 offset of the node's category bitset in cat_bits
    node_cat_words: np.ndarray  # uint64 number of 32-bit words in that bitset
    cat_bits: np.ndarray  # uint32
    slot_meta: np.ndarray  # uint64, packed (see _SLOT_*)
    slot_target: np.ndarray  # uint64, packed table offset and feature
    slot_coef: np.ndarray  # float64 (n_slots, 2): [-1, (1 - z) / z] by "condition satisfied"
    tables: np.ndarray  # float64, the 2**d subset table of every leaf
    max_tree_nodes: int

    @property
    def table_bytes(self) -> int:
        """Bytes held by the per-leaf subset tables."""
        return int(self.tables.nbytes)


def _shapley_weights(d: int) -> np.ndarray:
    """Return ``W(k, d) = k! (d - k - 1)! / d!`` for ``k = 0..d`` (``W(d, d) = 0``, unused)."""
    weights = np.zeros(d + 1)
    for k in range(d):
        weights[k] = factorial(k) * factorial(d - k - 1) / factorial(d)
    return weights


def _leaf_tables(covers: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Return the subset tables ``M`` of leaves that share the same path width ``d``.

    Args:
        covers: ``(n_leaves, d)`` path covers ``z`` (slot order = bit order).
        values: ``(n_leaves,)`` leaf values.

    Returns:
        ``(n_leaves, 2**d)`` array; entry ``B`` (a bitmask over the slots) is
        ``v * sum_{T subset of B} W(|T|, d) * prod_{j not in T} z_j``.
    """
    n, d = covers.shape
    # prod_{j not in T} z_j for every T, built one bit at a time: a new bit j that is 0 (j not
    # in T) multiplies by z_j, a bit that is 1 does not.
    outside = np.ones((n, 1))
    for j in range(d):
        outside = np.concatenate([outside * covers[:, j : j + 1], outside], axis=1)
    sizes = np.array([bin(t).count("1") for t in range(1 << d)])
    table = outside * _shapley_weights(d)[sizes][None, :] * values[:, None]
    # Sum over subsets (zeta transform): afterwards table[B] = sum of the terms of all T <= B.
    for j in range(d):
        view = table.reshape(n, 1 << (d - j - 1), 2, 1 << j)
        view[:, :, 1, :] += view[:, :, 0, :]
    return table


def _categories(threshold: Any) -> list[int]:
    """Parse a categorical split's category list (``"1||3||5"`` or a single number)."""
    return [int(part) for part in str(threshold).split("||") if part != ""]


def _text_thresholds(model_text: str) -> dict[int, list[float]]:
    """Return each tree's ``threshold=`` array from a LightGBM text model, by tree index."""
    thresholds: dict[int, list[float]] = {}
    tree = -1
    for line in model_text.splitlines():
        if line.startswith("Tree="):
            tree = int(line[5:])
        elif line.startswith("threshold=") and tree >= 0:
            # Python's float() reads LightGBM's "inf" / "-inf" and its 17-digit values exactly.
            thresholds[tree] = [float(v) for v in line[10:].split()]
    return thresholds


# LightGBM's JSON dump clamps thresholds to +-1e300 (Common::AvoidInf); a split sending NaN one
# way and every number the other has threshold +inf, which the clamp would turn into a
# different split for x in (1e300, inf].
_DUMP_CLAMP = 1e300


def _flatten(
    dump: dict[str, Any],
    max_unique_depth: int,
    max_table_bytes: int,
    model_text: Callable[[], str] | None = None,
) -> _FlatEnsemble:
    """Flatten ``booster.dump_model()`` into a :class:`_FlatEnsemble`.

    Args:
        dump: The booster's JSON dump.
        max_unique_depth: See :class:`FastTreeShap`.
        max_table_bytes: See :class:`FastTreeShap`.
        model_text: Returns the booster's text model, read only if the dump holds a clamped
            (+-1e300) threshold, to recover its exact value.

    Raises:
        _UnsupportedModelError: For model shapes the kernel does not handle (see module doc).
    """
    if int(dump.get("num_tree_per_iteration", 1)) != 1:
        raise _UnsupportedModelError("multiclass model (several trees per iteration)")
    if dump.get("average_output", False):
        raise _UnsupportedModelError("averaged output (random forest mode)")
    n_features = int(dump["max_feature_idx"]) + 1

    node_start, slot_start = [0], [0]
    nodes: list[tuple[int, float, bool, bool, bool, int, int, int, int, int]] = []
    cat_bits: list[int] = []
    # Leaves grouped by path width so their tables are built with one vectorised call per width.
    by_width: dict[int, list[int]] = {}
    leaf_width: list[int] = []
    leaf_value: list[float] = []
    leaf_covers: list[tuple[float, ...]] = []
    slot_leaf: list[int] = []  # global leaf index of each slot
    slot_ref: list[int] = []
    slot_shift: list[int] = []
    slot_feature: list[int] = []
    expected_value = 0.0
    max_tree_nodes = 0
    exact: dict[int, list[float]] | None = None

    for tree in dump["tree_info"]:
        root = tree["tree_structure"]
        if "leaf_value" in root and "split_index" not in root:
            # A single-leaf (constant) tree: its contribution is its value, all in the base.
            expected_value += float(root["leaf_value"])
            node_start.append(len(nodes))
            slot_start.append(len(slot_ref))
            continue
        root_count = float(root["internal_count"])
        tree_nodes: list[list[Any]] = []
        tree_leaves: list[tuple[int, float, float, tuple[int, ...], tuple[float, ...]]] = []
        # Iterative pre-order walk (deep unbalanced trees would overflow Python recursion).
        # Each entry: node, (parent local index, is-left), path features, path covers.
        stack: list[tuple[dict[str, Any], int, bool, tuple[int, ...], tuple[float, ...]]] = [
            (root, -1, True, (), ())
        ]
        while stack:
            node, parent, is_left, feats, covers = stack.pop()
            if "leaf_value" in node and "split_index" not in node:
                if "leaf_coeff" in node or "leaf_const" in node:
                    raise _UnsupportedModelError("linear trees")
                ref = ~len(tree_leaves)  # resolved to n_internal + j once the tree is walked
                tree_leaves.append(
                    (
                        int(node.get("leaf_index", len(tree_leaves))),
                        float(node["leaf_value"]),
                        float(node["leaf_count"]),
                        feats,
                        covers,
                    )
                )
            else:
                ref = len(tree_nodes)
                feature = int(node["split_feature"])
                count = float(node["internal_count"])
                slot = feats.index(feature) if feature in feats else len(feats)
                if node["decision_type"] == "<=":
                    threshold = float(node["threshold"])
                    if abs(threshold) >= _DUMP_CLAMP:
                        if model_text is None:
                            raise _UnsupportedModelError("a clamped threshold and no text model")
                        if exact is None:
                            exact = _text_thresholds(model_text())
                        threshold = exact[int(tree["tree_index"])][int(node["split_index"])]
                    missing = str(node["missing_type"])
                    default_left = bool(node["default_left"])
                    # NaN is routed as missing only for missing_type NaN; otherwise LightGBM
                    # reads it as 0.0, which missing_type Zero routes as missing.
                    zero_left = default_left if missing == "Zero" else threshold >= 0.0
                    nan_left = default_left if missing in ("NaN", "Zero") else threshold >= 0.0
                    spec = [feature, threshold, False, nan_left, zero_left, -1, -1, slot]
                    spec += [0, 0]
                elif node["decision_type"] == "==":
                    cats = _categories(node["threshold"])
                    words = [0] * (max(cats) // 32 + 1 if cats else 1)
                    for cat in cats:
                        words[cat // 32] |= 1 << (cat % 32)
                    # LightGBM (4.x) sends NaN and negative codes right whatever missing_type.
                    spec = [feature, 0.0, True, False, 0 in cats, -1, -1, slot]
                    spec += [len(cat_bits), len(words)]
                    cat_bits.extend(words)
                else:
                    raise _UnsupportedModelError(f"decision type {node['decision_type']!r}")
                tree_nodes.append(spec)
                # Push right first so the left subtree is walked (and numbered) first.
                for child, child_is_left in (
                    (node["right_child"], False),
                    (node["left_child"], True),
                ):
                    child_count = float(
                        child["internal_count"] if "split_index" in child else child["leaf_count"]
                    )
                    ratio = child_count / count
                    if not ratio > 0.0:
                        raise _UnsupportedModelError("a split with an empty child (zero cover)")
                    if slot == len(feats):
                        child_feats, child_covers = (*feats, feature), (*covers, ratio)
                    else:
                        # Same feature again: its cover is the product over its splits, matching
                        # LightGBM's unwind-and-extend of the repeated path element.
                        child_covers = tuple(
                            c * ratio if k == slot else c for k, c in enumerate(covers)
                        )
                        child_feats = feats
                    stack.append((child, ref, child_is_left, child_feats, child_covers))
            if parent >= 0:
                tree_nodes[parent][5 if is_left else 6] = ref
        n_internal = len(tree_nodes)
        for spec in tree_nodes:
            for k in (5, 6):
                if spec[k] < 0:
                    spec[k] = n_internal + ~spec[k]
        nodes.extend(tuple(spec) for spec in tree_nodes)  # type: ignore[misc]
        max_tree_nodes = max(max_tree_nodes, n_internal + len(tree_leaves))
        # Same order of operations as LightGBM's Tree::ExpectedValue (by leaf index).
        tree_expected = 0.0
        for _, value, count, _, _ in sorted(tree_leaves):
            tree_expected += (count / root_count) * value
        expected_value += tree_expected
        for j, (_, value, _, feats, covers) in enumerate(tree_leaves):
            if len(feats) > max_unique_depth:
                raise _UnsupportedModelError(
                    f"a leaf path has {len(feats)} distinct features "
                    f"(> max_unique_depth={max_unique_depth})"
                )
            by_width.setdefault(len(feats), []).append(len(leaf_width))
            for position, feature in enumerate(feats):
                slot_leaf.append(len(leaf_width))
                slot_ref.append(n_internal + j)
                slot_shift.append(position)
                slot_feature.append(feature)
            leaf_width.append(len(feats))
            leaf_value.append(value)
            leaf_covers.append(covers)
        node_start.append(len(nodes))
        slot_start.append(len(slot_ref))

    if n_features > _MAX_FEATURES or max_tree_nodes > _MAX_LOCAL_NODES:
        raise _UnsupportedModelError("more features or tree nodes than the packed layout holds")
    widths = np.asarray(leaf_width, dtype=np.int64)
    table_sizes = np.left_shift(np.int64(1), widths)
    total_entries = int(table_sizes.sum())
    if total_entries * 8 > max_table_bytes or total_entries >= _MAX_TABLE_ENTRIES:
        raise _UnsupportedModelError(
            f"subset tables need {total_entries * 8 / 2**20:.0f} MiB "
            f"(> max_table_bytes={max_table_bytes / 2**20:.0f} MiB)"
        )
    table_start = np.zeros(len(widths) + 1, dtype=np.int64)
    np.cumsum(table_sizes, out=table_start[1:])
    tables = np.zeros(total_entries)
    values = np.asarray(leaf_value, dtype=np.float64)
    for width, members in by_width.items():
        idx = np.asarray(members, dtype=np.int64)
        covers = np.asarray([leaf_covers[i] for i in members], dtype=np.float64).reshape(
            len(members), width
        )
        positions = table_start[idx][:, None] + np.arange(1 << width)[None, :]
        tables[positions] = _leaf_tables(covers, values[idx])
    all_covers = np.asarray([c for covers in leaf_covers for c in covers], dtype=np.float64)

    u64 = np.uint64
    leaf_of_slot = np.asarray(slot_leaf, dtype=np.int64)
    shifts = np.asarray(slot_shift, dtype=np.uint64)
    keep = (table_sizes[leaf_of_slot].astype(u64) - u64(1)) & ~np.left_shift(u64(1), shifts)
    slot_meta = (
        np.asarray(slot_ref, dtype=u64)
        | (shifts << u64(_SLOT_SHIFT_SHIFT))
        | (keep << u64(_SLOT_KEEP_SHIFT))
    )
    slot_target = table_start[leaf_of_slot].astype(u64) | (
        np.asarray(slot_feature, dtype=u64) << u64(_TARGET_FEATURE_SHIFT)
    )

    def column(k: int) -> np.ndarray:
        return np.asarray([spec[k] for spec in nodes], dtype=u64)

    node_word = (
        column(0)
        | (column(5) << u64(_NODE_LEFT_SHIFT))
        | (column(6) << u64(_NODE_RIGHT_SHIFT))
        | (column(7) << u64(_NODE_SLOT_SHIFT))
        | (column(2) << u64(_NODE_IS_CAT_BIT))
        | (column(3) << u64(_NODE_NAN_LEFT_BIT))
        | (column(4) << u64(_NODE_ZERO_LEFT_BIT))
    )
    return _FlatEnsemble(
        n_features=n_features,
        expected_value=expected_value,
        n_leaves=len(leaf_width),
        node_start=np.asarray(node_start, dtype=u64),
        slot_start=np.asarray(slot_start, dtype=u64),
        node_word=node_word,
        node_threshold=np.asarray([spec[1] for spec in nodes], dtype=np.float64),
        node_cat_start=column(8),
        node_cat_words=column(9),
        cat_bits=np.asarray(cat_bits, dtype=np.uint32),
        slot_meta=slot_meta,
        slot_target=slot_target,
        slot_coef=np.stack([-np.ones_like(all_covers), (1.0 - all_covers) / all_covers], axis=1),
        tables=tables,
        max_tree_nodes=max(max_tree_nodes, 1),
    )


_KERNEL_LOCK = threading.Lock()
_KERNEL: Callable[..., None] | None = None


@functools.cache
def _numba_available() -> bool:
    """Return whether numba imports (it refuses to import with a NumPy it does not support)."""
    try:
        import numba  # noqa: F401
    except ImportError as exc:
        logger.info("numba is unavailable: %s", exc)
        return False
    return True


def _get_kernel() -> Callable[..., None]:
    """Build (once) and return the numba kernel; nothing is compiled at import time."""
    global _KERNEL
    with _KERNEL_LOCK:
        if _KERNEL is None:
            _KERNEL = _build_kernel()
        return _KERNEL


def _build_kernel() -> Callable[..., None]:
    """Define the parallel numba kernel (compiled by numba on its first call)."""
    import numba

    u64 = numba.uint64
    kzero = K_ZERO_THRESHOLD
    int32_limit = _INT32_LIMIT
    feature_mask = u64((1 << _NODE_FEATURE_BITS) - 1)
    left_shift, right_shift = u64(_NODE_LEFT_SHIFT), u64(_NODE_RIGHT_SHIFT)
    slot_shift_, is_cat_bit = u64(_NODE_SLOT_SHIFT), u64(_NODE_IS_CAT_BIT)
    nan_bit, zero_bit = u64(_NODE_NAN_LEFT_BIT), u64(_NODE_ZERO_LEFT_BIT)
    meta_shift_shift, meta_keep_shift = u64(_SLOT_SHIFT_SHIFT), u64(_SLOT_KEEP_SHIFT)
    target_shift = u64(_TARGET_FEATURE_SHIFT)
    target_mask = u64((1 << _TARGET_FEATURE_SHIFT) - 1)

    # All index arithmetic is uint64 on purpose: numba adds a negative-index wraparound check
    # to every signed index, and dropping those made the kernel about twice as fast. (Mixing
    # uint64 with int64 would promote to float64 in numba, so everything stays uint64.)
    @numba.njit(parallel=True, cache=False)
    def kernel(
        X: np.ndarray,
        out: np.ndarray,
        block_rows: int,
        node_start: np.ndarray,
        slot_start: np.ndarray,
        node_word: np.ndarray,
        node_threshold: np.ndarray,
        node_cat_start: np.ndarray,
        node_cat_words: np.ndarray,
        cat_bits: np.ndarray,
        slot_meta: np.ndarray,
        slot_target: np.ndarray,
        slot_coef: np.ndarray,
        tables: np.ndarray,
        max_tree_nodes: int,
    ) -> None:
        one = u64(1)
        n_rows = X.shape[0]
        n_trees = node_start.shape[0] - 1
        n_blocks = (n_rows + block_rows - 1) // block_rows
        for block in numba.prange(n_blocks):
            lo = u64(block * block_rows)
            hi = u64(min(n_rows, block * block_rows + block_rows))
            # masks[k]: bitmask of the path features whose conditions the row satisfies on the
            # way from the root to local node k (bit s = the s-th distinct feature of the path).
            masks = np.empty(max_tree_nodes, dtype=np.uint64)
            # Tree-major inside a block: one tree's nodes, slots and tables stay in L1/L2 while
            # they serve every row of the block.
            for t in range(n_trees):
                n0, n1 = node_start[t], node_start[t + 1]
                q0, q1 = slot_start[t], slot_start[t + 1]
                r = lo
                while r < hi:
                    masks[0] = ~u64(0)
                    g = n0
                    while g < n1:
                        word = node_word[g]
                        x = X[r, word & feature_mask]
                        is_nan = u64(np.isnan(x))
                        is_zero = u64(abs(x) <= kzero)
                        if (word >> is_cat_bit) & one:
                            # C++ static_cast<int> truncates toward zero; negative or
                            # out-of-range codes go right (NaN fails the range test).
                            plain = u64(0)
                            if x > -1.0 and x < int32_limit:
                                code = u64(np.int64(x))
                                index = code >> u64(5)
                                if index < node_cat_words[g]:
                                    bits = u64(cat_bits[node_cat_start[g] + index])
                                    plain = (bits >> (code & u64(31))) & one
                        else:
                            plain = u64(x <= node_threshold[g])
                        # Select without branches: NaN and zero are data dependent.
                        go_left = (
                            (plain & (one ^ (is_nan | is_zero)))
                            | (is_nan & (word >> nan_bit))
                            | (is_zero & (word >> zero_bit))
                        ) & one
                        # Branch-free child update: which child keeps the node's mask is data
                        # dependent (about 50/50), so a branch would mispredict constantly.
                        mask = masks[g - n0]
                        clear = one << ((word >> slot_shift_) & u64(15))
                        masks[(word >> left_shift) & u64(0xFFFF)] = mask & ~(
                            clear * (one - go_left)
                        )
                        masks[(word >> right_shift) & u64(0xFFFF)] = mask & ~(clear * go_left)
                        g += one
                    q = q0
                    while q < q1:
                        # One read serves both cases: M[A & ~bit] is M[A] when the feature is
                        # unsatisfied (coefficient -1) and M[A minus i] when it is satisfied
                        # (coefficient (1 - z) / z); the coefficient pair avoids a branch.
                        meta = slot_meta[q]
                        target = slot_target[q]
                        satisfied = masks[meta & u64(0xFFFF)]
                        on = (satisfied >> ((meta >> meta_shift_shift) & u64(0xFF))) & one
                        value = tables[
                            (target & target_mask) + (satisfied & (meta >> meta_keep_shift))
                        ]
                        out[r, target >> target_shift] += slot_coef[q, on] * value
                        q += one
                    r += one

    return kernel


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
        self._ensemble: _FlatEnsemble | None = None
        if not _numba_available():
            self.fallback_reason = "numba is not installed or does not import"
        else:
            try:
                self._ensemble = _flatten(
                    booster.dump_model(num_iteration=num_iteration),
                    max_unique_depth=max_unique_depth,
                    max_table_bytes=max_table_bytes,
                    model_text=lambda: booster.model_to_string(num_iteration=num_iteration),
                )
            except _UnsupportedModelError as exc:
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
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"expected a 2-D array with {self.n_features} columns, got shape {X.shape}"
            )
        if self._ensemble is None:
            return _lightgbm_contributions(self.booster, X, self.num_iteration)
        # float32 -> float64 is exact, like LightGBM's own conversion.
        X = np.ascontiguousarray(X, dtype=np.float64)
        flat = self._ensemble
        out = np.zeros((X.shape[0], self.n_features + 1), dtype=np.float64)
        if X.shape[0] and flat.slot_meta.size:
            _get_kernel()(
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
            )
        out[:, -1] = flat.expected_value
        return out


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


def choose_backend(booster: lgb.Booster, n_rows: int) -> str:
    """Pick the TreeSHAP backend for one call: ``"numba"`` or ``"lightgbm"`` (pred_contrib).

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

    Returns:
        ``"lightgbm"`` for calls below the threshold, else ``"numba"``.
    """
    work = int(n_rows) * int(booster.num_trees())
    return "lightgbm" if work < KERNEL_MIN_ROW_TREES else "numba"


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
