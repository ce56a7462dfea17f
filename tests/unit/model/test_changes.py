"""What changed since the last score: the moving features and their sentences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.domain.catalog import FeatureSpec
from churn.errors import DataContractError
from churn.model.changes import (
    compare_scores,
    compute_contribution_change,
    describe_change,
    describe_changes,
    display_keys,
    find_same_display,
    rank_largest_changes,
)


def _spec(name: str, unit: str, description: str, kind: str = "numeric") -> FeatureSpec:
    return FeatureSpec(name, "support", "post_sale", kind, unit, description)


TICKETS = _spec("tickets_30d", "tickets", "support tickets opened in the last 30 days")
MRR = _spec("mrr_at_cutoff", "currency/month", "monthly recurring revenue")
SHARE = _spec("seat_share", "share", "share of seats active in the last 30 days")
LOGIN = _spec("days_since_login", "days", "days since the last login")
FLAG = _spec("discount", "flag", "flag for discount active at the cutoff (1 yes, 0 no)")
PLAN = _spec("plan", "", "plan", kind="categorical")
RENEWAL = _spec("days_to_renewal", "days", "days until the next renewal date")


@pytest.mark.parametrize(
    ("spec", "before", "now", "sentence"),
    [
        (TICKETS, 0, 4, "support tickets opened in the last 30 days rose from 0 to 4"),
        (TICKETS, 3, 1, "support tickets opened in the last 30 days fell from 3 to 1"),
        (MRR, 161.85, 120, "monthly recurring revenue fell from 161.85 per month to 120 per month"),
        (
            MRR,
            1500.4,
            2210.7,
            "monthly recurring revenue rose from 1,500 per month to 2,211 per month",
        ),
        (SHARE, 0.1, 0.25, "share of seats active in the last 30 days rose from 10% to 25%"),
        (LOGIN, 3, 12, "days since the last login rose from 3 to 12"),
        (LOGIN, 100, 130, "months since the last login rose from 3.3 to 4.3"),
        (FLAG, 0, 1, "discount active at the cutoff changed from no to yes"),
        (PLAN, "pro", "starter", "plan changed from pro to starter"),
        (
            TICKETS,
            None,
            2,
            "support tickets opened in the last 30 days: now 2, none on record before",
        ),
        (
            TICKETS,
            2,
            np.nan,
            "no support tickets opened in the last 30 days on record any more (was 2)",
        ),
    ],
)
def test_change_sentences_follow_the_reason_wording(spec, before, now, sentence) -> None:
    assert describe_change(before, now, spec) == sentence


@pytest.mark.parametrize(
    ("spec", "before", "now"),
    [
        (TICKETS, 4, 4.0),
        (TICKETS, 4.01, 4.04),  # both display 4
        (LOGIN, 100, 101),  # both 3.3 months
        (SHARE, 0.101, 0.104),  # both 10%
        (FLAG, 1, 5),  # both yes
        (PLAN, "pro", "pro"),
        (TICKETS, None, np.nan),
    ],
)
def test_a_value_that_displays_the_same_is_no_change(spec, before, now) -> None:
    assert describe_change(before, now, spec) is None
    keys = display_keys(pd.Series([before, now], dtype=object), spec)
    assert keys[0] == keys[1]


def test_display_keys_tell_days_from_months() -> None:
    keys = display_keys(pd.Series([3.3, 100.0, 89.0]), LOGIN)
    assert keys[0] != keys[1] and keys[1] != keys[2]


def _frames():
    """Two scorings of three customers with integer ids (a CRM export's), features beside."""
    ids = [101, 102, 103]
    scores_before = pd.DataFrame(
        {"customer_id": ids, "cutoff": "2025-01-01", "churn_probability": [0.1, 0.2, 0.3]}
    )
    scores_now = scores_before.assign(
        cutoff="2025-02-01", churn_probability=[0.4, 0.1, 0.3]
    )
    names = ["tickets_30d", "mrr_at_cutoff", "plan", "days_to_renewal"]

    def contributions(rows):
        frame = pd.DataFrame(rows, columns=names)
        return frame.assign(customer_id=ids, cutoff="2025-01-01", base_value=-2.0)

    before_c = contributions([[0.0, 0.0, 0.0, 0.0]] * 3)
    # Customer 101: tickets moved most, then plan (value unchanged: interaction), then MRR,
    # and the renewal timing moved even more (never named).
    now_c = contributions(
        [[0.9, -0.2, 0.5, 2.0], [-0.3, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    )
    features_before = pd.DataFrame(
        {
            "customer_id": ids,
            "tickets_30d": [0.0, 5.0, 1.0],
            "mrr_at_cutoff": [200.0, 90.0, 50.0],
            "plan": ["pro", "pro", "starter"],
            "days_to_renewal": [40.0, 12.0, 3.0],
        }
    )
    features_now = features_before.assign(
        tickets_30d=[4.0, 1.0, 1.0], mrr_at_cutoff=[150.0, 90.0, 50.0],
        days_to_renewal=[9.0, 300.0, 3.0],
    )
    specs = {s.name: s for s in (TICKETS, MRR, PLAN, RENEWAL)}
    return scores_now, scores_before, now_c, before_c, features_now, features_before, specs


def test_compare_scores_words_what_changed_and_skips_unchanged_values() -> None:
    now, before, now_c, before_c, f_now, f_before, specs = _frames()
    changes = compare_scores(
        now, before, now_c, before_c, top=3, ineligible=["days_to_renewal"],
        current_features=f_now.assign(customer_id=f_now["customer_id"].astype(str)),
        previous_features=f_before, specs=specs,
    ).set_index("customer_id")
    first = changes.loc["101"]
    # The plan's contribution moved (0.5) but its value did not: MRR takes its slot.
    assert [first["moved_1_feature"], first["moved_2_feature"]] == ["tickets_30d", "mrr_at_cutoff"]
    assert first["moved_1_text"] == "support tickets opened in the last 30 days rose from 0 to 4"
    assert first["moved_2_text"] == (
        "monthly recurring revenue fell from 200 per month to 150 per month"
    )
    assert pd.isna(first["moved_3_feature"]) and pd.isna(first["moved_3_text"])
    assert first["moved_2_delta"] == pytest.approx(-0.2)
    second = changes.loc["102"]
    assert second["moved_1_text"] == "support tickets opened in the last 30 days fell from 5 to 1"
    # Nothing about customer 103 moved.
    assert changes.loc["103", ["moved_1_feature", "moved_1_text"]].isna().all()
    assert not changes.filter(like="_feature").isin(["days_to_renewal"]).any().any()


def test_compare_scores_without_feature_values_keeps_the_contribution_ranking() -> None:
    now, before, now_c, before_c, *_ = _frames()
    changes = compare_scores(now, before, now_c, before_c, top=3, ineligible=["days_to_renewal"])
    first = changes.set_index("customer_id").loc["101"]
    assert [first[f"moved_{i}_feature"] for i in (1, 2, 3)] == [
        "tickets_30d",
        "plan",
        "mrr_at_cutoff",
    ]
    assert changes.filter(like="_text").isna().all().all()


def test_categorical_missing_values_of_any_kind_read_as_missing() -> None:
    assert describe_change(pd.NA, "pro", PLAN) == "plan: now pro, none on record before"
    assert describe_change("pro", np.nan, PLAN) == "no plan on record any more (was pro)"
    assert describe_change(pd.NA, None, PLAN) is None


def test_largest_changes_rank_like_a_stable_sort_of_minus_the_magnitude() -> None:
    # The naive reference: numpy's stable argsort of -|delta| with NaN last, per row.
    rng = np.random.default_rng(3)
    delta = rng.choice([0.0, 0.5, -0.5, 1.0, -2.0, np.nan, np.inf, 0.25], size=(400, 7))
    magnitude = np.nan_to_num(np.abs(delta), nan=-1.0)
    for top in (1, 3, 7, 9):
        expected = np.argsort(-magnitude, axis=1, kind="stable")[:, :top]
        np.testing.assert_array_equal(rank_largest_changes(delta, top), expected)
    # Ties keep the column order; NaN ranks below zero.
    np.testing.assert_array_equal(
        rank_largest_changes(np.array([[np.nan, 0.0, -1.0, 1.0]]), 4), [[2, 3, 1, 0]]
    )


def test_each_moved_row_gets_the_sentence_of_its_own_values() -> None:
    # Sentences are built once per displayed pair and shared: every row must still read as
    # describe_change of its own values (the naive reference), for numbers, day counts shown
    # in months, missing values and categoricals.
    rng = np.random.default_rng(5)
    before = rng.choice([0.0, 1.0, 2.04, 2.0, np.nan, 95.0, 120.0], size=300)
    now = rng.choice([0.0, 1.0, 3.0, np.nan, 100.0, 2.01], size=300)
    for spec in (TICKETS, LOGIN, FLAG):
        expected = [describe_change(b, n, spec) for b, n in zip(before, now, strict=True)]
        assert list(describe_changes(before, now, spec)) == expected
    plans_before = np.array(rng.choice(["pro", "starter", None], size=50), dtype=object)
    plans_now = np.array(rng.choice(["pro", "team", None], size=50), dtype=object)
    expected = [describe_change(b, n, PLAN) for b, n in zip(plans_before, plans_now, strict=True)]
    assert list(describe_changes(plans_before, plans_now, PLAN)) == expected
    assert len(describe_changes(before[:0], now[:0], TICKETS)) == 0


def test_same_display_agrees_with_comparing_display_keys() -> None:
    values = np.array([0.0, 0.004, 1.04, 1.0, np.nan, 89.0, 90.0, 91.0, 120.0, -0.0])
    before, now = np.meshgrid(values, values)
    before, now = before.ravel(), now.ravel()
    for spec in (TICKETS, MRR, SHARE, LOGIN, FLAG):
        expected = display_keys(pd.Series(before), spec) == display_keys(pd.Series(now), spec)
        np.testing.assert_array_equal(find_same_display(before, now, spec), expected)


def test_contribution_change_reads_each_sidecar_by_customer() -> None:
    current = pd.DataFrame({"customer_id": [2, 1, 3], "a": [0.5, 1.0, 2.0], "b": [1.0, 1.0, 1.0]})
    previous = pd.DataFrame({"customer_id": ["1", "2"], "a": [0.25, 0.5], "c": [3.0, 4.0]})
    ids = pd.Series(["1", "2", "3"])
    delta = compute_contribution_change(current, previous, ids, ["a", "b", "c"])
    # b is unknown to the previous model (0 there), c to the current one; 3 was not scored.
    expected = np.array([[0.75, 1.0, -3.0], [0.0, 1.0, -4.0], [np.nan] * 3])
    np.testing.assert_array_equal(delta, expected)
    twice = pd.DataFrame({"customer_id": ["1", "1"], "a": [0.0, 1.0]})
    with pytest.raises(DataContractError, match="twice"):
        compute_contribution_change(current, twice, ids, ["a"])
