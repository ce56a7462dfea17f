"""Plain-language reason sentences for feature values, built from the feature catalog.

Analysts read "4 support tickets opened in the last 30 days; a typical customer has 0", not a
SHAP array. A sentence depends only on the feature and its value *as displayed* (rounded, see
:func:`round_for_display`), so sentences are built once per distinct displayed value of a feature
(:func:`pandas.factorize`) and spread back to the rows with an array take: scoring a million
customers formats thousands of strings, not millions.

Sentence templates (``v`` the customer's value, ``t`` the typical value from
:attr:`churn.model.artifact.ChurnModel.typical_values`; the clause about ``t`` is left out when it
is unknown):

* most units (tickets, days, points, ...), whose catalog description reads after a number:
  ``"{v} {description}; a typical customer has {t}"``; for ``v`` equal to 1 the catalog's
  ``singular`` description ("1 support ticket ...", "4 support tickets ..."); days of 90 or
  more are shown in months ("14.2 months since ...", the typical value in the same unit);
* measure units (currency, fraction/share, ratio, percent, score, rate), whose description
  names a quantity: ``"{description} is {v} (typical: {t})"``;
* flags: ``"{subject}: yes (typical: no)"``, the subject being the description without the
  catalog's ``"flag for ... (1 yes, 0 no)"`` wrapping;
* categorical: with the reference population's churn rates (:mod:`churn.model.reason_reference`)
  ``"{description} is {v}: customers with it leave 3.1x as often as average"``; a level pooled
  as rare (:mod:`churn.model.pooling`) says so and gives the pooled levels' rate; without rates
  ``"{description} is {v} (typical: {t})"``; a level the model never saw in training (and
  without pooling) is named as such, because the model scores it as missing;
* a missing value: ``"no {description} on record"``.

Numbers: integers without decimals (thousands separated), otherwise one decimal (two below 1);
currency with cents below 1,000 unless whole; fractions and shares as percentages; flags as
yes/no.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from churn.domain.catalog import FeatureSpec, Kind, catalog_specs, uncatalogued_spec
from churn.model.pooling import POOLED_LEVEL

#: Units whose description names a quantity rather than reading after a number.
MEASURE_UNITS = frozenset({"score", "ratio", "share", "fraction", "percent", "%", "rate"})
#: Units holding a 0-1 share shown as a percentage.
SHARE_UNITS = frozenset({"share", "fraction"})
#: Units holding a 0/1 indicator shown as yes/no.
FLAG_UNITS = frozenset({"flag", "bool"})
#: Day counts from this many days on are shown in months.
DAYS_AS_MONTHS_FROM = 90
#: Average days per month (365.25 / 12).
DAYS_PER_MONTH = 30.4375


def build_feature_specs(
    catalog: pd.DataFrame,
    feature_names: tuple[str, ...] | list[str],
    categorical_levels: Mapping[str, tuple[str, ...]],
) -> dict[str, FeatureSpec]:
    """Return the catalog entry of every model feature, in model order.

    The kind comes from the model (categorical when it has training levels), so a sentence
    formats values the way the model reads them. A feature absent from the catalog (an old model
    saved without one) still gets an entry: :func:`churn.domain.catalog.uncatalogued_spec`.

    Args:
        catalog: Feature catalog frame (validated by :func:`churn.domain.catalog.catalog_specs`).
        feature_names: The model's features.
        categorical_levels: The model's categorical levels (name -> levels).

    Returns:
        Feature name -> spec.
    """
    by_name = {spec.name: spec for spec in catalog_specs(catalog)}
    specs: dict[str, FeatureSpec] = {}
    for name in feature_names:
        kind: Kind = "categorical" if name in categorical_levels else "numeric"
        spec = by_name.get(name)
        specs[name] = uncatalogued_spec(name, kind) if spec is None else replace(spec, kind=kind)
    return specs


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # array-like values are not scalars: treat as present
        return False


def round_for_display(values: np.ndarray, unit: str = "") -> np.ndarray:
    """Round numbers to the precision they are shown with (vectorised).

    Two values that round alike read alike, so sentences are built once per *rounded* value:
    even a continuous feature then has few distinct values to format.

    Args:
        values: Numbers (NaN allowed).
        unit: Catalog unit.

    Returns:
        Rounded values: flags to 0/1, shares to whole percents, percents to 0.1, currency to
        whole units from 1,000 on and to cents below, other numbers to 0.1 from 1 on and to
        0.01 below. ``-0.0`` becomes ``0.0``.
    """
    values = np.asarray(values, dtype=np.float64)
    unit = unit.strip().lower()
    big = np.abs(values) >= (1000 if unit.startswith("currency") else 1)
    with np.errstate(invalid="ignore"):
        if unit in FLAG_UNITS:
            rounded = np.where(np.isnan(values), np.nan, (values != 0).astype(np.float64))
        elif unit in SHARE_UNITS:
            rounded = np.round(values * 100) / 100
        elif unit in ("percent", "%"):
            rounded = np.round(values, 1)
        elif unit.startswith("currency"):
            rounded = np.where(big, np.round(values), np.round(values, 2))
        else:
            rounded = np.where(big, np.round(values, 1), np.round(values, 2))
    return rounded + 0.0


def format_number(value: float, unit: str = "") -> str:
    """Format one number for display according to its unit (see :func:`round_for_display`).

    Args:
        value: The number (not missing).
        unit: Catalog unit.

    Returns:
        E.g. ``"4"``, ``"1,204"``, ``"3.5"``, ``"0.25"``, ``"799.50"`` (currency), ``"25%"``
        (share), ``"yes"`` (flag). Whole numbers never show decimals.
    """
    return _format_rounded(float(round_for_display(np.array([value]), unit)[0]), unit)


def _format_rounded(value: float, unit: str) -> str:
    """Format a number already rounded by :func:`round_for_display`."""
    unit = unit.strip().lower()
    if unit in FLAG_UNITS:
        return "yes" if value else "no"
    if unit in SHARE_UNITS:
        return f"{value:.0%}"
    if unit in ("percent", "%"):
        return f"{value:.0f}%" if value.is_integer() else f"{value:.1f}%"
    if value.is_integer():
        return f"{value:,.0f}"
    if unit.startswith("currency"):
        return f"{value:,.2f}"
    return f"{value:,.1f}" if abs(value) >= 1 else f"{value:.2f}"


def _unit_suffix(unit: str) -> str:
    """Return the words shown after a measure value: ``" per month"`` for ``currency/month``."""
    kind, _, period = unit.strip().lower().partition("/")
    return f" per {period}" if kind == "currency" and period else ""


def _flag_subject(description: str) -> str:
    """Shorten the catalog's "flag for X (1 yes, 0 no)" wording to "X"."""
    subject = re.sub(r"^flag for\s+", "", description.strip())
    return re.sub(r"\s*\(1 yes, 0 no\)$", "", subject) or description


