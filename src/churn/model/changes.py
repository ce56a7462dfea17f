"""What changed since the previous scoring: probability moves and the features that moved them.

Every ``churn score`` run writes, beside its scores file, a sidecar holding each customer's
contribution (SHAP, log-odds) of *every* feature (``<stem>_contributions.parquet``). Comparing
two runs is then exact and needs no re-scoring: for a customer scored both times, the features
that moved the score most are those with the largest ``|contribution_now - contribution_before|``.
A feature known to only one of the two models counts as contributing 0 to the other.

With the feature values of both runs (the ``<stem>_features.parquet`` sidecar the score stage
writes), every moving feature also gets a sentence, ``moved_{i}_text``, worded by the rules of
the reasons (:mod:`churn.model.reasons`, docs/reasons.md): catalog description and unit, numbers
rounded as displayed, day counts from 90 on in months, flags as yes/no, never an exposure or
contract-timing feature:

* numbers: ``"{description} rose from {before} to {now}"`` (``fell``), e.g. "support tickets
  opened in the last 30 days rose from 0 to 4"; a measure carries its unit ("monthly recurring
  revenue fell from 161.85 per month to 120 per month"), a share its percent sign; the past
  tense agrees with a plural description whatever the numbers, so 1 needs no singular here;
* flags: ``"{subject} changed from no to yes"``; categoricals:
  ``"{description} changed from {before} to {now}"``;
* a value that appeared or vanished: ``"{description}: now {now}, none on record before"``,
  ``"no {description} on record any more (was {before})"``.

**An unchanged value is never a change** (the counterpart of the reasons' typical-value rule):
when a feature's value *displays* the same in both runs, its moved contribution comes from other
features (tree interactions) or from a new model, so it is skipped and the next feature takes
its slot. Without the feature values of both runs the ``moved_*`` columns keep the contribution
ranking and ``moved_{i}_text`` is missing.

:func:`compare_scores` is the pure core; :func:`find_previous_scores` and
:func:`read_previous_scores` are the small I/O helpers :func:`churn.stages.score.run_score` uses.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churn.domain.catalog import FeatureSpec
from churn.errors import DataContractError
from churn.io import read_frame
from churn.layout import CONTRIBUTIONS_SUFFIX, FEATURES_SUFFIX, sidecar_path
from churn.model.reasons import (
    DAYS_AS_MONTHS_FROM,
    DAYS_PER_MONTH,
    FLAG_UNITS,
    _format_rounded,
    round_for_display,
)

logger = logging.getLogger(__name__)

#: Non-feature columns of a contributions sidecar.
SIDECAR_KEYS = ("customer_id", "cutoff", "base_value")
STATUS_CONTINUING, STATUS_NEW, STATUS_GONE = "continuing", "new", "gone"


def _key_frame(scores: pd.DataFrame) -> pd.DataFrame:
    """Return customer_id (text), cutoff (UTC) and probability (float) of a scores frame.

    A CSV scores file reads back as text, so every column is coerced here.
    """
    return pd.DataFrame(
        {
            "customer_id": scores["customer_id"].astype("str").array,
            "cutoff": pd.to_datetime(scores["cutoff"], utc=True).astype("datetime64[us, UTC]"),
            "churn_probability": pd.to_numeric(scores["churn_probability"]).astype("float64"),
        }
    )


def contributions_match(scores: pd.DataFrame, contributions: pd.DataFrame) -> bool:
    """Tell whether a contributions sidecar belongs to a scores file (same customers, cutoffs).

    Guards against a sidecar left over from another run (e.g. a run that crashed between
    writing the sidecar and the scores), which would attribute the change to the wrong features.
    """
    if not set(SIDECAR_KEYS[:2]) <= set(contributions.columns) or len(scores) != len(contributions):
        return False
    left = _key_frame(scores)[["customer_id", "cutoff"]].sort_values("customer_id")
    right = pd.DataFrame(
        {
            "customer_id": contributions["customer_id"].astype("str").array,
            "cutoff": pd.to_datetime(contributions["cutoff"], utc=True).astype(
                "datetime64[us, UTC]"
            ),
        }
    ).sort_values("customer_id")
    return bool(
        (left["customer_id"].to_numpy() == right["customer_id"].to_numpy()).all()
        # Datetime arrays compare as numbers; to_numpy() of a zoned column made objects.
        and bool((left["cutoff"].array == right["cutoff"].array).all())
    )


def _unit(spec: FeatureSpec) -> str:
    return spec.unit.strip().lower()


def _in_months(spec: FeatureSpec) -> FeatureSpec | None:
    """The spec counted in months ("days since ..." -> "months since ..."), or ``None``."""
    words = spec.description.split(" ")
    if _unit(spec) != "days" or "days" not in words[:3]:
        return None
    at = words.index("days")
    months = " ".join([*words[:at], "months", *words[at + 1 :]])
    return FeatureSpec(spec.name, spec.family, spec.phase, spec.kind, "months", months)


def _display_numbers(values: pd.Series | np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Return a numeric feature's :func:`display_keys` as numbers (NaN: missing)."""
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
        numbers = values
    else:
        numbers = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    keys = round_for_display(numbers, spec.unit)
    if _in_months(spec) is not None:
        with np.errstate(invalid="ignore"):
            months = round_for_display(numbers / DAYS_PER_MONTH, "months") + 1e12
            keys = np.where(np.abs(numbers) >= DAYS_AS_MONTHS_FROM, months, keys)
    return keys


