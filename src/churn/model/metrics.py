"""Pure metric functions for churn scores: discrimination, calibration, ranking, curves.

Every function takes 0/1 labels and scores (probabilities) as array-likes and returns plain
floats or small frames; nothing here reads or writes files.

Ranking metrics (lift, capture, revenue capture, gains) treat **tied scores fairly**: isotonic
calibration maps many customers onto the same probability, so "the top 10%" often cuts through a
group of tied rows. Instead of breaking ties by row order (which would make the metric depend on
how the file happens to be sorted), the tied group at the boundary contributes its *expected*
share, i.e. the average over all orders of the tied rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

LOG_LOSS_EPS = 1e-15
TOP_DECILE = 0.1


def _as_arrays(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=float)
    p = np.asarray(scores, dtype=float)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"labels and scores must be 1-d of equal length: {y.shape} vs {p.shape}")
    return y, p


def _has_both_classes(y: np.ndarray) -> bool:
    return bool(y.size) and 0 < y.sum() < y.size


def compute_median(values: pd.Series) -> float:
    """Return the median of the values present (NaN when none is): ``values.median()``.

    A NumPy ``float64`` column (every feature the features stage writes) is reduced here with
    one copy of its present values, which :func:`numpy.median` then partitions in place;
    pandas' ``median`` reaches the same :func:`numpy.median` of the same values through two
    more copies. At a million customers' 4.8M training rows that was 0.15 s against 0.06 s
    per feature (2026-12-07), paid for every numeric feature by the single-feature AUCs
    (:func:`churn.model.leakage.compute_single_feature_aucs`) and the typical values
    (:mod:`churn.model.reason_reference`).
    Other dtypes (integers, nullable, ``float32``) are left to pandas.
    """
    if values.dtype != np.float64:
        median = values.median()
        return math.nan if pd.isna(median) else float(median)
    return median_of_present(values.to_numpy())


def median_of_present(values: np.ndarray) -> float:
    """Return the median of a float array's non-NaN values (NaN when none is).

    One copy of the values present, partitioned in place by :func:`numpy.median`: the same
    number as ``np.nanmedian`` and pandas' ``median``, which copy them twice more.
    """
    present = values[~np.isnan(values)]
    return float(np.median(present, overwrite_input=True)) if present.size else math.nan


def compute_roc_auc(labels: Any, scores: Any) -> float:
    """Return the ROC AUC (ties count one half), or NaN when a class is absent.

    Computed as the Mann-Whitney statistic from the scores' average ranks: the share of
    (churner, non-churner) pairs the scores order correctly, a tied pair counting one half,
    which is the area under the ROC curve with ties drawn as diagonal steps (scikit-learn's
    ``roc_auc_score``; a test compares the two). One sort and no input checks: train scores
    every feature on its own with it (:func:`churn.model.leakage.compute_single_feature_aucs`).

    Raises:
        ValueError: If a score is missing (NaN).
    """
    y, p = _as_arrays(labels, scores)
    if not _has_both_classes(y):
        return math.nan
    if np.isnan(p).any():
        raise ValueError("ROC AUC: the scores hold NaN")
    # Any sort will do: tied scores share one average rank, so the positives' ranks are the
    # same numbers in the same order whichever tied row comes first. NumPy's default sort
    # (vectorised on x86) took 16 ms where the stable one took 69 ms on 618k continuous
    # scores (2026-12-07), paid once per feature by the single-feature AUCs.
    order = np.argsort(p)
    ordered = p[order]
    first = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    last = np.r_[first[1:], len(p)]
    # Ranks first + 1 .. last share their mean rank.
    ranks = np.repeat((first + 1 + last) / 2.0, last - first)
    positive = y[order] == 1
    churners = float(positive.sum())
    others = float(len(y)) - churners
    return float((ranks[positive].sum() - churners * (churners + 1) / 2) / (churners * others))


def compute_pr_auc(labels: Any, scores: Any) -> float:
    """Return the average precision (area under the precision-recall steps); NaN if no positives."""
    y, p = _as_arrays(labels, scores)
    if not y.size or y.sum() == 0:
        return math.nan
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, p))


def compute_log_loss(labels: Any, probabilities: Any) -> float:
    """Return the mean binary cross-entropy, clipping probabilities to ``[eps, 1 - eps]``."""
    y, p = _as_arrays(labels, probabilities)
    if not y.size:
        return math.nan
    p = np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def compute_brier(labels: Any, probabilities: Any) -> float:
    """Return the Brier score: the mean squared difference between probability and label."""
    y, p = _as_arrays(labels, probabilities)
    return float(np.mean((p - y) ** 2)) if y.size else math.nan


def build_calibration_table(labels: Any, probabilities: Any, bins: int = 10) -> pd.DataFrame:
    """Group predictions into equal-width probability bins.

    Args:
        labels: 0/1 labels.
        probabilities: Predicted probabilities in ``[0, 1]``.
        bins: Number of equal-width bins over ``[0, 1]``; 1.0 falls in the last bin.

    Returns:
        One row per non-empty bin: ``bin``, ``lower``, ``upper``, ``n``, ``mean_predicted``,
        ``fraction_positive``.
    """
    y, p = _as_arrays(labels, probabilities)
    index = np.minimum((np.clip(p, 0.0, 1.0) * bins).astype(int), bins - 1)
    frame = pd.DataFrame({"bin": index, "p": p, "y": y})
    table = frame.groupby("bin").agg(
        n=("y", "size"), mean_predicted=("p", "mean"), fraction_positive=("y", "mean")
    )
    table = table.reset_index()
    table.insert(1, "lower", table["bin"] / bins)
    table.insert(2, "upper", (table["bin"] + 1) / bins)
    return table


def compute_ece(labels: Any, probabilities: Any, bins: int = 10) -> float:
    """Return the expected calibration error over equal-width bins.

    ECE = sum over bins of (rows in bin / rows) * |mean predicted - fraction positive|.
    """
    y, _ = _as_arrays(labels, probabilities)
    if not y.size:
        return math.nan
    table = build_calibration_table(labels, probabilities, bins)
    gaps = (table["mean_predicted"] - table["fraction_positive"]).abs()
    return float((table["n"] * gaps).sum() / y.size)


def count_top_rows(n: int, fraction: float) -> int:
    """Return how many rows "the top ``fraction``" holds: the smallest k with k >= fraction * n."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    # The tolerance keeps 0.1 * 1230 (= 123.00000000000001 in floating point) at 123.
    return max(1, min(n, math.ceil(fraction * n - 1e-9)))