def format_value(value: Any, spec: FeatureSpec) -> str | None:
    """Return the display string of one raw value (``None`` when missing)."""
    if _is_missing(value):
        return None
    if spec.kind == "categorical":
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return format_number(number, spec.unit)


def describe_value(
    value: Any,
    spec: FeatureSpec,
    typical: Any = None,
    levels: tuple[str, ...] = (),
    level_ratio: Mapping[str, float] | None = None,
) -> str:
    """Return the plain-language sentence for one raw value of a feature.

    Args:
        value: The customer's raw value (as in the feature frame).
        spec: The feature's catalog entry.
        typical: The typical value (median / most frequent level), or ``None``.
        levels: Categorical levels seen in training (empty: unknown, nothing is flagged).
        level_ratio: Categorical level -> its churn rate over the average rate in the
            reference population (``None``: no rates, the typical level is named instead).

    Returns:
        The sentence (see the module docstring for the templates).
    """
    _, sentences = explain_values(pd.Series([value], dtype=object), spec, typical, levels,
                                  level_ratio)
    return str(sentences[0])


def format_ratio(ratio: float) -> str:
    """Format a churn-rate ratio: ``"3.1x"``, ``"0.45x"`` below 1, ``"12x"`` from 10 on."""
    if ratio >= 10:
        return f"{ratio:.0f}x"
    return f"{ratio:.1f}x" if ratio >= 1 else f"{ratio:.2f}x"


