"""Check explanations against the simulator's ground truth (simulated data only).

The simulator records, per customer and month, how much each driver family added to the true
churn log-odds. A reason is only useful if it is the model's real reason *and* points at what
truly drives the customer's risk, so on simulated data we measure, among the riskiest decile,
how often the family of the first reason (and the family with the largest summed SHAP
contribution) is the family with the largest true contribution.

True contributions are centred on the population mean of the same cutoff before taking the
largest: SHAP values are deviations from the average customer, while the simulator's family
terms carry constant offsets (a family that adds +1 to everyone explains nobody's excess risk).
The chance level is the agreement expected if the predicted and true families were independent
with their observed frequencies.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churn.domain.families import FAMILIES
from churn.model.artifact import ChurnModel


def compute_reason_agreement(
    model: ChurnModel,
    test: pd.DataFrame,
    truth: pd.DataFrame,
    top_fraction: float = 0.1,
) -> dict[str, float | int]:
    """Measure how often explanations name the truly dominant driver family.

    Args:
        model: The churn model.
        test: Feature rows (``customer_id``, ``cutoff`` at month starts, model features).
        truth: Simulator ``customer_months`` with ``month_start`` and ``logit_<family>``.
        top_fraction: Share of highest-probability rows examined.

    Returns:
        ``rows`` examined, ``first_reason_family_agreement``, ``top_family_agreement``, and
        ``chance_agreement`` (for the first-reason measure). Empty dict when no test row
        matches the truth or the truth has no family terms.
    """
    columns = [f"logit_{family}" for family in FAMILIES]
    if not set(columns) <= set(truth.columns):
        return {}  # a truth table without family terms (e.g. hazards only): nothing to check
    keyed = truth[["customer_id", "month_start", *columns]].rename(
        columns={"month_start": "cutoff"}
    )
    # Centre within each cutoff's active population (see module docstring).
    centred = keyed[columns] - keyed.groupby("cutoff")[columns].transform("mean")
    keyed = pd.concat([keyed[["customer_id", "cutoff"]], centred], axis=1)
    rows = test.reset_index(drop=True).merge(
        keyed, on=["customer_id", "cutoff"], how="inner", validate="one_to_one"
    )
    if rows.empty:
        return {}
    probability = model.predict_proba(rows)
    top_n = max(1, int(np.ceil(top_fraction * len(rows))))
    # Stable ordering so ties at the boundary do not depend on row order.
    order = np.lexsort((rows["customer_id"].to_numpy(), -probability))[:top_n]
    top = rows.iloc[order].reset_index(drop=True)

    contributions, _ = model.contributions(top)
    feature_family = model.catalog.set_index("name")["family"].reindex(list(model.feature_names))
    families = feature_family.to_numpy(dtype=object)
    first_reason_family = families[np.argmax(contributions, axis=1)]
    family_sums = pd.DataFrame(contributions, columns=families).T.groupby(level=0).sum().T
    top_family = family_sums.columns.to_numpy()[np.argmax(family_sums.to_numpy(), axis=1)]

    true_family = np.array(FAMILIES, dtype=object)[
        np.argmax(top[columns].to_numpy(dtype=float), axis=1)
    ]
    predicted_share = pd.Series(first_reason_family).value_counts(normalize=True)
    true_share = pd.Series(true_family).value_counts(normalize=True)
    chance = float(sum(predicted_share.get(f, 0.0) * p for f, p in true_share.items()))
    return {
        "rows": int(top_n),
        "first_reason_family_agreement": float(np.mean(first_reason_family == true_family)),
        "top_family_agreement": float(np.mean(top_family == true_family)),
        "chance_agreement": chance,
    }
