"""Report sections about risk: global explanations, top customers, segments, changes.

Each is a pure function of :class:`ReportInputs` returning ``(lead, body_html)``, reading the
scores and explanation outputs defensively (through :mod:`churn.report.data`); values are
formatted and escaped by :mod:`churn.report.html`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pandas as pd

from churn.report import charts
from churn.report.data import (
    decile_tip,
    dig,
    feature_descriptions,
    main_driver,
    moved_texts,
    num,
    reason_texts,
    revenue_unit,
    score_cutoff_text,
    with_segments,
)
from churn.report.html import (
    Column,
    Markup,
    esc,
    fmt_int,
    image,
    kpis,
    not_available,
    ordered_list,
    table,
    to_float,
)
from churn.report.reason_check import reason_agreement_block

if TYPE_CHECKING:
    from churn.config import ReportConfig
    from churn.report.inputs import ReportInputs

Section = tuple[str | None, str]

SEGMENT_TITLES = {
    "plan": "Plan",
    "acquisition_channel": "Acquisition channel",
    "billing_period": "Billing period",
}
BIG_MOVE = 0.05  # a probability change of 5 points counts as a notable move
CHANGES_SHOWN = 10


# --------------------------------------------------------------------------- explanations
def explain_section(inputs: ReportInputs, cfg: ReportConfig) -> Section:
    """Global SHAP pictures, family and journey-phase breakdowns, today's risk by family."""
    images = dict(inputs.explain_images)

    def take(pattern: str) -> list[str]:
        names = [n for n in images if re.search(pattern, n, re.IGNORECASE)]
        return [image(images.pop(n), _title(n), _title(n)) for n in names]

    dependence = take("depend")
    main = take("beeswarm|summary") + take("bar|importance_features")
    breakdown = take("famil") + take("phase")
    other = take(".")
    tables = [_importance_table(inputs, name) for name in ("family_importance", "phase_importance")]
    top = _importance_table(inputs, "global_importance", limit=15)
    if not (main or breakdown or dependence or other or any(tables) or top):
        return None, not_available("global explanations", inputs.why("explain"))
    parts: list[str] = []
    if main:
        parts += ["<h3>Which features move risk</h3>", f'<div class="grid">{"".join(main)}</div>']
    if breakdown or any(tables):
        parts += [
            "<h3>What drives churn risk: by family and by journey phase (pre-sale vs "
            "post-sale), without exposure and contract timing</h3>",
            f'<div class="grid">{"".join(breakdown + [t for t in tables if t])}</div>',
        ]
    parts.append(_risk_shares(inputs))
    parts.append(reason_agreement_block(inputs))
    if top:
        parts += ["<h3>Top features</h3>", top]
    if dependence or other:
        parts += [
            "<h3>How risk changes with the top features</h3>",
            f'<div class="grid">{"".join(dependence + other)}</div>',
        ]
    sample = to_float(dig(inputs.explain_summary, "rows_explained"))
    who = f"{sample:,.0f} sampled customer-cutoffs" if sample else "a sample of customers"
    lead = (
        f"Mean absolute SHAP contribution (log-odds) over {who}: how much each feature, "
        "family and journey phase moves the predicted risk."
    )
    return lead, "".join(parts)


def _title(file_name: str) -> str:
    return re.sub(r"[_-]+", " ", file_name.rsplit(".", 1)[0]).strip().capitalize()


def _importance_table(inputs: ReportInputs, name: str, limit: int | None = None) -> str:
    frame = inputs.explain_tables.get(name)
    if frame is None or frame.empty:
        return ""
    value = next((c for c in frame.columns if "shap" in c), None)
    if value is not None:
        frame = frame.assign(**{value: num(frame, value)}).sort_values(value, ascending=False)
    frame = frame.head(limit) if limit else frame
    labels = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    cols = [Column(c.replace("_", " ").capitalize()) for c in labels]
    keys = list(labels)
    if value is not None:
        cols.append(Column("Mean |SHAP|", "num"))
        keys.append(value)
    if "share" in frame:
        cols.append(Column("Share", "pct"))
        keys.append("share")
    rows = [[r[k] for k in keys] for _, r in frame.iterrows()]
    descriptions = feature_descriptions(inputs)
    if "feature" in labels and descriptions:
        cols.append(Column("Meaning"))
        rows = [
            [*row, descriptions.get(str(f))] for row, f in zip(rows, frame["feature"], strict=True)
        ]
    return table(cols, rows)


