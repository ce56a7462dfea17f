"""Tests for churn.stages.label: the labels report and the stop on implausible churn rates."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from support.data_end_reference import naive_data_end
from support.synthetic import contract_frame

from churn.config import parse_params
from churn.errors import DataContractError
from churn.stages.label import run_label


def _write_tables(directory, churned: int, retained: int) -> None:
    """Customers converting 2023-01-01; ``churned`` of them end on 2024-07-10."""
    subs = [
        {
            "subscription_id": f"s{i}",
            "customer_id": f"c{i}",
            "plan": "pro",
            "billing_period": "monthly",
            "mrr": 10.0,
            "started_at": "2023-01-01",
            "ended_at": "2024-07-10" if i < churned else None,
        }
        for i in range(churned + retained)
    ]
    # The data runs to 2025-01-01 (a sentinel end date).
    subs.append(
        {**subs[-1], "subscription_id": "zz", "customer_id": "zz", "ended_at": "2025-01-01"}
    )
    customers = [{"customer_id": s["customer_id"], "converted_at": "2023-01-01"} for s in subs]
    directory.mkdir()
    contract_frame("subscriptions", subs).to_parquet(directory / "subscriptions.parquet")
    contract_frame("customers", customers).to_parquet(directory / "customers.parquet")


PARAMS = {"label": {"first_cutoff": "2024-06-01", "last_cutoff": "2024-12-01"}}


def test_run_label_writes_the_report_per_cutoff(tmp_path) -> None:
    _write_tables(tmp_path / "validated", churned=2, retained=8)
    out, report_path = tmp_path / "labels.parquet", tmp_path / "reports" / "labels.json"

    run_label(parse_params(PARAMS), tmp_path / "validated", out, report_path)

    report = json.loads(report_path.read_text())
    assert report["data_end"].startswith("2025-01-01")
    assert (report["horizon_days"], report["grace_days"]) == (60, 14)
    by_cutoff = {row["cutoff"]: row for row in report["cutoffs"]}
    # Naive reference: 11 customers (10 + sentinel), 2 end inside [06-01, 07-31).
    assert by_cutoff["2024-06-01"]["population"] == 11
    assert by_cutoff["2024-06-01"]["churners"] == 2
    assert by_cutoff["2024-06-01"]["churn_rate"] == pytest.approx(2 / 11)
    assert by_cutoff["2024-11-01"]["labeled"] is False
    assert "past the data end 2025-01-01" in by_cutoff["2024-11-01"]["unlabeled_reason"]
    assert report["problems"] == []
    labels = pd.read_parquet(out)
    assert sorted(labels["cutoff"].dt.strftime("%Y-%m-%d").unique()) == sorted(by_cutoff)


def test_implausible_churn_rate_stops_before_writing_labels(tmp_path) -> None:
    _write_tables(tmp_path / "validated", churned=8, retained=2)
    out, report_path = tmp_path / "labels.parquet", tmp_path / "labels.json"

    with pytest.raises(DataContractError) as caught:
        run_label(parse_params(PARAMS), tmp_path / "validated", out, report_path)

    message = str(caught.value)
    assert "cutoff 2024-06-01: 8 of 11 churned (72.7%)" in message
    assert "label.max_churn_rate" in message and "label.grace_days" in message
    assert not out.exists()
    assert json.loads(report_path.read_text())["problems"]  # the report explains the stop


def test_validated_tables_read_only_timestamps_of_other_tables_and_on_demand(tmp_path) -> None:
    from churn.stages.label import ValidatedTables

    _write_tables(tmp_path / "validated", churned=1, retained=3)
    usage = pd.DataFrame({
        "customer_id": [7, 8],  # integer ids, as a third-party export may have
        "occurred_at": pd.to_datetime(["2024-01-02", "2024-03-04"], utc=True),
        "event_type": ["login", "login"],
        "quantity": [1.0, 2.0],
    })
    usage.to_parquet(tmp_path / "validated" / "usage_events.parquet", index=False)
    tables = ValidatedTables(tmp_path / "validated", ["subscriptions", "customers",
                                                      "usage_events", "nps_responses"])

    assert sorted(tables) == ["customers", "subscriptions", "usage_events"]
    assert "nps_responses" not in tables and "usage_events" in tables
    assert list(tables["usage_events"].columns) == ["occurred_at"]
    pd.testing.assert_series_equal(tables["usage_events"]["occurred_at"], usage["occurred_at"])
    assert tables["usage_events"] is not tables["usage_events"]  # read again, never kept
    whole = pd.read_parquet(tmp_path / "validated" / "subscriptions.parquet")
    pd.testing.assert_frame_equal(tables["subscriptions"], whole)
    assert tables["subscriptions"] is tables["subscriptions"]  # read once, kept
    with pytest.raises(KeyError):
        tables["nps_responses"]


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", None])
@pytest.mark.parametrize("unit", ["us", "ns", "ms"])
def test_timestamps_read_by_row_group_equal_pd_read_parquet(tmp_path, tz, unit) -> None:
    from churn.stages.label import ValidatedTables

    stamps = pd.Series(pd.date_range("2024-01-01", periods=2500, freq="37min", tz=tz))
    frame = pd.DataFrame({"customer_id": range(2500), "occurred_at": stamps.dt.as_unit(unit)})
    frame.loc[[3, 1200, 2499], "occurred_at"] = pd.NaT
    path = tmp_path / "usage_events.parquet"
    frame.to_parquet(path, index=False, row_group_size=700)  # four row groups

    read = ValidatedTables(tmp_path, ["usage_events"])["usage_events"]

    pd.testing.assert_frame_equal(read, pd.read_parquet(path, columns=["occurred_at"]))


@pytest.mark.parametrize("statistics", [True, False])
@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", None])
def test_earliest_time_of_a_file_equals_the_frames_and_sets_the_history_start(
    tmp_path, tz, statistics
) -> None:
    from churn.labels.schedule import history_start
    from churn.stages.label import ValidatedTables

    _write_tables(tmp_path / "validated", churned=1, retained=3)  # subscriptions from 2023-01-01
    stamps = pd.Series(pd.date_range("2023-05-06 07:08", periods=900, freq="5h", tz=tz))
    frame = pd.DataFrame({"customer_id": range(900), "occurred_at": stamps.sample(frac=1.0,
                                                                                   random_state=0)})
    frame.loc[[0, 450], "occurred_at"] = pd.NaT
    path = tmp_path / "validated" / "usage_events.parquet"
    # Row groups of 200 rows in shuffled order: the earliest is in none in particular.
    frame.to_parquet(path, index=False, row_group_size=200, write_statistics=statistics)
    tables = ValidatedTables(tmp_path / "validated", ["subscriptions", "usage_events"])
    in_memory = {name: pd.read_parquet(tmp_path / "validated" / f"{name}.parquet")
                 for name in ("subscriptions", "usage_events")}

    earliest = tables.earliest_time("usage_events", "occurred_at")

    # Naive reference: the smallest present value, in UTC.
    expected = frame["occurred_at"].dropna().min()
    expected = expected.tz_localize("UTC") if expected.tzinfo is None else expected
    assert earliest == expected.tz_convert("UTC")
    assert history_start(tables) == history_start(in_memory) == earliest  # usage starts later
    frame.assign(occurred_at=pd.NaT).to_parquet(path, index=False, write_statistics=statistics)
    assert tables.earliest_time("usage_events", "occurred_at") is None
    assert history_start(tables) == history_start({**in_memory, "usage_events": frame.iloc[:0]})


def _random_stamps(rng, rows: int, days: int, strays: int, tz: str | None) -> pd.Series:
    start = pd.Timestamp("1969-12-20")  # some values before 1970: days floor, not truncate
    seconds = rng.integers(0, days * 86_400, rows)
    later = days * 86_400 + rng.integers(40, 400, strays) * 86_400
    values = start + pd.to_timedelta(np.concatenate([seconds, later]), unit="s")
    values = pd.Series(values).dt.as_unit("us").sample(frac=1.0, random_state=rows)
    return values.dt.tz_localize(tz).reset_index(drop=True) if tz else values.reset_index(drop=True)


@pytest.mark.parametrize("seed", range(8))
def test_density_end_of_the_files_in_duckdb_equals_find_density_end(tmp_path, seed) -> None:
    from churn.labels.schedule import data_end
    from churn.stages.label import ValidatedTables

    rng = np.random.default_rng(seed)
    rows = int(rng.choice([1, 2, 7, 999, 1000, 1001, 5000]))
    days = int(rng.choice([1, 3, 60, 700]))
    strays = int(rng.choice([0, 1, 5]))
    tz = [None, "UTC", "Europe/Berlin"][seed % 3]
    directory = tmp_path / "validated"
    directory.mkdir()
    usage = pd.DataFrame({
        "customer_id": rng.integers(0, 50, rows + strays),  # integer ids
        "occurred_at": _random_stamps(rng, rows, days, strays, tz),
    })
    usage.loc[rng.random(len(usage)) < 0.05, "occurred_at"] = pd.NaT
    # Ties at the anchor: a tenth of the rows on one instant.
    usage.loc[usage.index[: len(usage) // 10], "occurred_at"] = usage["occurred_at"].max()
    usage.to_parquet(directory / "usage_events.parquet", index=False, row_group_size=700)
    tickets = pd.DataFrame({
        "opened_at": _random_stamps(rng, 300, days, 0, tz),
        "resolved_at": _random_stamps(rng, 300, days + 5, strays, "UTC").iloc[:300],
    })
    tickets.to_parquet(directory / "support_tickets.parquet", index=False)
    subscriptions = pd.DataFrame({
        "customer_id": ["a"] * 40,
        "started_at": _random_stamps(rng, 40, days, 0, "UTC"),
        "ended_at": _random_stamps(rng, 40, days + 400, 0, "UTC"),  # paid-through ends
    })
    subscriptions.to_parquet(directory / "subscriptions.parquet", index=False)
    names = ["usage_events", "support_tickets", "subscriptions"]
    tables = ValidatedTables(directory, names)
    as_of = (pd.Timestamp("1969-12-20") + pd.Timedelta(days=days)).date()
    for gap_days in (1, 30):
        for cutoff in (None, as_of):
            in_memory = {name: pd.read_parquet(directory / f"{name}.parquet") for name in names}
            expected = naive_data_end(in_memory, gap_days, cutoff)
            assert data_end(tables, gap_days=gap_days, as_of=cutoff) == expected
            assert data_end(in_memory, gap_days=gap_days, as_of=cutoff) == expected


def test_density_end_of_an_empty_or_nanosecond_file(tmp_path) -> None:
    from churn.errors import EmptyPopulationError
    from churn.labels.schedule import data_end
    from churn.stages.label import ValidatedTables

    stamps = pd.Series(pd.date_range("2024-01-01", periods=3000, freq="17min", tz="UTC"))
    frame = pd.DataFrame({"customer_id": range(3000), "occurred_at": stamps.dt.as_unit("ns")})
    frame.loc[2999, "occurred_at"] = pd.Timestamp("2024-09-01 00:00:00.000000001", tz="UTC")
    frame.to_parquet(tmp_path / "usage_events.parquet", index=False)
    tables = ValidatedTables(tmp_path, ["usage_events"])
    # Nanoseconds are not cut to microseconds: the file is searched as a frame.
    assert tables.density_end("usage_events", 30, {}) == stamps.iloc[2998]
    assert data_end(tables, gap_days=400) == frame["occurred_at"].max()
    frame.assign(occurred_at=pd.NaT).to_parquet(tmp_path / "usage_events.parquet", index=False)
    assert tables.density_end("usage_events", 30, {}) is None
    with pytest.raises(EmptyPopulationError):
        data_end(tables)
