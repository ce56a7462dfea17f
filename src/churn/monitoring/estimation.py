"""Performance estimated before the labels exist: confidence-based performance estimation.

The idea is NannyML's CBPE (confidence-based performance estimation): when a model is
calibrated, each customer's probability ``p_i`` is the chance that their unknown label is 1,
so every metric has an *expected* value under labels ``y_i ~ Bernoulli(p_i)``. This holds only
while the calibration does (no concept drift); realized performance, once the labels mature,
is the check on that assumption (:mod:`churn.monitoring.realized`).

* Expected churn rate: ``mean(p)``.
* Expected ROC AUC: the expected number of correctly ordered (churner, stayer) pairs over the
  expected number of such pairs, ``sum_{i != j} p_i (1 - p_j) [s_i > s_j] (+ 1/2 on ties) /
  sum_{i != j} p_i (1 - p_j)``, computed in ``O(n log n)`` from cumulative sums over the
  sorted scores.
* Expected top-decile lift: ``(sum of p in the top 10% by score / k) / mean(p)``, a tie at the
  boundary shared pro rata.
* Uncertainty band: Monte Carlo draws of every label from ``Bernoulli(p_i)``; the realized AUC,
  lift and rate of each draw give the band's quantiles. The band is the sampling spread of the
  metric on this population, not the error of the calibration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

TOP_DECILE = 0.1


@dataclass(frozen=True)
class EstimatedPerformance:
    """Expected metrics of one scoring population and their Monte Carlo band.

    Attributes:
        rows: Customers scored.
        churn_rate: Expected churn rate (mean probability).
        roc_auc: Expected ROC AUC.
        lift_top_decile: Expected lift in the top 10% by score.
        band: ``{metric: (low, high)}`` quantiles of the Monte Carlo draws.
        draws: Monte Carlo draws used for the band.
    """

    rows: int
    churn_rate: float
    roc_auc: float
    lift_top_decile: float
    band: dict[str, tuple[float, float]]
    draws: int

    def to_dict(self) -> dict[str, Any]:
        """Return the estimate as JSON-compatible types (NaN kept for the caller to map)."""
        return {
            "rows": self.rows,
            "churn_rate": self.churn_rate,
            "roc_auc": self.roc_auc,
            "lift_top_decile": self.lift_top_decile,
            "band": {k: [lo, hi] for k, (lo, hi) in self.band.items()},
            "draws": self.draws,
        }


def count_top_rows(n: int, fraction: float) -> int:
    """Return the number of rows in the top ``fraction`` of ``n`` (at least one)."""
    return max(1, math.ceil(n * fraction - 1e-9)) if n else 0


def expected_top_sum(values: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Return the sum of ``values`` over the ``k`` highest scores (a boundary tie pro rata)."""
    if k <= 0:
        return 0.0
    return float(values @ _top_membership(scores, k))


