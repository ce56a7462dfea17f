"""Check explanations against the simulator's ground truth (simulated data only).

The simulator records, per customer and month, how much each driver family added to the true
churn log-odds, and apart from them the *exposure* (the annual renewal bump: the contract can
end this month). A reason is only useful if it is the model's real reason *and* points at what
truly drives the customer's risk, so among the riskiest decile of the test rows we measure how
often the model names the truly dominant family. Definitions (docs/reasons.md has the formulas):

* **True dominant family** of a row: the family whose truth term is largest after centring each
  term on the mean of the active customers of the same month. SHAP values are deviations from
  the average customer, while the family terms carry constant offsets (a family adding +1 to
  everyone explains nobody's excess risk). Exposure is not a family and is left out: it says
  when a customer can leave, not why.
* **First reason**: the customer's first reason exactly as the scores give it
  (:func:`churn.model.reason_selection.select_reasons` with the model's ``first_reason``: the
  largest positive contribution of an *eligible* feature whose value is not the typical one,
  or the strongest such feature of the family with the largest net push); its family is
  compared. A row without any reason counts as a miss.
* **Top family**: the family with the largest sum of positive eligible contributions (the
  ``risk_share_<family>`` the scores give); a row without any counts as a miss.
* **Chance**: the agreement expected if the named and true families were independent with their
  observed frequencies, ``sum_f p_named(f) * p_true(f)``.
* **Majority baseline**: the agreement of always naming the most common true family of the
  examined rows, ``max_f p_true(f)``. A useful explanation beats both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from churn.domain.families import FAMILIES
from churn.model.artifact import ChurnModel
from churn.model.reason_reference import read_first_reason
from churn.model.reason_selection import eligible_mask, select_reasons
from churn.model.reasons import build_feature_specs


def _true_dominant_family(rows: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Family with the largest centred truth term per row (ties: :data:`FAMILIES` order)."""
    return np.array(FAMILIES, dtype=object)[np.argmax(rows[columns].to_numpy(float), axis=1)]


def summarize_agreement(named: np.ndarray, true: np.ndarray) -> dict[str, Any]:
    """Return agreement, chance and majority baseline of named vs true families.

    Args:
        named: Family named per row (``None`` for a row without a reason: a miss).
        true: True dominant family per row.

    Returns:
        ``agreement``, ``chance``, ``majority_baseline`` and ``majority_family``.
    """
    named = np.asarray(named, dtype=object)
    true = np.asarray(true, dtype=object)
    if not len(true):
        return {"agreement": float("nan"), "chance": float("nan"),
                "majority_baseline": float("nan"), "majority_family": None}
    named_share = pd.Series(named).value_counts(normalize=True, dropna=False)
    true_share = pd.Series(true).value_counts(normalize=True)
    chance = float(sum(named_share.get(f, 0.0) * p for f, p in true_share.items()))
    # Most common true family; ties by FAMILIES order so reruns name the same family.
    majority = max(true_share.index, key=lambda f: (true_share[f], -FAMILIES.index(f)))
    return {
        "agreement": float(np.mean(named == true)),
        "chance": chance,
        "majority_baseline": float(true_share[majority]),
        "majority_family": str(majority),
    }