def _expected_top_sum(values: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Expected sum of ``values`` over the k highest scores, ties at the boundary averaged."""
    threshold = np.sort(scores)[::-1][k - 1]
    above = scores > threshold
    tied = scores == threshold
    return float(values[above].sum() + (k - above.sum()) * values[tied].mean())


def compute_capture(labels: Any, scores: Any, fraction: float) -> float:
    """Return the share of all positives found in the top ``fraction`` of scores."""
    y, p = _as_arrays(labels, scores)
    if not y.size or y.sum() == 0:
        return math.nan
    return _expected_top_sum(y, p, count_top_rows(y.size, fraction)) / float(y.sum())


def compute_lift(labels: Any, scores: Any, fraction: float) -> float:
    """Return the positive rate in the top ``fraction`` of scores divided by the overall rate."""
    y, p = _as_arrays(labels, scores)
    if not y.size or y.sum() == 0:
        return math.nan
    k = count_top_rows(y.size, fraction)
    return (_expected_top_sum(y, p, k) / k) / float(y.mean())


def compute_revenue_capture(labels: Any, scores: Any, revenue: Any, fraction: float) -> float:
    """Return the share of churned revenue held by churners in the top ``fraction`` of scores.

    ``sum(revenue of churners in the top fraction) / sum(revenue of all churners)``; missing
    revenue counts as zero.
    """
    y, p = _as_arrays(labels, scores)
    weight = np.nan_to_num(np.asarray(revenue, dtype=float)) * y
    if not y.size or weight.sum() <= 0:
        return math.nan
    return _expected_top_sum(weight, p, count_top_rows(y.size, fraction)) / float(weight.sum())


def build_roc_curve(labels: Any, scores: Any) -> pd.DataFrame:
    """Return the ROC curve as a frame with ``fpr`` and ``tpr`` columns."""
    from sklearn.metrics import roc_curve

    y, p = _as_arrays(labels, scores)
    fpr, tpr, _ = roc_curve(y, p)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr})


def build_pr_curve(labels: Any, scores: Any) -> pd.DataFrame:
    """Return the precision-recall curve (``recall``, ``precision``), recall increasing."""
    from sklearn.metrics import precision_recall_curve

    y, p = _as_arrays(labels, scores)
    precision, recall, _ = precision_recall_curve(y, p)
    return pd.DataFrame({"recall": recall[::-1], "precision": precision[::-1]})


def build_gains_curve(labels: Any, scores: Any) -> pd.DataFrame:
    """Return the cumulative gains curve, one point per distinct score (ties move together).

    Columns: ``fraction_customers`` (share of rows contacted, highest scores first) and
    ``fraction_churners_captured`` (share of positives among them); starts at (0, 0).
    """
    y, p = _as_arrays(labels, scores)
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    # Keep only the last row of each tied group so a tie never splits across points.
    group_end = np.r_[p_sorted[1:] != p_sorted[:-1], True]
    rows = np.arange(1, y.size + 1)[group_end]
    captured = np.cumsum(y_sorted)[group_end] / max(y.sum(), 1.0)
    return pd.DataFrame(
        {
            "fraction_customers": np.r_[0.0, rows / max(y.size, 1)],
            "fraction_churners_captured": np.r_[0.0, captured],
        }
    )


def downsample_curve(curve: pd.DataFrame, max_points: int = 500) -> pd.DataFrame:
    """Keep at most ``max_points`` evenly spaced rows, always including the first and last."""
    if len(curve) <= max_points:
        return curve.reset_index(drop=True)
    keep = np.unique(np.linspace(0, len(curve) - 1, max_points).round().astype(int))
    return curve.iloc[keep].reset_index(drop=True)


def summarize_predictions(labels: Any, probabilities: Any) -> dict[str, float]:
    """Return size, positives and the four headline metrics of a set of predictions.

    Returns:
        ``n``, ``positives``, ``roc_auc``, ``pr_auc``, ``brier``, ``log_loss``.
    """
    y, p = _as_arrays(labels, probabilities)
    return {
        "n": int(y.size),
        "positives": int(y.sum()),
        "roc_auc": compute_roc_auc(y, p),
        "pr_auc": compute_pr_auc(y, p),
        "brier": compute_brier(y, p),
        "log_loss": compute_log_loss(y, p),
    }


def summarize_ranking(
    labels: Any,
    probabilities: Any,
    *,
    bins: int,
    top_fractions: Sequence[float],
    revenue: Any | None = None,
) -> dict[str, Any]:
    """Return the full evaluation block: headline metrics, calibration error, lift, capture.

    Args:
        labels: 0/1 labels.
        probabilities: Predicted probabilities.
        bins: Equal-width bins for the expected calibration error.
        top_fractions: Fractions for ``lift_at`` / ``capture_at``, keyed in whole percent
            (0.05 -> ``"5"``).
        revenue: Revenue per row for the revenue capture; ``None`` leaves it out.

    Returns:
        The metrics of :func:`summarize_predictions` plus ``base_rate``, ``ece``,
        ``lift_top_decile``, ``capture_top_decile``, ``revenue_capture_top_decile`` (``None``
        without revenue), ``lift_at`` and ``capture_at``.
    """
    y, p = _as_arrays(labels, probabilities)
    out: dict[str, Any] = summarize_predictions(y, p)
    out["base_rate"] = float(y.mean()) if y.size else math.nan
    out["ece"] = compute_ece(y, p, bins)
    out["lift_top_decile"] = compute_lift(y, p, TOP_DECILE)
    out["capture_top_decile"] = compute_capture(y, p, TOP_DECILE)
    out["revenue_capture_top_decile"] = (
        None if revenue is None else compute_revenue_capture(y, p, revenue, TOP_DECILE)
    )
    out["lift_at"] = {_percent_key(f): compute_lift(y, p, f) for f in top_fractions}
    out["capture_at"] = {_percent_key(f): compute_capture(y, p, f) for f in top_fractions}
    return out


def _percent_key(fraction: float) -> str:
    return f"{fraction * 100:g}"


def make_jsonable(payload: Any) -> Any:
    """Return ``payload`` with NaN/inf floats as ``None`` and numpy scalars as Python values.

    Strict JSON has no NaN, and ``dvc metrics`` and browsers reject it; an undefined metric
    (for example AUC on a single-class slice) is therefore written as ``null``.
    """
    if isinstance(payload, Mapping):
        return {str(key): make_jsonable(value) for key, value in payload.items()}
    if isinstance(payload, list | tuple):
        return [make_jsonable(value) for value in payload]
    if isinstance(payload, np.generic):
        payload = payload.item()
    if isinstance(payload, float) and not math.isfinite(payload):
        return None
    if isinstance(payload, pd.Timestamp):
        return payload.isoformat()
    return payload
