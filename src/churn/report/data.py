"""Reading the report's inputs: tolerant lookups, joins and the facts several sections share.

Pure functions of :class:`churn.report.inputs.ReportInputs` and plain frames; no HTML here (see
:mod:`churn.report.html`). JSON reports come from other stages whose keys may drift, so every
lookup tolerates a missing key or an unexpected type and returns ``None`` instead of raising.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churn.report.html import fmt_date, fmt_number, to_float

if TYPE_CHECKING:
    from churn.report.inputs import ReportInputs

# The registry gate's outcomes (churn.tracking.registry.GateDecision.outcome) in words.
GATE_OUTCOMES = {
    "first_model": "first model: now the champion",
    "promoted": "promoted to champion",
    "incomparable": "promoted to champion (the old champion could not be scored)",
    "rejected": "not promoted: registered as challenger, the champion stays",
}


def dig(payload: Any, *path: str, default: Any = None) -> Any:
    """Return ``payload[path[0]][path[1]]...`` or ``default`` when any step is missing."""
    for key in path:
        if not isinstance(payload, dict) or key not in payload:
            return default
        payload = payload[key]
    return payload


def first(payload: Any, *keys: str) -> Any:
    """Return the first present, non-null value among ``keys`` of a dict."""
    if isinstance(payload, dict):
        for key in keys:
            if payload.get(key) is not None:
                return payload[key]
    return None


def utc(values: pd.Series) -> pd.Series:
    """Timestamps as UTC; unparseable values become NaT."""
    return pd.to_datetime(values, utc=True, errors="coerce")


def num(frame: pd.DataFrame, column: str) -> pd.Series:
    """A numeric column, or all-NaN when the frame lacks it."""
    if column not in frame:
        return pd.Series(float("nan"), index=frame.index)
    return pd.to_numeric(frame[column], errors="coerce")


def feature_descriptions(inputs: ReportInputs) -> dict[str, str]:
    """Feature name -> catalog description (a noun phrase that reads after a number)."""
    catalog = inputs.catalog
    if catalog is None or not {"name", "description"} <= set(catalog.columns):
        return {}
    return dict(zip(catalog["name"].astype(str), catalog["description"].astype(str), strict=True))


def scalars(payload: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """Flatten nested dicts to dotted keys, keeping scalars and short lists only."""
    for key, value in payload.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from scalars(value, f"{name}.")
        elif isinstance(value, list):
            if len(value) <= 6 and all(not isinstance(v, dict | list) for v in value):
                yield name, ", ".join(str(v) for v in value)
        else:
            yield name, value


def score_cutoff(inputs: ReportInputs) -> pd.Timestamp | None:
    """The cutoff of the latest scores, if scores are available."""
    scores = inputs.scores
    if scores is None or "cutoff" not in scores or scores.empty:
        return None
    latest = utc(scores["cutoff"]).max()
    return None if pd.isna(latest) else latest


def score_cutoff_text(inputs: ReportInputs) -> str:
    """The score cutoff as a date, or a note that scores are missing."""
    cutoff = score_cutoff(inputs)
    return fmt_date(cutoff) if cutoff is not None else "not available"


def model_version(inputs: ReportInputs) -> str | None:
    """The registered model version from ``train.json``, when it says."""
    train = inputs.train or {}
    version = first(train.get("registry") or {}, "model_version", "version")
    version = version if version is not None else first(train, "model_version", "version")
    return None if version is None else f"v{str(version).removeprefix('v')}"


def model_identity(inputs: ReportInputs) -> tuple[str | None, str | None, bool | None]:
    """Read ``model.json``: the version the figures describe, the one trained, and promotion.

    Returns:
        ``(described version, trained version, promoted)`` as ``"v5"``-style texts and a flag;
        all ``None`` when the record is missing (older pipelines wrote none).
    """
    record = inputs.model or {}

    def version(key: str) -> str | None:
        value = record.get(key)
        return None if value is None else f"v{str(value).removeprefix('v')}"

    promoted = record.get("promoted")
    return (
        version("version"),
        version("trained_version"),
        promoted if isinstance(promoted, bool) else None,
    )


def gate_decision(inputs: ReportInputs) -> tuple[str, str | None, bool | None, dict[str, Any]]:
    """Read the champion/challenger gate's decision from ``train.json``.

    Returns:
        ``(headline, reason, promoted or None when unknown, details)``.
    """
    train = inputs.train or {}
    gate = dig(train, "registry", "gate")
    gate = gate if gate is not None else first(train, "gate", "gate_decision")
    details = gate if isinstance(gate, dict) else {}
    reason = first(details, "reason", "message") or (gate if isinstance(gate, str) else None)
    outcome = first(details, "outcome", "decision")
    alias = first(details, "alias") or dig(train, "registry", "alias")
    promoted = first(details, "promoted")
    if not isinstance(promoted, bool):
        promoted = gate if isinstance(gate, bool) else None
    if promoted is None and alias in ("champion", "challenger"):
        promoted = alias == "champion"
    if outcome in GATE_OUTCOMES:
        headline = GATE_OUTCOMES[outcome]
    elif promoted is not None:
        headline = GATE_OUTCOMES["promoted" if promoted else "rejected"]
    else:
        headline = "gate decision not recorded in train.json"
    return headline, reason, promoted, details


def revenue_unit(inputs: ReportInputs, short: bool = False) -> str:
    """How the scores' revenue at risk relates to MRR, read off the numbers themselves.

    The score stage documents ``churn_probability * 12 * mrr`` (a year of revenue); measuring
    the ratio instead of assuming it keeps the labels true if that convention changes.
    """
    scores = inputs.scores
    ratio = float("nan")
    if scores is not None and {"expected_revenue_at_risk", "mrr", "churn_probability"} <= set(
        scores.columns
    ):
        base = num(scores, "churn_probability") * num(scores, "mrr")
        ratio = (num(scores, "expected_revenue_at_risk") / base.where(base > 0)).median()
    if abs(ratio - 12) < 0.01:
        return (
            "probability × 12 × MRR"
            if short
            else ("churn probability × 12 × MRR: a year of revenue")
        )
    if abs(ratio - 1) < 0.001:
        return "probability × MRR" if short else "churn probability × MRR: a month of revenue"
    return "expected loss" if short else "expected revenue lost to churn"


def is_snapshot(inputs: ReportInputs) -> bool:
    """Whether the run has a single cutoff, so no "over time" or "later cutoff" wording fits.

    True in entity mode (read from the ingest report or the data check) and for any run whose
    labels hold exactly one cutoff.
    """
    if "entity" in (dig(inputs.ingest, "mode"), dig(inputs.data_check, "mode")):
        return True
    labels = inputs.labels
    return labels is not None and "cutoff" in labels and labels["cutoff"].nunique() == 1


def per_cutoff(labels: pd.DataFrame) -> pd.DataFrame:
    """Customers, labeled rows, churners, churn rate and MRR per cutoff of a labels frame."""
    frame = labels.assign(
        cutoff=utc(labels["cutoff"]), _y=num(labels, "label"), _mrr=num(labels, "mrr")
    )
    groups = frame.groupby("cutoff", sort=True)
    return pd.DataFrame(
        {
            "customers": groups["customer_id"].nunique(),
            "labeled": groups["_y"].count(),
            "churners": groups["_y"].sum(min_count=1),
            "churn_rate": groups["_y"].mean(),
            "mrr": groups["_mrr"].sum(min_count=1),
        }
    ).reset_index()


def labels_per_cutoff(inputs: ReportInputs) -> pd.DataFrame:
    """:func:`per_cutoff` of the labels, computed once by the renderer when it could be."""
    if inputs.labels_per_cutoff is not None:
        return inputs.labels_per_cutoff
    assert inputs.labels is not None
    return per_cutoff(inputs.labels)


def reason_texts(row: pd.Series, descriptions: dict[str, str]) -> list[str]:
    """Plain-language reasons of one scored customer, most important first.

    Uses the score stage's ``reason_{i}_text``; falls back to "<description>: <value>" built
    from ``reason_{i}_feature`` and ``reason_{i}_value`` when a text is missing.
    """
    numbers = sorted({int(m.group(1)) for c in row.index if (m := re.match(r"reason_(\d+)_", c))})
    texts = []
    for i in numbers:
        text = row.get(f"reason_{i}_text")
        feature = row.get(f"reason_{i}_feature")
        if isinstance(text, str) and text.strip():
            texts.append(text)
        elif isinstance(feature, str) and feature:
            value = row.get(f"reason_{i}_value")
            texts.append(f"{descriptions.get(feature, feature)}: {fmt_number(value, 2)}")
    return texts


def moved_texts(row: pd.Series, descriptions: dict[str, str]) -> list[str]:
    """What moved one customer's score since the last run, most first (changes file row).

    Uses the score stage's ``moved_{i}_text`` ("support tickets ... rose from 0 to 4"); falls
    back to "raised risk: <description>" from ``moved_{i}_feature`` and the sign of
    ``moved_{i}_delta`` when a text is missing (an older changes file, or no feature values).
    """
    numbers = sorted({int(m.group(1)) for c in row.index if (m := re.match(r"moved_(\d+)_", c))})
    items = []
    for i in numbers:
        text, feature = row.get(f"moved_{i}_text"), row.get(f"moved_{i}_feature")
        delta = to_float(row.get(f"moved_{i}_delta"))
        if isinstance(text, str) and text.strip():
            items.append(text)
        elif isinstance(feature, str) and feature:
            arrow = "" if delta is None else ("raised risk: " if delta > 0 else "lowered risk: ")
            items.append(f"{arrow}{descriptions.get(feature, feature)}")
    return items


def main_driver(row: pd.Series) -> str | None:
    shares = {
        c.removeprefix("risk_share_"): to_float(row[c])
        for c in row.index
        if c.startswith("risk_share_") and c not in ("risk_share_pre_sale", "risk_share_post_sale")
    }
    shares = {k: v for k, v in shares.items() if v is not None}
    if not shares:
        return None
    family = max(shares, key=shares.__getitem__)
    return f"{family} ({shares[family]:.0%})"


def decile_tip(scores: pd.DataFrame) -> str | None:
    """Say which end of ``risk_decile`` is the risky one, read off the scores."""
    if not {"risk_decile", "churn_probability"} <= set(scores.columns):
        return None
    means = num(scores, "churn_probability").groupby(num(scores, "risk_decile")).mean()
    if len(means) < 2:
        return None
    riskiest = means.index[-1] if means.iloc[-1] > means.iloc[0] else means.index[0]
    return f"{riskiest:g} = the riskiest tenth of scored customers"


def find_latest_rows(customer_ids: pd.Series, cutoffs: pd.Series) -> np.ndarray:
    """Positions of each customer's row at their latest cutoff, ascending.

    Without a sort of every row: the customers are factorized once, their latest cutoff is a
    group maximum, and among a customer's rows at that cutoff the last in frame order is
    taken (at a million customers 9.6M label rows: about 1 s against 3 s for a stable sort
    and ``drop_duplicates``). A missing cutoff (``NaT``) ranks below every date, so a row of
    unknown time is a customer's latest only when all their rows are undated. Missing ids
    form one customer of their own, as in ``drop_duplicates``.

    Args:
        customer_ids: One id per row.
        cutoffs: One UTC timestamp per row, aligned with ``customer_ids``.

    Returns:
        One position per distinct customer, ascending.
    """
    codes, uniques = pd.factorize(customer_ids, use_na_sentinel=False)
    if not len(codes):
        return np.zeros(0, dtype=np.int64)
    # NaT is the smallest int64, so it loses every maximum to a date.
    times = pd.DatetimeIndex(cutoffs).asi8
    latest = np.full(len(uniques), np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(latest, codes, times)
    at_latest = np.flatnonzero(times == latest[codes])
    last = np.full(len(uniques), -1, dtype=np.int64)
    np.maximum.at(last, codes[at_latest], at_latest)
    return np.sort(last)


def with_segments(inputs: ReportInputs) -> pd.DataFrame:
    """Scores with segment attributes they lack joined by customer (see ``churn.report``).

    Returns ``inputs.segmented_scores`` when the renderer has already joined them (as a new
    frame object sharing its columns, so a section adding a column leaves the others alone).
    """
    if inputs.segmented_scores is not None:
        return inputs.segmented_scores.copy(deep=False)
    frame = inputs.scores.copy()
    wanted = ("plan", *inputs.segment_columns)
    # Most specific first: the customer's row at the score cutoff, then the customers table's
    # static attributes, then the customer's latest label row (the plan may have changed).
    # Each source is a function giving one row per customer, called only when a column still
    # has gaps: the latest label row per customer looks at every label row (9.6M at a million
    # customers) and is rarely needed. A source's rows and their positions for the scores'
    # customers are found once, then every column is a take.
    sources: list[tuple[pd.Index, Callable[[], pd.DataFrame]]] = []
    labels = inputs.labels
    has_labels = labels is not None and {"customer_id", "cutoff"} <= set(labels.columns)
    if has_labels:
        labels = labels[[c for c in labels.columns if c in ("customer_id", "cutoff", *wanted)]]
        cutoffs = utc(labels["cutoff"])
        sources.append(
            (
                labels.columns,
                lambda: labels[(cutoffs == score_cutoff(inputs)).to_numpy()].drop_duplicates(
                    "customer_id", keep="last"
                ),
            )
        )
    if inputs.customers is not None and "customer_id" in inputs.customers:
        sources.append(
            (
                inputs.customers.columns,
                lambda: inputs.customers.drop_duplicates("customer_id", keep="last"),
            )
        )
    if has_labels:
        sources.append(
            (
                labels.columns,
                lambda: labels.take(find_latest_rows(labels["customer_id"], cutoffs)),
            )
        )
    ids = frame["customer_id"].astype(str)
    latest_rows: dict[int, tuple[pd.DataFrame, np.ndarray]] = {}
    for col in wanted:
        for number, (columns, source) in enumerate(sources):
            if col in frame and frame[col].notna().all():
                break
            if col not in columns:
                continue
            if number not in latest_rows:
                latest = source()
                # Where each scored customer's row is (-1: none), as Series.map would look it up.
                positions = pd.Index(latest["customer_id"].astype(str)).get_indexer(ids)
                latest_rows[number] = (latest, positions)
            latest, positions = latest_rows[number]
            found = pd.Series(
                pd.api.extensions.take(latest[col].to_numpy(), positions, allow_fill=True),
                index=frame.index,
            )
            current = frame.get(col)
            if current is None or current.isna().all():
                frame[col] = found
            else:
                # A partly filled column and the values found may differ in dtype (a float
                # column of missing values against text): combine as objects, never by an
                # implicit cast (pandas warns, and will raise, on such a fillna).
                frame[col] = current.astype(object).where(current.notna(), found.astype(object))
    return frame
