"""Parity of the column-wise ingest with the row-by-row one it replaced (issue #14).

The reference is the previous implementation, frozen in ``tests/support/ingest_reference``.
On messy simulated tables and on third-party-shaped exports (integer ids, other column names
and codes, naive local timestamps, paid-through end dates, CSV text, missing and empty optional
tables, a single CRM table in entity mode) both must give identical valid tables (values and
dtypes), identical quarantine rows and reasons, and an identical report, key order included;
or the same error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support.event_export import make_event_export
from support.ingest_reference import ingest as reference
from support.own_files import OWN_FILES_MAPPING, make_own_files, write_own_files

from churn import io
from churn.config import IngestConfig, SimulateConfig, parse_params
from churn.errors import DataContractError
from churn.stages.ingest import FAILED_RULES, IngestResult, read_raw_tables, validate_tables
from churn.stages.simulate import simulate

AS_OF = pd.Timestamp("2026-01-01", tz="UTC")


def _ingest_config(section: Mapping[str, Any] | None = None) -> IngestConfig:
    return parse_params({"ingest": dict(section or {})}).ingest


def _as_csv_text(tables: Mapping[str, pd.DataFrame], folder: Path) -> dict[str, pd.DataFrame]:
    """The tables as a CSV export reads back: every column text."""
    out = {}
    for name, frame in tables.items():
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        out[name] = io.read_frame(path)
    return out


def assert_same_outcome(
    raw: Mapping[str, pd.DataFrame], cfg: IngestConfig, as_of: pd.Timestamp = AS_OF, **kwargs: Any
) -> IngestResult | None:
    """Validate ``raw`` with both implementations and assert identical results (or errors).

    Returns:
        The new result, or ``None`` when both raised the same error.
    """
    copies = {name: frame.copy() for name, frame in raw.items()}
    try:
        expected = reference.validate_tables(copies, cfg, as_of, **kwargs)
    except DataContractError as exc:
        with pytest.raises(DataContractError) as caught:
            validate_tables(raw, cfg, as_of, **kwargs)
        assert str(caught.value) == str(exc)
        return None
    result = validate_tables(raw, cfg, as_of, **kwargs)
    for name, frame in raw.items():  # the input is not modified
        pd.testing.assert_frame_equal(frame, copies[name])
    assert list(result.valid) == list(expected.valid)
    assert list(result.quarantine) == list(expected.quarantine)
    for name in expected.valid:
        pd.testing.assert_frame_equal(result.valid[name], expected.valid[name], check_exact=True)
        pd.testing.assert_frame_equal(
            result.quarantine[name], expected.quarantine[name], check_exact=True
        )
    assert json.dumps(result.report, default=str) == json.dumps(expected.report, default=str)
    return result


def _quarantined(result: IngestResult | None) -> int:
    assert result is not None
    return sum(len(frame) for frame in result.quarantine.values())


@pytest.fixture(scope="module")
def messy_tables() -> dict[str, pd.DataFrame]:
    return simulate(SimulateConfig(customers=400, months=12, seed=7, mess=True)).tables


def test_messy_simulated_tables_give_identical_results(messy_tables):
    result = assert_same_outcome(messy_tables, _ingest_config())

    assert _quarantined(result) > 0  # the mess is there, so the comparison covers reasons


def test_messy_simulated_tables_as_csv_text_give_identical_results(messy_tables, tmp_path):
    result = assert_same_outcome(_as_csv_text(messy_tables, tmp_path), _ingest_config())

    assert _quarantined(result) > 0


def test_missing_and_empty_optional_tables_give_identical_results(messy_tables):
    tables = {n: f for n, f in messy_tables.items() if n not in {"usage_events", "nps_responses"}}
    tables["support_tickets"] = messy_tables["support_tickets"].iloc[:0]

    result = assert_same_outcome(tables, _ingest_config())

    assert result is not None and not result.report["tables"]["support_tickets"]["present"]


def test_injected_mess_gives_identical_results(messy_tables):
    """Rows broken in every way a rule knows, in several columns of several types."""
    tables = {name: frame.copy() for name, frame in messy_tables.items()}
    usage = tables["usage_events"]
    usage["quantity"] = usage["quantity"].astype("object")
    usage.loc[usage.index[:3], "quantity"] = ["-2", "many", 1e300]
    usage.loc[usage.index[3], "occurred_at"] = pd.Timestamp("2030-01-01 00:00:00.5", tz="UTC")
    usage.loc[usage.index[4], "customer_id"] = "nobody"
    usage.loc[usage.index[5:8], "customer_id"] = None
    tables["usage_events"] = pd.concat([usage, usage.iloc[10:14]], ignore_index=True)
    subscriptions = tables["subscriptions"]
    subscriptions.loc[subscriptions.index[0], "billing_period"] = "weekly"
    subscriptions.loc[subscriptions.index[1], "subscription_id"] = subscriptions[
        "subscription_id"
    ].iloc[2]
    tables["nps_responses"] = tables["nps_responses"].astype({"score": "object"})
    tables["nps_responses"].loc[tables["nps_responses"].index[:2], "score"] = ["11", "7.5"]

    result = assert_same_outcome(tables, _ingest_config({"max_quarantine_share": 0.5}))

    assert result is not None
    reasons = "; ".join(result.quarantine["usage_events"][FAILED_RULES])
    for rule in ("quantity:not_a_number", "too_large", "future_dated", "unknown_customer"):
        assert rule in reasons


def test_too_many_bad_rows_give_the_same_error(messy_tables):
    tables = dict(messy_tables)
    tables["nps_responses"] = messy_tables["nps_responses"].assign(score="n/a")

    assert assert_same_outcome(tables, _ingest_config()) is None


def test_integer_id_export_as_text_gives_identical_results():
    tables = make_event_export(n_customers=200, seed=4)
    usage = tables["usage_events"]
    tables["usage_events"] = pd.concat([usage, usage.iloc[:5]], ignore_index=True)

    result = assert_same_outcome(tables, _ingest_config(), pd.Timestamp("2025-06-30", tz="UTC"))

    assert _quarantined(result) >= 5


@pytest.mark.parametrize("as_csv", [True, False], ids=["csv", "typed"])
def test_third_party_export_with_mapping_gives_identical_results(tmp_path, as_csv):
    cfg = _ingest_config(OWN_FILES_MAPPING)
    if as_csv:
        write_own_files(tmp_path, n_accounts=150, seed=2)
        raw, _ = read_raw_tables(tmp_path, cfg)
    else:
        files = make_own_files(n_accounts=150, seed=2)
        by_file = {spec["file"]: name for name, spec in OWN_FILES_MAPPING["tables"].items()}
        raw = {by_file[file]: frame for file, frame in files.items()}
    raw["subscriptions"].loc[raw["subscriptions"].index[0], "Term"] = "Q"  # not mapped

    result = assert_same_outcome(raw, cfg, pd.Timestamp("2025-12-31", tz="UTC"))

    assert result is not None
    assert "billing_period:not_in_vocabulary" in result.report["tables"]["subscriptions"]["rules"]


def _crm_extract(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "CustomerID": [f"T{i:05d}" for i in range(n)],
            "Since": pd.date_range("2023-01-01", periods=n, freq="37h").strftime("%Y-%m-%d"),
            "tenure_months": rng.integers(1, 72, n).astype(str),
            "MonthlyCharges": rng.uniform(20, 120, n).round(2).astype(str),
            "Contract": rng.choice(["Month-to-month", "One year", "Two year"], n),
            "churned": rng.choice(["Yes", "No"], n),
        }
    )
    frame.loc[3, "churned"] = None  # a missing label
    frame.loc[5, "MonthlyCharges"] = "n/a"  # unparsable in a numeric attribute
    frame.loc[7, "CustomerID"] = frame.loc[8, "CustomerID"]  # a duplicate id
    return pd.concat([frame, frame.iloc[[10]]], ignore_index=True)  # an exact copy


def test_single_crm_table_in_entity_mode_gives_identical_results():
    cfg = _ingest_config(
        {
            "mode": "entity",
            "as_of": "2026-01-31",
            "tables": {
                "customers": {"columns": {"customer_id": "CustomerID", "converted_at": "Since"}}
            },
        }
    )

    result = assert_same_outcome(
        {"customers": _crm_extract(400, seed=1)}, cfg, pd.Timestamp("2026-01-31", tz="UTC")
    )

    assert result is not None
    reasons = set("; ".join(result.quarantine["customers"][FAILED_RULES]).split("; "))
    assert {"churned:label_invalid", "MonthlyCharges:not_a_number", "duplicate_row"} <= reasons