def compute_reason_agreement(
    model: ChurnModel,
    test: pd.DataFrame,
    truth: pd.DataFrame,
    top_fraction: float = 0.1,
    probability: np.ndarray | None = None,
) -> dict[str, Any]:
    """Measure how often explanations name the truly dominant driver family.

    Args:
        model: The churn model.
        test: Feature rows (``customer_id``, ``cutoff`` at month starts, model features).
        truth: Simulator ``customer_months`` with ``month_start`` and ``logit_<family>``.
        top_fraction: Share of highest-probability rows examined.
        probability: ``model.predict_proba(test)`` when the caller has it already (the
            evaluate stage scored the test rows); ``None``: computed here.

    Returns:
        ``rows`` examined, ``first_reason_family_agreement``, ``top_family_agreement``,
        ``chance_agreement`` (for the first reason), ``top_family_chance_agreement``,
        ``majority_family_baseline`` and ``majority_family``, ``rows_without_reason``,
        ``first_reason_mode`` (the model's ``first_reason``) and ``true_family_share``
        (family -> share of the examined rows). Empty dict when no test row matches the truth
        or the truth has no family terms.
    """
    columns = [f"logit_{family}" for family in FAMILIES]
    if not set(columns) <= set(truth.columns):
        return {}  # a truth table without family terms (e.g. hazards only): nothing to check
    keyed = truth[["customer_id", "month_start", *columns]].rename(
        columns={"month_start": "cutoff"}
    )
    # Centre within each cutoff's active population (see module docstring). Only the test's
    # months are needed, and a month's mean is over its own rows, so the others are left out
    # first (the truth holds every customer-month, the test one or a few months).
    if keyed["cutoff"].dtype == test["cutoff"].dtype:  # else the merge below says why not
        keyed = keyed[keyed["cutoff"].isin(test["cutoff"].unique())]
    centred = keyed[columns] - keyed.groupby("cutoff")[columns].transform("mean")
    keyed = pd.concat([keyed[["customer_id", "cutoff"]], centred], axis=1)
    # Matched on the keys alone, in the test's order; the features are taken for the examined
    # rows only.
    keys = test[["customer_id", "cutoff"]].reset_index(drop=True)
    keys["_position"] = np.arange(len(keys))
    rows = keys.merge(keyed, on=["customer_id", "cutoff"], how="inner", validate="one_to_one")
    if rows.empty:
        return {}
    positions = rows.pop("_position").to_numpy()
    if probability is None:
        probability = model.predict_proba(test.iloc[positions])
    elif len(probability) != len(test):
        raise ValueError(f"{len(probability)} probabilities for {len(test)} test rows")
    else:
        probability = np.asarray(probability, dtype=np.float64)[positions]
    top_n = max(1, int(np.ceil(top_fraction * len(rows))))
    # Stable ordering so ties at the boundary do not depend on row order.
    order = np.lexsort((rows["customer_id"].to_numpy(), -probability))[:top_n]
    top = pd.concat(
        [
            test.iloc[positions[order]].reset_index(drop=True),
            rows[columns].iloc[order].reset_index(drop=True),
        ],
        axis=1,
    )

    contributions, _ = model.contributions(top)
    specs = build_feature_specs(model.catalog, model.feature_names, model.categorical_levels)
    families = np.array([spec.family for spec in specs.values()], dtype=object)
    first_reason = read_first_reason(model.metadata)
    index, value = select_reasons(
        top, contributions, specs, model.typical_values, 1, first_reason=first_reason
    )
    has_reason = np.isfinite(value[:, 0])
    first_family = np.where(has_reason, families[index[:, 0]], None)

    positive = np.where(eligible_mask(specs), np.clip(contributions, 0.0, None), 0.0)
    family_sums = pd.DataFrame(positive, columns=families).T.groupby(level=0).sum().T
    best = np.argmax(family_sums.to_numpy(), axis=1)
    top_family = np.where(
        family_sums.to_numpy().max(axis=1) > 0, family_sums.columns.to_numpy()[best], None
    )

    true_family = _true_dominant_family(top, columns)
    first = summarize_agreement(first_family, true_family)
    by_sum = summarize_agreement(top_family, true_family)
    true_share = pd.Series(true_family).value_counts(normalize=True)
    return {
        "rows": int(top_n),
        "first_reason_family_agreement": first["agreement"],
        "top_family_agreement": by_sum["agreement"],
        "chance_agreement": first["chance"],
        "top_family_chance_agreement": by_sum["chance"],
        "majority_family_baseline": first["majority_baseline"],
        "majority_family": first["majority_family"],
        "rows_without_reason": int((~has_reason).sum()),
        "first_reason_mode": first_reason,
        "true_family_share": {f: float(true_share.get(f, 0.0)) for f in FAMILIES},
    }
