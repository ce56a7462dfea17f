"""Benchmark: ``churn simulate`` (and ``churn label`` on its tables) at growing sizes.

Not part of the test suite. Usage::

    python benchmarks/bench_simulate.py [--customers 100000 300000] [--months 24]
        [--label] [--work DIR] [--json reports/bench_simulate.json]

Each size runs ``churn simulate --customers N`` with the project's ``params.yaml`` into a
scratch folder (``--work``, default a temporary one), in its own process, and records the wall
time, the CPU time (user + system) and the peak resident memory of that process
(``os.wait4``), plus the rows written. With ``--label`` it then runs ``churn label`` with the
simulated raw tables as its "validated" input: a stand-in for the ingest output (the same
tables before quarantine and typing of the ticket timestamps), so the label figures show how
the stage scales, not the exact cost after ingest. The load average before and after each run
is recorded: the machine is shared, so wall times mean little; compare CPU and peak memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]


def measure(command: list[str], log: Path) -> dict[str, float]:
    """Run ``command`` in its own process; return its wall, CPU and peak RSS.

    Raises:
        RuntimeError: If the command fails (with the end of its log).
    """
    start = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{log.read_text()[-4000:]}")
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),  # Linux reports kilobytes
    }


def count_rows(folder: Path) -> dict[str, int]:
    """Rows of every Parquet file in ``folder`` (from the footers, nothing is read)."""
    return {p.stem: pq.ParquetFile(p).metadata.num_rows for p in sorted(folder.glob("*.parquet"))}


def bench_size(customers: int, months: int, work: Path, label: bool) -> dict[str, Any]:
    """Simulate ``customers`` (and label them); return the measurements."""
    folder = work / f"c{customers}"
    raw, truth = folder / "raw", folder / "truth"
    folder.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"customers": customers, "months": months,
                              "load_before": os.getloadavg()}
    result["simulate"] = measure(
        ["churn", "simulate", "--params", "params.yaml", "--out", str(raw), "--truth", str(truth),
         "--customers", str(customers), "--months", str(months)],
        folder / "simulate.log",
    )
    result["rows"] = {"raw": count_rows(raw), "truth": count_rows(truth)}
    if label:
        result["label"] = measure(
            ["churn", "label", "--params", "params.yaml", "--validated", str(raw),
             "--out", str(folder / "labels.parquet"), "--report", str(folder / "labels.json")],
            folder / "label.log",
        )
        result["rows"]["labels"] = pq.ParquetFile(folder / "labels.parquet").metadata.num_rows
    result["load_after"] = os.getloadavg()
    return result


def main() -> None:
    """Parse the arguments, run every size, print and optionally write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[100_000])
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--label", action="store_true", help="also run churn label")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_simulate_"))
    results = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "sizes": [bench_size(n, args.months, work, args.label) for n in args.customers],
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
