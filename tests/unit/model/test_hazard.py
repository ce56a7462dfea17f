"""The decision schedule, person-period expansion and hazard combination of the survival head."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.errors import ModelError
from churn.model.hazard import (
    build_decision_schedule,
    combine_hazards,
    expand_person_periods,
    find_next_decision_dates,
    find_term_months,
    label_at_horizon,
)

T = pd.Timestamp("2025-03-01", tz="UTC")


def _frame(days: list[float | None], periods: list[object]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [str(i) for i in range(len(days))],
            "cutoff": pd.Series([T] * len(days)),
            "days_to_renewal": pd.Series(days, dtype="float64"),
            "billing_period": pd.Series(periods, dtype="object"),
        }
    )


@pytest.mark.parametrize("dtype", ["object", "str", "category"])
def test_term_months_reads_names_and_month_counts(dtype: str) -> None:
    periods = pd.Series(["monthly", "annual", "quarterly", "6", 12, None, "weird", "annual"])
    periods = periods.astype(dtype)
    assert find_term_months(periods).tolist() == [1, 12, 3, 6, 12, 1, 1, 12]


def test_term_months_read_month_counts_as_numbers() -> None:
    periods = pd.Series([12.0, np.nan, 3.0, 0.5, 1.0])
    assert find_term_months(periods).tolist() == [12, 1, 3, 1, 1]
    assert find_term_months(pd.Series([6, 12, 6], dtype="Int64")).tolist() == [6, 12, 6]


def test_schedule_by_hand() -> None:
    # Monthly from day 5: Mar 6, Apr 6 (36 d), May 6 (66 d), Jun 6 (97 d, outside 90).
    # Annual renewal on day 200: outside. Quarterly from day 10: Mar 11, Jun 11 (102 d): one.
    # Unknown schedule: monthly from the cutoff: 0, 31, 61 days.
    frame = _frame([5.0, 200.0, 10.0, None], ["monthly", "annual", "quarterly", None])
    schedule = build_decision_schedule(frame, longest_days=90)
    got = {row: part["days_to_decision"].tolist() for row, part in schedule.groupby("row")}
    assert got == {0: [5.0, 36.0, 66.0], 2: [10.0], 3: [0.0, 31.0, 61.0]}
    assert schedule.loc[schedule["row"] == 2, "term_months"].tolist() == [12 // 4]
    assert schedule.loc[schedule["row"] == 0, "decision_index"].tolist() == [0, 1, 2]


def _naive_schedule(frame: pd.DataFrame, longest_days: int) -> pd.DataFrame:
    """Naive reference: each row's decisions one by one, month steps by ``DateOffset``."""
    terms = find_term_months(frame["billing_period"])
    records = []
    for row in range(len(frame)):
        cutoff = pd.Timestamp(frame["cutoff"].iloc[row])
        days = frame["days_to_renewal"].iloc[row]
        known = not pd.isna(days)
        term = int(terms[row]) if known else 1
        first = cutoff + pd.to_timedelta(float(days) if known else 0.0, unit="D")
        for j in range(longest_days // 28 + 2):
            date = first + pd.DateOffset(months=term * j) if j else first
            offset = (date - cutoff) / pd.Timedelta(days=1)
            if offset < longest_days:
                records.append((row, j, offset, term))
    columns = ["row", "decision_index", "days_to_decision", "term_months"]
    return pd.DataFrame(records, columns=columns)


@pytest.mark.parametrize("longest_days", [30, 90, 400])
def test_schedule_equals_a_row_by_row_reference(longest_days: int) -> None:
    rng = np.random.default_rng(11)
    n = 300
    # Month ends, a leap day and the first of a month, so month steps clip to shorter months.
    cutoffs = pd.to_datetime(["2024-01-31", "2024-02-29", "2023-12-01", "2024-05-31"], utc=True)
    days = rng.uniform(-3.0, 120.0, n).round(3)
    days[rng.random(n) < 0.15] = np.nan
    periods = rng.choice(np.array(["monthly", "quarterly", "annual", "6", None], object), n)
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "cutoff": cutoffs[rng.integers(0, len(cutoffs), n)],
            "days_to_renewal": days,
            "billing_period": periods,
        }
    )
    got = build_decision_schedule(frame, longest_days)
    expected = _naive_schedule(frame, longest_days)
    assert got["decision_index"].max() >= 1  # rows with several decisions: order exercised
    pd.testing.assert_frame_equal(got, expected.astype(got.dtypes.to_dict()))


