"""Tests of ``benchmarks/measuring.py``: memory of a process tree, a command's figures, the
floor's scan (in this process and in its own)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from support.scripts import load_script

measuring = load_script("benchmarks/measuring.py")


def _read_vm_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return (
        int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
        / 1024
    )


def test_tree_rss_of_a_lone_process_is_its_own_rss(tmp_path):
    """Naive reference: the kernel's own VmRSS line of a process without children (a fresh
    one: the test's own process may have some, e.g. a Spark session's JVM)."""
    ready = tmp_path / "ready"
    code = (
        "import pathlib, sys, time; x = b'a' * (100 * 2**20); "
        f"pathlib.Path({str(ready)!r}).touch(); time.sleep(30)"
    )
    lone = subprocess.Popen([sys.executable, "-c", code])
    try:
        while not ready.exists():
            assert lone.poll() is None, "the process ended early"
            time.sleep(0.05)
        assert measuring.read_tree_rss_mb(lone.pid) == pytest.approx(
            _read_vm_rss_mb(lone.pid), rel=0.05
        )
    finally:
        lone.kill()
        lone.wait()


def test_memory_of_processes_running_side_by_side_adds_up(tmp_path):
    """A parent holding 400 MB waits for a child holding 400 MB: all processes at once hold
    about 800 MB, which no single process does (an interpreter's own memory, 10-100 MB here
    depending on what it loads at start, is the only slack).

    Measured from a fresh interpreter: Linux carries the peak memory of the process that
    starts a command into the command's ``ru_maxrss`` (fork copies it, exec keeps it), so
    measured from this test's own process (800 MB in a busy test worker) the largest
    process would read as that.
    """
    child = "import time; x = b'c' * (400 * 2**20); time.sleep(2.0)"
    parent = (
        "import subprocess, sys; x = b'p' * (400 * 2**20); "
        f"subprocess.run([sys.executable, '-c', {child!r}], check=True)"
    )
    measure = (
        "import json, sys; from pathlib import Path; "
        f"sys.path.insert(0, {str(Path(measuring.__file__).parent)!r}); import measuring; "
        f"print(json.dumps(measuring.run_measured([sys.executable, '-c', {parent!r}], "
        f"Path({str(tmp_path)!r}), Path({str(tmp_path / 'log')!r}))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", measure], capture_output=True, text=True, check=True
    )
    measured = json.loads(done.stdout)
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
