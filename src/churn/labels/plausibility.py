"""Whether labels are plausible: per-cutoff counts and the churn rates only broken labels give.

:func:`describe_cutoffs` reports every cutoff of a labels frame (:mod:`churn.labels.build`)
with its population, churners and why it is unlabeled; :func:`find_implausible_cutoffs` names
the labeled cutoffs whose churn rate wrong end dates or a wrong data end would explain, and
:func:`check_label_plausibility` stops the run on them. The data check (``churn ingest``,
``churn check-data``) and ``churn label`` share them, so both say the same.
"""

from __future__ import annotations

import pandas as pd

from churn.config import LabelConfig
from churn.errors import DataContractError


def summarize_labels(labels: pd.DataFrame) -> pd.DataFrame:
    """Return per-cutoff population size, positives and label rate (NaN when unobserved)."""
    grouped = labels.groupby("cutoff", sort=True)["label"]
    return add_label_rate(
        pd.DataFrame(
            {
                "customers": grouped.size(),
                "observed": grouped.count(),
                "churned": grouped.sum(min_count=1).astype("float64"),
            }
        )
    )


def add_label_rate(counts: pd.DataFrame) -> pd.DataFrame:
    """Return ``counts`` (``observed`` and ``churned`` per cutoff) with ``label_rate``: the
    churned share of the observed rows, NaN where none is observed."""
    return counts.assign(
        label_rate=counts["churned"] / counts["observed"].where(counts["observed"] > 0)
    )


MIN_CHURNERS_FOR_RATIO = 10
"""A cutoff is compared with the median rate only when it has this many churners (noise)."""

MIN_EXPECTED_CHURNERS_FOR_ZERO = 10.0
"""Zero churners is implausible when the other cutoffs' median rate predicts this many."""

LABEL_CHECKS = (
    "check the labels: are subscriptions.ended_at values real end dates (not a bulk close or "
    "migration date, not missing for cancelled contracts)? Is the data end right (stray rows "
    "or tables ending on different dates; see reports/ingest.json, ingest.data_end)? Is "
    "label.grace_days right for how renewals are recorded?"
)


def describe_cutoffs(
    labels: pd.DataFrame, cfg: LabelConfig, end: pd.Timestamp | None
) -> list[dict[str, object]]:
    """Return per cutoff the population, churners, churn rate and why it is unlabeled.

    Args:
        labels: A labels frame.
        cfg: Label configuration (horizon and grace for the reasons).
        end: The end of the data the labels observe up to (``None`` in entity mode).

    Returns:
        JSON-ready rows ``{"cutoff", "population", "labeled", "churners", "churn_rate",
        "unlabeled_reason"}`` in cutoff order; churners and rate are ``None`` when unlabeled.
    """
    return describe_cutoff_counts(summarize_labels(labels), cfg, end)


def describe_cutoff_counts(
    counts: pd.DataFrame, cfg: LabelConfig, end: pd.Timestamp | None
) -> list[dict[str, object]]:
    """:func:`describe_cutoffs` of the counts :func:`summarize_labels` gives (or
    :func:`churn.labels.build.count_labels`, which counts without building the rows)."""
    rows: list[dict[str, object]] = []
    for cutoff, row in counts.iterrows():
        labeled = bool(row.observed > 0)
        reason = None
        if not labeled:
            reach = pd.Timestamp(cutoff) + pd.Timedelta(days=cfg.horizon_days + cfg.grace_days)
            reason = (
                f"horizon {cfg.horizon_days} d + grace {cfg.grace_days} d runs to "
                f"{reach.date()}, past the data end "
                f"{'unknown' if end is None else end.date()}"
            )
        rows.append(
            {
                "cutoff": pd.Timestamp(cutoff).date().isoformat(),
                "population": int(row.customers),
                "labeled": labeled,
                "churners": int(row.churned) if labeled else None,
                "churn_rate": round(float(row.label_rate), 6) if labeled else None,
                "unlabeled_reason": reason,
            }
        )
    return rows


def find_implausible_cutoffs(cutoffs: list[dict[str, object]], cfg: LabelConfig) -> list[str]:
    """Return one sentence per labeled cutoff whose churn rate only broken labels explain.

    A labeled cutoff is implausible when its churn rate is above ``cfg.max_churn_rate``; or,
    with at least two other labeled cutoffs, when it has at least
    :data:`MIN_CHURNERS_FOR_RATIO` churners and a rate above ``cfg.max_rate_ratio`` times the
    others' median rate; or when it has no churner although the others' median rate predicts
    at least :data:`MIN_EXPECTED_CHURNERS_FOR_ZERO` (the typical sign of a data end after the
    real end of the subscription data).

    Args:
        cutoffs: Rows of :func:`describe_cutoffs`.
        cfg: Label configuration (``max_churn_rate``, ``max_rate_ratio``).
    """
    labeled = [c for c in cutoffs if c["labeled"]]
    problems = []
    for row in labeled:
        rate, churners, population = (
            float(row["churn_rate"]),  # type: ignore[arg-type]
            int(row["churners"]),  # type: ignore[call-overload]
            int(row["population"]),  # type: ignore[call-overload]
        )
        where = f"cutoff {row['cutoff']}: {churners:,} of {population:,} churned ({rate:.1%})"
        if rate > cfg.max_churn_rate:
            problems.append(f"{where}, above label.max_churn_rate = {cfg.max_churn_rate:.0%}")
            continue
        others = [float(c["churn_rate"]) for c in labeled if c is not row]  # type: ignore[arg-type]
        if len(others) < 2:
            continue
        median = float(pd.Series(others).median())
        if churners >= MIN_CHURNERS_FOR_RATIO and median > 0 and rate > cfg.max_rate_ratio * median:
            problems.append(
                f"{where}, more than label.max_rate_ratio = {cfg.max_rate_ratio:g} times the "
                f"other cutoffs' median rate {median:.1%}"
            )
        elif churners == 0 and population * median >= MIN_EXPECTED_CHURNERS_FOR_ZERO:
            problems.append(
                f"{where}, although the other cutoffs' median rate {median:.1%} predicts about "
                f"{population * median:.0f} churners"
            )
    return problems


def check_label_plausibility(cutoffs: list[dict[str, object]], cfg: LabelConfig) -> None:
    """Stop when :func:`find_implausible_cutoffs` finds a cutoff.

    Raises:
        DataContractError: Naming every implausible cutoff and what to check in the labels.
    """
    problems = find_implausible_cutoffs(cutoffs, cfg)
    if problems:
        raise DataContractError(
            "implausible churn rate(s), labels are likely wrong:\n  - "
            + "\n  - ".join(problems)
            + f"\n{LABEL_CHECKS}"
        )
