"""Tests for churn.model.reason_selection: eligible reasons, typical values never a reason."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from support.tiny import TINY_CATALOG

from churn.domain.catalog import FeatureSpec, catalog_frame, catalog_specs
from churn.domain.families import FAMILIES
from churn.model.reason_selection import (
    describe_decision_dates,
    select_reasons,
)
from churn.model.reasons import format_value, group_slots_by_feature
from churn.model.scoring import score_frame

REASONS = 3


def _specs(*entries: tuple[str, str, bool]) -> dict[str, FeatureSpec]:
    """Specs ``(name, family, eligible)``: numeric day counts."""
    return {
        name: FeatureSpec(name, family, "post_sale", "numeric", "days", f"{name} days", eligible)
        for name, family, eligible in entries
    }


def test_exposure_features_are_never_selected_even_when_largest():
    specs = _specs(
        ("days_to_renewal", "billing", False), ("usage_days", "usage", True), ("x", "support", True)
    )
    batch = pd.DataFrame({"days_to_renewal": [3.0, 5.0], "usage_days": [1.0, 2.0], "x": [7, 8.0]})
    contributions = np.array([[5.0, 0.2, 0.1], [9.0, -0.1, 0.3]])
    index, value = select_reasons(batch, contributions, specs, {}, 2)
    names = np.array(list(specs))
    assert names[index[0]].tolist() == ["usage_days", "x"]
    assert value[0].tolist() == [0.2, 0.1]
    assert names[index[1, 0]] == "x" and value[1, 0] == 0.3
    assert np.isnan(value[1, 1])  # usage_days pushes risk down: no second reason


def test_a_typical_value_is_suppressed_and_the_next_reason_takes_its_place():
    specs = _specs(("a", "usage", True), ("b", "support", True), ("c", "engagement", True))
    batch = pd.DataFrame({"a": [4.0, 5.0], "b": [2.0, 2.04], "c": [1.0, 1.0]})
    typical = {"a": 4.0, "b": 3.0}  # row 0's "a" equals the typical value; c has none
    contributions = np.array([[0.9, 0.5, 0.1], [0.9, 0.5, 0.1]])
    index, value = select_reasons(batch, contributions, specs, typical, 2)
    names = np.array(list(specs))
    assert value[0].tolist() == [0.5, 0.1]
    assert names[index[0]].tolist() == ["b", "c"]
    assert names[index[1]].tolist() == ["a", "b"]
    # Equality is on the displayed value: 3.04 shows as "3" only if rounding says so.
    batch.loc[1, "b"] = 3.04
    index, _ = select_reasons(batch, contributions, specs, typical, 2)
    assert format_value(3.04, specs["b"]) == "3" and names[index[1]].tolist() == ["a", "c"]


def test_categorical_typical_level_is_never_a_reason():
    spec = FeatureSpec("contract", "billing", "post_sale", "categorical", "", "contract", True)
    batch = pd.DataFrame({"contract": pd.array(["Month-to-month", "Two year"], dtype="str")})
    index, value = select_reasons(
        batch, np.array([[1.0], [1.0]]), {"contract": spec}, {"contract": "Month-to-month"}, 1
    )
    assert np.isnan(value[0, 0]) and value[1, 0] == 1.0 and index[1, 0] == 0


def _with_ineligible(model, name: str):
    catalog = model.catalog.copy()
    catalog.loc[catalog["name"] == name, "reason_eligible"] = False
    return dataclasses.replace(model, catalog=catalog)


def test_scores_never_name_an_ineligible_feature_and_shares_leave_it_out(tiny_model, feature_frame):
    before = score_frame(tiny_model, feature_frame, REASONS)
    strongest = "support_tickets_last_30d"
    assert (before["reason_1_feature"] == strongest).mean() > 0.1  # it matters to this model
    model = _with_ineligible(tiny_model, strongest)
    scores = score_frame(model, feature_frame, REASONS)
    for i in range(1, REASONS + 1):
        assert not (scores[f"reason_{i}_feature"] == strongest).any()
    pd.testing.assert_series_equal(scores["churn_probability"], before["churn_probability"])
    shares = scores[[f"risk_share_{f}" for f in FAMILIES]].sum(axis=1)
    assert np.allclose(shares[shares > 0], 1.0)
    # Naive reference of the support share: no support feature is eligible any more.
    assert (scores["risk_share_support"] == 0).all()
    assert (before["risk_share_support"] > 0).any()


def test_decision_context_says_when_the_customer_renews():
    dates = pd.Series(pd.to_datetime(["2026-02-14", None], utc=True))
    context = describe_decision_dates(dates)
    assert context.iloc[0] == "renews 2026-02-14" and pd.isna(context.iloc[1])


def test_scores_with_a_next_decision_date_carry_the_context_beside_the_reasons(
    tiny_model, feature_frame, monkeypatch
):
    import churn.model.scoring as scoring

    original = scoring._score_batch

    def with_date(*args, **kwargs):  # stands in for the survival head's column (h13model)
        frame = original(*args, **kwargs)
        return frame.assign(next_decision_date=pd.Timestamp("2026-02-14", tz="UTC"))

    monkeypatch.setattr(scoring, "_score_batch", with_date)
    scores = score_frame(tiny_model, feature_frame.head(50), REASONS)
    assert (scores["decision_context"] == "renews 2026-02-14").all()
    texts = scores[[f"reason_{i}_text" for i in range(1, REASONS + 1)]].stack()
    assert not texts.str.contains("renew").any()


def test_catalog_marks_exposure_and_timing_names_ineligible():
    names = ["days_to_renewal", "billing_period", "tenure_days", "contract", "contract_term",
             "usage_events_last_30d", "support_tickets_last_30d", "plan"]
    rows = [(n, "billing", "post_sale", "numeric", "", n.replace("_", " ")) for n in names]
    frame = pd.DataFrame(rows, columns=list(TINY_CATALOG.columns))
    eligible = {spec.name: spec.reason_eligible for spec in catalog_specs(frame)}
    assert [n for n in names if not eligible[n]] == names[:5]
    # An explicit catalog value wins over the name rule, and survives a round trip.
    frame["reason_eligible"] = ["true", "false", "no", "1", "", "0", "yes", "False"]
    again = catalog_frame(catalog_specs(frame))
    assert again["reason_eligible"].tolist() == [True, False, False, True, False, False, True,
                                                 False]
    frame.loc[0, "reason_eligible"] = "maybe"
    with pytest.raises(Exception, match=r"row 1: reason_eligible must be true or false"):
        catalog_specs(frame)


def _naive_family_first(contributions, specs, batch_typical_ok):
    """Reference: loop over rows, sum each family's eligible contributions, pick its best."""
    names = list(specs)
    firsts = []
    for row in range(contributions.shape[0]):
        sums: dict[str, float] = {}
        for j, name in enumerate(names):
            if specs[name].reason_eligible:
                sums[specs[name].family] = sums.get(specs[name].family, 0.0) + contributions[row, j]
        order = [f for f in FAMILIES if f in sums]
        best = max(order, key=lambda f: (sums[f], -order.index(f)))
        candidates = [
            (contributions[row, j], -j, j) for j, name in enumerate(names)
            if specs[name].family == best and specs[name].reason_eligible
            and contributions[row, j] > 0 and batch_typical_ok(row, name)
        ]
        if sums[best] <= 0 or not candidates:  # no family-first reason: the feature order
            candidates = [
                (contributions[row, j], -j, j) for j, name in enumerate(names)
                if specs[name].reason_eligible and contributions[row, j] > 0
                and batch_typical_ok(row, name)
            ]
        firsts.append(max(candidates)[2] if candidates else None)
    return firsts


