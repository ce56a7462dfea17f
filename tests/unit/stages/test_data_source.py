"""The ``data.source`` switch: simulate writes markers only, ingest reads the selected folder.

Covers the three places the switch reaches: :func:`churn.stages.simulate.engine.run_simulate`
(off switch, folders swapped in whole), :func:`churn.stages.ingest.choose_raw_dir` and the
``churn ingest`` / ``churn simulate`` commands (which folder is read), and the config section.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from churn.cli import app
from churn.config import ConfigError, DataConfig, SimulateConfig, parse_params
from churn.domain.contract import CONTRACT
from churn.stages.ingest import choose_raw_dir
from churn.stages.simulate.engine import OFF_MARKER_FILE, run_simulate

TINY = SimulateConfig(customers=60, months=4, seed=3)


def _write_params(path: Path, source: str, **sections: dict) -> Path:
    path.write_text(yaml.safe_dump({"data": {"source": source}, **sections}))
    return path


# --- config ------------------------------------------------------------------------------------


def test_data_source_defaults_to_the_simulator():
    assert parse_params({}).data.source == "simulator"
    assert DataConfig().source == "simulator"
    assert parse_params({"data": {"source": "files"}}).data.source == "files"


@pytest.mark.parametrize(
    ("raw", "named"),
    [({"data": {"source": "csv"}}, "data.source"), ({"data": {"folder": "x"}}, "data.folder")],
)
def test_an_unknown_source_or_key_fails_naming_it(raw, named):
    with pytest.raises(ConfigError, match=named):
        parse_params(raw)


# --- simulate ----------------------------------------------------------------------------------


def test_simulator_off_writes_only_a_marker_in_each_folder(tmp_path):
    out, truth = tmp_path / "simulated" / "raw", tmp_path / "simulated" / "truth"

    run_simulate(TINY, out_dir=out, truth_dir=truth, source="files")

    for folder in (out, truth):
        assert [p.name for p in folder.iterdir()] == [OFF_MARKER_FILE]
        assert "data.source: files" in (folder / OFF_MARKER_FILE).read_text()


def test_switching_the_simulator_off_removes_its_earlier_tables_and_truth(tmp_path):
    out, truth = tmp_path / "raw", tmp_path / "truth"
    run_simulate(TINY, out_dir=out, truth_dir=truth)
    assert (out / "customers.parquet").exists()
    assert (truth / "customer_months.parquet").exists()

    run_simulate(TINY, out_dir=out, truth_dir=truth, source="files")

    assert [p.name for p in out.iterdir()] == [OFF_MARKER_FILE]
    assert [p.name for p in truth.iterdir()] == [OFF_MARKER_FILE]


def test_switching_the_simulator_back_on_removes_the_marker(tmp_path):
    out, truth = tmp_path / "raw", tmp_path / "truth"
    run_simulate(TINY, out_dir=out, truth_dir=truth, source="files")

    run_simulate(TINY, out_dir=out, truth_dir=truth, source="simulator")

    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.parquet" for n in CONTRACT)
    assert not (truth / OFF_MARKER_FILE).exists()
    assert (truth / "customer_months.parquet").exists()


def test_cli_simulate_reads_data_source(tmp_path):
    params = _write_params(tmp_path / "params.yaml", "files", simulate={"customers": 50})
    out, truth = tmp_path / "out", tmp_path / "truth"

    result = CliRunner().invoke(
        app, ["simulate", "--params", str(params), "--out", str(out), "--truth", str(truth)]
    )

    assert result.exit_code == 0, result.output
    assert [p.name for p in out.iterdir()] == [OFF_MARKER_FILE]
    assert [p.name for p in truth.iterdir()] == [OFF_MARKER_FILE]


# --- ingest ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "simulated", "expected"),
    [
        ("files", "sim", "own"),
        ("simulator", "sim", "sim"),
        ("files", None, "own"),
        ("simulator", None, "own"),  # a caller passing one folder: that folder is read
    ],
)
def test_choose_raw_dir(source, simulated, expected):
    chosen = choose_raw_dir(source, Path("own"), None if simulated is None else Path(simulated))

    assert chosen == Path(expected)


def _third_party_tables(first_id: int) -> dict[str, pd.DataFrame]:
    """Customers and subscriptions as an export has them: integer ids, the export's names."""
    ids = list(range(first_id, first_id + 3))
    accounts = pd.DataFrame(
        {"AccountNo": ids, "SignupDate": ["2025-01-02", "2025-01-05", "2025-02-01"]}
    )
    contracts = pd.DataFrame(
        {
            "ContractNo": [i * 10 for i in ids],
            "AccountNo": ids,
            "Product": ["pro", "basic", "pro"],
            "Billing": ["monthly", "monthly", "annual"],
            "Fee": [49.0, 19.0, 99.0],
            "StartDate": ["2025-01-02", "2025-01-05", "2025-02-01"],
            # paid through a date after ingest.as_of: data, not a future-dated row
            "EndDate": [None, "2025-05-01", "2026-02-01"],
        }
    )
    return {"accounts.csv": accounts, "contracts.csv": contracts}


MAPPING = {
    "customers": {
        "file": "accounts.csv",
        "columns": {"customer_id": "AccountNo", "converted_at": "SignupDate"},
    },
    "subscriptions": {
        "file": "contracts.csv",
        "columns": {
            "subscription_id": "ContractNo",
            "customer_id": "AccountNo",
            "plan": "Product",
            "billing_period": "Billing",
            "mrr": "Fee",
            "started_at": "StartDate",
            "ended_at": "EndDate",
        },
    },
}


@pytest.mark.parametrize(("source", "first_id"), [("files", 100), ("simulator", 900)])
def test_cli_ingest_reads_the_folder_data_source_selects(tmp_path, source, first_id):
    own, simulated = tmp_path / "raw", tmp_path / "simulated_raw"
    for folder, first in ((own, 100), (simulated, 900)):
        folder.mkdir()
        for name, frame in _third_party_tables(first).items():
            frame.to_csv(folder / name, index=False)
    params = _write_params(
        tmp_path / "params.yaml", source, ingest={"as_of": "2025-06-30", "tables": MAPPING}
    )
    validated = tmp_path / "validated"

    result = CliRunner().invoke(
        app,
        [
            "ingest", "--params", str(params), "--raw", str(own),
            "--simulated-raw", str(simulated), "--out", str(validated),
            "--quarantine", str(tmp_path / "quarantine"),
            "--report", str(tmp_path / "ingest.json"),
        ],
    )

    assert result.exit_code == 0, result.output
    customers = pd.read_parquet(validated / "customers.parquet")
    assert sorted(customers["customer_id"]) == [str(i) for i in range(first_id, first_id + 3)]
    subscriptions = pd.read_parquet(validated / "subscriptions.parquet")
    assert len(subscriptions) == 3  # the paid-through end after as_of is kept
    assert subscriptions["ended_at"].max() == pd.Timestamp("2026-02-01", tz="UTC")
