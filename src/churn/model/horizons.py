"""Per-horizon calibration of the survival head, keeping zero exposure and monotonicity.

Each horizon ``H`` gets its own Platt curve (Platt 1999) fitted on the validation rows observed
at ``H`` whose raw probability is above 0, on the raw probability's log-odds:

    p_H = sigmoid(a_H * logit(raw_H) + b_H)       (raw_H = 0 stays exactly 0: no exposure)

Separate curves could cross, so the calibrated vector is made non-decreasing in ``H`` by a
running maximum: ``p_H <- max(p_H, p_H')`` for ``H' < H`` (a customer cannot be more likely to
leave within 30 days than within 60).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from churn.errors import ModelError

LOGIT_CLIP = 1e-9
"""Raw probabilities are clipped to [c, 1 - c] before the logit (finite log-odds)."""


def to_logit(probabilities: np.ndarray) -> np.ndarray:
    """Return the log-odds of probabilities clipped away from 0 and 1."""
    p = np.clip(np.asarray(probabilities, dtype="float64"), LOGIT_CLIP, 1.0 - LOGIT_CLIP)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class HorizonCalibration:
    """Platt slope and intercept per horizon.

    Attributes:
        horizons: Horizons in days, increasing.
        slopes: Platt slope per horizon.
        intercepts: Platt intercept per horizon.
    """

    horizons: tuple[int, ...]
    slopes: tuple[float, ...]
    intercepts: tuple[float, ...]

    @classmethod
    def fit(
        cls, raw: np.ndarray, labels: np.ndarray, horizons: Sequence[int]
    ) -> HorizonCalibration:
        """Fit one Platt curve per horizon.

        Args:
            raw: Raw probabilities, shape ``(n, len(horizons))``.
            labels: Labels per horizon, same shape; NaN where the outcome is unobserved.
            horizons: Horizons in days, increasing.

        Raises:
            ModelError: If a horizon's observed rows with exposure hold a single class.
        """
        from sklearn.linear_model import LogisticRegression

        raw, labels = np.asarray(raw, dtype="float64"), np.asarray(labels, dtype="float64")
        slopes, intercepts = [], []
        for k, horizon in enumerate(horizons):
            use = np.isfinite(labels[:, k]) & (raw[:, k] > 0)
            y = labels[use, k].astype(int)
            if np.unique(y).size < 2:
                raise ModelError(
                    f"cannot calibrate the {horizon}-day horizon: its {int(use.sum())} observed "
                    "validation rows with a decision inside it hold a single class"
                )
            lr = LogisticRegression(C=1e6, max_iter=1000)
            lr.fit(to_logit(raw[use, k]).reshape(-1, 1), y)
            slopes.append(float(lr.coef_[0, 0]))
            intercepts.append(float(lr.intercept_[0]))
        return cls(tuple(int(h) for h in horizons), tuple(slopes), tuple(intercepts))

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Return calibrated probabilities, 0 where raw is 0, non-decreasing along horizons."""
        raw = np.asarray(raw, dtype="float64")
        out = 1.0 / (
            1.0 + np.exp(-(np.asarray(self.slopes) * to_logit(raw) + np.asarray(self.intercepts)))
        )
        out = np.where(raw > 0, out, 0.0)
        return np.maximum.accumulate(out, axis=1)

    def to_dict(self) -> dict[str, Any]:
        """Serialise to JSON-compatible types."""
        return {
            "horizons": list(self.horizons),
            "slopes": list(self.slopes),
            "intercepts": list(self.intercepts),
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> HorizonCalibration:
        """Inverse of :meth:`to_dict`.

        Raises:
            ModelError: If the three lists differ in length or horizons are not increasing.
        """
        horizons = tuple(int(h) for h in payload["horizons"])
        slopes = tuple(float(v) for v in payload["slopes"])
        intercepts = tuple(float(v) for v in payload["intercepts"])
        if not (len(horizons) == len(slopes) == len(intercepts)) or list(horizons) != sorted(
            set(horizons)
        ):
            raise ModelError(f"invalid horizon calibration: {payload!r}")
        return cls(horizons, slopes, intercepts)


def probability_column(horizon: int) -> str:
    """Return the scores column of a horizon: ``churn_probability_<H>d``."""
    return f"churn_probability_{int(horizon)}d"
