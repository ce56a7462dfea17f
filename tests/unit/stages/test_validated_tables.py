"""Tests for churn.stages.validated_tables: the validated tables answered from their files.

Each answer (rows, time ranges, earliest times, data ends) is compared with the same answer
computed from the whole frames; the files are shaped like third-party exports (integer ids,
naive and zoned times, row groups without statistics) as well as like ingest's output.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from support.data_end_reference import naive_data_end
from support.event_export import make_event_export
from support.ingest_runs import run_ingest_with
from support.label_tables import write_label_tables

from churn.config import parse_params
from churn.io import read_tables
from churn.stages.check_data import check_data
from churn.stages.validated_tables import ValidatedTables


def test_validated_tables_read_only_timestamps_of_other_tables_and_on_demand(tmp_path) -> None:
    write_label_tables(tmp_path / "validated", churned=1, retained=3)
    usage = pd.DataFrame(
        {
            "customer_id": [7, 8],  # integer ids, as a third-party export may have
            "occurred_at": pd.to_datetime(["2024-01-02", "2024-03-04"], utc=True),
            "event_type": ["login", "login"],
            "quantity": [1.0, 2.0],
        }
    )
    usage.to_parquet(tmp_path / "validated" / "usage_events.parquet", index=False)
    tables = ValidatedTables(
        tmp_path / "validated", ["subscriptions", "customers", "usage_events", "nps_responses"]
    )

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

    # Subscriptions from 2023-01-01.
    write_label_tables(tmp_path / "validated", churned=1, retained=3)
    stamps = pd.Series(pd.date_range("2023-05-06 07:08", periods=900, freq="5h", tz=tz))
    frame = pd.DataFrame(
        {"customer_id": range(900), "occurred_at": stamps.sample(frac=1.0, random_state=0)}
    )
    frame.loc[[0, 450], "occurred_at"] = pd.NaT
    path = tmp_path / "validated" / "usage_events.parquet"
    # Row groups of 200 rows in shuffled order: the earliest is in none in particular.
    frame.to_parquet(path, index=False, row_group_size=200, write_statistics=statistics)
    tables = ValidatedTables(tmp_path / "validated", ["subscriptions", "usage_events"])
    in_memory = {
        name: pd.read_parquet(tmp_path / "validated" / f"{name}.parquet")
        for name in ("subscriptions", "usage_events")
    }

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

    rng = np.random.default_rng(seed)
    rows = int(rng.choice([1, 2, 7, 999, 1000, 1001, 5000]))
    days = int(rng.choice([1, 3, 60, 700]))
    strays = int(rng.choice([0, 1, 5]))
    tz = [None, "UTC", "Europe/Berlin"][seed % 3]
    directory = tmp_path / "validated"
    directory.mkdir()
    usage = pd.DataFrame(
        {
            "customer_id": rng.integers(0, 50, rows + strays),  # integer ids
            "occurred_at": _random_stamps(rng, rows, days, strays, tz),
        }
    )
    usage.loc[rng.random(len(usage)) < 0.05, "occurred_at"] = pd.NaT
    # Ties at the anchor: a tenth of the rows on one instant.
    usage.loc[usage.index[: len(usage) // 10], "occurred_at"] = usage["occurred_at"].max()
    usage.to_parquet(directory / "usage_events.parquet", index=False, row_group_size=700)
    tickets = pd.DataFrame(
        {
            "opened_at": _random_stamps(rng, 300, days, 0, tz),
            "resolved_at": _random_stamps(rng, 300, days + 5, strays, "UTC").iloc[:300],
        }
    )
    tickets.to_parquet(directory / "support_tickets.parquet", index=False)
    subscriptions = pd.DataFrame(
        {
            "customer_id": ["a"] * 40,
            "started_at": _random_stamps(rng, 40, days, 0, "UTC"),
            "ended_at": _random_stamps(rng, 40, days + 400, 0, "UTC"),  # paid-through ends
        }
    )
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


def _naive_range(values: pd.Series) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    present = [pd.Timestamp(v) for v in values if not pd.isna(v)]
    if not present:
        return None, None
    utc = [v.tz_localize("UTC") if v.tzinfo is None else v.tz_convert("UTC") for v in present]
    return min(utc), max(utc)


@pytest.mark.parametrize("statistics", [True, False])
@pytest.mark.parametrize("tz", ["UTC", "America/New_York", None])
def test_time_range_and_rows_of_a_file_equal_a_naive_scan(tmp_path, tz, statistics) -> None:
    rng = np.random.default_rng(3)
    stamps = pd.Series(pd.date_range("2023-05-06 07:08", periods=1000, freq="3h", tz=tz))
    frame = pd.DataFrame(
        {
            "customer_id": rng.integers(0, 90, 1000),  # integer ids, as an export may have
            "occurred_at": stamps.sample(frac=1.0, random_state=1).to_numpy(),
            "event_type": "login",
        }
    )
    frame.loc[[5, 600], "occurred_at"] = pd.NaT
    frame.loc[200:399, "occurred_at"] = pd.NaT  # a whole row group without values
    path = tmp_path / "usage_events.parquet"
    frame.to_parquet(path, index=False, row_group_size=200, write_statistics=statistics)
    tables = ValidatedTables(tmp_path, ["usage_events"])

    assert tables.time_range("usage_events", "occurred_at") == _naive_range(frame["occurred_at"])
    assert tables.row_count("usage_events") == 1000
    assert tables.time_range("usage_events", "no_such_column") is None
    frame.assign(occurred_at=pd.NaT).to_parquet(path, index=False)
    assert tables.time_range("usage_events", "occurred_at") == (None, None)


def test_a_time_column_stored_as_text_is_read_for_its_range(tmp_path) -> None:
    # An event time that is not a Parquet timestamp has no exact statistics to use.
    frame = pd.DataFrame(
        {"customer_id": [1, 2, 3], "occurred_at": ["2024-03-01", "2024-01-05", None]}
    )
    frame.to_parquet(tmp_path / "usage_events.parquet", index=False)
    found = ValidatedTables(tmp_path, ["usage_events"]).time_range("usage_events", "occurred_at")
    assert found == (pd.Timestamp("2024-01-05", tz="UTC"), pd.Timestamp("2024-03-01", tz="UTC"))


def test_tables_handed_over_as_frames_are_answered_from_them(tmp_path) -> None:
    write_label_tables(tmp_path / "validated", churned=1, retained=3)
    held = pd.DataFrame(
        {
            "customer_id": [7, 8, 9],
            "opened_at": pd.to_datetime(["2024-02-01", "2024-01-01", None], utc=True),
        }
    )
    # No support_tickets file: the frame alone makes the table present.
    tables = ValidatedTables(
        tmp_path / "validated",
        ["subscriptions", "support_tickets", "nps_responses"],
        frames={"support_tickets": held},
    )

    assert list(tables) == ["subscriptions", "support_tickets"]
    assert tables["support_tickets"] is held
    assert tables.row_count("support_tickets") == 3
    assert tables.time_range("support_tickets", "opened_at") == _naive_range(held["opened_at"])
    assert tables.earliest_time("support_tickets", "opened_at") == pd.Timestamp(
        "2024-01-01", tz="UTC"
    )
    assert tables.density_end("support_tickets", 30, {}) == naive_data_end(
        {"support_tickets": held}, 30, None
    )
    with pytest.raises(KeyError):
        tables.row_count("nps_responses")


@pytest.mark.parametrize("batch_rows", [31, 10**9])
def test_the_check_of_ingests_files_equals_the_check_of_the_whole_frames(
    tmp_path, batch_rows
) -> None:
    # A CRM's event export with integer ids, validated whole or in batches of 31 rows (every
    # table of 40 rows or more is then streamed, and the check answers it from its file); the
    # check read back from the folder with every table whole in pandas is the reference.
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, frame in make_event_export(n_customers=40).items():
        frame.to_csv(raw / f"{name}.csv", index=False)
    section = {"as_of": "2025-07-01", "batch_rows": batch_rows}
    params = parse_params({"ingest": section})
    result = run_ingest_with(raw, tmp_path, section)
    assert result.streamed == (
        ("customers", "subscriptions", "usage_events") if batch_rows == 31 else ()
    )
    whole = read_tables(tmp_path / "validated", list(result.report["tables"]))
    expected = check_data(whole, params, ingest_report=result.report)
    assert json.loads((tmp_path / "data_check.json").read_text()) == json.loads(
        json.dumps(expected)
    )
