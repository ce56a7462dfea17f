"""Tests for churn.model.explanation_check: agreement of reasons with the simulator's truth."""

from __future__ import annotations

import numpy as np
import pandas as pd

from churn.domain.families import FAMILIES
from churn.model.explanation_check import compute_reason_agreement


def _truth_for(frame: pd.DataFrame, dominant: dict[str, str]) -> pd.DataFrame:
    truth = frame[["customer_id", "cutoff"]].rename(columns={"cutoff": "month_start"}).copy()
    for family in FAMILIES:
        truth[f"logit_{family}"] = 0.0
    for family in FAMILIES:
        mask = truth["customer_id"].map(dominant).eq(family).to_numpy()
        truth.loc[mask, f"logit_{family}"] = 3.0
    return truth


def _naive_agreement(model, frame, truth, fraction):
    probability = model.predict_proba(frame)
    n = int(np.ceil(fraction * len(frame)))
    ranked = sorted(
        range(len(frame)), key=lambda i: (-probability[i], frame["customer_id"].iloc[i])
    )[:n]
    contributions, _ = model.contributions(frame.iloc[ranked])
    family_of = dict(zip(model.catalog["name"], model.catalog["family"], strict=True))
    hits = 0
    predicted, actual = [], []
    columns = [f"logit_{f}" for f in FAMILIES]
    centred = truth[columns] - truth.groupby("month_start")[columns].transform("mean")
    for position, i in enumerate(ranked):
        first = model.feature_names[int(np.argmax(contributions[position]))]
        true_family = FAMILIES[int(np.argmax(centred.iloc[i].to_numpy()))]
        hits += family_of[first] == true_family
        predicted.append(family_of[first])
        actual.append(true_family)
    # Chance: agreement expected if the two families were independent with these frequencies.
    chance = sum(predicted.count(f) / n * actual.count(f) / n for f in set(actual))
    return hits / n, chance


def test_agreement_matches_a_naive_reference(tiny_model, feature_frame):
    frame = feature_frame[feature_frame["cutoff"] == feature_frame["cutoff"].max()]
    frame = frame.reset_index(drop=True)
    rng = np.random.default_rng(5)
    dominant = dict(zip(frame["customer_id"], rng.choice(FAMILIES, len(frame)), strict=True))
    truth = _truth_for(frame, dominant)
    result = compute_reason_agreement(tiny_model, frame, truth, top_fraction=0.2)
    assert result["rows"] == int(np.ceil(0.2 * len(frame)))
    expected, expected_chance = _naive_agreement(tiny_model, frame, truth, 0.2)
    assert abs(result["first_reason_family_agreement"] - expected) < 1e-12
    assert abs(result["chance_agreement"] - expected_chance) < 1e-12


def test_agreement_is_perfect_when_truth_follows_the_model(tiny_model, feature_frame):
    frame = feature_frame[feature_frame["cutoff"] == feature_frame["cutoff"].max()]
    frame = frame.reset_index(drop=True)
    contributions, _ = tiny_model.contributions(frame)
    family_of = dict(zip(tiny_model.catalog["name"], tiny_model.catalog["family"], strict=True))
    first = [family_of[tiny_model.feature_names[j]] for j in np.argmax(contributions, axis=1)]
    truth = _truth_for(frame, dict(zip(frame["customer_id"], first, strict=True)))
    result = compute_reason_agreement(tiny_model, frame, truth, top_fraction=0.25)
    assert result["first_reason_family_agreement"] == 1.0


def test_no_matching_truth_rows_gives_empty_result(tiny_model, feature_frame):
    truth = _truth_for(feature_frame.head(5), {}).assign(
        month_start=pd.Timestamp("1990-01-01", tz="UTC")
    )
    assert compute_reason_agreement(tiny_model, feature_frame, truth) == {}


def test_truth_without_family_terms_gives_empty_result(tiny_model, feature_frame):
    truth = feature_frame[["customer_id", "cutoff"]].rename(columns={"cutoff": "month_start"})
    assert compute_reason_agreement(tiny_model, feature_frame, truth.assign(p=0.1)) == {}
