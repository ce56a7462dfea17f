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
4. **First reason by family** (``first_reason="family"``, the model's
   ``train.first_reason``): the first reason names the family whose eligible features push the
   row's risk up the most *together* (largest net sum of contributions, negative ones
   included), told by that family's strongest feature; the other reasons follow by size. SHAP
   splits one driver's credit among its correlated features (a dozen usage counts), so the
   single largest contribution often belongs to a family whose total push is smaller
   (measurements: docs/reasons.md). ``"feature"`` keeps the single largest contribution first.

:func:`select_reasons` returns the same ``(index, value)`` arrays as
:func:`churn.model.reasons.top_positive_reasons`, so sentence building is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

import numpy as np
import pandas as pd

from churn.domain.catalog import FeatureSpec
from churn.domain.families import FAMILIES
from churn.model.reasons import (
    display_values,
    format_value,
    group_slots_by_feature,
    top_positive_reasons,
)

#: Candidates examined per row beyond the reasons wanted, to replace suppressed ones.
EXTRA_CANDIDATES = 4

FirstReason = Literal["feature", "family"]
"""How the first reason is chosen: the single largest contribution, or the strongest family."""

FIRST_REASON_MODES: Final = get_args(FirstReason)


def eligible_mask(specs: Mapping[str, FeatureSpec]) -> np.ndarray:
    """Return one boolean per feature (model order): may it be given as a reason."""
    return np.array([bool(spec.reason_eligible) for spec in specs.values()], dtype=bool)


def select_reasons(
    batch: pd.DataFrame,
    contributions: np.ndarray,
    specs: Mapping[str, FeatureSpec],
    typical: Mapping[str, Any],
    reasons: int,
    *,
    first_reason: FirstReason = "feature",
) -> tuple[np.ndarray, np.ndarray]:
    """Pick each row's reasons: eligible, positive, largest first, typical values suppressed.

    Args:
        batch: The scored rows (raw feature values).
        contributions: ``(n, p)`` contributions in ``specs`` order.
        specs: Feature specs in model order.
        typical: Typical value per feature (a feature without one is never suppressed).
        reasons: Reasons wanted per row.
        first_reason: ``"feature"``: reasons by decreasing contribution. ``"family"``: the
            first reason is the strongest kept feature of the family with the largest net
            eligible contribution (:func:`rank_first_families`), the others follow by
            decreasing contribution; a row whose strongest family is not positive, or has no
            kept positive feature, keeps the ``"feature"`` order.

    Returns:
        ``(index, value)`` of shape ``(n, min(reasons, p))``, as
        :func:`churn.model.reasons.top_positive_reasons`: NaN values mark empty slots.

    Raises:
        ValueError: If ``first_reason`` is not one of :data:`FIRST_REASON_MODES`.
    """
    if first_reason not in FIRST_REASON_MODES:
        raise ValueError(f"first_reason must be one of {FIRST_REASON_MODES}, not {first_reason!r}")
    eligible = eligible_mask(specs)
    wanted = min(reasons, len(specs))
    # One spare candidate in family mode: the family's feature may already be among them.
    extra = 1 if first_reason == "family" else 0
    index, value = _pick_kept(batch, contributions, eligible, specs, typical, reasons + extra)
    if first_reason == "feature":
        return index[:, :wanted], value[:, :wanted]
    families, best, has_family = rank_first_families(
        contributions, [spec.family for spec in specs.values()], eligible
    )
    # Family positions compared as integers: comparing the names (an object array) row by
    # row took 1.4 s at 661k rows x 109 features.
    code_of = {family: code for code, family in enumerate(families)}
    feature_code = np.array([code_of.get(spec.family, -1) for spec in specs.values()])
    in_best = (feature_code[np.newaxis, :] == best[:, np.newaxis]) & has_family[:, np.newaxis]
    first_index, first_value = _pick_kept(
        batch, contributions, in_best & eligible[np.newaxis, :], specs, typical, 1
    )
    promoted = np.isfinite(first_value[:, 0])
    # Drop the promoted feature from the ordered candidates, then put it in front.
    again = promoted[:, np.newaxis] & (index == first_index[:, :1]) & np.isfinite(value)
    rest_value = np.where(again, np.nan, value)
    order = np.argsort(~np.isfinite(rest_value), axis=1, kind="stable")
    rest_index = np.take_along_axis(index, order, axis=1)
    rest_value = np.take_along_axis(rest_value, order, axis=1)
    out_index = np.where(
        promoted[:, np.newaxis], np.column_stack([first_index, rest_index[:, :-1]]), index
    )[:, :wanted]
    out_value = np.where(
        promoted[:, np.newaxis], np.column_stack([first_value, rest_value[:, :-1]]), value
    )[:, :wanted]
    return out_index, out_value


def rank_first_families(
    contributions: np.ndarray, family_of: list[str], eligible: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Return each row's family with the largest net eligible contribution, and whether > 0.

    The net sum (protective contributions included) is the family's whole push on the row's
    log-odds relative to the average customer; for a model additive across families it is
    exactly the family's own term. Ties go to :data:`FAMILIES` order, then other families in
    sorted order, so reruns pick the same family.

    Args:
        contributions: ``(n, p)`` contributions.
        family_of: Family of each of the ``p`` features.
        eligible: Whether each feature may be a reason (ineligible ones count in no family).

    Returns:
        ``(families, best, positive)``: the families with an eligible feature (in tie order),
        each row's family as a position in that list (0 when the list is empty: no row has
        a family then), and whether its net sum is positive (a row where no family pushes
        risk up has no family-first reason).
    """
    present = {family for family, ok in zip(family_of, eligible, strict=True) if ok}
    families = [f for f in FAMILIES if f in present] + sorted(present - set(FAMILIES))
    if not families:
        return [], np.zeros(len(contributions), dtype=np.intp), np.zeros(len(contributions), bool)
    names = np.array(family_of, dtype=object)
    membership = np.column_stack([(names == family) & eligible for family in families])
    membership = membership.astype(np.float64)
    sums = np.where(eligible[np.newaxis, :], contributions, 0.0) @ membership
    best = np.argmax(sums, axis=1)
    return families, best, sums[np.arange(len(sums)), best] > 0


def _pick_kept(
    batch: pd.DataFrame,
    contributions: np.ndarray,
    allowed: np.ndarray,
    specs: Mapping[str, FeatureSpec],
    typical: Mapping[str, Any],
    reasons: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the ``reasons`` largest positive ``allowed`` contributions whose value is not
    typical (``allowed``: per feature, or per row and feature)."""
    index, value = top_positive_reasons(contributions, reasons + EXTRA_CANDIDATES, allowed)
    names = list(specs)
    for position, rows, slots in group_slots_by_feature(index, value):
        name = names[position]
        typical_shown = format_value(typical.get(name), specs[name])
        if typical_shown is None:
            continue
        display = display_values(batch[name].iloc[rows], specs[name])
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
