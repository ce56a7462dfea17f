"""Which features may be a customer's reasons: eligible, pushing risk up, not the typical value.

A reason must say *why* a customer may leave, in words a retention team can act on:

1. **Eligible only.** Exposure and contract-timing features (``days_to_renewal``, the billing
   period, tenure: catalog ``reason_eligible`` False, :mod:`churn.domain.catalog`) say *when* a
   customer can leave; they are never reasons. The next decision date is shown beside the
   reasons instead (:func:`describe_decision_dates`).
2. **Positive contribution**, largest first (as before): the features pushing this customer's
   risk above the average customer's.
3. **Not the typical value.** "contract is Month-to-month (typical: Month-to-month)" explains
   nothing: a slot whose displayed value equals the displayed typical value is suppressed and
   the next candidate takes its place.

:func:`select_reasons` returns the same ``(index, value)`` arrays as
:func:`churn.model.reasons.top_positive_reasons`, so sentence building is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from churn.domain.catalog import FeatureSpec
from churn.model.reasons import (
    explain_values,
    format_value,
    group_slots_by_feature,
    top_positive_reasons,
)

#: Candidates examined per row beyond the reasons wanted, to replace suppressed ones.
EXTRA_CANDIDATES = 4


def eligible_mask(specs: Mapping[str, FeatureSpec]) -> np.ndarray:
    """Return one boolean per feature (model order): may it be given as a reason."""
    return np.array([bool(spec.reason_eligible) for spec in specs.values()], dtype=bool)


def mask_ineligible(contributions: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Return the contributions with ineligible features set to ``-inf`` (never picked)."""
    return np.where(eligible[np.newaxis, :], contributions, -np.inf)


def select_reasons(
    batch: pd.DataFrame,
    contributions: np.ndarray,
    specs: Mapping[str, FeatureSpec],
    typical: Mapping[str, Any],
    reasons: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick each row's reasons: eligible, positive, largest first, typical values suppressed.

    Args:
        batch: The scored rows (raw feature values).
        contributions: ``(n, p)`` contributions in ``specs`` order.
        specs: Feature specs in model order.
        typical: Typical value per feature (a feature without one is never suppressed).
        reasons: Reasons wanted per row.

    Returns:
        ``(index, value)`` of shape ``(n, min(reasons, p))``, as
        :func:`churn.model.reasons.top_positive_reasons`: NaN values mark empty slots.
    """
    masked = mask_ineligible(contributions, eligible_mask(specs))
    index, value = top_positive_reasons(masked, reasons + EXTRA_CANDIDATES)
    value = value.copy()
    names = list(specs)
    for position, rows, slots in group_slots_by_feature(index, value):
        name = names[position]
        typical_shown = format_value(typical.get(name), specs[name])
        if typical_shown is None:
            continue
        display, _ = explain_values(batch[name].iloc[rows], specs[name])
        value[rows[display == typical_shown], slots[display == typical_shown]] = np.nan
    # Move the kept slots forward, keeping their order (a stable sort of "is empty").
    order = np.argsort(~np.isfinite(value), axis=1, kind="stable")[:, : min(reasons, len(names))]
    return np.take_along_axis(index, order, axis=1), np.take_along_axis(value, order, axis=1)


def describe_decision_dates(dates: pd.Series) -> pd.Series:
    """Return the reason context of next decision dates: ``"renews 2026-02-14"``.

    The next renewal or billing date says when a customer can act, not why, so it stands in a
    column of its own (``decision_context``) beside the reasons; a missing date gives a missing
    context.
    """
    parsed = pd.to_datetime(dates, utc=True, errors="coerce")
    text = "renews " + parsed.dt.strftime("%Y-%m-%d")
    return pd.Series(pd.array(text.where(parsed.notna(), None), dtype="str"), index=dates.index)