def _risk_shares(inputs: ReportInputs) -> str:
    scores = inputs.scores
    if scores is None or "expected_revenue_at_risk" not in scores:
        return ""
    weight = num(scores, "expected_revenue_at_risk").fillna(0.0)
    blocks = []
    for pattern, title in (
        (r"^risk_share_(?!pre_sale$|post_sale$)(.+)$", "family"),
        (r"^risk_share_(pre_sale|post_sale)$", "journey phase"),
    ):
        cols = [c for c in scores.columns if re.match(pattern, c)]
        if not cols or weight.sum() <= 0:
            continue
        shares = scores[cols].apply(pd.to_numeric, errors="coerce").fillna(0.0)
        weighted = shares.mul(weight, axis=0).sum() / weight.sum()
        weighted.index = [re.match(pattern, c).group(1).replace("_", "-") for c in cols]
        blocks.append(
            image(
                charts.share_bars_chart(weighted, f"Revenue at risk by {title}"),
                f"Revenue at risk by {title}",
            )
        )
    if not blocks:
        return ""
    return (
        "<h3>Today's revenue at risk, split by what drives it</h3>"
        f'<div class="grid">{"".join(blocks)}</div><p class="caption">Each scored '
        "customer's risk shares, weighted by their revenue at risk.</p>"
    )


# --------------------------------------------------------------------------- customers
def customers_section(inputs: ReportInputs, cfg: ReportConfig) -> Section:
    """The customers with the most expected revenue at risk, with their reasons."""
    scores = inputs.scores
    if scores is None or "customer_id" not in scores:
        return None, not_available("top customers at risk", inputs.why("scores"))
    frame = with_segments(inputs)
    order = next((c for c in ("expected_revenue_at_risk", "churn_probability") if c in frame), None)
    if order is not None:
        frame = frame.assign(_o=num(frame, order)).sort_values("_o", ascending=False)
    frame = frame.head(cfg.top_customers)
    descriptions = feature_descriptions(inputs)
    rows = [
        (
            rank,
            r["customer_id"],
            r.get("plan"),
            r.get("mrr"),
            r.get("churn_probability"),
            r.get("risk_decile"),
            r.get("expected_revenue_at_risk"),
            ordered_list(reason_texts(r, descriptions)),
            main_driver(r),
        )
        for rank, (_, r) in enumerate(frame.iterrows(), start=1)
    ]
    cols = [
        Column("#", "int"),
        Column("Customer", wrap=True),
        Column("Plan"),
        Column("MRR", "money"),
        Column("Churn probability", "pct"),
        Column("Risk decile", "int", tip=decile_tip(scores)),
        Column("Revenue at risk", "money", tip=revenue_unit(inputs)),
        Column("Why (strongest reasons first)", "html"),
        Column("Main driver", tip="family with the largest share of the customer's risk"),
    ]
    lead = (
        f"The {len(rows)} customers with the most expected revenue at risk at "
        f"{score_cutoff_text(inputs)} ({revenue_unit(inputs)}), with the reasons that raise "
        "their risk. Click a column header to sort."
    )
    return lead, table(cols, rows)


