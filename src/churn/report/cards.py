"""Report section "Customer cards": one card per riskiest scored customer.

A card answers what a retention team asks before a call: how likely is this customer to leave
within 30, 60 and 90 days, when can they leave (the next renewal or billing date), why (the
score's reasons, worded by :mod:`churn.model.reasons`) and what changed since the last score
(the score stage's changes file, worded by :mod:`churn.model.changes`). Cards are drawn for the
``report.customer_cards`` customers with the highest ``churn_probability`` (ties by customer
id), so the page stays short whatever the population.

Personal data never appears (the project's rule, :mod:`churn.features.personal`): a segment
column whose name or values look personal is left out of every card, and any single value
shown (the customer id, a segment level, a sentence) holding an e-mail address or a phone number
is replaced by a note. Reasons and changes are built from the model's features, whose allowed
personal columns are already pseudonymised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churn.features.personal import find_personal_columns, looks_personal
from churn.report.data import (
    feature_descriptions,
    moved_texts,
    num,
    reason_texts,
    score_cutoff_text,
    with_segments,
)
from churn.report.horizons import find_horizon_columns
from churn.report.html import (
    Markup,
    esc,
    fmt_date,
    fmt_pct,
    fmt_pp,
    not_available,
    ordered_list,
    to_float,
)

if TYPE_CHECKING:
    from churn.config import ReportConfig
    from churn.report.inputs import ReportInputs

Section = tuple[str | None, str]

HIDDEN = "(hidden: looks like personal data)"


def hide_personal(value: Any) -> Any:
    """Return ``value``, or :data:`HIDDEN` when it is text holding an e-mail or phone number."""
    return HIDDEN if isinstance(value, str) and looks_personal(value) else value


def pick_card_customers(scores: pd.DataFrame, count: int) -> pd.DataFrame:
    """Return the ``count`` rows with the highest ``churn_probability`` (ties: customer id).

    Rows without a probability come last; the order is deterministic.
    """
    probability = num(scores, "churn_probability").fillna(-1.0).to_numpy()
    ids = scores["customer_id"].astype(str).to_numpy(dtype=object)
    order = np.lexsort((ids, -probability))
    return scores.iloc[order[:count]]


def split_segment_columns(
    frame: pd.DataFrame, columns: tuple[str, ...]
) -> tuple[list[str], list[str]]:
    """Split segment columns into those a card may show and those that look personal."""
    present = [c for c in dict.fromkeys(("plan", *columns)) if c in frame]
    personal = find_personal_columns(frame, present)
    return [c for c in present if c not in personal], sorted(personal)


def _describe_segment(column: str) -> str:
    from churn.report.risk import SEGMENT_TITLES

    return SEGMENT_TITLES.get(column, column.replace("_", " ").capitalize())


def _draw_change_block(change: pd.Series | None, descriptions: dict[str, str], why: str) -> str:
    """The card's "What changed" part from the customer's row of the changes file."""
    if change is None:
        return f'<p class="caption">{esc(why)}</p>'
    status = str(change.get("status", ""))
    if status == "new":
        return "<p>New: not scored the last time.</p>"
    before, now, delta = (
        to_float(change.get(c))
        for c in ("previous_probability", "churn_probability", "probability_change")
    )
    previous_cutoff = change.get("previous_cutoff")
    since = "" if pd.isna(previous_cutoff) else f" at {fmt_date(previous_cutoff)}"
    head = (
        f"<p>Churn probability {esc(fmt_pct(before))}{esc(since)} → {esc(fmt_pct(now))} "
        f"now ({esc(fmt_pp(delta))}).</p>"
    )
    items = [hide_personal(t) for t in moved_texts(change, descriptions)]
    if not items:
        return head + '<p class="caption">No feature value of this customer moved the score.</p>'
    return head + str(ordered_list(items))


def _draw_card(
    rank: int,
    row: pd.Series,
    segments: list[str],
    horizons: list[tuple[int, str]],
    change: pd.Series | None,
    descriptions: dict[str, str],
    no_change_why: str,
) -> str:
    customer = hide_personal(str(row["customer_id"]))
    facts = [
        f"{_describe_segment(c)}: {hide_personal(row.get(c))}"
        for c in segments
        if pd.notna(row.get(c))
    ]
    if horizons:
        risk = [(f"Within {h} days", fmt_pct(row.get(c))) for h, c in horizons]
    else:
        risk = [("Churn probability", fmt_pct(row.get("churn_probability")))]
    if "next_decision_date" in row.index:
        risk.append(("Next decision", fmt_date(row.get("next_decision_date"))))
    cells = "".join(
        f'<div class="kpi"><div class="kl">{esc(label)}</div><div class="kval">{esc(value)}'
        "</div></div>"
        for label, value in risk
    )
    reasons = [hide_personal(t) for t in reason_texts(row, descriptions)]
    return (
        f'<article class="card"><h3>#{rank} · Customer {esc(customer)}</h3>'
        f'<p class="caption">{esc(" · ".join(facts) or "no segment on record")}</p>'
        f'<div class="kpis">{cells}</div>'
        f"<h4>Why</h4>{ordered_list(reasons) if reasons else esc('no reason above average')}"
        f"<h4>What changed since the last score</h4>"
        f"{_draw_change_block(change, descriptions, no_change_why)}</article>"
    )


def cards_section(inputs: ReportInputs, cfg: ReportConfig) -> Section:
    """One card per riskiest customer: horizons, next decision, reasons, what changed."""
    scores = inputs.scores
    if scores is None or "customer_id" not in scores:
        return None, not_available("customer cards", inputs.why("scores"))
    if cfg.customer_cards == 0:
        return None, not_available("customer cards", "report.customer_cards is 0")
    joined = with_segments(inputs)
    frame = pick_card_customers(joined, cfg.customer_cards)
    # Judged on the whole scored population: a column's values say whether it is personal.
    segments, personal = split_segment_columns(joined, inputs.segment_columns)
    horizons = find_horizon_columns(scores)
    descriptions = feature_descriptions(inputs)
    changes = inputs.changes
    by_customer: dict[str, pd.Series] = {}
    if changes is not None and "customer_id" in changes:
        ids = changes["customer_id"].astype(str)
        picked = changes[ids.isin(set(frame["customer_id"].astype(str)))]
        by_customer = {str(r["customer_id"]): r for _, r in picked.iterrows()}
    why = (
        "Not in the changes file." if changes is not None else
        f"No comparison: {inputs.why('changes')}."
    )
    cards = [
        _draw_card(rank, row, segments, horizons, by_customer.get(str(row["customer_id"])),
              descriptions, why)
        for rank, (_, row) in enumerate(frame.iterrows(), start=1)
    ]
    lead = (
        f"The {len(cards)} customers most likely to churn at {score_cutoff_text(inputs)}: risk "
        "within each horizon, when they can next leave, why, and what changed since the last "
        "score."
    )
    if not horizons:
        lead += " The scored model has no survival head, so one horizon is shown."
    if personal:
        lead += f" Left out as personal data: {', '.join(personal)}."
    return lead, Markup(f'<div class="cards">{"".join(cards)}</div>')
