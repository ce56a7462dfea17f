"""Tests for the churn CLI surface (stage behaviour is tested in each stage's test file)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
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


def _params_file(tmp_path, text: str = "simulate:\n  customers: 50\n"):
    params = tmp_path / "params.yaml"
    params.write_text(text)
    return params


def test_a_path_option_has_no_default(tmp_path):
    result = runner.invoke(app, ["simulate", "--params", str(_params_file(tmp_path))])
    assert result.exit_code == 2
    assert "--out" in result.output


def test_override_below_the_params_rule_fails_with_the_rule(tmp_path):
    out, truth = tmp_path / "raw", tmp_path / "truth"
    result = runner.invoke(
        app,
        ["simulate", "--params", str(_params_file(tmp_path)), "--out", str(out),
         "--truth", str(truth), "--customers", "5"],
    )
    assert result.exit_code == 2, result.output
    assert "simulate.customers" in result.output
    assert "greater than or equal to 10" in result.output
    assert not out.exists() and not truth.exists()


def test_engine_and_cutoff_overrides_are_validated_like_the_file(tmp_path):
    params = _params_file(tmp_path)
    common = ["--params", str(params), "--validated", str(tmp_path), "--out", str(tmp_path / "s")]
    engine = runner.invoke(app, ["score", *common, "--model", "m", "--engine", "gpu"])
    assert engine.exit_code == 2
    assert "features.engine" in engine.output and "'gpu'" in engine.output
    cutoff = runner.invoke(app, ["score", *common, "--model", "m", "--cutoff", "2025-13-01"])
    assert cutoff.exit_code == 2
    assert "score.cutoff" in cutoff.output


def test_load_params_applies_overrides_before_validation(tmp_path):
    from churn.config import ConfigError, load_params

    params = _params_file(tmp_path, "features:\n  spark:\n    shards: 4\n")
    loaded = load_params(params, {"features.spark.shards": 16, "simulate.seed": None})
    assert loaded.features.spark.shards == 16
    assert loaded.simulate.seed == 42  # None means "not overridden"
    assert load_params(params).features.spark.shards == 4  # the file is not changed
    with pytest.raises(ConfigError, match=r"features\.spark\.shards"):
        load_params(params, {"features.spark.shards": 0})


def test_a_command_reports_native_crashes_and_keeps_numba_quiet(tmp_path, monkeypatch):
    import faulthandler
    import logging

    # pytest enables faulthandler itself: turn it off so the command must enable it again.
    faulthandler.disable()
    assert not faulthandler.is_enabled()
    monkeypatch.setattr(logging.getLogger("numba"), "level", logging.NOTSET)
    out = tmp_path / "contract.md"
    result = runner.invoke(app, ["--verbose", "contract", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert faulthandler.is_enabled()
    # --verbose is DEBUG for churn's loggers, not for numba's compilation steps.
    assert logging.getLogger("churn").getEffectiveLevel() == logging.DEBUG
    assert logging.getLogger("numba").getEffectiveLevel() == logging.WARNING


def test_a_crash_in_native_code_prints_the_python_stack():
    # A real fatal signal in a child process: the stack names the function that crashed.
    script = (
        "import ctypes\n"
        "from churn.cli import _report_native_crashes\n"
        "_report_native_crashes()\n"
        "def crash_in_native_code():\n"
        "    ctypes.string_at(0)\n"
        "crash_in_native_code()\n"
    )
    # Without PYTHONFAULTHANDLER the child enables nothing by itself: only the CLI's call can
    # make it print the stack.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONFAULTHANDLER"}
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               timeout=60, env=env)
    assert completed.returncode != 0
    assert "Fatal Python error" in completed.stderr
    assert "crash_in_native_code" in completed.stderr