def _categorical_sentence(
    shown: str,
    typical_shown: str | None,
    spec: FeatureSpec,
    levels: tuple[str, ...],
    level_ratio: Mapping[str, float] | None,
) -> str:
    """The categorical template (see the module docstring)."""
    sentence = f"{spec.description} is {shown}"
    pooled = POOLED_LEVEL in levels
    if levels and shown not in levels and not pooled:
        return f"{sentence}, a value not seen in training (scored as missing)"
    rare = pooled and shown not in levels
    if level_ratio is not None:
        ratio = level_ratio.get(POOLED_LEVEL if rare else shown)
        if ratio is not None and np.isfinite(ratio):
            who = "customers with a rare value like it" if rare else "customers with it"
            return f"{sentence}: {who} leave {format_ratio(ratio)} as often as average"
    if rare:
        return f"{sentence}, a rare value (scored with the other rare values)"
    return sentence if typical_shown is None else f"{sentence} (typical: {typical_shown})"


def _sentence(
    shown: str | None,
    typical_shown: str | None,
    spec: FeatureSpec,
    levels: tuple[str, ...],
    level_ratio: Mapping[str, float] | None = None,
) -> str:
    """Fill the template for already formatted value and typical value (``None``: missing)."""
    if shown is None:
        return f"no {spec.description} on record"
    if spec.kind == "categorical":
        return _categorical_sentence(shown, typical_shown, spec, levels, level_ratio)
    unit = spec.unit.strip().lower()
    if unit in FLAG_UNITS:
        sentence = f"{_flag_subject(spec.description)}: {shown}"
        return sentence if typical_shown is None else f"{sentence} (typical: {typical_shown})"
    if unit in MEASURE_UNITS or unit.startswith("currency"):
        suffix = _unit_suffix(unit)
        sentence = f"{spec.description} is {shown}{suffix}"
        if typical_shown is None:
            return sentence
        return f"{sentence} (typical: {typical_shown}{suffix})"
    description = spec.singular if shown == "1" else spec.description
    sentence = f"{shown} {description}"
    if typical_shown is None:
        return sentence
    return f"{sentence}; a typical customer has {typical_shown}"


def _in_months(spec: FeatureSpec) -> FeatureSpec:
    """The same feature counted in months: its leading "days"/"day" read "months"/"month"."""
    words = spec.description.split(" ")
    if "days" not in words[:3]:
        return spec
    at = words.index("days")
    months = " ".join([*words[:at], "months", *words[at + 1 :]])
    singular = " ".join([*words[:at], "month", *words[at + 1 :]])
    return replace(spec, unit="months", description=months, singular=singular)


def _numeric_sentence(
    value: float, typical: Any, spec: FeatureSpec, levels: tuple[str, ...]
) -> str:
    """The sentence of one displayed number; long day counts are told in months."""
    typical_number = None if _is_missing(typical) else float(typical)
    months = _in_months(spec) if spec.unit.strip().lower() == "days" else spec
    if months is not spec and abs(value) >= DAYS_AS_MONTHS_FROM:
        typical_shown = (
            None if typical_number is None
            else format_number(typical_number / DAYS_PER_MONTH, "months")
        )
        return _sentence(format_number(value / DAYS_PER_MONTH, "months"), typical_shown,
                         months, levels)
    typical_shown = None if typical_number is None else format_number(typical_number, spec.unit)
    return _sentence(_format_rounded(value, spec.unit), typical_shown, spec, levels)


def _distinct_values(values: pd.Series, spec: FeatureSpec) -> tuple[np.ndarray, pd.Index]:
    """Factorize values into codes (-1 for missing) and uniques; numbers as displayed."""
    if spec.kind == "numeric":
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        values = pd.Series(round_for_display(numbers, spec.unit))
    else:
        values = values.astype("object").where(values.notna(), None)
        values = values.map(str, na_action="ignore")
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return codes, pd.Index(uniques)


