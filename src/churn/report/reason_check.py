"""Report block: do the reasons name the true driver? (simulated data only).

Renders ``metrics.json``'s ``explanations`` (:mod:`churn.model.explanation_check`): for the
riskiest decile of the test rows, how often the first reason's family and the family with the
largest share of the risk are the simulator's truly dominant family, against chance and the
majority baseline (always naming the most common true family).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from churn.report.data import dig
from churn.report.html import Column, esc, table, to_float

if TYPE_CHECKING:
    from churn.report.inputs import ReportInputs

#: (metrics key, row label) in display order.
AGREEMENT_ROWS = (
    ("first_reason_family_agreement", "First reason names the true driver family"),
    ("top_family_agreement", "Family with the largest risk share is the true driver"),
    ("chance_agreement", "Chance (independent families, first reason)"),
    ("majority_family_baseline", "Majority baseline (always the most common true family)"),
)


def reason_agreement_block(inputs: ReportInputs) -> str:
    """Return the agreement table, or ``""`` without simulator truth in the metrics."""
    check = dig(inputs.metrics, "explanations", default=None)
    if not isinstance(check, dict) or to_float(check.get("rows")) is None:
        return ""
    rows = [
        [label, to_float(check.get(key))]
        for key, label in AGREEMENT_ROWS
        if to_float(check.get(key)) is not None
    ]
    majority = check.get("majority_family")
    caption = (
        f"Riskiest decile of the test rows ({to_float(check['rows']):,.0f} customer-months), "
        "simulated data: reasons count only behaviour (exposure and contract timing are never "
        f"reasons); the most common true family is {esc(majority)}. Definitions in "
        "docs/reasons.md."
    )
    return str(
        "<h3>Do the reasons name the true driver?</h3>"
        + table([Column("Measure"), Column("Share", "pct")], rows, caption=caption)
    )
