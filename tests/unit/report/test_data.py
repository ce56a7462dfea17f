"""Tests for churn.report.data: the segment join of scores with labels and customer attributes."""

from __future__ import annotations

import dataclasses

import pandas as pd

from churn.report.data import with_segments
from churn.report.inputs import ReportInputs


def _inputs(labels: pd.DataFrame, customers: pd.DataFrame | None = None) -> ReportInputs:
    scores = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "cutoff": pd.to_datetime(["2026-01-01"] * 3, utc=True),
            "churn_probability": [0.1, 0.5, 0.2],
        }
    )
    return ReportInputs(
        scores=scores,
        labels=labels,
        customers=customers,
        segment_columns=("plan", "acquisition_channel"),
    )


def test_segments_come_from_older_labels_when_the_score_cutoff_has_none():
    # Scoring ran at a cutoff the labels do not hold (new data): the first source is empty, and
    # its all-missing column must not block the text values found in the older label rows.
    labels = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b"],
            "cutoff": pd.to_datetime(["2025-11-01", "2025-12-01", "2025-12-01"], utc=True),
            "plan": ["starter", "pro", "business"],
        }
    )
    customers = pd.DataFrame({"customer_id": ["a", "c"], "acquisition_channel": ["ads", "partner"]})
    segmented = with_segments(_inputs(labels, customers))  # warnings are errors in this suite
    assert list(segmented["plan"].fillna("<none>")) == ["pro", "business", "<none>"]
    assert list(segmented["acquisition_channel"].fillna("<none>")) == ["ads", "<none>", "partner"]


def test_a_partly_filled_segment_keeps_its_values_and_fills_the_gaps():
    labels = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "cutoff": pd.to_datetime(["2026-01-01", "2026-01-01", "2025-12-01"], utc=True),
            "plan": ["pro", None, "starter"],
        }
    )
    segmented = with_segments(_inputs(labels))
    # a and b from the score cutoff's rows (b has none), c from its latest earlier row.
    assert list(segmented["plan"].fillna("<none>")) == ["pro", "<none>", "starter"]


def test_a_join_made_once_is_shared_as_a_new_frame_each_time():
    labels = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "cutoff": pd.to_datetime(["2026-01-01"] * 3, utc=True),
            "plan": ["pro", "starter", "pro"],
        }
    )
    inputs = _inputs(labels)
    joined = with_segments(inputs)
    shared = dataclasses.replace(inputs, segmented_scores=joined)
    first = with_segments(shared)
    pd.testing.assert_frame_equal(first, joined)
    first["_order"] = 1.0  # a section adding a column ...
    assert "_order" not in with_segments(shared)  # ... leaves the next section's frame alone
    assert "_order" not in joined


def test_each_segment_comes_from_the_first_source_that_has_it():
    # plan from the score cutoff's rows, the channel from the customers table, billing period
    # only in the older label rows: three sources, each read once per call.
    labels = pd.DataFrame(
        {
            "customer_id": [1, 2, 1, 3],
            "cutoff": pd.to_datetime(
                ["2025-12-01", "2025-12-01", "2026-01-01", "2026-01-01"], utc=True
            ),
            "plan": ["starter", "pro", "business", None],
            "billing_period": ["monthly", "annual", None, None],
        }
    )
    customers = pd.DataFrame({"customer_id": [3, 2], "acquisition_channel": ["ads", "partner"]})
    scores = pd.DataFrame(
        {
            "customer_id": ["1", "2", "3"],
            "cutoff": pd.to_datetime(["2026-01-01"] * 3, utc=True),
            "churn_probability": [0.1, 0.5, 0.2],
        }
    )
    inputs = ReportInputs(
        scores=scores,
        labels=labels,
        customers=customers,
        segment_columns=("plan", "acquisition_channel", "billing_period"),
    )
    segmented = with_segments(inputs)
    assert list(segmented["plan"].fillna("<none>")) == ["business", "pro", "<none>"]
    assert list(segmented["acquisition_channel"].fillna("<none>")) == ["<none>", "partner", "ads"]
    # 1's latest label row has no billing period: the latest row is what counts, not the latest
    # filled value; 2's latest row (2025-12-01) has one; 3's has none.
    assert list(segmented["billing_period"].fillna("<none>")) == ["<none>", "annual", "<none>"]
