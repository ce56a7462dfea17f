"""``data_end``'s memory-lean density end equals the rule of ``find_density_end``.

The reference (:func:`support.data_end_reference.naive_data_end`) is the straightforward
reading of the rule: stack every timestamp column of a table (scheduled ends after ``as_of``
left out), hand them to :func:`churn.domain.data_end.find_density_end`, take the latest table
end. ``data_end`` finds
the anchor by partitioning and counts the distinct days chunk by chunk instead; both must agree on
random tables with stray rows, ties at the anchor, few rows, missing values, naive and ns
columns, and integer-id third-party shapes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support.data_end_reference import naive_data_end

from churn.domain import data_end as domain_data_end
from churn.errors import EmptyPopulationError
from churn.labels.schedule import data_end

START = pd.Timestamp("2023-01-01", tz="UTC")


def _stamps(rng: np.random.Generator, rows: int, days: int, strays: int,
            unit: str = "us") -> pd.Series:
    """``rows`` times over ``days`` days (seconds resolution) plus ``strays`` far later."""
    seconds = rng.integers(0, days * 86_400, rows)
    seconds = np.concatenate([seconds, days * 86_400 + rng.integers(40, 400, strays) * 86_400])
    values = (START + pd.to_timedelta(seconds, unit="s")).as_unit(unit)
    return pd.Series(values)


@pytest.mark.parametrize("seed", range(12))
def test_lean_data_end_equals_the_stacked_find_density_end(seed):
    rng = np.random.default_rng(seed)
    rows = int(rng.choice([1, 2, 7, 999, 1000, 1001, 5000, 40_000]))
    days = int(rng.choice([1, 3, 60, 700]))
    strays = int(rng.choice([0, 1, 5]))
    usage = pd.DataFrame({
        "customer_id": rng.integers(0, 50, rows + strays),  # integer ids, as some exports have
        "occurred_at": _stamps(rng, rows, days, strays),
        "quantity": rng.random(rows + strays),
    })
    usage.loc[rng.random(len(usage)) < 0.05, "occurred_at"] = pd.NaT
    tickets = pd.DataFrame({
        "opened_at": _stamps(rng, 300, days, 0),
        # a naive ns column: read as UTC, stacked at the finer resolution
        "resolved_at": _stamps(rng, 300, days + 5, strays, unit="ns").dt.tz_localize(None)
        .iloc[:300].reset_index(drop=True),
    })
    subs = pd.DataFrame({
        "started_at": _stamps(rng, 40, days, 0),
        "ended_at": _stamps(rng, 40, days + 400, 0),
    })
    tables = {"usage_events": usage, "support_tickets": tickets, "subscriptions": subs}
    as_of = (START + pd.Timedelta(days=days)).date()
    for gap_days in (1, 30):
        for cutoff in (None, as_of):
            assert data_end(tables, gap_days=gap_days, as_of=cutoff) == naive_data_end(
                tables, gap_days, cutoff
            ), (seed, gap_days, cutoff)


def test_ties_at_the_anchor_and_chunked_days_agree(monkeypatch):
    # Many equal values around the 99.9th percentile, and days counted in tiny chunks.
    monkeypatch.setattr(domain_data_end, "_CHUNK", 7)
    # 100 equal stamps on each of 10 days, then one stray: the anchor (index 999 of 1001) is
    # one of the 100 ties on day 9, and the tail holds all of them.
    days = [START + pd.Timedelta(days=d) for d in range(10) for _ in range(100)]
    values = pd.Series([*days, START + pd.Timedelta(days=200)])
    tables = {"usage_events": pd.DataFrame({"occurred_at": values})}
    assert data_end(tables) == naive_data_end(tables) == START + pd.Timedelta(days=9)


def test_lean_data_end_leaves_the_tables_unchanged():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"occurred_at": _stamps(rng, 5000, 30, 2)})
    before = frame.copy()
    data_end({"usage_events": frame})
    pd.testing.assert_frame_equal(frame, before)


def test_a_table_without_timestamps_is_skipped_and_none_at_all_is_an_error():
    only_text = {"usage_events": pd.DataFrame({"customer_id": ["a"]})}
    with pytest.raises(EmptyPopulationError):
        data_end(only_text)
    missing = pd.Series([pd.NaT], dtype="datetime64[us, UTC]")
    empty = {"usage_events": pd.DataFrame({"occurred_at": missing})}
    with pytest.raises(EmptyPopulationError):
        data_end(empty)
