"""Tests for churn.report.data: the segment join of scores with labels and customer attributes."""

from __future__ import annotations

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
