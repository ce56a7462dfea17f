"""Distribution drift of features and scores against a training reference.

Population Stability Index and Jensen-Shannon distance are written with numpy rather than taken
from Evidently: the formulas are a few lines, the bins are under exact control (quantile edges
of the *reference*, a separate missing rate, a bucket for unseen categories) and the pipeline
gains no heavy dependency. PSI follows Siddiqi (2006), *Credit Risk Scorecards*:
``PSI = sum_i (a_i - e_i) * ln(a_i / e_i)`` over bins with reference share ``e_i`` and current
share ``a_i``; both shares are floored at :data:`SHARE_FLOOR` so an empty bin stays finite.

Missing values are not a bin: their rate is compared on its own (``missing_rate_change``), so
a column that goes missing is named as such rather than hidden in a PSI. Categories never seen
in the reference share one ``unseen`` bucket, and their share is reported too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from churn.domain.categories import code_category_texts

#: Floor of a bin's share in PSI and Jensen-Shannon, so an empty bin contributes a finite term.
SHARE_FLOOR = 1e-4

#: Name of the bucket that collects categories absent from the reference.
UNSEEN = "__unseen__"

FeatureKind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class FeatureReference:
    """The reference distribution of one feature, JSON-friendly (no pickles).

    Attributes:
        name: Feature (or score) name.
        kind: ``numeric`` or ``categorical``.
        edges: Numeric: inner bin edges (quantiles of the reference, unique, increasing); values
            ``<= edges[0]`` fall in bin 0, ``> edges[-1]`` in the last bin.
        levels: Categorical: the reference levels (bins, in this order, then :data:`UNSEEN`).
        shares: Share of the reference's non-missing values in each bin (sums to 1).
        missing_rate: Share of missing values in the reference.
        rows: Reference rows.
    """

    name: str
    kind: FeatureKind
    shares: tuple[float, ...]
    missing_rate: float
    rows: int
    edges: tuple[float, ...] = ()
    levels: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the reference as JSON-compatible types."""
        return {
            "name": self.name,
            "kind": self.kind,
            "shares": list(self.shares),
            "missing_rate": self.missing_rate,
            "rows": self.rows,
            "edges": list(self.edges),
            "levels": list(self.levels),
        }


@dataclass(frozen=True)
class DriftReference:
    """Reference distributions of every monitored column, keyed by name."""

    features: dict[str, FeatureReference] = field(default_factory=dict)


