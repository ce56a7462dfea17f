"""Simulator shifts: each changes what it names from its month on, and nothing before."""

from __future__ import annotations

import pandas as pd
import pytest

from churn.config import ConfigError, parse_params
from churn.stages.simulate.engine import simulate

BASE = {"customers": 1500, "months": 10, "seed": 3, "mess": False}


def run(shifts: list[dict]) -> dict[str, pd.DataFrame]:
    return simulate(parse_params({"simulate": {**BASE, "shifts": shifts}}).simulate).tables


@pytest.fixture(scope="module")
def plain() -> dict[str, pd.DataFrame]:
    return run([])


def month_start(m: int) -> pd.Timestamp:
    return pd.Timestamp("2024-01-01", tz="UTC") + pd.DateOffset(months=m)


def test_price_increase_hits_the_plan_at_its_month(plain: dict[str, pd.DataFrame]) -> None:
    shifted = run([{"kind": "price_increase", "plan": "pro", "from_month": 6, "size": 0.3}])
    changes = shifted["subscription_changes"]
    at = changes[(changes["effective_at"] == month_start(6))
                 & (changes["change_type"] == "price_increase")]
    assert len(at) > 50
    assert (at["mrr_after"] / at["mrr_before"]).between(1.29, 1.31).all()
    before = changes[changes["effective_at"] < month_start(6)]
    plain_before = plain["subscription_changes"]
    plain_before = plain_before[plain_before["effective_at"] < month_start(6)]
    pd.testing.assert_frame_equal(before.reset_index(drop=True),
                                  plain_before.reset_index(drop=True))


def test_support_outage_slows_resolution_after_its_month(plain: dict[str, pd.DataFrame]) -> None:
    shifted = run([{"kind": "support_outage", "from_month": 6, "resolution_days_factor": 3}])

    def median_hours(tables: dict[str, pd.DataFrame], after: bool) -> float:
        t = tables["support_tickets"]
        t = t[(t["opened_at"] >= month_start(6)) == after]
        return float(((t["resolved_at"] - t["first_response_at"]).dt.total_seconds()).median())

    assert median_hours(shifted, True) > 2.5 * median_hours(plain, True)
    assert median_hours(shifted, False) == pytest.approx(median_hours(plain, False))


def test_new_channel_moves_later_conversions(plain: dict[str, pd.DataFrame]) -> None:
    shifted = run([{"kind": "new_channel", "from_month": 5, "size": 0.6, "channel": "events"}])

    def share(tables: dict[str, pd.DataFrame]) -> float:
        c = tables["customers"]
        later = c[c["converted_at"] >= month_start(5)]
        return float((later["acquisition_channel"] == "events").mean())

    assert share(shifted) > share(plain) + 0.4


def test_unknown_plan_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="plan"):
        run([{"kind": "price_increase", "plan": "gold", "from_month": 2, "size": 0.1}])
