"""Measuring a benchmark's commands: time, CPU, memory, the floor, and the machine.

Shared by ``bench_pipeline.py`` (each stage's command), ``bench_dvc_repro.py`` (one
``dvc repro``) and ``bench_ingest.py``: they import it from this folder. Run as a script only
by :func:`measure_floor`, to scan a run's raw tables in a process of its own::

    python benchmarks/measuring.py --floor-only WORK

A command's wall time and its CPU time with all its children come from ``os.wait4``, as does
the largest single process's peak memory (``peak_rss_mb``; Linux carries the peak of the
process that starts the command into it, since fork copies the memory counters and exec keeps
their peak, so measure from a small process: the scripts here hold about 130 MB).
``peak_tree_rss_mb`` is the largest sum over the command's process and all its descendants
at one moment, sampled every 0.2 s from ``/proc`` (Linux). The sum is what the machine must
hold when a stage runs worker processes side by side (evaluate's fits); it counts pages shared
between processes (the libraries each one loads) once per process, so it errs high by about
0.1-0.2 GB per worker.

The floor is the cost of the least any stage has to do with a run's data: one DuckDB scan of
every raw Parquet table with per-customer aggregates (rows, first and last event time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def read_tree_rss_mb(root: int) -> float:
    """Return the resident memory of process ``root`` and all its descendants, summed (MB).

    Reads ``/proc/<pid>/stat`` of every process (parent id and resident pages); a process
    that ends while it is read is skipped.
    """
    parents: dict[int, int] = {}
    pages: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses: split after its end.
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry.name)
        parents[pid], pages[pid] = int(fields[1]), int(fields[21])  # ppid, rss
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(pages.get(pid, 0) for pid in tree) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_measured(
    command: list[str],
    cwd: Path,
    log: Path,
    env: dict[str, str] | None = None,
    on_line: Callable[[str, float], None] | None = None,
) -> dict[str, float]:
    """Run ``command``; return its wall time, CPU time (with its children) and memory peaks:
    ``peak_rss_mb`` of the largest single process, ``peak_tree_rss_mb`` of all at once.

    Args:
        command: The command.
        cwd: Where it runs.
        log: Its output (standard output and error) goes here.
        env: Its environment (``None``: this process's).
        on_line: Called with each output line and the seconds since the command started, as
            the line arrives (the output then passes through this process on its way to
            ``log``); ``None``: the output goes straight to ``log``.
    """
    start = time.perf_counter()
    peak_tree = 0.0
    done = threading.Event()

    def sample(pid: int) -> None:
        nonlocal peak_tree
        while not done.is_set():
            peak_tree = max(peak_tree, read_tree_rss_mb(pid))
            done.wait(0.2)

    with log.open("w") as out:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=out if on_line is None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=on_line is not None,
        )
        sampler = threading.Thread(target=sample, args=(process.pid,), daemon=True)
        sampler.start()
        if on_line is not None:
            assert process.stdout is not None
            with process.stdout:
                for line in process.stdout:
                    at = time.perf_counter() - start
                    out.write(line)
                    out.flush()  # the log shows how far a long run has got
                    on_line(line, at)
        # The sampler reads /proc while the process runs; wait4 reaps it afterwards.
        _, status, usage = os.wait4(process.pid, 0)
        done.set()
        sampler.join()
    # Reaped by wait4 (for its resource usage): tell Popen, which would warn otherwise.
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        tail = log.read_text()[-4000:]
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{tail}")
    peak = usage.ru_maxrss / 1024  # Linux reports kilobytes
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": peak,
        # A process shorter than one sampling interval may be missed: never below the largest.
        "peak_tree_rss_mb": max(peak_tree, peak),
    }


def scan_floor(raw_dir: Path) -> dict[str, int]:
    """One DuckDB scan of every raw Parquet table with per-customer aggregates (in-process).

    Returns:
        Table -> rows scanned.
    """
    import duckdb

    from churn.domain.contract import CONTRACT

    con = duckdb.connect()
    rows = {}
    for path in sorted(raw_dir.glob("*.parquet")):
        spec = CONTRACT.get(path.stem)
        names = {c[0] for c in con.execute(f"DESCRIBE FROM read_parquet('{path}')").fetchall()}
        event_time = spec.event_time if spec is not None else None
        times = f", min({event_time}), max({event_time})" if event_time in names else ""
        key = "customer_id" if "customer_id" in names else min(names)
        scanned = con.execute(
            f"SELECT sum(n) FROM (SELECT {key}, count(*) AS n{times} "
            f"FROM read_parquet('{path}') GROUP BY {key})"
        ).fetchone()
        rows[path.stem] = int(scanned[0] or 0) if scanned else 0
    return rows


def measure_floor(work: Path, log: Path) -> dict[str, float]:
    """Measure :func:`scan_floor` of ``work``'s raw tables in its own process (run_measured)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--floor-only", str(work)]
    return run_measured(command, work, log)


def describe_machine() -> dict[str, Any]:
    """The machine a run was measured on: platform, CPUs, memory (GB) and Python version."""
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
    }


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages, rounded to hundredths."""
    return [round(x, 2) for x in os.getloadavg()]


def read_commit() -> str | None:
    """Return the commit of the code measured (this checkout's ``HEAD``), if git can tell."""
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip() or None


def write_results(
    result: dict[str, Any], table: str, json_path: Path | None, markdown_path: Path | None
) -> None:
    """Print the table and write the results as JSON and the table as Markdown where asked."""
    print(table)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
    if markdown_path is not None:
        markdown_path.parent.mkdir(parents=True, exist_ok=True)
        markdown_path.write_text(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--floor-only", type=Path, required=True, help="a run's folder")
    args = parser.parse_args(argv)
    print(json.dumps(scan_floor(args.floor_only / "data" / "simulated" / "raw")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
