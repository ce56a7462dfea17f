"""Report section "Risk over 30, 60 and 90 days": the survival head's horizons by segment.

Reads the scores' ``churn_probability_<H>d`` columns (added when the model has a survival
head, docs/survival.md) and ``next_decision_date``. For each segment column (plan, billing
period, acquisition channel) one chart draws the mean probability of churning within each
horizon per segment level, and a table gives the numbers; a second table lists the customers
with the highest risk at the longest horizon with their next decision date. Without horizon
columns the section says so.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pandas as pd

from churn.report.charts import ACCENT, ACCENT2, INK, MUTED, _figure, _png
from churn.report.data import num, score_cutoff_text, with_segments
from churn.report.html import Column, esc, image, not_available, table

if TYPE_CHECKING:
    from churn.config import ReportConfig
    from churn.report.inputs import ReportInputs

Section = tuple[str | None, str]

HORIZON_COLUMN = re.compile(r"^churn_probability_(\d+)d$")
LINE_COLORS = (ACCENT, ACCENT2, "#3a9d5d", "#8e44ad", MUTED, INK)
MAX_LEVELS = 6
"""Levels drawn per chart (the largest segments); the table lists them all."""


def find_horizon_columns(scores: pd.DataFrame) -> list[tuple[int, str]]:
    """Return ``(horizon days, column)`` of the scores' horizon columns, shortest first."""
    found = [(int(m.group(1)), c) for c in scores.columns if (m := HORIZON_COLUMN.match(str(c)))]
    return sorted(found)


def horizon_chart(means: pd.DataFrame, title: str) -> bytes:
    """Lines of mean risk by horizon, one per segment level (rows: levels, columns: days)."""
    fig, ax = _figure(5.2, 3.0, margins=(0.7, 1.6, 0.5, 0.35))
    for i, (level, row) in enumerate(means.iterrows()):
        ax.plot(
            means.columns,
            row.to_numpy(),
            marker="o",
            color=LINE_COLORS[i % len(LINE_COLORS)],
            label=str(level),
        )
    ax.set_xticks(list(means.columns))
    ax.set_xlabel("horizon (days)", fontsize=9, color=INK)
    ax.set_ylabel("mean churn probability", fontsize=9, color=INK)
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10, color=INK)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _png(fig)


def horizons_section(inputs: ReportInputs, cfg: ReportConfig) -> Section:
    """Mean risk at every horizon by segment, and the riskiest customers' next decision."""
    scores = inputs.scores
    if scores is None or "customer_id" not in scores:
        return None, not_available("risk by horizon", inputs.why("scores"))
    horizons = find_horizon_columns(scores)
    if not horizons:
        return None, not_available(
            "risk by horizon",
            "the scores have no churn_probability_<H>d columns: the scored model has no "
            "survival head (trained without labels, in entity mode, or the gate kept a "
            "champion trained before the head existed)",
        )
    frame = with_segments(inputs)
    days = [h for h, _ in horizons]
    parts = []
    from churn.report.risk import SEGMENT_TITLES

    for segment in inputs.segment_columns:
        if segment not in frame or frame[segment].isna().all():
            continue
        title = SEGMENT_TITLES.get(segment, segment.replace("_", " ").capitalize())
        levels = frame[segment].astype("object").fillna("(unknown)").astype(str)
        means = pd.DataFrame({h: num(frame, c).groupby(levels).mean() for h, c in horizons})
        sizes = levels.value_counts()
        means = means.loc[sizes.index]  # largest segments first
        parts.append(f"<h3>{esc(title)}</h3>")
        parts.append(
            image(
                horizon_chart(means.head(MAX_LEVELS), f"Risk over time by {title.lower()}"),
                f"mean churn probability at {', '.join(map(str, days))} days by {title.lower()}",
            )
        )
        rows = [(level, int(sizes[level]), *means.loc[level].tolist()) for level in means.index]
        cols = [Column(title), Column("Customers", "int")]
        cols += [Column(f"Within {h} days", "pct") for h in days]
        parts.append(table(cols, rows))
    longest, column = horizons[-1]
    top = frame.assign(_p=num(frame, column)).sort_values("_p", ascending=False)
    top = top.head(cfg.top_customers)
    rows = [
        (
            r["customer_id"],
            *[r.get(c) for _, c in horizons],
            None if pd.isna(r.get("next_decision_date")) else str(r["next_decision_date"])[:10],
        )
        for _, r in top.iterrows()
    ]
    cols = [Column("Customer", wrap=True)] + [Column(f"{h} days", "pct") for h in days]
    cols.append(Column("Next decision", tip="next renewal or billing date: when they can leave"))
    parts.append(f"<h3>Highest {longest}-day risk and when they can leave</h3>")
    parts.append(table(cols, rows))
    lead = (
        f"Probability of churning within {', '.join(map(str, days))} days at "
        f"{score_cutoff_text(inputs)}, from one survival model over the contract's decision "
        "dates (docs/survival.md): a customer whose contract cannot end inside a horizon has "
        "0% risk there. Risk never falls with a longer horizon."
    )
    return lead, "".join(parts)
