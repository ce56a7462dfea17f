"""The playbook applied to scored customers: eligible plays, their cost and their dose.

A play is *eligible* for a customer when one of the families it addresses is the family of one
of the customer's scored reasons (the features pushing the risk up, in
``reason_{i}_feature``); the family of a feature comes from the feature catalog. The *dose* of a
play is the sum of the positive log-odds contributions of its families' features that a reason
may name (:func:`actionable_families`): how much of the customer's risk sits where the play
acts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from churn.config import PlayConfig
from churn.domain.catalog import catalog_specs

REASON_FEATURE = "reason_{i}_feature"
#: Intercept column of the contributions (not a feature).
BASE_VALUE = "base_value"
#: Column of :func:`family_doses` with the sum of all of a row's positive contributions.
POSITIVE_TOTAL = "positive_total"


def play_cost(play: PlayConfig, mrr: np.ndarray | pd.Series) -> np.ndarray:
    """Cost of one contact: ``cost + cost_share_of_mrr * mrr * cost_months`` (missing MRR: 0).

    Args:
        play: The play.
        mrr: Monthly recurring revenue of each customer.

    Returns:
        One cost per customer.
    """
    revenue = np.nan_to_num(np.asarray(mrr, dtype=np.float64), nan=0.0)
    return play.cost + play.cost_share_of_mrr * revenue * play.cost_months


def count_reasons(scores: pd.DataFrame) -> int:
    """Number of ``reason_{i}_feature`` columns in ``scores`` (1, 2, ... without gaps)."""
    count = 0
    while REASON_FEATURE.format(i=count + 1) in scores.columns:
        count += 1
    return count


def reason_families(scores: pd.DataFrame, family_of: Mapping[str, str]) -> pd.DataFrame:
    """The families of each customer's reasons, first reason first.

    Args:
        scores: Scores with ``customer_id`` and ``reason_{i}_feature`` columns.
        family_of: Feature name -> family (the catalog).

    Returns:
        ``customer_id`` (and ``cutoff`` when ``scores`` has it), ``rank`` (1 = first reason),
        ``feature``, ``family``; missing reason slots and features outside the catalog are
        left out.
    """
    keys = [c for c in ("customer_id", "cutoff") if c in scores.columns]
    parts = []
    for i in range(1, count_reasons(scores) + 1):
        feature = scores[REASON_FEATURE.format(i=i)]
        part = pd.DataFrame({
            # The arrays as stored: to_numpy() turned a zoned cutoff into Timestamp objects,
            # 11 s per call at 1M rows, and the frame then parsed them back.
            **{key: scores[key].array for key in keys},
            "rank": i,
            "feature": feature.to_numpy(dtype=object),
        })
        part["family"] = part["feature"].map(family_of)
        parts.append(part.dropna(subset=["feature", "family"]))
    if not parts:
        return pd.DataFrame(columns=[*keys, "rank", "feature", "family"])
    return pd.concat(parts, ignore_index=True)


def eligible_plays(
    reasons: pd.DataFrame, plays: Mapping[str, PlayConfig]
) -> pd.DataFrame:
    """Every (customer, play) whose play addresses the family of one of the customer's reasons.

    Args:
        reasons: :func:`reason_families` output.
        plays: The playbook.

    Returns:
        ``customer_id``, ``play``, ``reason_rank`` (the first reason the play addresses),
        ``reason_feature`` (that reason's feature), one row per eligible pair, sorted by
        customer id, reason rank and play name.
    """
    # The ids are coded once, in their sorted order, and every step works on the codes: per
    # play, grouping and sorting on the text took 2.3 s for 661k customers' 2M reasons.
    codes = sorted_codes(reasons["customer_id"])
    ranks = reasons["rank"].to_numpy(dtype=np.int64)
    taken: list[np.ndarray] = []
    play_of: list[np.ndarray] = []
    for k, play in enumerate(plays.values()):
        hit = np.flatnonzero(reasons["family"].isin(play.families).to_numpy(dtype=bool))
        # Per customer the hit of the lowest rank (equal ranks: the earlier row).
        first = first_per_code(hit[np.lexsort((ranks[hit], codes[hit]))], codes)
        taken.append(first)
        play_of.append(np.full(len(first), k, dtype=np.int64))
    rows = np.concatenate([np.empty(0, dtype=np.int64), *taken])
    plays_taken = np.concatenate([np.empty(0, dtype=np.int64), *play_of])
    names = np.array(list(plays), dtype=object)
    # Customer, then rank, then play name: no two rows share all three.
    name_rank = np.argsort(np.argsort(names.astype(str), kind="stable"), kind="stable")
    order = np.lexsort((name_rank[plays_taken], ranks[rows], codes[rows]))
    rows, plays_taken = rows[order], plays_taken[order]
    return pd.DataFrame({
        "customer_id": _take_values(reasons["customer_id"], rows),
        "play": _take_values(pd.Series(names, dtype="str"), plays_taken),
        "reason_rank": ranks[rows],
        "reason_feature": _take_values(reasons["feature"], rows),
    })


def _take_values(values: pd.Series, rows: np.ndarray) -> Any:
    """``values`` at ``rows``, typed as a frame built from their NumPy values would type them
    (object text becomes ``str``); typed columns are taken as they are (Arrow text is taken
    without becoming Python strings, most of the time at a million customers)."""
    if values.dtype == object:
        return values.to_numpy()[rows]
    return values.array.take(rows)


def sorted_codes(ids: pd.Series) -> np.ndarray:
    """Integer codes of ``ids`` that sort as the ids do (a missing id: one code, sorted last)."""
    codes, _ = pd.factorize(ids, sort=True, use_na_sentinel=False)
    return codes.astype(np.int64, copy=False)


def first_per_code(positions: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The first of ``positions`` of each code, given ``positions`` grouped by code."""
    if not len(positions):
        return positions
    grouped = codes[positions]
    return positions[np.r_[True, grouped[1:] != grouped[:-1]]]


def first_reason_play(
    eligible: pd.DataFrame, plays: Mapping[str, PlayConfig]
) -> pd.DataFrame:
    """The play of each customer's first reason that some play addresses (playbook order wins).

    This is what a team working down a risk list does: read the first reason, run its play.

    Args:
        eligible: :func:`eligible_plays` output (the caller has it already: computing it
            again took 2 s per population at a million customers).
        plays: The playbook (its order breaks ties between plays of one reason).

    Returns:
        ``customer_id``, ``play``, ``reason_rank``, ``reason_feature``, one row per customer
        with at least one addressed reason, sorted by customer id.
    """
    order = {name: k for k, name in enumerate(plays)}
    play_order = eligible["play"].map(order).fillna(len(order)).to_numpy(dtype=np.int64)
    codes = sorted_codes(eligible["customer_id"])
    ranks = eligible["reason_rank"].to_numpy(dtype=np.int64)
    first = first_per_code(np.lexsort((play_order, ranks, codes)), codes)
    return eligible.iloc[first].reset_index(drop=True)


def actionable_families(catalog: pd.DataFrame) -> dict[str, str]:
    """Return feature -> family for the features a play can act on: those a reason may name.

    Contract timing and exposure (catalog ``reason_eligible`` false: ``tenure_days``,
    ``days_to_renewal``, ``billing_period`` in the simulator's catalog) push the risk, but no
    play lowers them: a renewal falls due whatever the team does, and in the simulator's truth
    the renewal bump is exposure, not a family term a play reduces. Counting them made the
    billing family's dose the largest of any play's, so a discount looked like the play that
    reaches most of the risk (docs/targeting.md). They are left out of every dose; the
    eligibility of a play already rests on reasons, which never name them.

    Args:
        catalog: The feature catalog.
    """
    return {spec.name: spec.family for spec in catalog_specs(catalog) if spec.reason_eligible}


def family_doses(
    contributions: pd.DataFrame, family_of: Mapping[str, str], families: list[str]
) -> pd.DataFrame:
    """Sum of the positive contributions of each family's features, per row.

    Args:
        contributions: ``customer_id`` (and optionally ``cutoff``, ``base_value``) plus one
            log-odds column per model feature.
        family_of: Feature name -> family of the features that count toward a dose
            (:func:`actionable_families`); the others count only in :data:`POSITIVE_TOTAL`.
        families: Families to sum (missing features give 0).

    Returns:
        The key columns, ``dose_<family>`` for each family and :data:`POSITIVE_TOTAL` (the
        positive contributions of every feature, whatever its family).
    """
    keys = [c for c in ("customer_id", "cutoff") if c in contributions.columns]
    out = contributions[keys].copy()
    # base_value is the model's intercept, not a feature's push on this customer.
    features = [c for c in contributions.columns if c not in (*keys, BASE_VALUE)]
    # One row-major matrix of the positive pushes, clipped once (each family's columns were
    # converted and clipped apart: 15 s at 1M rows); its column subsets are summed row by row
    # as before, so the sums are the same to the last bit.
    positive = np.clip(np.ascontiguousarray(contributions[features].to_numpy(dtype=np.float64)),
                       0.0, None)
    out[POSITIVE_TOTAL] = positive.sum(axis=1)
    position = {name: j for j, name in enumerate(features)}
    for family in families:
        columns = [position[c] for c in features if family_of.get(c) == family]
        out[f"dose_{family}"] = positive[:, columns].sum(axis=1)
    return out


def play_dose(doses: pd.DataFrame, play: PlayConfig) -> np.ndarray:
    """The dose of ``play``: the sum of its families' ``dose_<family>`` columns."""
    total = np.zeros(len(doses))
    for family in play.families:
        column = f"dose_{family}"
        if column in doses.columns:
            total = total + doses[column].to_numpy(dtype=np.float64)
    return total


def addressed_share(doses: pd.DataFrame, play: PlayConfig) -> np.ndarray:
    """Share of each row's positive contributions that sits in the play's families.

    ``play_dose / positive_total``: 1 when all of the customer's excess risk comes from the
    families the play addresses, 0 when none does or the row has no positive contribution
    (or no :data:`POSITIVE_TOTAL`, e.g. a customer missing from the doses).

    Args:
        doses: :func:`family_doses` output (or rows merged from it).
        play: The play.

    Returns:
        One share in [0, 1] per row.
    """
    if POSITIVE_TOTAL not in doses.columns:
        return np.zeros(len(doses))
    dose = np.nan_to_num(play_dose(doses, play))
    total = np.nan_to_num(doses[POSITIVE_TOTAL].to_numpy(dtype=np.float64))
    share = np.divide(dose, total, out=np.zeros(len(doses)), where=total > 0)
    # The families' doses are a part of the total; clip only guards rounding.
    return np.clip(share, 0.0, 1.0)
