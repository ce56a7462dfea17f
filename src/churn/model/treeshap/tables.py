"""A LightGBM model's trees flattened into the arrays the TreeSHAP kernel reads.

:func:`flatten_ensemble` reads ``booster.dump_model()`` (and the model text for exact
thresholds) into a :class:`FlatEnsemble`: packed node and slot words, category bitsets, and the
per-leaf subset tables of :func:`build_leaf_tables` (the formulas are in
:mod:`churn.model.treeshap`). Models the tables cannot represent raise
:class:`UnsupportedModelError`, and the explainer falls back to LightGBM's ``pred_contrib``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import factorial
from typing import Any

import numpy as np

# LightGBM's kZeroThreshold is the float literal 1e-35f stored in a double. Dense input values
# with |x| <= kZeroThreshold are dropped before prediction (read back as 0.0), and its
# missing_type "Zero" test is |x| <= kZeroThreshold: both must use this exact value.
K_ZERO_THRESHOLD = float(np.float32(1e-35))
# static_cast<int>(double) of a value >= 2**31 is out of range; on x86-64 it yields INT_MIN,
# which LightGBM's categorical test sends right like any negative category.
INT32_LIMIT = 2147483648.0


class UnsupportedModelError(Exception):
    """The model has a shape the table kernel does not handle; use pred_contrib instead."""


# Bit layout of the packed per-node and per-slot words (one 64-bit load instead of several
# arrays: the kernel is bound by loads, and packing them made it ~25% faster).
NODE_FEATURE_BITS = 24  # node word bits 0-23: split feature
NODE_LEFT_SHIFT = 24  # bits 24-39: left child (local index)
NODE_RIGHT_SHIFT = 40  # bits 40-55: right child (local index)
NODE_SLOT_SHIFT = 56  # bits 56-59: position of the split feature in the path's feature set
NODE_IS_CAT_BIT = 60
NODE_NAN_LEFT_BIT = 61  # where NaN goes
NODE_ZERO_LEFT_BIT = 62  # where 0.0 (and |x| <= kZeroThreshold) goes
SLOT_SHIFT_SHIFT = 16  # slot meta bits 0-15: leaf (local index); bits 16-23: bit position s
SLOT_KEEP_SHIFT = 24  # bits 24-39: (2**d - 1) & ~(1 << s), the table-index mask
TARGET_FEATURE_SHIFT = 40  # slot target bits 0-39: table offset; bits 40-63: feature
MAX_LOCAL_NODES = 1 << 16
MAX_FEATURES = 1 << 24
MAX_TABLE_ENTRIES = 1 << 40
# Slot positions are 4 bits and table-index masks 16 bits wide.
MAX_SUPPORTED_UNIQUE_DEPTH = 16


@dataclass(frozen=True)
class FlatEnsemble:
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
    # Every tree's leaf values in local order (leaf j of tree t is local index n_internal + j),
    # single-leaf trees included: what prediction reads (``leaf_start[t]:leaf_start[t + 1]``).
    leaf_start: np.ndarray  # uint64 (n_trees + 1,)
    leaf_value: np.ndarray  # float64

    @property
    def table_bytes(self) -> int:
        """Bytes held by the per-leaf subset tables."""
        return int(self.tables.nbytes)


def shapley_weights(d: int) -> np.ndarray:
    """Return ``W(k, d) = k! (d - k - 1)! / d!`` for ``k = 0..d`` (``W(d, d) = 0``, unused)."""
    weights = np.zeros(d + 1)
    for k in range(d):
        weights[k] = factorial(k) * factorial(d - k - 1) / factorial(d)
    return weights


def build_leaf_tables(covers: np.ndarray, values: np.ndarray) -> np.ndarray:
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
    table = outside * shapley_weights(d)[sizes][None, :] * values[:, None]
    # Sum over subsets (zeta transform): afterwards table[B] = sum of the terms of all T <= B.
    for j in range(d):
        view = table.reshape(n, 1 << (d - j - 1), 2, 1 << j)
        view[:, :, 1, :] += view[:, :, 0, :]
    return table


def parse_categories(threshold: Any) -> list[int]:
    """Parse a categorical split's category list (``"1||3||5"`` or a single number)."""
    return [int(part) for part in str(threshold).split("||") if part != ""]


