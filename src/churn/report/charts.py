"""Charts of the analyst report, drawn with matplotlib and returned as PNG bytes.

Figures are built with :class:`matplotlib.figure.Figure` directly rather than ``pyplot``: no
global figure registry, no backend selection at import time, and nothing to close, so drawing
is safe inside the pipeline and in tests. PNGs are written without a timestamp so the same
inputs give the same bytes.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

ACCENT = "#1f5f8b"
ACCENT2 = "#e07a1f"
MUTED = "#9aa5b1"
GRID = "#e3e8ef"
INK = "#1f2933"


def _figure(
    width: float,
    height: float,
    margins: tuple[float, float, float, float] = (0.75, 0.2, 0.6, 0.4),
) -> tuple[Figure, Axes]:
    """A figure with one styled axes; ``margins`` are left, right, bottom, top in inches.

    Fixed margins instead of a layout engine: the charts are few and known, and constrained
    layout would triple the drawing time of the report.
    """
    left, right, bottom, top = margins
    fig = Figure(figsize=(width, height), dpi=110)
    fig.subplots_adjust(
        left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height
    )
    ax = fig.add_subplot()
    ax.grid(True, color=GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(MUTED)
    ax.tick_params(colors=INK, labelsize=9)
    return fig, ax


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None}, facecolor="white")
    return buffer.getvalue()


def _numeric(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    out = frame.loc[:, list(columns)].apply(pd.to_numeric, errors="coerce")
    return out.dropna()


def churn_rate_chart(per_cutoff: pd.DataFrame) -> bytes:
    """Churn rate per labeled cutoff (line) over the population size (bars).

    Args:
        per_cutoff: Columns ``cutoff`` (timestamp), ``customers`` (count) and ``churn_rate``
            (fraction, NaN for scoring-only cutoffs whose horizon is not yet observed).

    Returns:
        PNG bytes.
    """
    fig, ax = _figure(9.0, 3.6, margins=(0.75, 0.85, 0.45, 0.45))
    dates = pd.to_datetime(per_cutoff["cutoff"], utc=True).dt.tz_localize(None)
    rate = pd.to_numeric(per_cutoff["churn_rate"], errors="coerce")
    labeled = rate.notna().to_numpy()
    bars = ax.twinx()
    width = 20  # days: monthly cutoffs leave a visible gap between bars
    bars.bar(dates[labeled], per_cutoff["customers"][labeled], width=width, color="#dbe5ee")
    bars.bar(
        dates[~labeled],
        per_cutoff["customers"][~labeled],
        width=width,
        color="#f3dcc6",
        label="scoring cutoff (no label yet)",
    )
    bars.set_ylabel("customers in population", color=MUTED, fontsize=9)
    bars.tick_params(colors=MUTED, labelsize=8)
    bars.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    for side in ("top", "left"):
        bars.spines[side].set_visible(False)
    bars.spines["right"].set_color(MUTED)
    # Draw the rate above the bars: the twin axis is created later, so lift the main one.
    ax.set_zorder(bars.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.plot(
        dates[labeled],
        rate[labeled],
        color=ACCENT,
        marker="o",
        markersize=4,
        linewidth=2,
        label="churn rate within horizon",
    )
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=1))
    ax.set_ylim(0, max(0.01, float(rate.max(skipna=True) or 0) * 1.25))
    ax.set_ylabel("churn rate", color=ACCENT, fontsize=9)
    handles = ax.get_legend_handles_labels()[0] + bars.get_legend_handles_labels()[0]
    if handles:
        ax.legend(
            handles=handles,
            loc="lower left",
            bbox_to_anchor=(0, 1.0),
            ncol=2,
            fontsize=8,
            frameon=False,
        )
    return _png(fig)


def calibration_chart(calibration: pd.DataFrame) -> bytes:
    """Reliability diagram: observed churn share against the mean predicted probability."""
    data = _numeric(calibration, "mean_predicted", "fraction_positive")
    fig, ax = _figure(4.6, 4.0)
    top = float(max(data.max().max(), 0.05)) * 1.05
    ax.plot([0, top], [0, top], color=MUTED, linestyle="--", linewidth=1, label="perfect")
    ax.plot(
        data["mean_predicted"],
        data["fraction_positive"],
        color=ACCENT,
        marker="o",
        markersize=5,
        linewidth=2,
        label="model",
    )
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel("mean predicted probability", fontsize=9)
    ax.set_ylabel("observed churn share", fontsize=9)
    ax.set_title("Calibration (test cutoff)", fontsize=10, color=INK)
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    return _png(fig)


def gains_chart(gains: pd.DataFrame) -> bytes:
    """Cumulative gains: share of churners captured when contacting the riskiest customers."""
    data = _numeric(gains, "fraction_customers", "fraction_churners_captured")
    fig, ax = _figure(4.6, 4.0)
    ax.plot([0, 1], [0, 1], color=MUTED, linestyle="--", linewidth=1, label="random order")
    ax.plot(
        data["fraction_customers"],
        data["fraction_churners_captured"],
        color=ACCENT,
        linewidth=2,
        label="model ranking",
    )
    top = data[data["fraction_customers"] <= 0.1 + 1e-9]
    if not top.empty:
        x, y = top.iloc[-1]
        ax.scatter([x], [y], color=ACCENT2, zorder=3, s=24)
        ax.annotate(
            f"top {x:.0%}: {y:.0%} of churners",
            (x, y),
            xytext=(12, -4),
            textcoords="offset points",
            fontsize=8,
            color=INK,
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel("customers contacted (riskiest first)", fontsize=9)
    ax.set_ylabel("churners captured", fontsize=9)
    ax.set_title("Cumulative gains (test cutoff)", fontsize=10, color=INK)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    return _png(fig)


def roc_chart(roc: pd.DataFrame, auc: float | None = None) -> bytes:
    """ROC curve with the area under it in the legend when known."""
    data = _numeric(roc, "fpr", "tpr").sort_values(["fpr", "tpr"])
    fig, ax = _figure(4.6, 4.0)
    ax.plot([0, 1], [0, 1], color=MUTED, linestyle="--", linewidth=1, label="random")
    label = "model" if auc is None else f"model (AUC {auc:.3f})"
    ax.plot(data["fpr"], data["tpr"], color=ACCENT, linewidth=2, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false positive rate", fontsize=9)
    ax.set_ylabel("true positive rate", fontsize=9)
    ax.set_title("ROC (test cutoff)", fontsize=10, color=INK)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    return _png(fig)


def precision_recall_chart(curve: pd.DataFrame) -> bytes:
    """Precision against recall: how clean the contact list is as it grows."""
    data = _numeric(curve, "recall", "precision").sort_values("recall")
    fig, ax = _figure(4.6, 4.0)
    ax.plot(data["recall"], data["precision"], color=ACCENT, linewidth=2, label="model")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel("recall (churners found)", fontsize=9)
    ax.set_ylabel("precision (contacted who churn)", fontsize=9)
    ax.set_title("Precision-recall (test cutoff)", fontsize=10, color=INK)
    ax.legend(fontsize=8, frameon=False, loc="upper right")
    return _png(fig)


def share_bars_chart(shares: pd.Series, title: str) -> bytes:
    """Horizontal bars of shares that sum to one (e.g. revenue at risk by family)."""
    data = pd.to_numeric(shares, errors="coerce").dropna().sort_values()
    fig, ax = _figure(4.6, 0.8 + 0.38 * max(len(data), 2), margins=(1.1, 0.2, 0.4, 0.35))
    colors = [ACCENT if v >= 0 else ACCENT2 for v in data.to_numpy()]
    ax.barh([str(i) for i in data.index], data.to_numpy(), color=colors, height=0.6)
    for y, v in enumerate(data.to_numpy()):
        ax.text(v, y, f" {v:.0%}", va="center", fontsize=8, color=INK)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlim(
        min(0.0, float(np.min(data.to_numpy(), initial=0.0))),
        float(np.max(data.to_numpy(), initial=0.0)) * 1.2 + 1e-9,
    )
    ax.set_title(title, fontsize=10, color=INK)
    ax.grid(axis="y", visible=False)
    return _png(fig)
