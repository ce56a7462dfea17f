"""Benchmark: ``churn ingest`` against the floor of one scan of the raw tables (issue #14).

Not part of the test suite. Usage::

    python benchmarks/bench_ingest.py [--customers 100000] [--months 24] [--work DIR]
        [--src PATH ...] [--compare] [--json reports/bench_ingest.json]

In a scratch folder (``--work``, kept and reused when given) the simulator writes the raw
tables once (``simulate.customers`` = ``--customers``, mess on, the rest as ``params.yaml``).
Then, side by side on the same files, each in its own process:

* ``churn ingest`` (without the data check) once per ``--src`` source tree (default: this
  checkout's ``src``; give ``--src /path/to/other/src`` too to compare two implementations in
  one run, e.g. before and after a change);
* the floor: one DuckDB scan of every raw Parquet table with per-customer aggregates (rows,
  first and last event time), as in ``bench_pipeline.py``;
* reading the raw tables into pandas and nothing else (what the pandas path cannot go under).

Per run: wall time, CPU time (user + system) and peak RSS of the process and its children
(``os.wait4``), and the CPU and wall ratio to the floor. With ``--compare`` the outputs of
every source tree are checked against the first one's: valid and quarantine tables equal in
schema and values (Parquet metadata aside) and ``ingest.json`` byte-identical. The machine is
shared: the load average before and after is recorded with the results.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measuring import load_average, run_measured, scan_floor

ROOT = Path(__file__).resolve().parents[1]


def write_params(work: Path, customers: int, months: int | None) -> Path:
    """``params.yaml`` of the run: the repository's, with the simulator's size set."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["simulate"]["customers"] = customers
    params["simulate"]["mess"] = True
    if months is not None:
        params["simulate"]["months"] = months
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def simulate_once(work: Path, customers: int, months: int | None) -> Path:
    """Write the raw tables into ``work/raw`` unless a previous run left them for this size."""
    raw = work / "raw"
    stamp = work / "simulated.json"
    wanted = {"customers": customers, "months": months}
    if raw.is_dir() and stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return raw
    params = write_params(work, customers, months)
    command = ["churn", "simulate", "--params", str(params), "--out", str(raw)]
    command += ["--truth", str(work / "truth")]
    measured = run_measured(command, work, work / "simulate.log")
    print(f"simulate: {measured['wall_s']:.1f} s", file=sys.stderr, flush=True)
    stamp.write_text(json.dumps(wanted))
    return raw


def ingest_command(work: Path, raw: Path, out: Path) -> list[str]:
    return [
        "churn",
        "ingest",
        "--params",
        str(work / "params.yaml"),
        "--raw",
        str(raw),
        "--out",
        str(out / "validated"),
        "--quarantine",
        str(out / "quarantine"),
        "--report",
        str(out / "ingest.json"),
    ]


def run_with_source(command: list[str], work: Path, log: Path, src: Path) -> dict[str, float]:
    """:func:`run_measured` with ``churn`` imported from ``src``."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(src)
    try:
        return run_measured(command, work, log)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def read_with_pandas(raw: Path) -> dict[str, int]:
    """Read every raw table into pandas as ingest's runner did, and nothing else."""
    import pandas as pd

    return {path.stem: len(pd.read_parquet(path)) for path in sorted(raw.glob("*.parquet"))}


def compare_outputs(first: Path, other: Path) -> list[str]:
    """Differences between two ingest output folders (empty: identical outcomes)."""
    import pyarrow.parquet as pq

    problems = []
    if (first / "ingest.json").read_bytes() != (other / "ingest.json").read_bytes():
        problems.append("ingest.json differs")
    for folder in ("validated", "quarantine"):
        names = sorted(p.name for p in (first / folder).glob("*.parquet"))
        others = sorted(p.name for p in (other / folder).glob("*.parquet"))
        if names != others:
            problems.append(f"{folder}: files {names} vs {others}")
            continue
        for name in names:
            a = pq.read_table(first / folder / name)
            b = pq.read_table(other / folder / name)
            a, b = a.replace_schema_metadata(None), b.replace_schema_metadata(None)
            if not a.schema.equals(b.schema):
                problems.append(f"{folder}/{name}: schema {a.schema} vs {b.schema}")
            elif not a.equals(b):
                problems.append(f"{folder}/{name}: values differ")
    return problems


