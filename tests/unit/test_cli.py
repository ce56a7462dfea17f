"""Tests for the churn CLI surface (stage behaviour is tested in each stage's test file)."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from churn.cli import app

runner = CliRunner()
STAGES = ["simulate", "ingest", "label", "features", "train", "evaluate", "score", "explain",
          "report"]


def test_every_stage_has_a_subcommand_with_help():
    for stage in STAGES:
        result = runner.invoke(app, [stage, "--help"])
        assert result.exit_code == 0, (stage, result.output)
        assert "--params" in result.output


def test_bad_params_file_exits_2_with_the_key(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("simulate:\n  customerz: 10\n")
    result = runner.invoke(app, ["check-params", "--params", str(params)])
    assert result.exit_code == 2
    assert "simulate.customerz" in result.output


def test_contract_command_writes_markdown(tmp_path):
    out = tmp_path / "contract.md"
    result = runner.invoke(app, ["contract", "--out", str(out)])
    assert result.exit_code == 0
    assert "support_tickets" in out.read_text()


def test_python_dash_m_churn_works():
    completed = subprocess.run(
        [sys.executable, "-m", "churn", "--help"], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0
    assert "simulate" in completed.stdout


def test_cli_reference_in_docs_is_current(tmp_path):
    """docs/cli.md is generated from the CLI; regenerate it when an option changes."""
    from pathlib import Path

    typer_bin = Path(sys.executable).parent / "typer"
    out = tmp_path / "cli.md"
    subprocess.run(
        [str(typer_bin), "churn.cli", "utils", "docs", "--name", "churn", "--output", str(out)],
        check=True,
        capture_output=True,
    )
    committed = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
    assert out.read_text() == committed.read_text(), (
        "docs/cli.md is stale: run `typer churn.cli utils docs --name churn --output docs/cli.md`"
    )