def display_keys(values: pd.Series, spec: FeatureSpec) -> np.ndarray:
    """Return, per value, a key equal for two values exactly when they *display* the same.

    Numbers are rounded as shown (:func:`churn.model.reasons.round_for_display`); a day count of
    90 or more is shown in months, so its key is the rounded month count (offset so that it
    never equals a day count); categoricals are their text; a missing value is ``None``.
    """
    if spec.kind == "categorical":
        text = values.astype("object").where(values.notna(), None)
        return text.map(str, na_action="ignore").to_numpy(dtype=object)
    keys = _display_numbers(values, spec)
    out = keys.astype(object)
    out[np.isnan(keys)] = None
    return out


def find_same_display(before: np.ndarray, now: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Return, per position, whether ``before`` and ``now`` display the same (both missing
    counts as the same): ``display_keys(before) == display_keys(now)`` without building the
    object keys of a numeric feature (at a million customers they were seconds per feature)."""
    if spec.kind == "categorical":
        return display_keys(pd.Series(before), spec) == display_keys(pd.Series(now), spec)
    before_keys, now_keys = _display_numbers(before, spec), _display_numbers(now, spec)
    return (before_keys == now_keys) | (np.isnan(before_keys) & np.isnan(now_keys))


def _shown(rounded: float, spec: FeatureSpec) -> str:
    """Display a number already rounded for ``spec``'s unit, with "per month" for a rate."""
    suffix = ""
    kind, _, period = _unit(spec).partition("/")
    if kind == "currency" and period:
        suffix = f" per {period}"
    return f"{_format_rounded(rounded, spec.unit)}{suffix}"


def _flag_subject(description: str) -> str:
    """Shorten the catalog's "flag for X (1 yes, 0 no)" wording to "X" (as the reasons do)."""
    subject = re.sub(r"^flag for\s+", "", description.strip())
    return re.sub(r"\s*\(1 yes, 0 no\)$", "", subject) or description


def _number(value: Any) -> float:
    """A raw value as a float, NaN when missing or not a number (scalar, no pandas)."""
    if value is None:
        return np.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def describe_change(before: Any, now: Any, spec: FeatureSpec) -> str | None:
    """Return the sentence of one feature's change between two scorings (see the module doc).

    Args:
        before: The value at the previous scoring (raw, as in the features sidecar).
        now: The value at this scoring.
        spec: The feature's catalog entry (kind as the model reads it).

    Returns:
        The sentence, or ``None`` when both values display the same (or both are missing).
    """
    unit = _unit(spec)
    if spec.kind == "categorical":
        # Scalars are handled without pandas: this runs once per distinct displayed pair.
        shown = [None if v is None or pd.isna(v) else str(v) for v in (before, now)]
        if shown[0] == shown[1]:
            return None
        description, verb = spec.description, "changed"
    else:
        numbers = np.array([_number(before), _number(now)])
        months = _in_months(spec)
        if months is not None and np.nanmax(np.abs(numbers), initial=0.0) >= DAYS_AS_MONTHS_FROM:
            numbers, spec = numbers / DAYS_PER_MONTH, months
        rounded = round_for_display(numbers, spec.unit)
        if (np.isnan(rounded[0]) and np.isnan(rounded[1])) or rounded[0] == rounded[1]:
            return None
        if unit in FLAG_UNITS:
            shown = [None if np.isnan(v) else ("yes" if v else "no") for v in rounded]
            description, verb = _flag_subject(spec.description), "changed"
        else:
            shown = [None if np.isnan(v) else _shown(float(v), spec) for v in rounded]
            # The past tense agrees with the plural description whatever the numbers are.
            description = spec.description
            verb = "rose" if numbers[1] > numbers[0] else "fell"
    shown_before, shown_now = shown
    if shown_before is None:
        return f"{description}: now {shown_now}, none on record before"
    if shown_now is None:
        return f"no {description} on record any more (was {shown_before})"
    return f"{description} {verb} from {shown_before} to {shown_now}"


def _feature_values(
    current: pd.DataFrame,
    previous: pd.DataFrame,
    customer_ids: pd.Series,
    features: list[str],
    specs: Mapping[str, FeatureSpec],
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Return position -> (values before, values now) for ``customer_ids``, per feature in
    both frames with a spec: ``float64`` for a numeric feature (NaN missing), objects for a
    categorical (``None`` missing); a customer absent from a frame has missing values."""
    ids = pd.Index(customer_ids.astype("str").to_numpy(dtype=object))
    taken = []
    for frame in (previous, current):
        # One lookup of the rows per frame, then a positional take per feature.
        keys = frame["customer_id"].astype("str").to_numpy(dtype=object)
        first = ~pd.Index(keys).duplicated()
        taken.append((frame.loc[first], pd.Index(keys[first]).get_indexer(ids)))
    out = {}
    for j, name in enumerate(features):
        if name not in specs or not all(name in frame.columns for frame, _ in taken):
            continue
        pair = []
        for frame, rows in taken:
            if specs[name].kind == "categorical":
                column = frame[name].astype("object")
                column = column.where(column.notna(), None).to_numpy(dtype=object)
                missing = None
            else:
                column = pd.to_numeric(frame[name], errors="coerce").to_numpy(
                    dtype=np.float64, na_value=np.nan
                )
                missing = np.nan
            picked = column[np.maximum(rows, 0)] if len(column) else column[:0]
            pair.append(np.where(rows >= 0, picked, missing) if len(column) else
                        np.full(len(rows), missing, dtype=column.dtype))
        out[j] = (pair[0], pair[1])
    return out


def compute_contribution_change(
    current: pd.DataFrame, previous: pd.DataFrame, customer_ids: pd.Series, features: list[str]
) -> np.ndarray:
    """Return contribution now - before of ``features`` for ``customer_ids``.

    A feature absent from a sidecar contributes 0 there; a customer absent from a sidecar gets
    NaN. Built column by column from each sidecar's rows, without converting either sidecar to
    one matrix first (at a million customers that copy was most of the comparison's reads).
    """
    ids = customer_ids.to_numpy(dtype=object)
    # Column-major: each feature's column is written in one contiguous run.
    delta = np.zeros((len(ids), len(features)), order="F")
    absent = np.zeros(len(ids), dtype=bool)
    for sign, contributions in ((1.0, current), (-1.0, previous)):
        index = pd.Index(contributions["customer_id"].astype("str").to_numpy(dtype=object))
        if not index.is_unique:
            raise DataContractError("a contributions sidecar names a customer twice")
        rows = index.get_indexer(ids)
        absent |= rows < 0
        for j, name in enumerate(features):
            if name in contributions.columns:
                column = contributions[name].to_numpy(dtype=np.float64, na_value=np.nan)
                delta[:, j] += sign * column[rows]
    delta[absent] = np.nan
    return delta


def rank_largest_changes(delta: np.ndarray, top: int) -> np.ndarray:
    """Return, per row, the columns of the ``top`` largest ``|delta|``, largest first.

    NaN (a customer absent from a sidecar) ranks last and ties keep the column order: the
    first ``top`` columns of a stable ``argsort`` of ``-|delta|``. Found in one pass over the
    columns, each inserted into every row's running top list (a value enters only above a
    strictly smaller one, so an earlier column wins a tie), instead of sorting every row.
    """
    n_rows, n_columns = delta.shape
    top = min(top, n_columns)
    best = np.full((top, n_rows), -np.inf)
    order = np.zeros((top, n_rows), dtype=np.intp)
    for column in range(n_columns):
        magnitude = np.abs(delta[:, column])
        magnitude[np.isnan(magnitude)] = -1.0
        # Where the column goes in each row's list: after every entry at least as large.
        position = (best >= magnitude).sum(axis=0)
        for slot in range(top - 1, -1, -1):
            shifted = position < slot  # entries from ``slot - 1`` move down one place
            inserted = position == slot
            if slot > 0:
                best[slot] = np.where(shifted, best[slot - 1], best[slot])
                order[slot] = np.where(shifted, order[slot - 1], order[slot])
            best[slot] = np.where(inserted, magnitude, best[slot])
            order[slot] = np.where(inserted, column, order[slot])
    return order.T.copy()


def describe_changes(before: np.ndarray, now: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Return the sentence (:func:`describe_change`) of each (before, now) pair of values.

    A sentence depends only on the displayed pair, so it is built once per distinct pair of
    display keys, from the pair's first row, and given to every row with that pair.
    """
    if not len(before):
        return np.empty(0, dtype=object)
    codes_before, _ = pd.factorize(display_keys(pd.Series(before), spec), use_na_sentinel=False)
    codes_now, uniques_now = pd.factorize(display_keys(pd.Series(now), spec), use_na_sentinel=False)
    pairs = codes_before.astype(np.int64) * max(len(uniques_now), 1) + codes_now
    _, first, inverse = np.unique(pairs, return_index=True, return_inverse=True)
    sentences = np.array([describe_change(before[at], now[at], spec) for at in first], dtype=object)
    return sentences[inverse.reshape(-1)]


def compare_scores(
    current: pd.DataFrame,
    previous: pd.DataFrame,
    current_contributions: pd.DataFrame | None = None,
    previous_contributions: pd.DataFrame | None = None,
    top: int = 3,
    ineligible: Collection[str] = (),
    *,
    current_features: pd.DataFrame | None = None,
    previous_features: pd.DataFrame | None = None,
    specs: Mapping[str, FeatureSpec] | None = None,
) -> pd.DataFrame:
    """Compare two scorings customer by customer.

    Args:
        current: Scores of this run (customer_id, cutoff, churn_probability at least).
        previous: Scores of the earlier run (same columns; may come from a CSV).
        current_contributions: Contributions sidecar of this run, or ``None``.
        previous_contributions: Contributions sidecar of the earlier run, or ``None``; without
            both sidecars the ``moved_*`` columns are missing values.
        top: How many moving features to report.
        ineligible: Features never named as what moved a score: exposure and contract timing
            (catalog ``reason_eligible`` False), the same rule as the reasons of the scores.
        current_features: This run's feature values (``customer_id`` and the features, e.g.
            the ``<stem>_features.parquet`` sidecar), or ``None``.
        previous_features: The earlier run's feature values, or ``None``.
        specs: Catalog entries of the features (:func:`churn.model.reasons.build_feature_specs`
            of the current model); with both feature frames, a feature whose value displays
            the same in both runs is skipped and ``moved_{i}_text`` says how the value changed
            (module docstring). Features without a spec or absent from a frame keep the
            contribution ranking and get no text.

    Returns:
        One row per customer in either run: ``customer_id``, ``status`` (``continuing``,
        ``new``: not in the previous run, ``gone``: not in this run), ``cutoff``,
        ``previous_cutoff``, ``churn_probability``, ``previous_probability``,
        ``probability_change`` (new - old; missing unless continuing), then for i = 1..top
        ``moved_{i}_feature``, ``moved_{i}_delta`` (contribution now - before, log-odds) and
        ``moved_{i}_text`` (missing without feature values), by decreasing ``|delta|``; rows
        sorted by decreasing ``|probability_change|``, new and gone customers last.
    """
    now = _key_frame(current)
    before = _key_frame(previous).rename(
        columns={"cutoff": "previous_cutoff", "churn_probability": "previous_probability"}
    )
    merged = now.merge(before, on="customer_id", how="outer", indicator=True, sort=True)
    status = merged.pop("_merge").map(
        {"both": STATUS_CONTINUING, "left_only": STATUS_NEW, "right_only": STATUS_GONE}
    )
    merged.insert(1, "status", status.astype("str").array)
    merged["probability_change"] = merged["churn_probability"] - merged["previous_probability"]

    continuing = (merged["status"] == STATUS_CONTINUING).to_numpy()
    n_rows = len(merged)
    moved_features = np.full((n_rows, top), None, dtype=object)
    moved_deltas = np.full((n_rows, top), np.nan)
    moved_texts = np.full((n_rows, top), None, dtype=object)
    if current_contributions is not None and previous_contributions is not None and top > 0:
        features = [c for c in current_contributions.columns if c not in SIDECAR_KEYS]
        features += [
            c
            for c in previous_contributions.columns
            if c not in SIDECAR_KEYS and c not in set(features)
        ]
        features = [c for c in features if c not in set(ineligible)]
        ids = merged.loc[continuing, "customer_id"]
        delta = compute_contribution_change(
            current_contributions, previous_contributions, ids, features
        )
        values = None
        if current_features is not None and previous_features is not None and specs:
            values = _feature_values(current_features, previous_features, ids, features, specs)
            for j, (b, n) in values.items():
                # An unchanged value is not what changed (see the module docstring).
                delta[find_same_display(b, n, specs[features[j]]), j] = 0.0
        order = rank_largest_changes(delta, top)
        picked = np.take_along_axis(delta, order, axis=1)
        moved = np.isfinite(picked) & (picked != 0)
        names = np.asarray(features, dtype=object)[order]
        k = picked.shape[1]
        moved_features[continuing, :k] = np.where(moved, names, None)
        moved_deltas[continuing, :k] = np.where(moved, picked, np.nan)
        if values is not None:
            texts = np.full(order.shape, None, dtype=object)
            for j, (before, now) in values.items():
                rows, slots = np.nonzero((order == j) & moved)
                texts[rows, slots] = describe_changes(before[rows], now[rows], specs[features[j]])
            moved_texts[continuing, :k] = texts
    for i in range(top):
        merged[f"moved_{i + 1}_feature"] = pd.array(moved_features[:, i], dtype="str")
        merged[f"moved_{i + 1}_delta"] = moved_deltas[:, i]
        merged[f"moved_{i + 1}_text"] = pd.array(moved_texts[:, i], dtype="str")

    rank = merged["probability_change"].abs().fillna(-1.0)
    order = np.lexsort((merged["customer_id"].to_numpy(dtype=object), -rank.to_numpy()))
    return merged.iloc[order].reset_index(drop=True)


def find_previous_scores(previous_path: str | Path | None, out_path: str | Path) -> Path | None:
    """Return the earlier scores file to compare with, or ``None``.

    An explicit ``previous_path`` wins (a missing one is logged and skipped, so a first nightly
    run does not fail); otherwise the scores already at ``out_path``, read before they are
    replaced.
    """
    if previous_path is not None:
        if Path(previous_path).exists():
            return Path(previous_path)
        logger.warning("previous scores %s not found: no changes file written", previous_path)
        return None
    return Path(out_path) if Path(out_path).exists() else None


def read_previous_scores(path: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Read an earlier scores file and its contributions sidecar (``None`` if absent or stale).

    Raises:
        DataContractError: If the scores file lacks the columns a comparison needs.
    """
    previous = read_frame(path)
    missing = {"customer_id", "cutoff", "churn_probability"} - set(previous.columns)
    if missing:
        raise DataContractError(f"previous scores {path} lack column(s) {sorted(missing)}")
    contributions_path = sidecar_path(path, CONTRIBUTIONS_SUFFIX)
    if not contributions_path.exists():
        logger.info("no %s: the changes file names no moving features", contributions_path)
        return previous, None
    contributions = read_frame(contributions_path)
    if not contributions_match(previous, contributions):
        logger.warning(
            "%s does not belong to %s: moving features left out", contributions_path, path
        )
        return previous, None
    return previous, contributions


def read_previous_features(path: Path, previous: pd.DataFrame) -> pd.DataFrame | None:
    """Read the features sidecar of an earlier scores file, ``None`` if absent or stale.

    Args:
        path: The earlier scores file.
        previous: Its scores (to check that the sidecar belongs to them).
    """
    features_path = sidecar_path(path, FEATURES_SUFFIX)
    if not features_path.exists():
        logger.info("no %s: the changes file has no what-changed sentences", features_path)
        return None
    features = read_frame(features_path)
    if not contributions_match(previous, features):
        logger.warning("%s does not belong to %s: sentences left out", features_path, path)
        return None
    return features
