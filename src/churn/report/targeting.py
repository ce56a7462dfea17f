"""Report section "Who to contact this week": the list by team, value curves, play effects.

Reads the ``churn target`` outputs given to the report (``reports/target.json``, the targets
folder); a pure function of :class:`~churn.report.inputs.ReportInputs` like every section.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
from matplotlib.ticker import FuncFormatter

from churn.report.charts import ACCENT, ACCENT2, INK, MUTED, _figure, _png
from churn.report.html import (
    Column,
    Markup,
    esc,
    fmt_money,
    fmt_number,
    fmt_pct,
    image,
    not_available,
    table,
)

if TYPE_CHECKING:
    from churn.config import ReportConfig
    from churn.report.inputs import ReportInputs

Section = tuple[str | None, str]

POLICY_LABELS = {
    "expected_value": "expected value (chosen)",
    "top_probability": "top churn probability, first reason's play",
    "top_revenue_at_risk": "top revenue at risk, first reason's play",
    "random": "random, first reason's play",
}
_POLICY_COLORS = {"expected_value": ACCENT, "top_probability": ACCENT2,
                  "top_revenue_at_risk": INK, "random": MUTED}
ROWS_PER_TEAM = 15


def value_curve_chart(curves: pd.DataFrame, title: str, ylabel: str) -> bytes:
    """Cumulative value against the number of contacts, one line per policy."""
    fig, ax = _figure(6.4, 3.8)
    for policy, label in POLICY_LABELS.items():
        part = curves[curves["policy"] == policy]
        if part.empty:
            continue
        ax.plot(part["contacts"], part["cumulative_value"], label=label,
                color=_POLICY_COLORS[policy], linewidth=2 if policy == "expected_value" else 1.3,
                linestyle="-" if policy != "random" else "--")
    ax.axhline(0, color=MUTED, linewidth=0.8)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlabel("contacts (in each policy's order)", fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(title, fontsize=10, color=INK)
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    return _png(fig)


def targeting_section(inputs: ReportInputs, cfg: ReportConfig) -> Section:
    """The contact list by team, the value curves and each play's effect with its source."""
    target, targets = inputs.target, inputs.targets
    if target is None or targets is None:
        return None, not_available("who to contact this week", inputs.why("target"))
    parts: list[str] = []
    by_team = target.get("contacts_by_team") or {}
    lead = (
        f"{len(targets):,} contacts this week ({', '.join(f'{t}: {n}' for t, n in by_team.items())}"
        f"), chosen by expected saved revenue minus cost within each team's capacity "
        f"(total expected value {fmt_money(target.get('expected_value'))}); never a contact "
        f"expected to lose money."
    )
    for team, rows in targets.sort_values("contact_rank").groupby("team", sort=True):
        shown = rows.head(ROWS_PER_TEAM)
        parts.append(f"<h3>{esc(team)}</h3>")
        parts.append(table(
            [Column("#", "int"), Column("Customer", wrap=True), Column("Play"),
             Column("Expected value", "money"), Column("Cost", "money"),
             Column("Churn probability", "pct"), Column("Effect", "pct"),
             Column("Reason behind the play", wrap=True), Column("Next decision", "date")],
            [(r.get("contact_rank"), r.get("customer_id"), r.get("play"),
              r.get("expected_value"), r.get("cost"), r.get("churn_probability"),
              r.get("save_rate"), r.get("reason_behind_play") or r.get("reason_feature"),
              r.get("next_decision_date"))
             for r in shown.to_dict(orient="records")],
            caption=f"First {len(shown)} of {len(rows)} contacts of the team; the full list is "
            "the CRM file (contacts.csv).",
        ))
    curves = inputs.target_curves
    if curves is not None and not curves.empty:
        for value, title, axis, alt, note in _VALUE_CURVES:
            chosen = curves[curves["value"] == value]
            if not chosen.empty:
                parts.append(image(value_curve_chart(chosen, title, axis), alt, note))
    parts.append(_effects_table(target))
    parts.append(_comparison(target))
    return lead, Markup("".join(str(p) for p in parts))


#: The value curves drawn when present: (value, chart title, axis label, alt text, caption).
_VALUE_CURVES = (
    ("expected_saved_revenue", "Expected saved revenue this week", "expected saved revenue",
     "Cumulative expected saved revenue against contacts",
     "Expected saved revenue = probability x effect x months of MRR kept, by the estimated "
     "effects; each policy fills the same team capacities."),
    ("true_saved_revenue", "True saved revenue at the test cutoff (simulator)",
     "true saved revenue",
     "Cumulative true saved revenue against contacts on the simulator's truth",
     "Revenue kept over 12 months because of the contact, from the simulator's truth (net of "
     "discounts given)."),
)

def _effects_table(target: dict[str, Any]) -> str:
    effects = target.get("effects") or []
    if not effects:
        return not_available("play effects", "the target report lists no effects")
    return "<h3>Effect of each play</h3>" + table(
        [Column("Play"), Column("Segment"), Column("Save rate used", "pct"),
         Column("Source"), Column("Logged estimate", "pct"),
         Column("Standard error", "pct"), Column("Treated", "int"), Column("Control", "int")],
        [(e.get("play"), e.get("segment"), e.get("save_rate"), e.get("source"),
          e.get("logged_save_rate"), e.get("logged_standard_error"), e.get("treated_rows"),
          e.get("control_rows")) for e in effects],
        caption="Save rate: share of would-be churners the play keeps. Logged estimate: "
        "treated vs random control (adjusted for the model's risk before the action), used "
        "when each arm has target.min_rows_per_arm rows and its standard error is at most "
        "target.max_standard_error; otherwise the configured target.plays.<play>.save_rate "
        "is used (0 for a play aimed at a family that is not among the reasons).",
    )


def _comparison(target: dict[str, Any]) -> str:
    comparison = target.get("policy_comparison") or {}
    policies = comparison.get("policies") or []
    if not policies:
        return ""
    ratios = ", ".join(
        f"{fmt_number(comparison.get(f'ratio_vs_{p}'), 2)}x {POLICY_LABELS[p]}"
        for p in ("top_probability", "top_revenue_at_risk")
    )
    rows = [(POLICY_LABELS.get(p.get("policy"), p.get("policy")), p.get("contacts"),
             p.get("true_saved_revenue"), p.get("true_net_value")) for p in policies]
    within = [e.get("within_2_se") for e in comparison.get("effects_vs_truth") or []]
    effects = (f" Logged effects within 2 standard errors of the truth: {sum(within)} of "
               f"{len(within)} ({fmt_pct(sum(within) / len(within))})." if within else "")
    return (
        f"<h3>Policies on the simulator's truth (cutoff {esc(comparison.get('cutoff'))})</h3>"
        + f"<p>Expected-value targeting saves {esc(ratios)}.{esc(effects)}</p>"
        + table([Column("Policy"), Column("Contacts", "int"),
                 Column("True saved revenue", "money"), Column("True net value", "money")],
                rows)
    )
