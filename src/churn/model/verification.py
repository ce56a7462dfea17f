"""Verification of a saved model before anything in it is used.

Every saved model folder carries ``manifest.json``: the SHA-256 of every file. Loading checks
the checksums first, then the metadata against its schema, then the LightGBM text's structure,
and only then lets LightGBM parse it: a corrupt LightGBM file can abort the Python process
(SIGABRT) instead of raising, and tampered metadata would score everyone wrongly without an
error. Every failure is a :class:`churn.errors.ModelError` naming the file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from churn.errors import ModelError
from churn.layout import MODEL_META_FILE as META_FILE
from churn.model.reason_reference import REFERENCE_KEY, validate_reason_reference

MANIFEST_FILE = "manifest.json"


FORMAT_VERSION = 2


CALIBRATION_METHODS = ("isotonic", "platt", "identity")


def compute_sha256(path: str | Path) -> str:
    """Return the hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: str | Path) -> dict[str, str]:
    """Write ``manifest.json``: the SHA-256 of every regular file in ``directory`` (recursively).

    Returns:
        The recorded ``{relative path: sha256}``.
    """
    directory = Path(directory)
    files = {
        path.relative_to(directory).as_posix(): compute_sha256(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != MANIFEST_FILE
    }
    payload = {"algorithm": "sha256", "files": files}
    (directory / MANIFEST_FILE).write_text(json.dumps(payload, indent=2) + "\n")
    return files


def verify_manifest(directory: str | Path, required: tuple[str, ...] = ()) -> dict[str, str]:
    """Check every file listed in ``manifest.json`` against its recorded SHA-256.

    Args:
        directory: The artifact directory.
        required: Files that must be listed (and present); a file the caller is about to
            parse but the manifest does not vouch for is refused.

    Returns:
        The verified ``{relative path: sha256}``.

    Raises:
        ModelError: Naming the file, if the manifest is missing or malformed, a listed path
            leaves the directory, a file is missing, unlisted or its checksum differs.
    """
    directory = Path(directory)
    manifest_path = directory / MANIFEST_FILE
    if not directory.is_dir():
        raise ModelError(f"model directory not found: {directory}")
    if not manifest_path.is_file():
        raise ModelError(
            f"{manifest_path} is missing: the model files cannot be verified (retrain with "
            "'churn train', which writes it)"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{manifest_path} is not valid JSON: {exc}") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if (
        not isinstance(files, dict)
        or manifest.get("algorithm") != "sha256"
        or not all(isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) for v in files.values())
    ):
        raise ModelError(f"{manifest_path} is malformed: expected sha256 digests per file")
    root = directory.resolve()
    for name in required:
        if name not in files:
            raise ModelError(f"{directory / name} is not listed in {manifest_path}")
    for name, recorded in files.items():
        path = directory / name
        if not path.resolve().is_relative_to(root):
            raise ModelError(f"{manifest_path} lists {name!r}, which is outside {directory}")
        if not path.is_file():
            raise ModelError(f"model file missing: {path} (listed in {manifest_path})")
        actual = compute_sha256(path)
        if actual != recorded:
            raise ModelError(
                f"checksum mismatch for {path}: recorded {recorded}, found {actual}; the file "
                "is corrupt or was changed after training"
            )
    return files


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate_model_metadata(meta: Any, source: str) -> None:
    """Check ``churn_model.json`` against the schema before any of it is used.

    Feature names: a non-empty list of unique names. Categorical levels: a list of unique texts
    for features that are in the model. Calibrator: a known method with finite parameters
    (isotonic: increasing knots and values in [0, 1], at least one knot).

    Raises:
        ModelError: Naming ``source`` and the field.
    """

    def fail(problem: str) -> ModelError:
        return ModelError(f"{source} is not a valid churn model description: {problem}")

    if not isinstance(meta, dict):
        raise fail("the top level must be an object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise fail(
            f"format_version {meta.get('format_version')!r} is not {FORMAT_VERSION}; retrain "
            "with this version of churn"
        )
    names = meta.get("feature_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise fail("'feature_names' must be a non-empty list of names")
    if len(set(names)) != len(names):
        raise fail("'feature_names' holds duplicates")
    levels = meta.get("categorical_levels")
    if not isinstance(levels, dict):
        raise fail("'categorical_levels' must be an object")
    for name, values in levels.items():
        if name not in names:
            raise fail(f"categorical feature {name!r} is not in 'feature_names'")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise fail(f"the levels of {name!r} must be a list of texts")
        if len(set(values)) != len(values):
            raise fail(f"the levels of {name!r} hold duplicates")
    calibrator = meta.get("calibrator")
    if not isinstance(calibrator, dict):
        raise fail("'calibrator' is missing")
    method = calibrator.get("method")
    if method not in CALIBRATION_METHODS:
        raise fail(f"calibrator method {method!r} is not one of {list(CALIBRATION_METHODS)}")
    if method == "isotonic":
        x, y = calibrator.get("x"), calibrator.get("y")
        if not isinstance(x, list) or not isinstance(y, list) or not x or len(x) != len(y):
            raise fail("an isotonic calibrator needs knots 'x' and values 'y' of equal length")
        if not all(_is_finite_number(v) for v in [*x, *y]):
            raise fail("the isotonic calibrator holds a value that is not a finite number")
        if any(b < a for a, b in itertools.pairwise(x)) or any(
            b < a for a, b in itertools.pairwise(y)
        ):
            raise fail("the isotonic calibrator's knots and values must be increasing")
        if min(y) < 0 or max(y) > 1:
            raise fail("the isotonic calibrator's values must lie in [0, 1]")
    elif method == "platt" and not all(
        _is_finite_number(calibrator.get(k)) for k in ("slope", "intercept")
    ):
        raise fail("a platt calibrator needs finite 'slope' and 'intercept'")
    for key in ("typical_values", "metadata"):
        if not isinstance(meta.get(key, {}), dict):
            raise fail(f"{key!r} must be an object")
    validate_reason_reference(meta.get("metadata", {}).get(REFERENCE_KEY), names, fail)


def validate_model_catalog(catalog: pd.DataFrame, meta: dict[str, Any], source: str) -> None:
    """Check that every categorical feature of the catalog has its levels in the metadata.

    Raises:
        ModelError: Naming ``source`` and the feature.
    """
    if not {"name", "kind"} <= set(catalog.columns):
        raise ModelError(f"{source} lacks the 'name' and 'kind' columns")
    names = set(meta["feature_names"])
    kinds = dict(zip(catalog["name"], catalog["kind"], strict=True))
    absent = [name for name in meta["feature_names"] if name not in kinds]
    if absent:
        raise ModelError(f"{source} has no row for model feature(s) {absent[:20]}")
    for name, kind in kinds.items():
        if name in names and (kind == "categorical") != (name in meta["categorical_levels"]):
            raise ModelError(
                f"{source} says {name!r} is {kind}, but the categorical levels in {META_FILE} "
                f"{'lack' if kind == 'categorical' else 'list'} it"
            )


_TREE_ARRAYS_INTERNAL = ("split_feature", "threshold", "decision_type", "left_child", "right_child")


def check_lightgbm_text(text: str, source: str, feature_names: tuple[str, ...]) -> None:
    """Check a LightGBM text model's structure before LightGBM parses it.

    LightGBM trusts its own text format: a tree size, child index or feature index that does not
    fit can abort the whole process rather than raise. So the header must name the model's
    features, ``tree_sizes`` must cut the tree section exactly into ``Tree=0..n-1`` blocks, and
    every tree's arrays must have the lengths its ``num_leaves`` implies, with child and
    feature indices in range and every number parseable.

    Raises:
        ModelError: Naming ``source`` and the first problem found.
    """

    def fail(problem: str) -> ModelError:
        return ModelError(f"{source} is not a well-formed LightGBM model: {problem}")

    head, sep, _ = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or lines[0] != "tree":
        raise fail("it does not start with a 'tree' header")
    header = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
    for key in ("version", "num_class", "num_tree_per_iteration", "max_feature_idx"):
        if key not in header:
            raise fail(f"the header lacks {key!r}")
    try:
        max_feature = int(header["max_feature_idx"])
        per_iteration = int(header["num_tree_per_iteration"])
        sizes = [int(v) for v in header.get("tree_sizes", "").split()]
    except ValueError:
        raise fail("a header count is not an integer") from None
    booster_names = header.get("feature_names", "").split()
    expected = [re.sub(r"\s", "_", name) for name in feature_names]
    if max_feature + 1 != len(booster_names) or booster_names != expected:
        raise fail(
            f"its features ({len(booster_names)}) do not match the {len(feature_names)} "
            f"feature_names of {META_FILE} (in order)"
        )
    if not sizes or per_iteration < 1 or len(sizes) % per_iteration or min(sizes) <= 0:
        raise fail("'tree_sizes' is missing or inconsistent with num_tree_per_iteration")
    encoded = text.encode()
    start = len(head.encode()) + 2
    end = encoded.find(b"\nend of trees", start)
    if end < 0:
        raise fail("the tree section does not end with 'end of trees'")
    if start + sum(sizes) > end + 1 or encoded[start + sum(sizes) : end].strip(b"\n"):
        raise fail(f"'tree_sizes' (sum {sum(sizes)}) does not match the tree section's length")
    for index, size in enumerate(sizes):
        block = encoded[start : start + size]
        start += size
        if len(block) != size or not block.startswith(f"Tree={index}\n".encode()):
            raise fail(f"'tree_sizes' does not cut the tree section at tree {index}")
        _check_tree(block.decode(errors="replace"), index, max_feature, fail)
    if not encoded[start:].lstrip(b"\n").startswith(b"end of trees"):
        raise fail("the tree section does not end with 'end of trees' where tree_sizes says")


def _check_tree(block: str, index: int, max_feature: int, fail: Any) -> None:
    fields = dict(line.split("=", 1) for line in block.split("\n")[1:] if "=" in line)
    try:
        leaves = int(fields["num_leaves"])
        arrays = {
            key: [float(v) for v in fields.get(key, "").split()]
            for key in (*_TREE_ARRAYS_INTERNAL, "leaf_value")
        }
    except (KeyError, ValueError):
        raise fail(f"tree {index} lacks num_leaves or holds a non-number") from None
    if leaves < 1 or len(arrays["leaf_value"]) != leaves:
        raise fail(f"tree {index} has {len(arrays['leaf_value'])} leaf values for {leaves} leaves")
    if not all(math.isfinite(v) for v in arrays["leaf_value"]):
        raise fail(f"tree {index} has a leaf value that is not finite")
    if leaves == 1:
        return
    for key in _TREE_ARRAYS_INTERNAL:
        if len(arrays[key]) != leaves - 1:
            raise fail(f"tree {index}: {key} has {len(arrays[key])} entries, not {leaves - 1}")
    if any(not 0 <= f <= max_feature or f != int(f) for f in arrays["split_feature"]):
        raise fail(f"tree {index} splits on a feature index outside 0..{max_feature}")
    internal_children: list[int] = []
    leaf_children: list[int] = []
    for key in ("left_child", "right_child"):
        # A child >= 0 is an internal node, created after its parent (so numbered higher);
        # a negative child is the leaf ~child (i.e. -child - 1).
        for node, child in enumerate(arrays[key]):
            if child != int(child) or not (-leaves <= child < leaves - 1):
                raise fail(f"tree {index}: {key} index {int(child)} is out of range")
            if child >= 0 and child <= node:
                raise fail(f"tree {index}: node {node} points back to node {int(child)}")
            (internal_children if child >= 0 else leaf_children).append(int(child))
    # Every node but the root has exactly one parent and every leaf is reached exactly once.
    if sorted(internal_children) != list(range(1, leaves - 1)) or sorted(
        ~c for c in leaf_children
    ) != list(range(leaves)):
        raise fail(f"tree {index}: its child links do not form a tree")
    try:
        categories = int(fields.get("num_cat", "0") or 0)
        boundaries = [int(v) for v in fields.get("cat_boundaries", "").split()]
        cat_threshold = [int(v) for v in fields.get("cat_threshold", "").split()]
        decisions = [int(v) for v in arrays["decision_type"]]
    except ValueError:
        raise fail(f"tree {index} has a non-integer categorical field") from None
    if categories < 0:
        raise fail(f"tree {index} has a negative num_cat")
    if categories and (
        len(boundaries) != categories + 1
        or boundaries[0] != 0
        or any(b < a for a, b in itertools.pairwise(boundaries))
        or boundaries[-1] != len(cat_threshold)
    ):
        raise fail(f"tree {index}: cat_boundaries do not index cat_threshold")
    for node, decision in enumerate(decisions):
        # Bit 0 of decision_type marks a categorical split, whose threshold indexes cat_boundaries.
        if decision & 1 and not 0 <= arrays["threshold"][node] < categories:
            raise fail(f"tree {index}: node {node} names a categorical split that does not exist")
