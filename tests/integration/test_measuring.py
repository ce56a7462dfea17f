"""Tests of ``benchmarks/measuring.py``: memory of a process tree, a command's figures, the
floor's scan (in this process and in its own)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
from support.scripts import load_script

measuring = load_script("benchmarks/measuring.py")


def test_tree_rss_of_a_lone_process_is_its_own_rss():
    """Naive reference: the kernel's own VmRSS line of this process (no children here)."""
    status = Path("/proc/self/status").read_text()
    own = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
    assert measuring.read_tree_rss_mb(os.getpid()) == pytest.approx(own / 1024, rel=0.05)


def test_memory_of_processes_running_side_by_side_adds_up(tmp_path):
    """A parent holding 400 MB waits for a child holding 400 MB: all processes at once hold
    about 800 MB, which no single process does (an interpreter's own memory, 10-100 MB here
    depending on what it loads at start, is the only slack)."""
    child = "import time; x = b'c' * (400 * 2**20); time.sleep(2.0)"
    parent = (
        "import subprocess, sys; x = b'p' * (400 * 2**20); "
        f"subprocess.run([sys.executable, '-c', {child!r}], check=True)"
    )
    measured = measuring.run_measured([sys.executable, "-c", parent], tmp_path, tmp_path / "log")
    assert measured["peak_rss_mb"] >= 400
    assert measured["peak_tree_rss_mb"] >= 780
    assert measured["peak_tree_rss_mb"] - measured["peak_rss_mb"] >= 250


def _raw_tables(work: Path) -> dict[str, int]:
    """Two raw tables of a run's folder, one without customer ids; their row counts."""
    raw = work / "data" / "simulated" / "raw"
    raw.mkdir(parents=True)
    pd.DataFrame(
        {
            "customer_id": ["a", "b", "a", "c", None],
            "occurred_at": pd.date_range("2025-01-01", periods=5, freq="D", tz="UTC"),
        }
    ).to_parquet(raw / "usage_events.parquet")
    pd.DataFrame({"code": [1, 2, 3]}).to_parquet(raw / "lookup.parquet")
    return {"usage_events": 5, "lookup": 3}


def test_the_floor_scans_every_row_of_every_raw_table(tmp_path):
    """Naive reference: the tables' row counts (a missing id is a group of its own)."""
    expected = _raw_tables(tmp_path)
    assert measuring.scan_floor(tmp_path / "data" / "simulated" / "raw") == expected


def test_the_floor_runs_in_a_process_of_its_own(tmp_path):
    expected = _raw_tables(tmp_path)
    measured = measuring.measure_floor(tmp_path, tmp_path / "floor.log")
    assert measured["wall_s"] > 0 and measured["cpu_s"] > 0 and measured["peak_rss_mb"] > 0
    assert json.loads((tmp_path / "floor.log").read_text()) == expected


def test_a_failing_command_names_itself_and_shows_its_output(tmp_path):
    command = [sys.executable, "-c", "import sys; print('went wrong'); sys.exit(3)"]
    with pytest.raises(RuntimeError, match=r"failed \(3\):\nwent wrong"):
        measuring.run_measured(command, tmp_path, tmp_path / "log")


def test_output_lines_reach_the_callback_as_they_arrive(tmp_path):
    seen = []
    command = [sys.executable, "-u", "-c", "print('one'); print('two')"]
    measuring.run_measured(
        command, tmp_path, tmp_path / "log", on_line=lambda line, at: seen.append((line, at >= 0))
    )
    assert seen == [("one\n", True), ("two\n", True)]
    assert (tmp_path / "log").read_text() == "one\ntwo\n"