def estimate_roc_auc(probabilities: np.ndarray, scores: np.ndarray | None = None) -> float:
    """Return the expected ROC AUC when each label is ``Bernoulli(probabilities)``.

    The ratio of the expected concordant pair count to the expected pair count (pairs of two
    different customers); ties in ``scores`` count one half, as in the realized AUC.

    Args:
        probabilities: Calibrated probabilities, the label chances.
        scores: The ranking score (default: the probabilities themselves).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    s = p if scores is None else np.asarray(scores, dtype=np.float64)
    q = 1.0 - p
    order = np.argsort(s, kind="stable")
    p, q, s = p[order], q[order], s[order]
    # Per tie group of scores: the sum of q over strictly lower scores, and over the group.
    _, starts = np.unique(s, return_index=True)
    group = np.searchsorted(starts, np.arange(s.size), side="right") - 1
    q_cum = np.concatenate([[0.0], np.cumsum(q)])
    ends = np.append(starts[1:], s.size)
    q_below = q_cum[starts][group]
    q_tied = (q_cum[ends] - q_cum[starts])[group]
    # Pairs (i, j) with i != j: within a tie group, i's own q is not a partner.
    concordant = np.sum(p * (q_below + 0.5 * (q_tied - q)))
    pairs = p.sum() * q.sum() - np.sum(p * q)
    return float(concordant / pairs) if pairs > 0 else float("nan")


def estimate_lift(probabilities: np.ndarray, scores: np.ndarray | None = None,
                  fraction: float = TOP_DECILE) -> float:
    """Return the expected lift of the top ``fraction`` by score (expected rate there / overall)."""
    p = np.asarray(probabilities, dtype=np.float64)
    s = p if scores is None else np.asarray(scores, dtype=np.float64)
    if p.size == 0 or p.sum() == 0:
        return float("nan")
    k = count_top_rows(p.size, fraction)
    return float(expected_top_sum(p, s, k) / k / p.mean())


def compute_auc_from_ranks(ranks: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Return the ROC AUC of each row of ``labels`` (draws x n, bool) for fixed score ranks.

    Mann-Whitney: ``(sum of positive ranks - n1 (n1 + 1) / 2) / (n1 n0)``; average ranks make
    ties count one half. A draw with a single class gives NaN.
    """
    n1 = labels.sum(axis=1).astype(np.float64)
    n0 = labels.shape[1] - n1
    rank_sum = labels.astype(np.float64) @ ranks
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum - n1 * (n1 + 1) / 2) / (n1 * n0)
    return np.where((n1 > 0) & (n0 > 0), auc, np.nan)


def estimate_performance(
    probabilities: np.ndarray,
    *,
    draws: int = 200,
    band: float = 0.9,
    seed: int = 0,
    fraction: float = TOP_DECILE,
) -> EstimatedPerformance:
    """Return the expected churn rate, ROC AUC and top lift of a scored population, with a band.

    Args:
        probabilities: Calibrated churn probabilities of the population (the ranking score).
        draws: Monte Carlo label draws for the band (0: no band).
        band: Central coverage of the band (0.9: the 5th to the 95th percentile).
        seed: Random seed of the draws (the same seed gives the same band).
        fraction: Top fraction for the lift.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    p = p[~np.isnan(p)]
    n = p.size
    bands: dict[str, tuple[float, float]] = {}
    if draws > 0 and n > 1:
        rng = np.random.default_rng(seed)
        ranks = rankdata(p)
        k = count_top_rows(n, fraction)
        # Fractional membership of the top k (a boundary tie shared pro rata), as in the lift.
        membership = _top_membership(p, k)
        auc_draws, lift_draws, rate_draws = [], [], []
        chunk = max(1, min(draws, 2_000_000 // max(n, 1)))
        done = 0
        while done < draws:
            size = min(chunk, draws - done)
            labels = rng.random((size, n)) < p
            auc_draws.append(compute_auc_from_ranks(ranks, labels))
            positives = labels.sum(axis=1)
            rate = positives / n
            with np.errstate(divide="ignore", invalid="ignore"):
                lift_draws.append((labels @ membership) / k / rate)
            rate_draws.append(rate)
            done += size
        low, high = (1 - band) / 2, 1 - (1 - band) / 2
        for name, values in (("roc_auc", auc_draws), ("lift_top_decile", lift_draws),
                             ("churn_rate", rate_draws)):
            flat = np.concatenate(values)
            flat = flat[np.isfinite(flat)]
            bands[name] = (
                (float(np.quantile(flat, low)), float(np.quantile(flat, high)))
                if flat.size else (float("nan"), float("nan"))
            )
    return EstimatedPerformance(
        rows=n,
        churn_rate=float(p.mean()) if n else float("nan"),
        roc_auc=estimate_roc_auc(p) if n > 1 else float("nan"),
        lift_top_decile=estimate_lift(p, fraction=fraction),
        band=bands,
        draws=draws if bands else 0,
    )


def _top_membership(scores: np.ndarray, k: int) -> np.ndarray:
    """Return each row's membership of the top ``k`` by score (1, 0, or a tie's pro-rata share)."""
    threshold = np.sort(scores)[::-1][k - 1]
    above = scores > threshold
    tied = scores == threshold
    membership = above.astype(np.float64)
    membership[tied] = (k - above.sum()) / tied.sum()
    return membership
