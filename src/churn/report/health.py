"""The "Model health" section: what ``churn monitor`` found (reports/monitor.json).

Status and reasons, drift grouped by feature family (the catalog's families), the score
distribution over the scored and backfilled cutoffs, and estimated against realized ROC AUC by
cutoff. A pure function of :class:`ReportInputs` like the other sections; the charts are drawn
here because nothing else in the report uses them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from churn.report.charts import ACCENT, ACCENT2, MUTED, _figure, _png
from churn.report.html import (
    Column,
    Markup,
    esc,
    fmt_number,
    fmt_pct,
    image,
    kpis,
    not_available,
    ordered_list,
    table,
)

if TYPE_CHECKING:
    from churn.config import ReportConfig
    from churn.report.inputs import ReportInputs

Section = tuple[str | None, str]

_STATUS_WORDS = {
    "ok": "ok: no drift or performance rule fired",
    "warn": "warn: look at the reasons before the next scoring",
    "retrain": "retrain: the champion no longer fits the population",
}


def drift_by_family(drift: pd.DataFrame, catalog: pd.DataFrame | None, psi_warn: float
                    ) -> pd.DataFrame:
    """Return per feature family: features, max PSI, the most drifted one, features over warn."""
    families = (catalog.set_index("name")["family"] if catalog is not None
                and {"name", "family"} <= set(catalog.columns) else pd.Series(dtype="str"))
    frame = drift.assign(family=drift["feature"].map(families).astype("object").fillna("other"))
    frame = frame.sort_values("psi", ascending=False)
    grouped = frame.groupby("family", sort=False)
    return pd.DataFrame({
        "features": grouped.size(),
        "max_psi": grouped["psi"].max(),
        "most_drifted": grouped["feature"].first(),
        "over_warn": grouped["psi"].apply(lambda s: int((s >= psi_warn).sum())),
    }).reset_index().sort_values("max_psi", ascending=False)


def score_distribution_chart(by_cutoff: pd.DataFrame) -> bytes:
    """Median, 10th-90th percentile band and mean of the churn probability per cutoff."""
    fig, ax = _figure(9.0, 3.4, margins=(0.75, 0.2, 0.45, 0.5))
    dates = pd.to_datetime(by_cutoff["cutoff"])
    ax.fill_between(dates, by_cutoff["score_q10"], by_cutoff["score_q90"], color="#dbe5ee",
                    label="10th-90th percentile")
    ax.plot(dates, by_cutoff["score_q50"], color=ACCENT, marker="o", markersize=4, label="median")
    ax.plot(dates, by_cutoff["score_mean"], color=ACCENT2, linestyle="--", label="mean")
    ax.set_ylabel("churn probability", fontsize=9)
    ax.legend(fontsize=8, frameon=False, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3)
    return _png(fig)


def auc_chart(by_cutoff: pd.DataFrame, reference: float | None) -> bytes:
    """Estimated ROC AUC (with its band) and realized ROC AUC per cutoff."""
    fig, ax = _figure(9.0, 3.4, margins=(0.75, 0.2, 0.45, 0.5))
    dates = pd.to_datetime(by_cutoff["cutoff"])
    band = by_cutoff["estimated_roc_auc_band"].apply(
        lambda b: b if isinstance(b, list | tuple) and len(b) == 2 else [None, None])
    low = pd.to_numeric(band.str[0], errors="coerce")
    high = pd.to_numeric(band.str[1], errors="coerce")
    ax.fill_between(dates, low, high, color="#dbe5ee", label="estimate band (label draws)")
    ax.plot(dates, pd.to_numeric(by_cutoff["estimated_roc_auc"], errors="coerce"),
            color=ACCENT, marker="o", markersize=4, label="estimated")
    realized = pd.to_numeric(by_cutoff["realized_roc_auc"], errors="coerce")
    ax.plot(dates, realized, color=ACCENT2, marker="s", markersize=5, linestyle="none",
            label="realized (horizon closed)")
    if reference is not None:
        ax.axhline(reference, color=MUTED, linestyle=":", label="reference (test)")
    ax.set_ylabel("ROC AUC", fontsize=9)
    ax.legend(fontsize=8, frameon=False, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=4)
    return _png(fig)


def health_section(inputs: ReportInputs, cfg: ReportConfig) -> Section:
    """Model health from ``churn monitor``: status, reasons, drift, estimated vs realized."""
    monitor: dict[str, Any] | None = inputs.monitor
    if not monitor:
        return None, not_available("model health", inputs.why("monitor"))
    status = monitor.get("status", "?")
    current = monitor.get("current") or {}
    estimated = current.get("estimated") or {}
    reference = (monitor.get("reference") or {}).get("roc_auc")
    band = (estimated.get("band") or {}).get("roc_auc") or [None, None]
    lead = (f"Status {status} at the scoring cutoff {monitor.get('cutoff')} "
            f"({_STATUS_WORDS.get(status, status)}).")
    parts = [kpis([
        ("Status", status, f"model {monitor.get('model_version')}"),
        ("Estimated ROC AUC", fmt_number(estimated.get("roc_auc")),
         f"band {fmt_number(band[0])}-{fmt_number(band[1])}"),
        ("Reference ROC AUC", fmt_number(reference), "champion on its test cutoffs"),
        ("Expected churn rate", fmt_pct(estimated.get("churn_rate")), "mean probability"),
        ("Score PSI", fmt_number(current.get("score_psi")), "vs training reference"),
    ])]
    reasons = [r.get("message", "") for r in monitor.get("reasons") or []]
    parts.append("<h3>Reasons</h3>" + (ordered_list(reasons[:15]) if reasons
                                        else esc("none: every rule passed")))
    drift = pd.DataFrame(monitor.get("drift") or [])
    psi_warn = float((monitor.get("thresholds") or {}).get("psi_warn", 0.1))
    if not drift.empty:
        families = drift_by_family(drift, inputs.catalog, psi_warn)
        parts.append("<h3>Drift by feature family</h3>" + table(
            [Column("Family"), Column("Features", "int"), Column("Max PSI", "num"),
             Column("Most drifted feature"), Column(f"PSI >= {psi_warn:g}", "int")],
            families[["family", "features", "max_psi", "most_drifted", "over_warn"]]
            .itertuples(index=False),
            caption="PSI of each feature at the scoring cutoff against the champion's last "
            "training cutoffs (quantile bins of the reference).",
        ))
        top = drift.head(10)
        parts.append(table(
            [Column("Feature"), Column("PSI", "num"), Column("JS distance", "num"),
             Column("Missing before", "pct"), Column("Missing now", "pct"),
             Column("Unseen categories", "pct")],
            top[["feature", "psi", "js_distance", "missing_rate_reference",
                 "missing_rate_current", "unseen_share"]].itertuples(index=False),
            caption="The ten most drifted features.",
        ))
    elif monitor.get("drift_note"):
        parts.append(not_available("feature drift", monitor["drift_note"]))
    by_cutoff = pd.DataFrame(monitor.get("by_cutoff") or [])
    if not by_cutoff.empty:
        parts.append("<h3>Score distribution over time</h3>" + image(
            score_distribution_chart(by_cutoff), "Score distribution per cutoff",
            "Backfilled cutoffs are the champion scoring past cutoffs after its training."))
        parts.append("<h3>Estimated and realized performance</h3>" + image(
            auc_chart(by_cutoff, reference), "Estimated and realized ROC AUC per cutoff",
            "Estimated from the calibrated probabilities (confidence-based); realized once "
            "the label horizon has closed."))
        comparison = monitor.get("estimated_vs_realized") or {}
        if comparison.get("cutoffs"):
            parts.append(esc(
                f"Over {comparison['cutoffs']} closed cutoffs the estimate was off by "
                f"{fmt_number(comparison.get('mean_absolute_difference'))} ROC AUC on average "
                f"(mean signed {fmt_number(comparison.get('mean_difference'))})."))
    return lead, Markup("".join(str(p) for p in parts))