def read_text_thresholds(model_text: str) -> dict[int, list[float]]:
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


def flatten_ensemble(
    dump: dict[str, Any],
    max_unique_depth: int,
    max_table_bytes: int,
    model_text: Callable[[], str] | None = None,
) -> FlatEnsemble:
    """Flatten ``booster.dump_model()`` into a :class:`FlatEnsemble`.

    Args:
        dump: The booster's JSON dump.
        max_unique_depth: See :class:`FastTreeShap`.
        max_table_bytes: See :class:`FastTreeShap`.
        model_text: Returns the booster's text model, read only if the dump holds a clamped
            (+-1e300) threshold, to recover its exact value.

    Raises:
        UnsupportedModelError: For model shapes the kernel does not handle (see module doc).
    """
    if int(dump.get("num_tree_per_iteration", 1)) != 1:
        raise UnsupportedModelError("multiclass model (several trees per iteration)")
    if dump.get("average_output", False):
        raise UnsupportedModelError("averaged output (random forest mode)")
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
    leaf_start, tree_leaf_value = [0], []
    exact: dict[int, list[float]] | None = None

    for tree in dump["tree_info"]:
        root = tree["tree_structure"]
        if "leaf_value" in root and "split_index" not in root:
            # A single-leaf (constant) tree: its contribution is its value, all in the base.
            expected_value += float(root["leaf_value"])
            tree_leaf_value.append(float(root["leaf_value"]))
            leaf_start.append(len(tree_leaf_value))
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
                    raise UnsupportedModelError("linear trees")
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
                            raise UnsupportedModelError("a clamped threshold and no text model")
                        if exact is None:
                            exact = read_text_thresholds(model_text())
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
                    cats = parse_categories(node["threshold"])
                    words = [0] * (max(cats) // 32 + 1 if cats else 1)
                    for cat in cats:
                        words[cat // 32] |= 1 << (cat % 32)
                    # LightGBM (4.x) sends NaN and negative codes right whatever missing_type.
                    spec = [feature, 0.0, True, False, 0 in cats, -1, -1, slot]
                    spec += [len(cat_bits), len(words)]
                    cat_bits.extend(words)
                else:
                    raise UnsupportedModelError(f"decision type {node['decision_type']!r}")
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
                        raise UnsupportedModelError("a split with an empty child (zero cover)")
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
        tree_leaf_value.extend(value for _, value, _, _, _ in tree_leaves)
        leaf_start.append(len(tree_leaf_value))
        for j, (_, value, _, feats, covers) in enumerate(tree_leaves):
            if len(feats) > max_unique_depth:
                raise UnsupportedModelError(
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

    if n_features > MAX_FEATURES or max_tree_nodes > MAX_LOCAL_NODES:
        raise UnsupportedModelError("more features or tree nodes than the packed layout holds")
    widths = np.asarray(leaf_width, dtype=np.int64)
    table_sizes = np.left_shift(np.int64(1), widths)
    total_entries = int(table_sizes.sum())
    if total_entries * 8 > max_table_bytes or total_entries >= MAX_TABLE_ENTRIES:
        raise UnsupportedModelError(
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
        tables[positions] = build_leaf_tables(covers, values[idx])
    all_covers = np.asarray([c for covers in leaf_covers for c in covers], dtype=np.float64)

    u64 = np.uint64
    leaf_of_slot = np.asarray(slot_leaf, dtype=np.int64)
    shifts = np.asarray(slot_shift, dtype=np.uint64)
    keep = (table_sizes[leaf_of_slot].astype(u64) - u64(1)) & ~np.left_shift(u64(1), shifts)
    slot_meta = (
        np.asarray(slot_ref, dtype=u64)
        | (shifts << u64(SLOT_SHIFT_SHIFT))
        | (keep << u64(SLOT_KEEP_SHIFT))
    )
    slot_target = table_start[leaf_of_slot].astype(u64) | (
        np.asarray(slot_feature, dtype=u64) << u64(TARGET_FEATURE_SHIFT)
    )

    def column(k: int) -> np.ndarray:
        return np.asarray([spec[k] for spec in nodes], dtype=u64)

    node_word = (
        column(0)
        | (column(5) << u64(NODE_LEFT_SHIFT))
        | (column(6) << u64(NODE_RIGHT_SHIFT))
        | (column(7) << u64(NODE_SLOT_SHIFT))
        | (column(2) << u64(NODE_IS_CAT_BIT))
        | (column(3) << u64(NODE_NAN_LEFT_BIT))
        | (column(4) << u64(NODE_ZERO_LEFT_BIT))
    )
    return FlatEnsemble(
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
        leaf_start=np.asarray(leaf_start, dtype=u64),
        leaf_value=np.asarray(tree_leaf_value, dtype=np.float64),
    )


@dataclass(frozen=True)
class PredictionLayout:
    """Every tree's nodes and leaves in one array each, for the level-by-level prediction.

    Tree ``t`` owns ``node_start[t]:node_start[t + 1]``: its internal nodes (local ``0`` to
    ``n_internal - 1``, as in :class:`FlatEnsemble`), then one entry per leaf whose two
    children are the leaf itself, so ``depth[t]`` steps from the root end on a leaf for every
    row, whatever its path length: the kernel advances many rows one level at a time, without
    a data-dependent loop exit.
    """

    node_start: np.ndarray  # uint64 (n_trees + 1,)
    n_internal: np.ndarray  # uint64 (n_trees,)
    depth: np.ndarray  # uint64 (n_trees,): longest root-to-leaf path, in splits
    node_word: np.ndarray  # uint64, packed as FlatEnsemble.node_word
    node_threshold: np.ndarray  # float64
    node_cat_start: np.ndarray  # uint64
    node_cat_words: np.ndarray  # uint64
    leaf_start: np.ndarray  # uint64 (n_trees + 1,)
    leaf_value: np.ndarray  # float64


def build_prediction_layout(flat: FlatEnsemble) -> PredictionLayout:
    """Return :class:`PredictionLayout` of a flattened ensemble (leaves as self-loops)."""
    u64 = np.uint64
    child_mask = u64(0xFFFF)
    words, thresholds, cat_starts, cat_words = [], [], [], []
    node_start, n_internal, depth = [0], [], []
    for t in range(len(flat.node_start) - 1):
        n0, n1 = int(flat.node_start[t]), int(flat.node_start[t + 1])
        n_leaves = int(flat.leaf_start[t + 1] - flat.leaf_start[t])
        tree_words = flat.node_word[n0:n1]
        leaves = np.arange(n1 - n0, n1 - n0 + n_leaves, dtype=u64)
        # A leaf's word: feature 0, numerical, both children the leaf itself.
        leaf_words = (leaves << u64(NODE_LEFT_SHIFT)) | (leaves << u64(NODE_RIGHT_SHIFT))
        words.append(np.concatenate([tree_words, leaf_words]))
        thresholds.append(np.concatenate([flat.node_threshold[n0:n1], np.zeros(n_leaves)]))
        cat_starts.append(np.concatenate([flat.node_cat_start[n0:n1], np.zeros(n_leaves, u64)]))
        cat_words.append(np.concatenate([flat.node_cat_words[n0:n1], np.zeros(n_leaves, u64)]))
        # Depth by pre-order (a parent before its children): level of each internal node.
        level = np.zeros(n1 - n0 + n_leaves, dtype=np.int64)
        longest = 0
        for k, word in enumerate(tree_words):
            for child in (
                (word >> u64(NODE_LEFT_SHIFT)) & child_mask,
                (word >> u64(NODE_RIGHT_SHIFT)) & child_mask,
            ):
                level[int(child)] = level[k] + 1
                longest = max(longest, level[k] + 1)
        node_start.append(node_start[-1] + n1 - n0 + n_leaves)
        n_internal.append(n1 - n0)
        depth.append(longest)
    return PredictionLayout(
        node_start=np.asarray(node_start, dtype=u64),
        n_internal=np.asarray(n_internal, dtype=u64),
        depth=np.asarray(depth, dtype=u64),
        node_word=np.concatenate(words) if words else np.zeros(0, u64),
        node_threshold=np.concatenate(thresholds) if thresholds else np.zeros(0),
        node_cat_start=np.concatenate(cat_starts) if cat_starts else np.zeros(0, u64),
        node_cat_words=np.concatenate(cat_words) if cat_words else np.zeros(0, u64),
        leaf_start=flat.leaf_start,
        leaf_value=flat.leaf_value,
    )