def test_schedule_needs_days_to_renewal() -> None:
    with pytest.raises(ModelError, match="days_to_renewal"):
        build_decision_schedule(_frame([1.0], ["monthly"]).drop(columns="days_to_renewal"), 90)


def test_next_decision_date_is_cutoff_plus_days_to_renewal() -> None:
    dates = find_next_decision_dates(_frame([5.0, None], ["monthly", "annual"]))
    assert dates.iloc[0] == pd.Timestamp("2025-03-06", tz="UTC")
    assert pd.isna(dates.iloc[1])


def test_person_periods_by_hand() -> None:
    # Row 0: monthly at 5/36/66; churns at 37 days (nearest decision 36) -> events 0, 1.
    # Row 1: monthly at 5/36/66; no churn, observed 60 days -> decisions 5 and 36 only.
    # Row 2: annual at 200: no decision inside 90; churn at 20 -> off schedule, left out.
    # Row 3: quarterly at 10: stays, observed 90 -> one row, event 0.
    frame = _frame([5.0, 5.0, 200.0, 10.0], ["monthly", "monthly", "annual", "quarterly"])
    schedule = build_decision_schedule(frame, longest_days=90)
    rows, off = expand_person_periods(
        schedule,
        days_to_churn=np.array([37.0, np.nan, 20.0, np.nan]),
        observed_days=np.array([90, 60, 90, 90]),
    )
    assert off == 1
    got = list(zip(rows["row"], rows["decision_index"], rows["event"], strict=True))
    assert got == [(0, 0, 0), (0, 1, 1), (1, 0, 0), (1, 1, 0), (3, 0, 0)]


def test_combine_matches_a_plain_loop() -> None:
    rng = np.random.default_rng(3)
    n, k = 40, 120
    rows = rng.integers(0, n, k)
    days = rng.uniform(0, 95, k)
    hazards = rng.uniform(0, 0.6, k)
    horizons = (30, 60, 90)
    fast = combine_hazards(hazards, rows, days, n, horizons)
    for i in range(n):
        for col, horizon in enumerate(horizons):
            stay = 1.0
            for r, d, h in zip(rows, days, hazards, strict=True):
                if r == i and d < horizon:
                    stay *= 1.0 - h
            assert fast[i, col] == pytest.approx(1.0 - stay, abs=1e-12)


def test_horizons_monotone_and_zero_exposure_is_zero() -> None:
    frame = _frame([5.0, 200.0, 45.0], ["monthly", "annual", "annual"])
    schedule = build_decision_schedule(frame, longest_days=90)
    hazards = np.full(len(schedule), 0.3)
    probabilities = combine_hazards(
        hazards, schedule["row"], schedule["days_to_decision"], len(frame), (30, 60, 90)
    )
    assert (np.diff(probabilities, axis=1) >= 0).all()
    assert probabilities[1].tolist() == [0.0, 0.0, 0.0]  # renews after 90 days
    assert probabilities[2].tolist() == pytest.approx([0.0, 0.3, 0.3])  # renews on day 45
    assert probabilities[0].tolist() == pytest.approx([0.3, 1 - 0.7**2, 1 - 0.7**3])


def test_label_at_horizon() -> None:
    got = label_at_horizon(np.array([10.0, 50.0, np.nan, 10.0]), np.array([90, 90, 90, 20]), 30)
    assert got[:3].tolist() == [1.0, 0.0, 0.0] and np.isnan(got[3])
