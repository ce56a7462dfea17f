"""The gate's policy: which metric decides and when a challenger beats the champion."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from churn.model.metrics import compute_brier, compute_log_loss, compute_pr_auc, compute_roc_auc

if TYPE_CHECKING:

    pass

logger = logging.getLogger(__name__)


GATE_METRICS = {
    "roc_auc": compute_roc_auc,
    "pr_auc": compute_pr_auc,
    "brier": compute_brier,
    "log_loss": compute_log_loss,
}


LOWER_IS_BETTER = frozenset({"brier", "log_loss"})


def is_better(new_score: float, champion_score: float, metric: str, margin: float) -> bool:
    """Return whether ``new_score`` beats ``champion_score`` by more than ``margin``.

    Lower is better for ``brier`` and ``log_loss``, higher for the others; a NaN never wins.
    """
    gain = champion_score - new_score if metric in LOWER_IS_BETTER else new_score - champion_score
    return bool(np.isfinite(gain) and gain > margin)
