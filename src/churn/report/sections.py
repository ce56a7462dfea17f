"""Report sections about the data and the model: headline numbers, data window, churn rate,
model card. Each is a pure function of :class:`ReportInputs` returning ``(lead, body_html)``.

Inputs are read defensively (through :mod:`churn.report.data`): JSON reports come from other
stages whose keys may drift, so a missing key renders a marked "not available" block rather
than raising. Values are formatted and escaped by :mod:`churn.report.html`; nothing from the
inputs is inserted verbatim.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from churn.report import charts
from churn.report.data import (
    dig,
    first,
    gate_decision,
    is_snapshot,
    labels_per_cutoff,
    model_identity,
    model_version,
    num,
    revenue_unit,
    scalars,
    score_cutoff_text,
)
from churn.report.html import (
    Column,
    Markup,
    esc,
    fmt_date,
    fmt_int,
    fmt_money,
    fmt_number,
    fmt_pct,
    image,
    kpis,
    kv_table,
    not_available,
    table,
    to_float,
)

if TYPE_CHECKING:
    from churn.config import ReportConfig
    from churn.report.inputs import ReportInputs

Section = tuple[str | None, str]

# (key in metrics["test"], label, which direction is better)
METRIC_ROWS = (
    ("roc_auc", "ROC AUC", "higher"),
    ("pr_auc", "PR AUC (average precision)", "higher"),
    ("brier", "Brier score", "lower"),
    ("ece", "Expected calibration error", "lower"),
    ("log_loss", "Log loss", "lower"),
    ("lift_top_decile", "Lift in the riskiest 10%", "higher"),
    ("capture_top_decile", "Churners caught in the riskiest 10%", "higher"),
    ("revenue_capture_top_decile", "Churned revenue caught in the riskiest 10%", "higher"),
)
SHARE_METRICS = ("capture_top_decile", "revenue_capture_top_decile", "base_rate")
LABELS = {
    "n": "Rows",
    "n_train": "Train rows",
    "n_test": "Test rows",
    "positives": "Churners",
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC",
    "brier": "Brier",
    "log_loss": "Log loss",
    "ece": "ECE",
    "lift_top_decile": "Lift, top 10%",
    "baseline_roc_auc": "Baseline ROC AUC",
    "base_rate": "Churn rate",
    "skipped": "Skipped because",
}
RECENT_CUTOFFS = 12


# --------------------------------------------------------------------------- small helpers
def _notes(*groups: Any) -> str:
    notes = [n for group in groups if isinstance(group, list) for n in group if n]
    if not notes:
        return ""
    items = "".join(f"<li>{esc(n)}</li>" for n in notes)
    return f'<h3>Notes from the run</h3><ul class="notes">{items}</ul>'


# --------------------------------------------------------------------------- summary
def summary(inputs: ReportInputs) -> Markup:
    """Headline numbers above the sections."""
    scores, test = inputs.scores, dig(inputs.metrics, "test", default={})
    items: list[tuple[str, Any, str | None]] = [("Score cutoff", score_cutoff_text(inputs), None)]
    if scores is not None:
        items.append(("Customers scored", fmt_int(len(scores)), None))
        if "expected_revenue_at_risk" in scores:
            risk = num(scores, "expected_revenue_at_risk").sum()
            items.append(("Revenue at risk", fmt_money(risk), revenue_unit(inputs, short=True)))
    auc = to_float(dig(test, "roc_auc"))
    if auc is not None:
        base = to_float(dig(inputs.metrics, "baseline", "test", "roc_auc"))
        items.append(
            (
                "Test ROC AUC",
                fmt_number(auc),
                f"baseline {fmt_number(base)}" if base is not None else None,
            )
        )
    lift = to_float(dig(test, "lift_top_decile"))
    if lift is not None:
        items.append(("Lift, riskiest 10%", f"{lift:.1f}×", "vs contacting at random"))
    if inputs.train is not None:
        _, _, promoted, _ = gate_decision(inputs)
        short = {True: "promoted", False: "not promoted"}.get(promoted, "see model card")
        items.append(("Model gate", short, model_version(inputs)))
    return kpis(items)


# --------------------------------------------------------------------------- data
def data_section(inputs: ReportInputs, cfg: ReportConfig) -> Section:
    """Data window, population per cutoff and the ingest validation counts.

    Snapshot data (:func:`~churn.report.data.is_snapshot`: entity mode or one cutoff) is
    described as one cutoff, without a window of cutoffs or outcomes still open.
    """
    snapshot = is_snapshot(inputs)
    parts: list[str] = []
    labels = inputs.labels
    if labels is not None and {"cutoff", "customer_id"} <= set(labels.columns):
        per = labels_per_cutoff(inputs)
        labeled = int((per["labeled"] > 0).sum())
        if snapshot:
            window = [
                ("Cutoff", fmt_date(per["cutoff"].min())),
                ("Cutoffs", "one (snapshot data: the outcome is given with the customers)"),
            ]
        else:
            window = [
                ("First cutoff", fmt_date(per["cutoff"].min())),
                ("Last cutoff", fmt_date(per["cutoff"].max())),
                (
                    "Cutoffs",
                    f"{len(per)}: {labeled} labeled, {len(per) - labeled} for scoring only "
                    "(outcome window still open)",
                ),
            ]
        parts.append(
            kv_table(
                [
                    *window,
                    ("Distinct customers", fmt_int(labels["customer_id"].nunique())),
                    ("Customer-cutoff rows", fmt_int(len(labels))),
                    ("Scored at", score_cutoff_text(inputs)),
                ]
            )
        )
        cols = [
            Column("Cutoff", "date"),
            Column("Customers", "int"),
            Column("Labeled", "int"),
            Column("Churned", "int"),
            Column("Churn rate", "pct"),
            Column("MRR", "money"),
        ]
        keys = ["cutoff", "customers", "labeled", "churners", "churn_rate", "mrr"]
        recent = per.tail(RECENT_CUTOFFS)
        heading = (
            "Population at the cutoff"
            if len(recent) == 1
            else f"Population at the last {len(recent)} cutoffs"
        )
        parts += [
            f"<h3>{heading}</h3>",
            table(cols, recent[keys].itertuples(index=False)),
        ]
        if len(per) > len(recent):
            # Years of monthly cutoffs would bury the report; the full table is one click away.
            parts.append(
                f"<details><summary>All {len(per)} cutoffs</summary>"
                f"{table(cols, per[keys].itertuples(index=False))}</details>"
            )
    else:
        parts.append(not_available("labels and cutoffs", inputs.why("labels")))
    parts += ["<h3>Input validation</h3>", _ingest_table(inputs)]
    lead = (
        "Snapshot data: one cutoff, the reference date; features are what the customer table "
        "holds and the label comes with it."
        if snapshot
        else "Each cutoff is a point in time: features use only what was known before it, the "
        "label looks at what happened after it."
    )
    return lead, "".join(parts)


def _ingest_table(inputs: ReportInputs) -> str:
    ingest = inputs.ingest
    if ingest is None:
        return not_available("ingest counts", inputs.why("ingest"))
    tables = ingest.get("tables", ingest)
    rows = []
    for name, info in tables.items() if isinstance(tables, dict) else []:
        if not isinstance(info, dict):
            continue
        if info.get("present") is False:
            rows.append((name, None, None, None, None, "table absent: its features are skipped"))
            continue
        rows_in = to_float(first(info, "rows_in", "rows"))
        valid = to_float(first(info, "rows_valid", "valid", "valid_rows"))
        bad = to_float(first(info, "rows_quarantined", "quarantined", "quarantined_rows"))
        share = first(info, "quarantined_share")
        if share is None and bad is not None and rows_in:
            share = bad / rows_in
        rules = info.get("rules") if isinstance(info.get("rules"), dict) else {}
        top = ", ".join(
            f"{rule} ({dig(v, 'count', default=v)})" for rule, v in list(rules.items())[:3]
        )
        rows.append((name, rows_in, valid, bad, share, top or None))
    if not rows:
        return not_available("ingest counts", "ingest.json has no per-table row counts")
    as_of = (
        f"Rows dated after {ingest['as_of']} count as future-dated. " if ingest.get("as_of") else ""
    )
    return table(
        [
            Column("Table"),
            Column("Rows in", "int"),
            Column("Valid", "int"),
            Column("Quarantined", "int"),
            Column("Quarantined share", "pct"),
            Column("Most frequent failed rules"),
        ],
        rows,
        caption=f"{as_of}Quarantined rows are kept with the rule they failed.",
    )


# --------------------------------------------------------------------------- data check
def data_check_section(inputs: ReportInputs, cfg: ReportConfig) -> Section:
    """The data check of ingest: tables, coverage, ignored columns, cutoffs, feature families."""
    check = inputs.data_check
    if check is None:
        return None, not_available("data check", inputs.why("data_check"))
    tables = check.get("tables") if isinstance(check.get("tables"), dict) else {}
    rows = []
    for name, info in tables.items():
        if not isinstance(info, dict):
            continue
        if not info.get("present"):
            status = "missing (required)" if info.get("required") else "absent (optional)"
            rows.append((name, status, None, None, None, None, None))
            continue
        ignored = info.get("ignored_columns")
        rows.append(
            (
                name,
                "present",
                info.get("rows"),
                info.get("first"),
                info.get("last"),
                info.get("coverage"),
                "unknown" if ignored is None else (", ".join(map(str, ignored)) or None),
            )
        )
    parts = [
        table(
            [
                Column("Table"),
                Column("Status"),
                Column("Rows", "int"),
                Column("First", "date"),
                Column("Last", "date"),
                Column("Coverage", "pct", tip="Share of customers with at least one row"),
                Column("Ignored columns", wrap=True),
            ],
            rows,
            caption="First and last: the event-time column of each table. Ignored columns are "
            "in the raw file but not mapped to the contract.",
        )
    ]
    cutoffs = [c for c in check.get("cutoffs") or [] if isinstance(c, dict)]
    if cutoffs:
        parts += [
            "<h3>Cutoff schedule</h3>",
            table(
                [
                    Column("Cutoff", "date"),
                    Column("Population", "int"),
                    Column("Labeled"),
                    Column("Churn rate", "pct"),
                ],
                [
                    (
                        c.get("cutoff"),
                        c.get("population"),
                        "yes" if c.get("labeled") else f"no: {c.get('unlabeled_reason')}",
                        c.get("churn_rate"),
                    )
                    for c in cutoffs
                ],
            ),
        ]
    elif check.get("cutoff_problem"):
        parts.append(not_available("cutoff schedule", str(check["cutoff_problem"])))
    families = check.get("families") if isinstance(check.get("families"), dict) else {}
    if families:
        parts += [
            "<h3>Feature families</h3>",
            table(
                [Column("Family"), Column("Runs")],
                [
                    (f, "yes" if i.get("runs") else f"skipped: {i.get('reason')}")
                    for f, i in families.items()
                    if isinstance(i, dict)
                ],
                sortable=False,
            ),
        ]
    parts.append(_notes(check.get("label_problems")))
    labeled = check.get("labeled_cutoffs")
    lead = (
        f"What the validated data holds before training: {fmt_int(len(rows))} tables, "
        f"{fmt_int(labeled)} labeled cutoff(s)."
        if labeled is not None
        else None
    )
    return lead, "".join(parts)


# --------------------------------------------------------------------------- churn rate
def churn_rate_section(inputs: ReportInputs, cfg: ReportConfig) -> Section:
    """Observed churn rate over labeled cutoffs with the population size (snapshot: one rate)."""
    labels = inputs.labels
    if labels is None or not {"cutoff", "label", "customer_id"} <= set(labels.columns):
        return None, not_available("churn rate over time", inputs.why("labels"))
    per = labels_per_cutoff(inputs)
    rate = per["churn_rate"].dropna()
    if rate.empty:
        return None, not_available("churn rate over time", "no cutoff has a label yet")
    if is_snapshot(inputs):
        # One cutoff: a chart of one point and "latest" or "over time" words would mislead.
        row = per.iloc[-1]
        lead = f"Share of the customers labeled as churned: {fmt_pct(row['churn_rate'])}."
        return lead, kv_table(
            [
                ("Cutoff", fmt_date(row["cutoff"])),
                ("Customers", fmt_int(row["customers"])),
                ("Churned", fmt_int(row["churners"])),
                ("Churn rate", fmt_pct(row["churn_rate"])),
            ]
        )
    lead = (
        f"Share of active customers who churned within the horizon after each cutoff: "
        f"between {fmt_pct(rate.min())} and {fmt_pct(rate.max())}, latest labeled "
        f"{fmt_pct(rate.iloc[-1])}."
    )
    return lead, image(
        charts.churn_rate_chart(per),
        "Churn rate per cutoff",
        "Line: churn rate (left axis). Bars: customers in the population "
        "(right axis); the latest cutoffs have no outcome yet.",
    )


# --------------------------------------------------------------------------- model card
def model_section(inputs: ReportInputs, cfg: ReportConfig) -> Section:
    """Training data, features, metrics against baseline and oracle, plots, backtest, gate."""
    parts = [
        _not_champion_note(inputs),
        "<h3>Training data</h3>",
        _splits(inputs),
        "<h3>Features by family</h3>",
        _feature_families(inputs),
        "<h3>Test metrics</h3>",
        _metrics_table(inputs),
    ]
    figures = []
    auc = to_float(dig(inputs.metrics, "test", "roc_auc"))
    for name, draw, alt in (
        ("calibration", charts.calibration_chart, "Calibration plot"),
        ("gains", charts.gains_chart, "Cumulative gains chart"),
        ("roc", lambda f: charts.roc_chart(f, auc), "ROC curve"),
        ("precision_recall", charts.precision_recall_chart, "Precision-recall curve"),
    ):
        frame = inputs.plots.get(name)
        figures.append(
            image(draw(frame), alt)
            if frame is not None and not frame.empty
            else not_available(alt.lower(), inputs.why(name))
        )
    snapshot = is_snapshot(inputs)
    parts += [
        f'<div class="grid">{"".join(figures)}</div>',
        f"<h3>Backtest{'' if snapshot else ': the same recipe at earlier cutoffs'}</h3>",
        _backtest(inputs, snapshot),
        "<h3>Registry gate</h3>",
        _gate(inputs),
        _notes(dig(inputs.train, "split", "notes"), dig(inputs.metrics, "notes")),
    ]
    lead = (
        "Trained on part of the customers and tested on the others, which it never saw, "
        "against a simple baseline."
        if snapshot
        else "Trained on earlier cutoffs and tested on a later one it never saw, against a "
        "simple baseline and, on simulated data, the true churn probabilities (oracle)."
    )
    return lead, "".join(parts)


def _not_champion_note(inputs: ReportInputs) -> str:
    """Say plainly which model the figures describe when the gate kept the old champion.

    With ``model.json`` (the train stage's record of the model every later stage used), the
    metrics, plots, explanations and scores all describe the champion, and only the training
    data table comes from this run. Without it (older outputs), the card described the newly
    trained model while the scores came from the champion.
    """
    described, trained, promoted_record = model_identity(inputs)
    if promoted_record is False and described and trained:
        return (
            '<div class="note" role="note"><strong>'
            f"The model trained in this run ({esc(trained)}) was not promoted; figures "
            f"describe champion {esc(described)}.</strong> Test metrics, plots, explanations "
            f"and scores all come from champion {esc(described)}; the training data table is "
            "from this run.</div>"
        )
    if inputs.model is not None:
        return ""
    _, _, promoted, details = gate_decision(inputs)
    if promoted is not False:
        return ""
    champion = details.get("champion_version")
    which = f"the champion (version {champion})" if champion else "the current champion"
    return (
        '<div class="note" role="note"><strong>This card describes the newly trained model, '
        "which the gate did not promote.</strong> Scores, reasons and changes in this report "
        f"come from {esc(which)}.</div>"
    )


def _splits(inputs: ReportInputs) -> str:
    train = inputs.train
    if train is None:
        return not_available("training splits", inputs.why("train"))
    split = first(train, "split", "splits")
    split = split if isinstance(split, dict) else {}
    sizes, cutoffs = (
        v if isinstance(v, dict) else {} for v in (split.get("sizes"), split.get("cutoffs"))
    )
    rows = []
    for name in dict.fromkeys([*sizes, *cutoffs]):
        dates = cutoffs.get(name) or []
        span = (
            f"{fmt_date(dates[0])} – {fmt_date(dates[-1])} ({len(dates)} cutoffs)"
            if len(dates) > 1
            else fmt_date(dates[0])
            if dates
            else None
        )
        positives, size = (
            to_float(dig(train, "metrics", name, "positives")),
            to_float(sizes.get(name)),
        )
        rate = positives / size if positives is not None and size else None
        rows.append((name, span, size, positives, rate))
    if not rows:
        return kv_table(list(scalars(train))[:30])
    extra = [f"split mode: {split['mode']}"] if split.get("mode") else []
    if train.get("best_iteration") is not None:
        extra.append(f"best iteration: {train['best_iteration']}")
    return table(
        [
            Column("Slice"),
            Column("Cutoffs"),
            Column("Rows", "int"),
            Column("Churners", "int"),
            Column("Churn rate", "pct"),
        ],
        rows,
        sortable=False,
        caption="; ".join(extra) or None,
    )


def _feature_families(inputs: ReportInputs) -> str:
    catalog = inputs.catalog
    if catalog is None or "family" not in catalog:
        return not_available("feature catalog", inputs.why("catalog"))
    catalog = catalog.assign(phase=catalog.get("phase", ""), kind=catalog.get("kind", ""))
    label = "description" if "description" in catalog else "name"
    rows = [
        (
            family,
            str(phase).replace("_", "-"),
            len(group),
            int((group["kind"] == "categorical").sum()),
            "; ".join(str(e) for e in group[label].head(3)),
        )
        for (family, phase), group in catalog.groupby(["family", "phase"], dropna=False)
    ]
    return table(
        [
            Column("Family"),
            Column("Journey phase"),
            Column("Features", "int"),
            Column("Categorical", "int"),
            Column("Examples"),
        ],
        rows,
        caption=f"{len(catalog)} features in total.",
    )


def _fraction_label(key: Any) -> str:
    """``"10"`` or ``0.1`` -> ``"10%"`` (the evaluate stage keys top fractions by percent)."""
    number = to_float(key)
    if number is None:
        return str(key)
    return f"{number:g}%" if number > 1 else f"{number * 100:g}%"


def _versus(model: Any, baseline: Any, better: str) -> Markup:
    """ "better" / "worse" than the baseline in the metric's own direction."""
    m, b = to_float(model), to_float(baseline)
    if m is None or b is None or better not in ("higher", "lower") or m == b:
        return esc("same" if m is not None and m == b else None)
    wins = m > b if better == "higher" else m < b
    return Markup(
        '<span class="better">better</span>' if wins else '<span class="worse">worse</span>'
    )


def _metrics_table(inputs: ReportInputs) -> str:
    metrics = inputs.metrics
    if metrics is None:
        return not_available("test metrics", inputs.why("metrics"))
    test = dig(metrics, "test", default={}) or {}
    base = dig(metrics, "baseline", "test", default=None) or dig(metrics, "baseline", default={})
    # (label, model, baseline, oracle, better direction, formatter)
    raw: list[tuple[str, Any, Any, Any, str, Callable[[Any], str]]] = []
    # Facts about the test rows, not model metrics: they go in the caption.
    seen = {"roc_auc_ratio_to_oracle", "n", "positives", "base_rate"}
    for key, label, better in METRIC_ROWS:
        if key in test or key in base:
            show = fmt_pct if key in SHARE_METRICS else fmt_number
            raw.append(
                (label, test.get(key), base.get(key), test.get(f"oracle_{key}"), better, show)
            )
            seen |= {key, f"oracle_{key}"}
    for key, label, show in (
        ("lift_at", "Lift in the riskiest {}", fmt_number),
        ("capture_at", "Churners caught in the riskiest {}", fmt_pct),
    ):
        seen.add(key)
        for frac, value in test[key].items() if isinstance(test.get(key), dict) else []:
            if _fraction_label(frac) == "10%" and f"{key[:-3]}_top_decile" in test:
                continue  # the same number as the top-decile row above
            raw.append(
                (
                    label.format(_fraction_label(frac)),
                    value,
                    dig(base, key, frac),
                    None,
                    "higher",
                    show,
                )
            )
    for key, value in test.items():  # anything else the evaluate stage reports
        if key not in seen and to_float(value) is not None:
            raw.append(
                (
                    LABELS.get(key, key.replace("_", " ")),
                    value,
                    base.get(key),
                    None,
                    "",
                    fmt_pct if key in SHARE_METRICS else fmt_number,
                )
            )
    if not raw:
        return not_available("test metrics", "metrics.json has no 'test' metrics")
    rows = [
        (label, show(m), show(b), show(o) if o is not None else None, _versus(m, b, better))
        for label, m, b, o, better, show in raw
    ]
    test_rows = f"{fmt_int(test['n'])} test rows, " if test.get("n") is not None else ""
    cutoffs = ", ".join(dig(metrics, "split", "test_cutoffs", default=[]) or [])
    ratio = to_float(test.get("roc_auc_ratio_to_oracle"))
    return table(
        [
            Column("Metric"),
            Column("Model", "num"),
            Column("Baseline", "num"),
            Column("Oracle (truth)", "num"),
            Column("Model vs baseline", "html"),
        ],
        rows,
        sortable=False,
        caption=(
            f"{test_rows}{fmt_int(test.get('positives'))} churners"
            + (f" ({fmt_pct(test['base_rate'])})" if to_float(test.get("base_rate")) else "")
            + (f", test cutoff {cutoffs}" if cutoffs else "")
            + ". "
            "Baseline: a simple model on a few features. Oracle: the simulator's "
            "true churn probabilities, the best any model could do (simulated data"
            " only)."
            + (
                f" The model reaches {ratio:.0%} of the oracle's ROC AUC."
                if ratio is not None
                else ""
            )
        ),
    )


def _kind(values: list[Any]) -> str:
    numbers = [to_float(v) for v in values if v is not None]
    if not numbers or any(n is None for n in numbers):
        return "text"
    return "int" if all(n.is_integer() for n in numbers) else "num"


def _backtest(inputs: ReportInputs, snapshot: bool = False) -> str:
    backtest = dig(inputs.metrics, "backtest")
    if isinstance(backtest, dict):  # {cutoff: {metric: value}} is accepted too
        backtest = [{"cutoff": k, **v} for k, v in backtest.items() if isinstance(v, dict)]
    if not isinstance(backtest, list) or not backtest:
        why = inputs.why("metrics") if inputs.metrics is None else "metrics.json has no backtest"
        if snapshot and inputs.metrics is not None:
            why = "snapshot data has one cutoff: there are no earlier cutoffs to backtest on"
        return not_available("backtest", why)
    rows = [dict(scalars(r)) for r in backtest if isinstance(r, dict)]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    keys.sort(key=lambda k: (k != "cutoff", k == "skipped"))  # stable: other keys keep order
    cols = [
        Column(
            LABELS.get(k, k.replace("_", " ")),
            "date" if k == "cutoff" else _kind([r.get(k) for r in rows]),
        )
        for k in keys
    ]
    return table(
        cols,
        [[r.get(k) for k in keys] for r in rows],
        caption="Each row retrains on the data before that cutoff and tests on it: "
        "stable numbers mean the model's quality does not hinge on one month.",
    )


def _gate(inputs: ReportInputs) -> str:
    if inputs.train is None:
        return not_available("gate decision", inputs.why("train"))
    headline, reason, promoted, details = gate_decision(inputs)
    badge = {True: "good", False: "bad"}.get(promoted, "neutral")
    registry = inputs.train.get("registry") or {}
    facts = [(k.replace("_", " "), v) for k, v in scalars(details) if k != "reason"]
    facts += [
        (k.replace("_", " "), registry.get(k))
        for k in ("registered_model_name", "model_version", "run_id")
        if registry.get(k)
    ]
    sentence = f" {esc(reason)}" if reason else ""
    return f'<p><span class="badge {badge}">{esc(headline)}</span>{sentence}</p>' + (
        kv_table(facts) if facts else ""
    )
