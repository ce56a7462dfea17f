"""Reliability: bad input is a clear error naming what is wrong, and nothing is lost.

Cases from the probe: table files outside the raw folder, empty or duplicated-key
``params.yaml``, absurd finite quantities, a 0-row required table and an empty optional one.
Each test asserts the message and that no output was written (or the previous one kept).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.synthetic import make_tables
from typer.testing import CliRunner

from churn.cli import app
from churn.config import IngestConfig, TableMapping
from churn.errors import DataContractError
from churn.stages.ingest import run_ingest

AS_OF = dt.date(2030, 1, 1)
runner = CliRunner()


@pytest.fixture
def raw(tmp_path) -> Path:
    """A valid raw folder (one Parquet file per contract table)."""
    directory = tmp_path / "raw"
    directory.mkdir()
    for name, frame in make_tables(1, 40).items():
        frame.to_parquet(directory / f"{name}.parquet")
    return directory


def ingest(raw: Path, **options):
    out = raw.parent
    return run_ingest(
        IngestConfig(as_of=AS_OF, **options), raw, out / "v", out / "q", out / "report.json"
    )


def nothing_written(raw: Path) -> bool:
    return not any((raw.parent / name).exists() for name in ("v", "q", "report.json"))


def moved_out(raw: Path, table: str, target: Path) -> None:
    """Move ``table`` out of the raw folder to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    (raw / f"{table}.parquet").rename(target)


def test_a_table_file_with_dot_dot_escaping_the_raw_folder_is_refused(raw, tmp_path):
    moved_out(raw, "customers", tmp_path / "outside" / "secret.parquet")
    mapping = {"customers": TableMapping(file="../outside/secret.parquet")}
    with pytest.raises(DataContractError, match=r"tables\.customers\.file .* outside the raw"):
        ingest(raw, tables=mapping)
    assert nothing_written(raw)


def test_an_absolute_table_file_is_refused(raw, tmp_path):
    moved_out(raw, "customers", tmp_path / "outside" / "secret.parquet")
    mapping = {"customers": TableMapping(file=str(tmp_path / "outside" / "secret.parquet"))}
    with pytest.raises(DataContractError, match=r"absolute paths, '\.\.' and symlinks"):
        ingest(raw, tables=mapping)
    assert nothing_written(raw)


def test_a_symlink_escaping_the_raw_folder_is_refused(raw, tmp_path):
    moved_out(raw, "customers", tmp_path / "outside" / "secret.parquet")
    (raw / "crm.parquet").symlink_to(tmp_path / "outside" / "secret.parquet")
    with pytest.raises(DataContractError, match="outside the raw folder"):
        ingest(raw, tables={"customers": TableMapping(file="crm.parquet")})
    assert nothing_written(raw)


def test_reading_outside_the_raw_folder_needs_the_explicit_option(raw, tmp_path):
    moved_out(raw, "customers", tmp_path / "outside" / "secret.parquet")
    mapping = {"customers": TableMapping(file="../outside/secret.parquet")}
    result = ingest(raw, tables=mapping, allow_outside_raw=True)
    assert result.report["tables"]["customers"]["rows_valid"] == 40


def test_an_empty_params_file_stops_the_stage_with_exit_2(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("# nothing here\n")
    result = runner.invoke(app, ["check-params", "--params", str(params)])
    assert result.exit_code == 2
    assert "is empty" in result.output


def test_a_duplicated_params_key_stops_the_stage_with_exit_2(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("ingest:\n  max_quarantine_share: 0.05\n  max_quarantine_share: 0.9\n")
    result = runner.invoke(app, ["check-params", "--params", str(params)])
    assert result.exit_code == 2
    assert "duplicated key 'max_quarantine_share'" in result.output


def test_an_absurd_finite_quantity_is_quarantined_not_overflowed(raw):
    usage = pd.read_parquet(raw / "usage_events.parquet")
    usage.loc[[0, 1], "quantity"] = [1.5e308, 2e13]
    usage.to_parquet(raw / "usage_events.parquet")
    result = ingest(raw)
    quarantined = result.quarantine["usage_events"]
    assert list(quarantined["_row_number"]) == [0, 1]
    assert set(quarantined["_failed_rules"]) == {"quantity:too_large[abs>1e+12]"}
    valid = pd.read_parquet(raw.parent / "v" / "usage_events.parquet")
    assert len(valid) == len(usage) - 2  # nothing else lost
    assert np.isfinite(valid["quantity"].sum())


def test_the_magnitude_limit_is_configurable(raw):
    usage = pd.read_parquet(raw / "usage_events.parquet")
    usage.loc[0, "quantity"] = 5e6
    usage.to_parquet(raw / "usage_events.parquet")
    assert ingest(raw).report["tables"]["usage_events"]["rows_quarantined"] == 0
    strict = ingest(raw, max_abs_value=1e6)
    assert list(strict.quarantine["usage_events"]["_row_number"]) == [0]


def test_a_required_table_with_0_rows_says_so_instead_of_reporting_orphans(raw):
    pd.read_parquet(raw / "customers.parquet").head(0).to_parquet(raw / "customers.parquet")
    with pytest.raises(DataContractError) as caught:
        ingest(raw)
    message = str(caught.value)
    assert "customers has 0 rows" in message
    assert "unknown_customer" not in message and "too many bad rows" not in message
    assert nothing_written(raw)


def test_an_empty_optional_table_counts_as_absent_and_is_reported(raw):
    nps = pd.read_parquet(raw / "nps_responses.parquet")
    nps.head(0).to_parquet(raw / "nps_responses.parquet")
    result = ingest(raw)
    entry = result.report["tables"]["nps_responses"]
    assert entry["present"] is False and entry["empty"] is True
    assert "has 0 rows, so it counts as absent" in entry["note"]
    assert not (raw.parent / "v" / "nps_responses.parquet").exists()
    assert (raw.parent / "v" / "customers.parquet").exists()
