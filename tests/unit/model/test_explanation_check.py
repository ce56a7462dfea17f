"""Tests for churn.model.explanation_check: agreement of reasons with the simulator's truth."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from churn.domain.families import FAMILIES
from churn.model.explanation_check import compute_reason_agreement, summarize_agreement
from churn.model.reasons import build_feature_specs, format_value


def _truth_for(frame: pd.DataFrame, dominant: dict[str, str]) -> pd.DataFrame:
    truth = frame[["customer_id", "cutoff"]].rename(columns={"cutoff": "month_start"}).copy()
    for family in FAMILIES:
        truth[f"logit_{family}"] = 0.0
    for family in FAMILIES:
        mask = truth["customer_id"].map(dominant).eq(family).to_numpy()
        truth.loc[mask, f"logit_{family}"] = 3.0
    return truth


def _naive_first_reason(model, row: pd.Series, contributions: np.ndarray) -> str | None:
    """The first reason by the rules, one row at a time: eligible, positive, not typical."""
    specs = build_feature_specs(model.catalog, model.feature_names, model.categorical_levels)
    for j in np.argsort(-contributions, kind="stable"):
        spec = specs[model.feature_names[j]]
        if contributions[j] <= 0:
            return None
        typical = format_value(model.typical_values.get(spec.name), spec)
        if spec.reason_eligible and format_value(row[spec.name], spec) != typical:
            return spec.family
    return None


def _naive_agreement(model, frame, truth, fraction):
    probability = model.predict_proba(frame)
    n = int(np.ceil(fraction * len(frame)))
    ranked = sorted(
        range(len(frame)), key=lambda i: (-probability[i], frame["customer_id"].iloc[i])
    )[:n]
    contributions, _ = model.contributions(frame.iloc[ranked])
    hits = 0
    predicted, actual = [], []
    columns = [f"logit_{f}" for f in FAMILIES]
    centred = truth[columns] - truth.groupby("month_start")[columns].transform("mean")
    for position, i in enumerate(ranked):
        first = _naive_first_reason(model, frame.iloc[i], contributions[position])
        true_family = FAMILIES[int(np.argmax(centred.iloc[i].to_numpy()))]
        hits += first == true_family
        predicted.append(first)
        actual.append(true_family)
    # Chance: agreement expected if the two families were independent with these frequencies.
    chance = sum(predicted.count(f) / n * actual.count(f) / n for f in set(actual))
    majority = max(actual.count(f) for f in set(actual)) / n
    return hits / n, chance, majority


def test_agreement_matches_a_naive_reference(tiny_model, feature_frame):
    frame = feature_frame[feature_frame["cutoff"] == feature_frame["cutoff"].max()]
    frame = frame.reset_index(drop=True)
    rng = np.random.default_rng(5)
    dominant = dict(zip(frame["customer_id"], rng.choice(FAMILIES, len(frame)), strict=True))
    truth = _truth_for(frame, dominant)
    result = compute_reason_agreement(tiny_model, frame, truth, top_fraction=0.2)
    assert result["rows"] == int(np.ceil(0.2 * len(frame)))
    expected, expected_chance, expected_majority = _naive_agreement(tiny_model, frame, truth, 0.2)
    assert abs(result["first_reason_family_agreement"] - expected) < 1e-12
    assert abs(result["chance_agreement"] - expected_chance) < 1e-12
    assert abs(result["majority_family_baseline"] - expected_majority) < 1e-12
    assert sum(result["true_family_share"].values()) == pytest.approx(1.0)


def test_agreement_counts_only_eligible_reasons(tiny_model, feature_frame):
    frame = feature_frame[feature_frame["cutoff"] == feature_frame["cutoff"].max()]
    frame = frame.reset_index(drop=True)
    catalog = tiny_model.catalog.copy()
    catalog.loc[catalog["family"] == "support", "reason_eligible"] = False
    model = dataclasses.replace(tiny_model, catalog=catalog)
    # Truth says support drives nine in ten: a model that can never name support agrees at
    # most on the engagement-driven tenth.
    rng = np.random.default_rng(2)
    dominant = np.where(rng.random(len(frame)) < 0.9, "support", "engagement")
    truth = _truth_for(frame, dict(zip(frame["customer_id"], dominant, strict=True)))
    result = compute_reason_agreement(model, frame, truth, top_fraction=0.25)
    assert result["majority_family"] == "support"
    engagement_share = result["true_family_share"]["engagement"]
    assert result["first_reason_family_agreement"] <= engagement_share < 0.5
    expected, _, majority = _naive_agreement(model, frame, truth, 0.25)
    assert result["first_reason_family_agreement"] == pytest.approx(expected)
    assert result["majority_family_baseline"] == pytest.approx(majority)
    unrestricted = compute_reason_agreement(tiny_model, frame, truth, 0.25)
    assert unrestricted["first_reason_family_agreement"] > engagement_share


def test_summary_on_a_hand_built_case():
    named = np.array(["usage", "usage", "support", None, "billing"], dtype=object)
    true = np.array(["usage", "support", "support", "usage", "usage"], dtype=object)
    result = summarize_agreement(named, true)
    assert result["agreement"] == pytest.approx(2 / 5)
    # p_named: usage .4, support .2, None .2, billing .2; p_true: usage .6, support .4
    assert result["chance"] == pytest.approx(0.4 * 0.6 + 0.2 * 0.4)
    assert result["majority_baseline"] == pytest.approx(0.6)
    assert result["majority_family"] == "usage"
    tie = summarize_agreement(np.array(["a"] * 2, dtype=object), np.array(["support", "usage"]))
    assert tie["majority_family"] == "usage"  # ties: FAMILIES order (usage before support)


def test_agreement_is_perfect_when_truth_follows_the_model(tiny_model, feature_frame):
    frame = feature_frame[feature_frame["cutoff"] == feature_frame["cutoff"].max()]
    frame = frame.reset_index(drop=True)
    contributions, _ = tiny_model.contributions(frame)
    first = [
        _naive_first_reason(tiny_model, frame.iloc[i], contributions[i]) or "usage"
        for i in range(len(frame))
    ]
    truth = _truth_for(frame, dict(zip(frame["customer_id"], first, strict=True)))
    result = compute_reason_agreement(tiny_model, frame, truth, top_fraction=0.25)
    assert result["rows_without_reason"] == 0
    assert result["first_reason_family_agreement"] == 1.0


def test_no_matching_truth_rows_gives_empty_result(tiny_model, feature_frame):
    truth = _truth_for(feature_frame.head(5), {}).assign(
        month_start=pd.Timestamp("1990-01-01", tz="UTC")
    )
    assert compute_reason_agreement(tiny_model, feature_frame, truth) == {}


def test_truth_without_family_terms_gives_empty_result(tiny_model, feature_frame):
    truth = feature_frame[["customer_id", "cutoff"]].rename(columns={"cutoff": "month_start"})
    assert compute_reason_agreement(tiny_model, feature_frame, truth.assign(p=0.1)) == {}


def _naive_family_first(model, row: pd.Series, contributions: np.ndarray) -> str | None:
    """The family-first rule, one row at a time: the family with the largest net push."""
    specs = build_feature_specs(model.catalog, model.feature_names, model.categorical_levels)
    sums: dict[str, float] = {}
    for j, name in enumerate(model.feature_names):
        if specs[name].reason_eligible:
            sums[specs[name].family] = sums.get(specs[name].family, 0.0) + contributions[j]
    order = [f for f in FAMILIES if f in sums]
    best = max(order, key=lambda f: (sums[f], -order.index(f)))
    for j in np.argsort(-contributions, kind="stable"):
        spec = specs[model.feature_names[j]]
        typical = format_value(model.typical_values.get(spec.name), spec)
        if (sums[best] > 0 and spec.family == best and contributions[j] > 0
                and spec.reason_eligible and format_value(row[spec.name], spec) != typical):
            return best
    return _naive_first_reason(model, row, contributions)


def test_agreement_reads_the_models_first_reason_mode(tiny_model, feature_frame):
    frame = feature_frame[feature_frame["cutoff"] == feature_frame["cutoff"].max()]
    frame = frame.reset_index(drop=True)
    model = dataclasses.replace(
        tiny_model,
        metadata={**tiny_model.metadata, "reason_reference": {"first_reason": "family"}},
    )
    contributions, _ = model.contributions(frame)
    by_family = [_naive_family_first(model, frame.iloc[i], contributions[i])
                 for i in range(len(frame))]
    by_feature = [_naive_first_reason(model, frame.iloc[i], contributions[i])
                  for i in range(len(frame))]
    assert by_family != by_feature  # the modes differ on these rows, so the check can fail
    dominant = [family or "usage" for family in by_family]  # a row without reason: a miss
    truth = _truth_for(frame, dict(zip(frame["customer_id"], dominant, strict=True)))
    result = compute_reason_agreement(model, frame, truth, top_fraction=1.0)
    assert result["first_reason_mode"] == "family"
    expected = np.mean([family is not None for family in by_family])
    assert result["first_reason_family_agreement"] == pytest.approx(expected)
    older = compute_reason_agreement(tiny_model, frame, truth, top_fraction=1.0)
    assert older["first_reason_mode"] == "feature"
    same = np.mean([b is not None and b == a for a, b in zip(dominant, by_feature, strict=True)])
    assert older["first_reason_family_agreement"] == pytest.approx(same) and same < expected


def test_agreement_centres_on_the_whole_month_and_takes_given_probabilities(
    tiny_model, feature_frame
):
    last = feature_frame["cutoff"].max()
    month = feature_frame[feature_frame["cutoff"] == last].reset_index(drop=True)
    rng = np.random.default_rng(11)
    dominant = dict(zip(month["customer_id"], rng.choice(FAMILIES, len(month)), strict=True))
    truth = _truth_for(month, dominant)
    # The customers outside the test raise the month's support term: centred on the whole
    # month, support drives fewer of the examined rows than on the test rows alone.
    outside = month["customer_id"].iloc[::2]
    truth.loc[truth["customer_id"].isin(outside), "logit_support"] += 6.0
    earlier = _truth_for(month, dominant).assign(month_start=last - pd.DateOffset(months=1))
    test = month[~month["customer_id"].isin(outside)].sample(frac=1.0, random_state=3)
    test.index = test.index + 1_000  # not a range index, not in key order

    on_month = compute_reason_agreement(tiny_model, test, truth, top_fraction=0.5)
    with_other_months = compute_reason_agreement(
        tiny_model, test, pd.concat([earlier, truth]), top_fraction=0.5
    )
    given = compute_reason_agreement(
        tiny_model, test, truth, top_fraction=0.5, probability=tiny_model.predict_proba(test)
    )
    only_test_rows = compute_reason_agreement(
        tiny_model, test, truth[~truth["customer_id"].isin(outside)], top_fraction=0.5
    )
    assert on_month == with_other_months == given
    assert on_month != only_test_rows  # the outside customers moved the month's mean

    # The naive reference: centre over every truth row of the month, examine the top half.
    columns = [f"logit_{f}" for f in FAMILIES]
    centred = truth.set_index("customer_id")[columns]
    centred = centred - centred.mean()
    probability = tiny_model.predict_proba(test)
    n = int(np.ceil(0.5 * len(test)))
    ranked = sorted(range(len(test)), key=lambda i: (-probability[i], test["customer_id"].iloc[i]))
    true_families = [
        FAMILIES[int(np.argmax(centred.loc[test["customer_id"].iloc[i]].to_numpy()))]
        for i in ranked[:n]
    ]
    shares = pd.Series(true_families).value_counts(normalize=True)
    assert on_month["true_family_share"] == {f: float(shares.get(f, 0.0)) for f in FAMILIES}

    with pytest.raises(ValueError, match="3 probabilities for"):
        compute_reason_agreement(tiny_model, test, truth, probability=np.zeros(3))
