"""Tests for matching logged contacts with the simulator's retention truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.io import read_frame, read_frame_keys
from churn.targeting.dose_truth import join_truth, list_truth_keys

PLAYS = ["support_escalation", "success_checkin", "discount"]


def make_truth(customer_ids: np.ndarray) -> pd.DataFrame:
    months = pd.date_range("2025-01-01", periods=5, freq="MS", tz="UTC").as_unit("us")
    index = pd.MultiIndex.from_product([customer_ids, months, PLAYS],
                                       names=["customer_id", "month_start", "play"])
    truth = index.to_frame(index=False)
    rng = np.random.default_rng(0)
    truth["churn_untreated"] = rng.random(len(truth)).astype(np.float32)
    truth["churn_treated"] = (truth["churn_untreated"] * 0.8).astype(np.float32)
    return truth


@pytest.mark.parametrize("ids", ["text", "integer"])
def test_reading_the_contacts_truth_rows_joins_like_the_whole_truth(tmp_path, ids):
    """Integer ids (an export) and text ids; contacts at month starts and ends, two contacts
    in one customer's month, a customer the truth does not hold."""
    customer_ids = np.arange(1, 41) if ids == "integer" else np.array(
        [f"c{i}" for i in range(1, 41)])
    truth = make_truth(customer_ids)
    truth.to_parquet(tmp_path / "truth.parquet", index=False, row_group_size=100)
    rng = np.random.default_rng(1)
    n = 60
    hours = pd.date_range("2025-01-01", "2025-05-31 23:00", freq="h", tz="UTC").as_unit("us")
    logged = pd.DataFrame(
        {
            # The last contact falls in the last second of a month (still that month's truth).
            "customer_id": [*customer_ids[rng.integers(0, len(customer_ids), n)],
                            customer_ids[0]],
            "action_at": pd.DatetimeIndex(
                [*hours[rng.integers(0, len(hours), n)],
                 pd.Timestamp("2025-03-31 23:59:59", tz="UTC")]).as_unit("us"),
            "play": [*rng.choice(PLAYS, n), PLAYS[0]],
            "churned": rng.integers(0, 2, n + 1),
        }
    )
    stranger = logged.iloc[:1].assign(customer_id=999 if ids == "integer" else "c999")
    logged = pd.concat([logged, stranger], ignore_index=True)

    read = read_frame_keys(tmp_path / "truth.parquet", list_truth_keys(logged))
    whole = read_frame(tmp_path / "truth.parquet")
    assert len(read) < len(whole)
    pd.testing.assert_frame_equal(join_truth(logged, read), join_truth(logged, whole))
    # Naive reference: each logged row with the truth row of its customer, month and play.
    expected = []
    for row in logged.itertuples(index=False):
        month = pd.Timestamp(year=row.action_at.year, month=row.action_at.month, day=1,
                             tz="UTC")
        hit = whole[(whole["customer_id"] == row.customer_id) & (whole["month_start"] == month)
                    & (whole["play"] == row.play)]
        expected.extend(hit["churn_untreated"].tolist())
    assert join_truth(logged, read)["churn_untreated"].tolist() == expected
    assert len(expected) == len(logged) - 1  # the stranger has no truth