def test_family_first_names_the_family_with_the_largest_net_push():
    # Usage spreads 0.9 over three correlated counts; support has one feature at 0.5.
    specs = _specs(
        ("u1", "usage", True), ("u2", "usage", True), ("u3", "usage", True),
        ("s1", "support", True), ("renewal", "billing", False), ("e1", "engagement", True),
    )
    batch = pd.DataFrame({name: [1.0, 1.0, 1.0] for name in specs})
    contributions = np.array([
        [0.3, 0.3, 0.3, 0.5, 2.0, 0.1],     # usage 0.9 > support 0.5: u1 first
        [0.4, 0.4, -0.6, 0.5, 2.0, 0.1],    # usage nets to 0.2 < support 0.5: s1 first
        [-0.1, -0.1, -0.1, -0.2, 3.0, -0.1],  # nothing eligible pushes risk up: no reason
    ])
    names = np.array(list(specs))
    by_feature, _ = select_reasons(batch, contributions, specs, {}, 3)
    index, value = select_reasons(batch, contributions, specs, {}, 3, first_reason="family")
    assert names[by_feature[0]].tolist() == ["s1", "u1", "u2"]
    assert names[index[0]].tolist() == ["u1", "s1", "u2"]  # the rest follow by size
    assert value[0].tolist() == [0.3, 0.5, 0.3]
    assert names[index[1]].tolist() == ["s1", "u1", "u2"]
    assert np.isnan(value[2]).all()
    reference = _naive_family_first(contributions, specs, lambda row, name: True)
    assert [names[i] if i is not None else None for i in reference] == ["u1", "s1", None]


