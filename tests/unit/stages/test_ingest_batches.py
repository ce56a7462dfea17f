"""Parity of ingest in batches (``ingest.batch_rows``) with ingest of whole tables (issue #14).

Each test writes a raw folder, runs ``run_ingest`` once with every table whole and once in
batches of 7 rows, and asserts byte-for-byte equal reports and data checks and equal Parquet
outputs (schema with its pandas metadata, and values). The fixtures break every rule, with
duplicates, duplicate keys and format-deciding timestamps in other batches than the rows
they concern; third-party-shaped exports (integer ids stored as floats, mapped column names
and codes, CSV text, naive local times) and missing or empty optional tables are covered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from support.event_export import make_event_export
from support.own_files import OWN_FILES_MAPPING, write_own_files

from churn.config import ConfigError, SimulateConfig, parse_params
from churn.errors import DataContractError
from churn.stages.ingest import FAILED_RULES, IngestResult, run_ingest
from churn.stages.ingest.batches import find_repeated_hashes
from churn.stages.simulate import simulate
from churn.validation.rules import find_shared_values

BATCH = 7
WHOLE = 10**9


def _run(raw: Path, out: Path, section: Mapping[str, Any], batch_rows: int) -> IngestResult:
    params = parse_params({"ingest": {**section, "batch_rows": batch_rows}})
    return run_ingest(
        params.ingest,
        raw,
        out / "validated",
        out / "quarantine",
        out / "ingest.json",
        params=params,
        data_check_path=out / "data_check.json",
    )


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def assert_same_outputs(
    raw: Path, tmp_path: Path, section: Mapping[str, Any]
) -> tuple[IngestResult, dict[str, pd.DataFrame]]:
    """Run ingest whole and in batches; assert identical outputs.

    Returns:
        The batched run's result and its quarantine frames.
    """
    whole = _run(raw, tmp_path / "whole", section, WHOLE)
    batched = _run(raw, tmp_path / "batched", section, BATCH)

    assert whole.streamed == ()
    large = {n for n, t in batched.report["tables"].items() if t["present"] and t["rows_in"] > 7}
    assert set(batched.streamed) == large and large  # the batched path did run
    for name in ("ingest.json", "data_check.json"):
        expected = json.loads((tmp_path / "whole" / name).read_text())
        assert json.loads((tmp_path / "batched" / name).read_text()) == expected
        assert (tmp_path / "batched" / name).read_text() == (tmp_path / "whole" / name).read_text()
    quarantine = {}
    for folder in ("validated", "quarantine"):
        names = _files(tmp_path / "whole" / folder)
        assert _files(tmp_path / "batched" / folder) == names
        for file in names:
            left, right = tmp_path / "whole" / folder / file, tmp_path / "batched" / folder / file
            assert pq.read_schema(right).equals(pq.read_schema(left), check_metadata=True)
            assert pq.read_table(right).equals(pq.read_table(left))
            expected = pd.read_parquet(left)
            pd.testing.assert_frame_equal(pd.read_parquet(right), expected, check_exact=True)
            if folder == "quarantine":
                quarantine[file.removesuffix(".parquet")] = expected
    # The data check's coverage of a streamed table comes from the reference check's lookups:
    # they name exactly the distinct ids of the table's valid rows (read back naively).
    customers = pd.read_parquet(tmp_path / "batched" / "validated" / "customers.parquet")
    for name in batched.streamed:
        valid = pd.read_parquet(tmp_path / "batched" / "validated" / f"{name}.parquet")
        if name == "customers" or "customer_id" not in valid.columns:
            assert name not in batched.referenced_customers
            continue
        naive = {str(c) for c in valid["customer_id"].dropna()}
        assert naive <= {str(c) for c in customers["customer_id"]}
        assert set(batched.referenced_customers[name]) == naive
    return batched, quarantine


def _reasons(quarantine: Mapping[str, pd.DataFrame], table: str) -> set[str]:
    return set("; ".join(quarantine[table][FAILED_RULES]).split("; "))


def _messy_tables() -> dict[str, pd.DataFrame]:
    """Small messy simulated tables with every rule broken, across batch boundaries."""
    tables = simulate(SimulateConfig(customers=30, months=6, seed=7, mess=True)).tables
    # About 160 rows per table, spread over the whole time span.
    tables = {
        name: frame.iloc[:: max(1, len(frame) // 160)].reset_index(drop=True)
        for name, frame in tables.items()
    }
    usage = tables["usage_events"]
    usage["quantity"] = usage["quantity"].astype("str")  # text, as some exports hold numbers
    usage.loc[[20, 40, 60], "quantity"] = ["-2", "many", "1e300"]
    usage.loc[30, "occurred_at"] = pd.Timestamp("2030-01-01 00:00:00", tz="UTC")  # future
    usage.loc[50, "occurred_at"] = pd.Timestamp("2025-09-01 08:00:00", tz="UTC")  # stray
    # A finer resolution far from the quarantined rows decides how their times are shown.
    usage.loc[2, "occurred_at"] = usage.loc[2, "occurred_at"] + pd.Timedelta(microseconds=7)
    usage.loc[70, "customer_id"] = "nobody"
    usage.loc[[80, 81], "customer_id"] = None
    copies = usage.iloc[[3, 4, 5, 3, 90]]  # copies in later batches (row 3 twice)
    usage = pd.concat([usage.iloc[:9], usage.iloc[[0]], usage.iloc[9:], copies])
    tables["usage_events"] = usage.reset_index(drop=True)
    subscriptions = tables["subscriptions"]
    subscriptions.loc[1, "billing_period"] = "weekly"
    subscriptions.loc[20, "subscription_id"] = subscriptions.loc[2, "subscription_id"]  # key
    subscriptions.loc[12, "ended_at"] = subscriptions.loc[12, "started_at"] - pd.Timedelta(days=3)
    customers = tables["customers"]
    customers.loc[9, "trial_days"] = 999
    customers.loc[17, "customer_id"] = None
    nps = tables["nps_responses"].astype({"score": "str"})
    nps.loc[nps.index[:2], "score"] = ["11", "7.5"]
    tables["nps_responses"] = nps
    return tables


def _write(tables: Mapping[str, pd.DataFrame], folder: Path, suffix: str = "parquet") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        if suffix == "csv":
            frame.to_csv(folder / f"{name}.csv", index=False)
        else:
            frame.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


SECTION = {"as_of": "2026-01-01", "max_quarantine_share": 0.75}


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_messy_tables_in_batches_give_identical_outputs(tmp_path, suffix):
    raw = _write(_messy_tables(), tmp_path / "raw", suffix)

    result, quarantine = assert_same_outputs(raw, tmp_path, SECTION)

    usage = _reasons(quarantine, "usage_events")
    for rule in (
        "quantity:not_a_number",
        "quantity:out_of_range[0,inf]",
        "quantity:too_large[abs>1e+12]",
        "occurred_at:future_dated",
        "occurred_at:out_of_range[after_data_end]",
        "customer_id:unknown_customer",
        "customer_id:missing",
        "duplicate_row",
    ):
        assert rule in usage
    assert quarantine["usage_events"][FAILED_RULES].str.contains("duplicate_row").sum() >= 6
    assert {"subscription_id:duplicate_key", "billing_period:not_in_vocabulary"} <= _reasons(
        quarantine, "subscriptions"
    )
    assert "ended_at:before_started_at" in _reasons(quarantine, "subscriptions")
    assert {"customer_id:missing", "trial_days:out_of_range[0,365]"} <= _reasons(
        quarantine, "customers"
    )
    assert "score:not_an_integer" in _reasons(quarantine, "nps_responses")
    assert (
        "detail"
        in result.report["tables"]["subscriptions"]["rules"]["billing_period:not_in_vocabulary"]
    )
    if suffix == "parquet":  # shown with the microseconds of row 2, batches away
        shown = quarantine["usage_events"]["occurred_at"]
        assert shown.str.fullmatch(r"\S+ \d\d:\d\d:\d\d\.\d{6}\+00:00").all()


def test_missing_and_empty_optional_tables_in_batches(tmp_path):
    tables = _messy_tables()
    del tables["usage_events"], tables["nps_responses"]
    tables["support_tickets"] = tables["support_tickets"].iloc[:0]
    raw = _write(tables, tmp_path / "raw")

    result, _ = assert_same_outputs(raw, tmp_path, SECTION)

    assert not result.report["tables"]["support_tickets"]["present"]
    assert not result.report["tables"]["usage_events"]["present"]


def _integer_id_export(whole_ids: bool) -> dict[str, pd.DataFrame]:
    """A third-party export with integer ids stored as floats (gaps make them floats)."""
    tables = make_event_export(n_customers=12, seed=4)
    usage = tables["usage_events"].head(150).copy()
    ids = usage["customer_id"].astype("float64")
    ids[10] = np.nan  # a gap: missing
    if not whole_ids:
        ids[140] = 5003.5  # one id that is not whole, in the last batch: no id is shown whole
    usage["customer_id"] = ids
    usage["occurred_at"] = usage["occurred_at"].str.replace("Z", "+02:00")
    usage.loc[5, "occurred_at"] = "01/02/2025"  # ambiguous: not a timestamp
    tables["usage_events"] = pd.concat([usage, usage.iloc[[1, 2]]], ignore_index=True)
    customers = tables["customers"].copy()
    customers["customer_id"] = customers["customer_id"].astype("float64")
    tables["customers"] = customers
    return tables


@pytest.mark.parametrize("whole_ids", [True, False], ids=["whole-ids", "a-fractional-id"])
def test_integer_id_export_in_batches_gives_identical_outputs(tmp_path, whole_ids):
    raw = _write(_integer_id_export(whole_ids), tmp_path / "raw")
    section = {"as_of": "2025-06-30", "max_quarantine_share": 1.0}

    _, quarantine = assert_same_outputs(raw, tmp_path, section)

    reasons = _reasons(quarantine, "usage_events")
    assert {"customer_id:missing", "occurred_at:not_a_timestamp", "duplicate_row"} <= reasons
    valid = pd.read_parquet(tmp_path / "batched" / "validated" / "usage_events.parquet")
    if whole_ids:
        assert valid["customer_id"].str.fullmatch(r"\d+").all() and len(valid) > 100
    else:  # every id reads "5001.0", which no customer has
        assert len(valid) == 0 and "customer_id:unknown_customer" in reasons


def test_third_party_csv_export_with_mapping_in_batches(tmp_path):
    raw = tmp_path / "raw"
    write_own_files(raw, n_accounts=25, seed=2)
    contracts = pd.read_csv(raw / "contracts.csv", dtype=str)
    contracts.loc[len(contracts) - 1, "Term"] = "Q"  # not mapped, in the last batch
    contracts.to_csv(raw / "contracts.csv", index=False)
    logins = pd.read_csv(raw / "logins.csv", dtype=str).head(200)
    logins = pd.concat([logins, logins.iloc[[0]]], ignore_index=True)
    logins.to_csv(raw / "logins.csv", index=False)

    result, quarantine = assert_same_outputs(raw, tmp_path, OWN_FILES_MAPPING)

    assert "billing_period:not_in_vocabulary" in result.report["tables"]["subscriptions"]["rules"]
    assert "duplicate_row" in _reasons(quarantine, "usage_events")


def test_too_many_bad_rows_in_a_batched_table_leave_the_outputs_alone(tmp_path):
    tables = _messy_tables()
    raw = _write(tables, tmp_path / "raw")
    _run(raw, tmp_path / "out", SECTION, BATCH)
    before = {p: p.read_bytes() for p in sorted((tmp_path / "out").rglob("*")) if p.is_file()}
    _write({"nps_responses": tables["nps_responses"].assign(score="n/a")}, raw)

    with pytest.raises(DataContractError, match="nps_responses") as batched:
        _run(raw, tmp_path / "out", SECTION, BATCH)
    with pytest.raises(DataContractError) as whole:
        _run(raw, tmp_path / "whole", SECTION, WHOLE)

    assert str(batched.value) == str(whole.value)
    after = {p: p.read_bytes() for p in sorted((tmp_path / "out").rglob("*")) if p.is_file()}
    assert after == before  # no half-written or mixed set of outputs


def test_entity_mode_reads_tables_whole_whatever_the_batch_size(tmp_path):
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(20)],
            "converted_at": "2025-01-01",
            "score": ["1.5"] * 20,
            "churned": ["0", "1"] * 10,
        }
    )
    raw = _write({"customers": frame}, tmp_path / "raw")
    section = {"mode": "entity", "as_of": "2026-01-01", "max_quarantine_share": 0.5}

    result = _run(raw, tmp_path / "out", section, BATCH)

    assert result.streamed == ()
    assert result.report["tables"]["customers"]["attribute_columns"]["score"]["type"] == "numeric"


@pytest.mark.parametrize("seed", [0, 1])
def test_repeated_hashes_are_the_shared_values(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**63, 5_000, dtype=np.int64).astype(np.uint64)
    hashes[rng.choice(5_000, 40)] = hashes[rng.choice(5_000, 40)]  # some values repeat
    monkeypatch.setattr("churn.stages.ingest.batches._PART", 333)  # several parts

    found = find_repeated_hashes(hashes)

    assert found.tolist() == np.flatnonzero(find_shared_values(hashes)).tolist()
    assert len(found) >= 2
    assert len(find_repeated_hashes(np.arange(10, dtype=np.uint64))) == 0


def test_batch_rows_must_be_positive():
    with pytest.raises(ConfigError, match="batch_rows"):
        parse_params({"ingest": {"batch_rows": 0}})
    assert parse_params({}).ingest.batch_rows == 2_000_000