# --------------------------------------------------------------------------- segments
def segments_section(inputs: ReportInputs, cfg: ReportConfig) -> Section:
    """Customers, mean probability and revenue at risk by plan, channel and billing period."""
    if inputs.scores is None or "customer_id" not in inputs.scores:
        return None, not_available("segments", inputs.why("scores"))
    frame = with_segments(inputs)
    frame = frame.assign(
        _p=num(frame, "churn_probability"),
        _mrr=num(frame, "mrr"),
        _risk=num(frame, "expected_revenue_at_risk"),
    )
    total_risk = frame["_risk"].sum()
    parts = []
    for col in inputs.segment_columns:
        title = SEGMENT_TITLES.get(col, col.replace("_", " ").capitalize())
        parts.append(f"<h3>{esc(title)}</h3>")
        if col not in frame or frame[col].isna().all():
            parts.append(
                not_available(
                    title.lower(),
                    f"no '{col}' column in the scores, the "
                    "labels or the validated customers table given to "
                    "the report",
                )
            )
            continue
        groups = frame.groupby(frame[col].astype("object").fillna("(unknown)").astype(str))
        auc = dig(inputs.metrics, "segments", col, default={}) or {}
        rows = [
            (
                level,
                len(g),
                len(g) / len(frame),
                g["_p"].mean(),
                g["_mrr"].sum(),
                g["_risk"].sum(),
                g["_risk"].sum() / total_risk if total_risk else None,
                dig(auc, level, "roc_auc"),
            )
            for level, g in groups
        ]
        rows.sort(key=lambda row: -row[5] if pd.notna(row[5]) else 0.0)
        parts.append(
            table(
                [
                    Column(title),
                    Column("Customers", "int"),
                    Column("Share", "pct"),
                    Column("Mean churn probability", "pct"),
                    Column("MRR", "money"),
                    Column("Revenue at risk", "money"),
                    Column("Share of risk", "pct"),
                    Column(
                        "Test ROC AUC",
                        "num",
                        tip="how well the model ranks customers within the "
                        "segment, on the test cutoff",
                    ),
                ],
                rows,
            )
        )
    lead = (
        f"Scored customers at {score_cutoff_text(inputs)} by segment, most revenue at risk "
        "first. (unknown): no value on record, e.g. a customer who joined after the last "
        "label cutoff."
    )
    return lead, "".join(parts)


# --------------------------------------------------------------------------- changes
def changes_section(inputs: ReportInputs, cfg: ReportConfig) -> Section:
    """Biggest risers and fallers since the previous scoring run, with what moved."""
    changes = inputs.changes
    title = "changes since the last score"
    if changes is None or "customer_id" not in changes:
        return None, not_available(title, inputs.why("changes"))
    frame = changes.assign(_d=num(changes, "probability_change"))
    if frame["_d"].isna().all() and "status" not in frame:
        return None, not_available(title, "the changes file has no 'probability_change' column")
    if "churn_probability" not in frame and inputs.scores is not None:
        current = inputs.scores.drop_duplicates("customer_id").set_index("customer_id")
        frame["churn_probability"] = frame["customer_id"].map(current["churn_probability"])
    descriptions = feature_descriptions(inputs)

    def drivers(row: pd.Series) -> Markup:
        return ordered_list(moved_texts(row, descriptions))

    cols = [
        Column("Customer", wrap=True),
        Column("Previous", "pct"),
        Column("Now", "pct"),
        Column("Change", "pp"),
        Column("What moved", "html"),
    ]

    def rows(part: pd.DataFrame) -> list[tuple]:
        return [
            (
                r["customer_id"],
                r.get("previous_probability"),
                r.get("churn_probability"),
                r["_d"],
                drivers(r),
            )
            for _, r in part.iterrows()
        ]

    status = frame["status"].astype(str) if "status" in frame else None
    previous = num(frame, "previous_probability")
    new = (status == "new").sum() if status is not None else previous.isna().sum()
    facts = [
        ("Customers in both runs", fmt_int(frame["_d"].notna().sum()), None),
        ("Risk up ≥ 5 points", fmt_int((frame["_d"] >= BIG_MOVE).sum()), None),
        ("Risk down ≥ 5 points", fmt_int((frame["_d"] <= -BIG_MOVE).sum()), None),
        ("New customers", fmt_int(new), None),
    ]
    if status is not None:
        facts.append(("No longer scored", fmt_int((status == "gone").sum()), None))
    risers = frame[frame["_d"] > 0].nlargest(CHANGES_SHOWN, "_d")
    fallers = frame[frame["_d"] < 0].nsmallest(CHANGES_SHOWN, "_d")
    body = [
        kpis(facts),
        "<h3>Biggest increases</h3>",
        table(cols, rows(risers)) if len(risers) else "<p>No customer's risk rose.</p>",
        "<h3>Biggest decreases</h3>",
        table(cols, rows(fallers)) if len(fallers) else "<p>No customer's risk fell.</p>",
    ]
    lead = (
        "Change in churn probability since the previous scoring run, with the features "
        "whose contribution moved most."
    )
    return lead, "".join(body)