def test_family_first_skips_a_typical_value_and_falls_back_when_its_family_has_none():
    specs = _specs(("u1", "usage", True), ("u2", "usage", True), ("s1", "support", True))
    batch = pd.DataFrame({"u1": [4.0, 4.0], "u2": [2.0, 4.0], "s1": [1.0, 1.0]})
    typical = {"u1": 4.0, "u2": 4.0}
    contributions = np.array([[0.5, 0.2, 0.4], [0.5, 0.2, 0.4]])
    index, value = select_reasons(batch, contributions, specs, typical, 2, first_reason="family")
    names = np.array(list(specs))
    # Row 0: u1 shows its typical value, u2 tells the usage family. Row 1: both usage values
    # are typical, so the row keeps the feature order (s1 is the only kept reason).
    assert names[index[0]].tolist() == ["u2", "s1"] and value[0].tolist() == [0.2, 0.4]
    assert names[index[1, 0]] == "s1" and np.isnan(value[1, 1])
    ok = {(0, "u1"): False, (1, "u1"): False, (1, "u2"): False}
    reference = _naive_family_first(contributions, specs, lambda r, n: ok.get((r, n), True))
    assert reference == [1, 2]


def test_family_first_matches_a_naive_loop_on_random_rows():
    rng = np.random.default_rng(3)
    families = ["usage", "usage", "support", "engagement", "billing", "usage", "acquisition"]
    specs = _specs(*[(f"f{j}", family, j != 4) for j, family in enumerate(families)])
    contributions = rng.normal(0.0, 1.0, size=(300, len(specs)))
    batch = pd.DataFrame({name: np.ones(300) for name in specs})
    index, value = select_reasons(batch, contributions, specs, {}, 2, first_reason="family")
    reference = _naive_family_first(contributions, specs, lambda row, name: True)
    got = [int(index[r, 0]) if np.isfinite(value[r, 0]) else None for r in range(300)]
    assert got == reference
    by_feature, _ = select_reasons(batch, contributions, specs, {}, 2)
    assert (by_feature[:, 0] != index[:, 0]).sum() > 20  # the two modes differ on these rows


def test_unknown_first_reason_mode_is_refused():
    specs = _specs(("a", "usage", True))
    with pytest.raises(ValueError, match="first_reason must be one of"):
        select_reasons(pd.DataFrame({"a": [1.0]}), np.ones((1, 1)), specs, {}, 1,
                       first_reason="biggest")


def test_scores_follow_the_first_reason_mode_stored_in_the_model(tiny_model, feature_frame):
    from churn.model.reasons import build_feature_specs

    rows = feature_frame.head(300)
    family_model = dataclasses.replace(
        tiny_model,
        metadata={**tiny_model.metadata, "reason_reference": {"first_reason": "family"}},
    )
    by_feature = score_frame(tiny_model, rows, REASONS)
    by_family = score_frame(family_model, rows, REASONS)
    specs = build_feature_specs(
        family_model.catalog, family_model.feature_names, family_model.categorical_levels
    )
    contributions, _ = family_model.contributions(rows)
    index, value = select_reasons(
        rows, contributions, specs, family_model.typical_values, REASONS, first_reason="family"
    )
    names = np.array(list(specs), dtype=object)
    expected = np.where(np.isfinite(value[:, 0]), names[index[:, 0]], None)
    first = by_family["reason_1_feature"].astype(object)
    got = first.where(first.notna(), None)
    assert got.tolist() == expected.tolist()
    assert (by_family["reason_1_feature"] != by_feature["reason_1_feature"]).any()
    pd.testing.assert_series_equal(by_family["churn_probability"], by_feature["churn_probability"])


@pytest.mark.parametrize("largest", [40, 40_000])  # 16-bit radix sort, and past its range
def test_group_slots_by_feature_lists_every_filled_slot_once_in_position_order(largest):
    rng = np.random.default_rng(largest)
    index = rng.integers(0, largest, size=(300, 4))
    index[::7, 0] = largest - 1
    value = np.where(rng.random((300, 4)) < 0.8, 1.0, np.nan)
    expected: dict[int, list[tuple[int, int]]] = {}
    for row in range(300):  # naive: every filled (row, slot), in row then slot order
        for slot in range(4):
            if np.isfinite(value[row, slot]):
                expected.setdefault(int(index[row, slot]), []).append((row, slot))
    got = {position: list(zip(rows.tolist(), slots.tolist(), strict=True))
           for position, rows, slots in group_slots_by_feature(index, value)}
    assert list(got) == sorted(expected) and got == expected