def run_benchmark(
    work: Path, customers: int, months: int | None, sources: list[Path], compare: bool
) -> dict[str, Any]:
    """Simulate once, then measure ingest per source tree, the floor and a pandas read."""
    raw = simulate_once(work, customers, months)
    write_params(work, customers, months)
    load_before = load_average()
    runs: list[dict[str, Any]] = []
    for i, src in enumerate(sources):
        out = work / f"out_{i}"
        measured = run_with_source(
            ingest_command(work, raw, out), work, work / f"ingest_{i}.log", src
        )
        runs.append({"run": f"ingest ({src})", **measured})
        print(f"ingest {src}: {measured['cpu_s']:.1f} s CPU", file=sys.stderr, flush=True)
    me = [sys.executable, str(Path(__file__).resolve())]
    floor = run_measured([*me, "--floor-only", str(raw)], work, work / "floor.log")
    floor_run = {"run": "floor: one DuckDB scan of the raw tables", **floor}
    read = run_measured([*me, "--read-only", str(raw)], work, work / "read.log")
    runs += [floor_run, {"run": "read the raw tables into pandas", **read}]
    for row in runs:
        row["cpu_x_floor"] = row["cpu_s"] / floor["cpu_s"]
        row["wall_x_floor"] = row["wall_s"] / floor["wall_s"]
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "customers": customers,
        "months": months,
        "raw_rows": json.loads((work / "floor.log").read_text()),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "runs": runs,
    }
    if compare and len(sources) > 1:
        result["differences"] = {
            str(src): compare_outputs(work / "out_0", work / f"out_{i}")
            for i, src in enumerate(sources[1:], start=1)
        }
    return result


def render_markdown(result: dict[str, Any]) -> str:
    rows = sum(result["raw_rows"].values())
    head = (
        f"Ingest at {result['customers']:,} customers ({rows:,} raw rows), {result['date']}, "
        f"{result['cpus']} CPUs, load {result['load_average_before']} before, "
        f"{result['load_average_after']} after (shared machine).\n\n"
    )
    lines = [
        "| run | CPU s | wall s | peak RSS MB | CPU x floor | wall x floor |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["runs"]:
        lines.append(
            f"| {row['run']} | {row['cpu_s']:.1f} | {row['wall_s']:.1f} | "
            f"{row['peak_rss_mb']:,.0f} | {row['cpu_x_floor']:.1f} | {row['wall_x_floor']:.1f} |"
        )
    text = head + "\n".join(lines) + "\n"
    for src, problems in result.get("differences", {}).items():
        verdict = "identical outputs" if not problems else "; ".join(problems)
        text += f"\n{src} vs the first source: {verdict}\n"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=None, help="default: params.yaml")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (kept, reused)")
    parser.add_argument(
        "--src", type=Path, action="append", default=None, help="source tree(s) of churn"
    )
    parser.add_argument("--compare", action="store_true", help="check outputs are identical")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--floor-only", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--read-only", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor_only is not None:  # the floor, measured in its own process
        print(json.dumps(scan_floor(args.floor_only)))
        return 0
    if args.read_only is not None:
        print(json.dumps(read_with_pandas(args.read_only)))
        return 0
    sources = [s.resolve() for s in (args.src or [ROOT / "src"])]
    if args.work is None:
        with tempfile.TemporaryDirectory(prefix="bench_ingest_") as work:
            result = run_benchmark(Path(work), args.customers, args.months, sources, args.compare)
    else:
        args.work.mkdir(parents=True, exist_ok=True)
        result = run_benchmark(args.work, args.customers, args.months, sources, args.compare)
    print(render_markdown(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