def _to_numbers(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def compute_quantile_edges(values: np.ndarray, bins: int) -> tuple[float, ...]:
    """Return unique inner edges splitting ``values`` (finite ones) into ``bins`` quantile bins.

    Heavy ties (a count that is mostly zero) merge bins, so fewer edges may come back.
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0 or bins < 2:
        return ()
    inner = np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return tuple(float(v) for v in np.unique(inner))


def count_numeric_bins(values: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Return the count of non-missing ``values`` in each of ``len(edges) + 1`` bins.

    Bin ``i`` holds ``edges[i-1] < v <= edges[i]`` (right-closed, like ``pandas.cut``).
    """
    present = values[~np.isnan(values)]
    positions = np.searchsorted(np.asarray(edges, dtype=np.float64), present, side="left")
    return np.bincount(positions, minlength=len(edges) + 1).astype(np.float64)


def count_categorical_bins(values: pd.Series, levels: tuple[str, ...]) -> np.ndarray:
    """Return the count of non-missing values per reference level, then of unseen values."""
    return _count_levels(*code_category_texts(values), levels)


def _count_levels(positions: np.ndarray, texts: np.ndarray, levels: tuple[str, ...]
                  ) -> np.ndarray:
    """:func:`count_categorical_bins` of a column given as
    :func:`~churn.domain.categories.code_category_texts`."""
    # Each distinct text's level (len(levels): unseen), then every present value's.
    level_of = pd.Index(list(levels), dtype="object").get_indexer(texts)
    level_of = np.where(level_of < 0, len(levels), level_of)
    codes = level_of[positions[positions >= 0]]
    return np.bincount(codes, minlength=len(levels) + 1).astype(np.float64)


def summarize_reference(
    values: pd.Series, name: str, kind: FeatureKind, bins: int
) -> FeatureReference:
    """Return the reference distribution of one column.

    Args:
        values: The column over the reference rows.
        name: Its name.
        kind: ``numeric`` (quantile bins) or ``categorical`` (one bin per level).
        bins: Numeric: the number of quantile bins wanted.
    """
    rows = len(values)
    missing_rate = float(values.isna().mean()) if rows else 0.0
    if kind == "numeric":
        numbers = _to_numbers(values)
        edges = compute_quantile_edges(numbers, bins)
        counts = count_numeric_bins(numbers, edges)
        levels: tuple[str, ...] = ()
    else:
        # One factorization for the levels and their counts; every distinct text is present.
        positions, texts = code_category_texts(values)
        levels = tuple(sorted(set(texts.tolist())))
        edges = ()
        counts = _count_levels(positions, texts, levels)[:-1]
    total = counts.sum()
    shares = counts / total if total else counts
    return FeatureReference(
        name=name,
        kind=kind,
        shares=tuple(float(s) for s in shares),
        missing_rate=missing_rate,
        rows=rows,
        edges=edges,
        levels=levels,
    )


def current_shares(reference: FeatureReference, values: pd.Series) -> np.ndarray:
    """Return the current non-missing shares in the reference's bins (categorical: + unseen)."""
    if reference.kind == "numeric":
        counts = count_numeric_bins(_to_numbers(values), reference.edges)
    else:
        counts = count_categorical_bins(values, reference.levels)
    total = counts.sum()
    return counts / total if total else counts


def _aligned(expected: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if expected.size < actual.size:  # the unseen bucket has no reference share
        expected = np.concatenate([expected, np.zeros(actual.size - expected.size)])
    if expected.shape != actual.shape:
        raise ValueError(f"bins differ: {expected.shape} reference vs {actual.shape} current")
    return expected, actual


def compute_psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Return the Population Stability Index of two share vectors over the same bins.

    Shares are floored at :data:`SHARE_FLOOR` and renormalised, so empty bins stay finite.
    """
    expected, actual = _aligned(expected, actual)
    if expected.sum() == 0 or actual.sum() == 0:
        return float("nan")
    e = np.maximum(expected, SHARE_FLOOR)
    a = np.maximum(actual, SHARE_FLOOR)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def compute_js_distance(expected: np.ndarray, actual: np.ndarray) -> float:
    """Return the Jensen-Shannon distance (base 2, in [0, 1]) of two share vectors."""
    expected, actual = _aligned(expected, actual)
    if expected.sum() == 0 or actual.sum() == 0:
        return float("nan")
    e, a = expected / expected.sum(), actual / actual.sum()
    m = (e + a) / 2

    def kl(p: np.ndarray) -> float:
        mask = p > 0
        return float(np.sum(p[mask] * np.log2(p[mask] / m[mask])))

    return float(np.sqrt(max((kl(e) + kl(a)) / 2, 0.0)))


DRIFT_COLUMNS = (
    "feature",
    "kind",
    "psi",
    "js_distance",
    "missing_rate_reference",
    "missing_rate_current",
    "missing_rate_change",
    "unseen_share",
    "rows_current",
)


def compare_to_reference(reference: FeatureReference, values: pd.Series) -> dict[str, Any]:
    """Return one drift row (see :data:`DRIFT_COLUMNS`) of ``values`` against ``reference``."""
    shares = current_shares(reference, values)
    missing_now = float(values.isna().mean()) if len(values) else float("nan")
    unseen = float(shares[-1]) if reference.kind == "categorical" and shares.sum() else 0.0
    return {
        "feature": reference.name,
        "kind": reference.kind,
        "psi": compute_psi(np.asarray(reference.shares), shares),
        "js_distance": compute_js_distance(np.asarray(reference.shares), shares),
        "missing_rate_reference": reference.missing_rate,
        "missing_rate_current": missing_now,
        "missing_rate_change": missing_now - reference.missing_rate,
        "unseen_share": unseen,
        "rows_current": len(values),
    }


def build_reference(
    frame: pd.DataFrame, kinds: dict[str, FeatureKind], bins: int
) -> DriftReference:
    """Return the reference distribution of every column in ``kinds`` over ``frame``'s rows.

    Raises:
        KeyError: If a column of ``kinds`` is not in ``frame`` (names it).
    """
    missing = [name for name in kinds if name not in frame.columns]
    if missing:
        raise KeyError(f"reference frame lacks monitored columns: {missing[:10]}")
    return DriftReference(
        {name: summarize_reference(frame[name], name, kind, bins) for name, kind in kinds.items()}
    )


def compute_drift_table(reference: DriftReference, frame: pd.DataFrame) -> pd.DataFrame:
    """Return one drift row per reference column over ``frame`` (a column absent: all missing).

    Columns: :data:`DRIFT_COLUMNS`, sorted by PSI, largest first.
    """
    rows = []
    for name, ref in reference.features.items():
        values = frame[name] if name in frame.columns else pd.Series(np.nan, index=frame.index)
        rows.append(compare_to_reference(ref, values))
    table = pd.DataFrame(rows, columns=list(DRIFT_COLUMNS))
    return table.sort_values("psi", ascending=False, na_position="last").reset_index(drop=True)
