"""Parity of ingest in batches (``ingest.batch_rows``) with ingest of whole tables (issue #14).

Each test writes a raw folder, runs ``run_ingest`` once with every table whole and once in
batches of 7 rows, and asserts byte-for-byte equal reports and data checks and equal Parquet
outputs (schema with its pandas metadata, and values). The fixtures break every rule, with
duplicates, duplicate keys and format-deciding timestamps in other batches than the rows
they concern; third-party-shaped exports (integer ids stored as floats, mapped column names
and codes, CSV text, naive local times) and missing or empty optional tables are covered.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support.ingest_runs import (
    assert_same_ingest_outputs,
    integer_id_export,
    messy_tables,
    run_ingest_with,
    write_tables,
)
from support.own_files import OWN_FILES_MAPPING, write_own_files

from churn.config import ConfigError, parse_params
from churn.errors import DataContractError
from churn.stages.ingest import FAILED_RULES, IngestResult
from churn.stages.ingest.batches import find_repeated_hashes
from churn.validation.rules import find_shared_values

BATCH = 7
WHOLE = 10**9


def _run_batched(raw: Path, out: Path, section: Mapping[str, Any], batch_rows: int) -> IngestResult:
    return run_ingest_with(raw, out, {**section, "batch_rows": batch_rows})


def assert_same_outputs(
    raw: Path, tmp_path: Path, section: Mapping[str, Any]
) -> tuple[IngestResult, dict[str, pd.DataFrame]]:
    """Run ingest whole and in batches; assert identical outputs.

    Returns:
        The batched run's result and its quarantine frames.
    """
    whole = _run_batched(raw, tmp_path / "whole", section, WHOLE)
    batched = _run_batched(raw, tmp_path / "batched", section, BATCH)

    assert whole.streamed == ()
    large = {n for n, t in batched.report["tables"].items() if t["present"] and t["rows_in"] > 7}
    assert set(batched.streamed) == large and large  # the batched path did run
    quarantine = assert_same_ingest_outputs(tmp_path / "whole", tmp_path / "batched")
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


SECTION = {"as_of": "2026-01-01", "max_quarantine_share": 0.75}


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_messy_tables_in_batches_give_identical_outputs(tmp_path, suffix):
    raw = write_tables(messy_tables(), tmp_path / "raw", suffix)

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
    tables = messy_tables()
    del tables["usage_events"], tables["nps_responses"]
    tables["support_tickets"] = tables["support_tickets"].iloc[:0]
    raw = write_tables(tables, tmp_path / "raw")

    result, _ = assert_same_outputs(raw, tmp_path, SECTION)

    assert not result.report["tables"]["support_tickets"]["present"]
    assert not result.report["tables"]["usage_events"]["present"]


@pytest.mark.parametrize("whole_ids", [True, False], ids=["whole-ids", "a-fractional-id"])
def test_integer_id_export_in_batches_gives_identical_outputs(tmp_path, whole_ids):
    raw = write_tables(integer_id_export(whole_ids), tmp_path / "raw")
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
    tables = messy_tables()
    raw = write_tables(tables, tmp_path / "raw")
    _run_batched(raw, tmp_path / "out", SECTION, BATCH)
    before = {p: p.read_bytes() for p in sorted((tmp_path / "out").rglob("*")) if p.is_file()}
    write_tables({"nps_responses": tables["nps_responses"].assign(score="n/a")}, raw)

    with pytest.raises(DataContractError, match="nps_responses") as batched:
        _run_batched(raw, tmp_path / "out", SECTION, BATCH)
    with pytest.raises(DataContractError) as whole:
        _run_batched(raw, tmp_path / "whole", SECTION, WHOLE)

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
    raw = write_tables({"customers": frame}, tmp_path / "raw")
    section = {"mode": "entity", "as_of": "2026-01-01", "max_quarantine_share": 0.5}

    result = _run_batched(raw, tmp_path / "out", section, BATCH)

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
