"""Tests for churn.report.data: the segment join of scores with labels and customer attributes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from churn.report.data import find_latest_rows, with_segments
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


def _naive_latest_rows(customer_ids: list, cutoffs: list) -> list[int]:
    """Per customer, the last row (in frame order) among those at their latest dated cutoff;
    undated rows only when a customer has no dated row."""
    undated = pd.Timestamp.min.tz_localize("UTC")
    best: dict[object, tuple[tuple[bool, pd.Timestamp], int]] = {}
    for position, (customer, cutoff) in enumerate(zip(customer_ids, cutoffs, strict=True)):
        key = "<missing>" if pd.isna(customer) else customer
        rank = (False, undated) if pd.isna(cutoff) else (True, cutoff)
        if key not in best or rank >= best[key][0]:
            best[key] = (rank, position)
    return sorted(position for _, position in best.values())


@pytest.mark.parametrize("seed", range(25))
def test_find_latest_rows_matches_a_row_by_row_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 60))
    days = pd.to_datetime("2025-01-01", utc=True) + pd.to_timedelta(
        rng.integers(0, 4, n) * 30, unit="D"
    )
    cutoffs = pd.Series(days).where(rng.random(n) > 0.15)  # some NaT
    raw_ids = rng.integers(0, 8, n)
    # Integer ids (a billing export's) or text ids with gaps.
    if seed % 2:
        ids = pd.Series(raw_ids)
    else:
        ids = pd.Series([f"c{i}" for i in raw_ids], dtype="str").where(rng.random(n) > 0.1)
    found = find_latest_rows(ids, cutoffs)
    assert list(found) == _naive_latest_rows(list(ids), list(cutoffs))


def test_the_latest_label_row_is_the_last_one_at_the_latest_cutoff():
    # Customer a has two rows at its latest cutoff (the second wins) and an undated row, which
    # never beats a dated one; b has only an undated row, which is its latest.
    labels = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b", "a"],
            "cutoff": pd.to_datetime(
                ["2025-12-01", "2025-11-01", "2025-12-01", None, None], utc=True
            ),
            "plan": ["pro", "starter", "business", "starter", "free"],
        }
    )
    segmented = with_segments(_inputs(labels))
    assert list(segmented["plan"].fillna("<none>")) == ["business", "starter", "<none>"]