def _show_distinct(uniques: pd.Index, spec: FeatureSpec) -> list[str]:
    """Return the display text of each distinct value of :func:`_distinct_values`."""
    if spec.kind == "numeric":  # uniques are rounded numbers already
        return [_format_rounded(float(v), spec.unit) for v in uniques]
    return [str(v) for v in uniques]


def display_values(values: pd.Series, spec: FeatureSpec) -> np.ndarray:
    """Return the display strings of many values of one feature (``None`` for a missing one).

    The first result of :func:`explain_values` without its sentences, for callers that only
    compare what is shown (the typical-value rule of the reasons): the sentences were most of
    that work.
    """
    codes, uniques = _distinct_values(values, spec)
    return np.array([*_show_distinct(uniques, spec), None], dtype=object)[codes]


def explain_values(
    values: pd.Series,
    spec: FeatureSpec,
    typical: Any = None,
    levels: tuple[str, ...] = (),
    level_ratio: Mapping[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return display strings and sentences for many values of one feature.

    Work is done once per distinct displayed value and spread back with an array take.

    Args:
        values: Raw values of the feature.
        spec: The feature's catalog entry.
        typical: The typical value, or ``None``.
        levels: Categorical levels seen in training (see :func:`describe_value`).
        level_ratio: Categorical level -> churn-rate ratio (see :func:`describe_value`).

    Returns:
        ``(display, sentences)``: object arrays aligned with ``values``; display is ``None`` for
        a missing value.
    """
    codes, uniques = _distinct_values(values, spec)
    shown = _show_distinct(uniques, spec)
    typical_shown = format_value(typical, spec)
    # One extra slot at the end holds the missing-value answer; code -1 indexes it.
    display = np.array([*shown, None], dtype=object)
    if spec.kind == "numeric":
        texts = [_numeric_sentence(float(v), typical, spec, levels) for v in uniques]
    else:
        texts = [_sentence(text, typical_shown, spec, levels, level_ratio) for text in shown]
    sentences = np.array([*texts, _sentence(None, None, spec, levels)], dtype=object)
    return display[codes], sentences[codes]


#: Rows per block of :func:`top_positive_reasons`: a block of a hundred-odd features stays in
#: the CPU cache across the ``k`` passes (661k rows x 109 features, 8 passes: 0.36 s against
#: 0.73-1.24 s over the whole array at once, 2026-12-06).
TOP_REASON_BLOCK_ROWS = 4096


def top_positive_reasons(
    contributions: np.ndarray, k: int, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pick each row's ``k`` largest positive contributions, largest first.

    Args:
        contributions: ``(n, p)`` contributions.
        k: Reasons per row.
        allowed: Optional boolean mask, ``(p,)`` (per feature) or ``(n, p)``: a contribution
            where it is False is never picked (as if it were ``-inf``). Masking here, a block
            at a time, spares the caller an ``(n, p)`` copy of the contributions.

    Returns:
        ``(index, value)`` of shape ``(n, min(k, p))``: feature positions and contributions;
        ``value`` is NaN where fewer than ``k`` contributions are positive (``index`` is then
        meaningless). Ties keep the lower feature position (stable sort).
    """
    n, p = contributions.shape
    k = min(k, p)
    index = np.zeros((n, k), dtype=np.intp)
    value = np.empty((n, k))
    for start in range(0, n, TOP_REASON_BLOCK_ROWS):
        stop = min(start + TOP_REASON_BLOCK_ROWS, n)
        block = np.array(contributions[start:stop], dtype=np.float64, order="C")  # to overwrite
        if allowed is not None:
            mask = allowed if allowed.ndim == 1 else allowed[start:stop]
            np.putmask(block, ~np.broadcast_to(mask, block.shape), -np.inf)
        rows = np.arange(stop - start)
        # k passes of argmax instead of a full sort: k is small, and argmax returns the first
        # of equal maxima, which is exactly a stable descending sort's tie order.
        for slot in range(k):
            best = np.argmax(block, axis=1)
            index[start:stop, slot] = best
            value[start:stop, slot] = block[rows, best]
            block[rows, best] = -np.inf
    return index, np.where(value > 0, value, np.nan)


def group_slots_by_feature(
    index: np.ndarray, value: np.ndarray
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(feature position, rows, slots)`` for every feature cited in a filled slot.

    Args:
        index: Feature position of each (row, reason slot).
        value: Contribution of each (row, reason slot); non-finite marks an empty slot.

    Yields:
        Each cited feature's position with the rows and slots that cite it, in position order.
    """
    rows, slots = np.nonzero(np.isfinite(value))
    cited = index[rows, slots]
    # A stable sort of small integers is a radix sort in NumPy: positions fit 16 bits for
    # any catalog under 32,768 features (5.3M slots: about 4x faster than on 64-bit ints).
    narrow = cited.astype(np.int16) if cited.size and cited.max() < 2**15 else cited
    order = np.argsort(narrow, kind="stable")
    rows, slots, cited = rows[order], slots[order], cited[order]
    bounds = np.flatnonzero(np.diff(cited)) + 1
    for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(cited)], strict=True):
        if start < stop:
            yield int(cited[start]), rows[start:stop], slots[start:stop]


def build_reason_columns(
    batch: pd.DataFrame,
    index: np.ndarray,
    value: np.ndarray,
    specs: Mapping[str, FeatureSpec],
    typical: Mapping[str, Any],
    reasons: int,
    categorical_levels: Mapping[str, tuple[str, ...]] | None = None,
    level_ratios: Mapping[str, Mapping[str, float]] | None = None,
    *,
    texts: bool = True,
) -> dict[str, Any]:
    """Build the ``reason_{i}_*`` columns of :func:`churn.model.scoring.score_frame`.

    Text is made per feature, over all the rows and reason slots that cite it at once.

    Args:
        batch: The scored rows (raw feature values are read from here).
        index: ``(n, m)`` positions (in ``specs`` order) of each row's top features.
        value: ``(n, m)`` their contributions; NaN marks an empty slot.
        specs: Feature specs in model order.
        typical: Typical value per feature.
        reasons: Number of reason slots to emit (``>= m``; extra slots stay empty).
        categorical_levels: The model's training levels (name -> levels), so that a level
            unseen in training is named as such.
        level_ratios: Categorical feature -> level -> churn-rate ratio (see
            :func:`describe_value`); ``None`` for none.
        texts: ``False`` leaves ``_value`` and ``_text`` empty (the same columns): for a caller
            that reads only which features push the risk (the target stage explaining past
            rows: about 7 s of sentences at a million customers that nothing read).

    Returns:
        Column name -> values: ``reason_{i}_feature``, ``_value``, ``_contribution``, ``_text``.
    """
    names = np.asarray(list(specs), dtype=object)
    levels = categorical_levels or {}
    shape = (len(batch), reasons)
    feature_out = np.full(shape, None, dtype=object)
    value_out = np.full(shape, None, dtype=object)
    text_out = np.full(shape, None, dtype=object)
    contribution_out = np.full(shape, np.nan)
    contribution_out[:, : value.shape[1]] = value
    # Each feature's raw values are explained at once, for every (row, slot) citing it.
    for position, group_rows, group_slots in group_slots_by_feature(index, value):
        name = names[position]
        feature_out[group_rows, group_slots] = name
        if not texts:
            continue
        display, sentences = explain_values(
            batch[name].iloc[group_rows],
            specs[name],
            typical.get(name),
            levels.get(name, ()),
            (level_ratios or {}).get(name),
        )
        value_out[group_rows, group_slots] = display
        text_out[group_rows, group_slots] = sentences
    columns: dict[str, Any] = {}
    for i in range(reasons):
        columns[f"reason_{i + 1}_feature"] = pd.array(feature_out[:, i], dtype="str")
        columns[f"reason_{i + 1}_value"] = pd.array(value_out[:, i], dtype="str")
        columns[f"reason_{i + 1}_contribution"] = contribution_out[:, i]
        columns[f"reason_{i + 1}_text"] = pd.array(text_out[:, i], dtype="str")
    return columns
