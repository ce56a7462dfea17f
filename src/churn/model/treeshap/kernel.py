"""The numba kernel of the table TreeSHAP: built on first use, never at import time."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from .tables import (
    INT32_LIMIT,
    K_ZERO_THRESHOLD,
    NODE_FEATURE_BITS,
    NODE_IS_CAT_BIT,
    NODE_LEFT_SHIFT,
    NODE_NAN_LEFT_BIT,
    NODE_RIGHT_SHIFT,
    NODE_SLOT_SHIFT,
    NODE_ZERO_LEFT_BIT,
    SLOT_KEEP_SHIFT,
    SLOT_SHIFT_SHIFT,
    TARGET_FEATURE_SHIFT,
)

logger = logging.getLogger(__name__)


_KERNEL_LOCK = threading.Lock()
# Kernel name -> the kernel, built on first use (numba compiles it on its first call).
_KERNELS: dict[str, Callable[..., None]] = {}


@functools.cache
def numba_available() -> bool:
    """Return whether numba imports (it refuses to import with a NumPy it does not support)."""
    try:
        import numba  # noqa: F401
    except ImportError as exc:
        logger.info("numba is unavailable: %s", exc)
        return False
    return True


def _get_built(name: str, build: Callable[[], Callable[..., None]]) -> Callable[..., None]:
    """Return the kernel ``name``, building it once; nothing is compiled at import time."""
    with _KERNEL_LOCK:
        if name not in _KERNELS:
            _KERNELS[name] = build()
        return _KERNELS[name]


def compile_for(kernel: Any, arguments: tuple[Any, ...]) -> None:
    """Compile a numba kernel for the types of ``arguments`` without calling it.

    The types are numba's own reading of each value (``numba.typeof``, as a call does), so a
    later call with arguments of the same types uses this compilation.
    """
    import numba

    kernel.compile(tuple(numba.typeof(value) for value in arguments))


def get_kernel() -> Callable[..., None]:
    """Return the numba TreeSHAP kernel (built once)."""
    return _get_built("treeshap", _build_kernel)


def _build_decision() -> Callable[..., int]:
    """Define the numba split test both kernels inline: 1 when a row goes left at a node.

    LightGBM's dense-matrix semantics: NaN and values with ``|x| <= kZeroThreshold`` follow the
    node's NaN and zero bits (which encode its missing type, see :mod:`.tables`); a categorical
    code is truncated toward zero like C++ ``static_cast<int>`` and goes left when it is in the
    node's bitset (negative, out-of-range and NaN codes go right); a number goes left when
    ``x <= threshold``.
    """
    import numba

    u64 = numba.uint64
    kzero = K_ZERO_THRESHOLD
    int32_limit = INT32_LIMIT
    is_cat_bit = u64(NODE_IS_CAT_BIT)
    nan_bit, zero_bit = u64(NODE_NAN_LEFT_BIT), u64(NODE_ZERO_LEFT_BIT)

    @numba.njit(inline="always", cache=False)
    def goes_left(word, x, threshold, cat_start, cat_words, cat_bits):  # type: ignore[no-untyped-def]
        one = u64(1)
        is_nan = u64(np.isnan(x))
        is_zero = u64(abs(x) <= kzero)
        if (word >> is_cat_bit) & one:
            plain = u64(0)
            if x > -1.0 and x < int32_limit:
                code = u64(np.int64(x))
                index = code >> u64(5)
                if index < cat_words:
                    bits = u64(cat_bits[cat_start + index])
                    plain = (bits >> (code & u64(31))) & one
        else:
            plain = u64(x <= threshold)
        # Select without branches: NaN and zero are data dependent.
        return (
            (plain & (one ^ (is_nan | is_zero)))
            | (is_nan & (word >> nan_bit))
            | (is_zero & (word >> zero_bit))
        ) & one

    return goes_left


def get_predict_kernel() -> Callable[..., None]:
    """Return the numba prediction kernel of raw scores (built once)."""
    return _get_built("predict", _build_predict_kernel)


def _build_predict_kernel() -> Callable[..., None]:
    """Define the parallel numba kernel of raw scores (compiled by numba on its first call).

    It walks every tree from its root to a leaf with the same decision rule as the TreeSHAP
    kernel (LightGBM's dense-matrix semantics) and adds the leaf values tree by tree from 0.0,
    in LightGBM's order (``GBDT::PredictRaw``), so each row's sum is LightGBM's bit for bit.
    """
    import numba

    u64 = numba.uint64
    feature_mask = u64((1 << NODE_FEATURE_BITS) - 1)
    left_shift, right_shift = u64(NODE_LEFT_SHIFT), u64(NODE_RIGHT_SHIFT)
    goes_left = _build_decision()

    # uint64 index arithmetic throughout, for the reason given in _build_kernel.
    @numba.njit(parallel=True, cache=False)
    def predict(
        X: np.ndarray,
        out: np.ndarray,
        block_rows: int,
        node_start: np.ndarray,
        n_internal: np.ndarray,
        depth: np.ndarray,
        node_word: np.ndarray,
        node_threshold: np.ndarray,
        node_cat_start: np.ndarray,
        node_cat_words: np.ndarray,
        cat_bits: np.ndarray,
        leaf_start: np.ndarray,
        leaf_value: np.ndarray,
    ) -> None:
        n_rows = X.shape[0]
        n_trees = node_start.shape[0] - 1
        n_blocks = (n_rows + block_rows - 1) // block_rows
        for block in numba.prange(n_blocks):
            lo = u64(block * block_rows)
            hi = u64(min(n_rows, block * block_rows + block_rows))
            width = hi - lo
            at = np.zeros(block_rows, dtype=np.uint64)
            # The block's rows feature-major: at a level, the rows at one node read one
            # contiguous run of a feature's values instead of one cache line per row.
            block_x = np.empty((X.shape[1], block_rows), dtype=np.float64)
            for i in range(width):
                for f in range(X.shape[1]):
                    block_x[f, i] = X[lo + i, f]
            # Tree by tree, and inside a tree level by level over the block's rows: the rows'
            # walks are independent, so one level of many rows overlaps their loads (a walk
            # alone waits on each load in turn); leaves loop onto themselves, so depth[t]
            # levels end every walk on a leaf. Each row adds its trees in order, as LightGBM.
            for t in range(n_trees):
                p0 = node_start[t]
                for i in range(width):
                    at[i] = u64(0)
                for _ in range(depth[t]):
                    for i in range(width):
                        g = p0 + at[i]
                        word = node_word[g]
                        x = block_x[word & feature_mask, i]
                        go_left = goes_left(
                            word,
                            x,
                            node_threshold[g],
                            node_cat_start[g],
                            node_cat_words[g],
                            cat_bits,
                        )
                        left = (word >> left_shift) & u64(0xFFFF)
                        right = (word >> right_shift) & u64(0xFFFF)
                        at[i] = right + (left - right) * go_left
                l0 = leaf_start[t] - n_internal[t]
                for i in range(width):
                    out[lo + i] += leaf_value[l0 + at[i]]

    return predict


def _build_kernel() -> Callable[..., None]:
    """Define the parallel numba kernel (compiled by numba on its first call).

    Besides the contributions it writes each row's raw score to ``raw``: the split tests of
    every internal node are at hand, so the row's leaf is a walk of the stored directions from
    the root, and its value is added tree by tree from 0.0 in LightGBM's order, as
    :func:`get_predict_kernel`'s kernel does (the same sums to the bit). A caller that needs
    both (scoring checks that the contributions add up to the score) then walks the trees once.
    """
    import numba

    u64 = numba.uint64
    goes_left = _build_decision()
    feature_mask = u64((1 << NODE_FEATURE_BITS) - 1)
    left_shift, right_shift = u64(NODE_LEFT_SHIFT), u64(NODE_RIGHT_SHIFT)
    slot_shift_ = u64(NODE_SLOT_SHIFT)
    meta_shift_shift, meta_keep_shift = u64(SLOT_SHIFT_SHIFT), u64(SLOT_KEEP_SHIFT)
    target_shift = u64(TARGET_FEATURE_SHIFT)
    target_mask = u64((1 << TARGET_FEATURE_SHIFT) - 1)

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
        raw: np.ndarray,
        leaf_start: np.ndarray,
        leaf_value: np.ndarray,
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
            # went_left[k]: 1 when the row goes left at local internal node k.
            went_left = np.empty(max_tree_nodes, dtype=np.uint64)
            # Tree-major inside a block: one tree's nodes, slots and tables stay in L1/L2 while
            # they serve every row of the block.
            for t in range(n_trees):
                n0, n1 = node_start[t], node_start[t + 1]
                q0, q1 = slot_start[t], slot_start[t + 1]
                n_internal = n1 - n0
                l0 = leaf_start[t]
                r = lo
                while r < hi:
                    masks[0] = ~u64(0)
                    g = n0
                    while g < n1:
                        word = node_word[g]
                        go_left = goes_left(
                            word,
                            X[r, word & feature_mask],
                            node_threshold[g],
                            node_cat_start[g],
                            node_cat_words[g],
                            cat_bits,
                        )
                        # Branch-free child update: which child keeps the node's mask is data
                        # dependent (about 50/50), so a branch would mispredict constantly.
                        mask = masks[g - n0]
                        clear = one << ((word >> slot_shift_) & u64(15))
                        masks[(word >> left_shift) & u64(0xFFFF)] = mask & ~(
                            clear * (one - go_left)
                        )
                        masks[(word >> right_shift) & u64(0xFFFF)] = mask & ~(clear * go_left)
                        went_left[g - n0] = go_left
                        g += one
                    # The row's leaf (local index n_internal + j; a single-leaf tree has no
                    # internal node, so k stays 0 = its leaf), its value added in tree order.
                    k = u64(0)
                    while k < n_internal:
                        word = node_word[n0 + k]
                        left = (word >> left_shift) & u64(0xFFFF)
                        right = (word >> right_shift) & u64(0xFFFF)
                        k = right + (left - right) * went_left[k]
                    raw[r] += leaf_value[l0 + k - n_internal]
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
