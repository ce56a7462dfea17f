"""Benchmark: the whole pipeline, stage by stage, against the floor of one scan of its data.

Not part of the test suite (a 2,000-customer smoke run is, marked slow). Usage::

    python benchmarks/bench_pipeline.py [--customers 100000] [--months 24] [--seed 42]
        [--work DIR] [--json reports/bench_pipeline.json] [--markdown reports/bench_pipeline.md]
        [--from-stage train] [--set features.duckdb_memory_limit=8GB ...]

``--from-stage`` continues a run in ``--work`` (stopped, or to measure changed code on the
same data) from that stage; the earlier stages' figures come from the folder's progress file
and each row records the commit it was measured with. ``--set KEY=VALUE`` changes one
``params.yaml`` setting for the run (repeatable; checked like ``params.yaml``, so a misspelt
key stops the run before it starts); with ``--from-stage`` it changes the folder's settings
for the stages still to run (e.g. ``--set features.duckdb_memory_limit=8GB``: the features
stage at 1M customers fits the default 4GB since 2026-12-04, and runs faster with more).

In a scratch folder (``--work``, default a temporary one) it writes ``params.yaml`` with
``simulate.customers`` (and ``simulate.seed`` with ``--seed``: another simulated business)
set, then runs every stage's command from ``dvc.yaml`` in dependency order, each in its own
process, as ``dvc repro`` would (without DVC's hashing and caching: ``bench_dvc_repro.py`` times
the pipeline through one real ``dvc repro``, those included).
Per stage it records the wall time, the CPU time (user + system), two peaks of resident memory
(``peak_rss_mb``, the largest single process of the stage; ``peak_tree_rss_mb``, all its
processes at once; measured as ``measuring.py`` describes) and the rows of the Parquet files it
reads and writes under ``data/`` (rows in, rows out, rows in per second).

The floor (``measuring.py``) is the cost of the least any stage has to do with this data: one
DuckDB scan of every raw Parquet table with per-customer aggregates (rows, first and last event
time), in its own process. Each stage's wall and CPU time are shown as a ratio to the floor's,
so that "ingest within 3x of a scan" (issue #14) can be read off the table. The machine is shared:
the load average before and after is recorded with the results. The floor is measured twice
when the run simulates: right after ``simulate`` and after the last stage (the ratios use the
last). The same fixed work at both ends of the run shows how much the machine's speed moved
during it (on 2026-12-05 this machine ran 1.5x slower at 05:15 than at 03:47, and a plain
Python loop varied by a third from one second to the next), which the load average does not.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measuring import (
    describe_machine,
    load_average,
    measure_floor,
    read_commit,
    run_measured,
    write_results,
)

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = (
    "stage",
    "wall_s",
    "cpu_s",
    "peak_rss_mb",
    "peak_tree_rss_mb",
    "rows_in",
    "rows_out",
    "rows_per_s",
    "wall_x_floor",
    "cpu_x_floor",
)


def order_stages(stages: dict[str, dict[str, Any]]) -> list[str]:
    """Stage names in dependency order (a stage after every stage whose output it reads).

    Ties keep the order of ``dvc.yaml``.
    """

    def outs(stage: dict[str, Any]) -> set[str]:
        paths = set()
        for key in ("outs", "metrics", "plots"):
            for entry in stage.get(key, []) or []:
                paths.add(next(iter(entry)) if isinstance(entry, dict) else entry)
        return paths

    producers = {path: name for name, stage in stages.items() for path in outs(stage)}
    ordered: list[str] = []
    pending = list(stages)
    while pending:
        for name in pending:
            needs = {
                producers[d]
                for d in stages[name].get("deps", [])
                if d in producers and producers[d] != name
            }
            if needs <= set(ordered):
                ordered.append(name)
                pending.remove(name)
                break
        else:
            raise ValueError(f"dvc.yaml stages form a cycle: {pending}")
    return ordered


def count_rows(work: Path, paths: list[str]) -> int:
    """Rows of the Parquet files at ``paths`` (files or folders) under ``data/``."""
    import pyarrow.parquet as pq

    total = 0
    for path in paths:
        if not path.startswith("data/"):
            continue
        target = work / path
        files = [target] if target.is_file() else sorted(target.rglob("*.parquet"))
        total += sum(pq.ParquetFile(f).metadata.num_rows for f in files if f.suffix == ".parquet")
    return total


def parse_settings(given: list[str]) -> dict[str, Any]:
    """Return ``--set KEY=VALUE`` options as dotted key -> value (the value read as YAML, so
    ``8GB`` stays text and ``4`` becomes a number).

    Raises:
        ValueError: If an option has no ``=`` or an empty key.
    """
    settings: dict[str, Any] = {}
    for item in given:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. features.duckdb_threads=2")
        settings[key.strip()] = yaml.safe_load(value)
    return settings


def write_params(
    work: Path,
    customers: int,
    months: int | None,
    seed: int | None = None,
    settings: dict[str, Any] | None = None,
) -> None:
    """Write ``work/params.yaml`` for a new run: the repository's, with the run's size and
    ``settings`` (validated, see :func:`save_params`)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["simulate"]["customers"] = customers
    if months is not None:
        params["simulate"]["months"] = months
    if seed is not None:
        params["simulate"]["seed"] = seed
    params.setdefault("data", {})["source"] = "simulator"
    save_params(work, params, settings)


def update_params(work: Path, settings: dict[str, Any]) -> None:
    """Apply ``settings`` to the ``params.yaml`` of a run continued in ``work`` (its size and
    earlier settings kept; validated, see :func:`save_params`)."""
    save_params(work, yaml.safe_load((work / "params.yaml").read_text()), settings)


def save_params(work: Path, params: dict[str, Any], settings: dict[str, Any] | None) -> None:
    """Write ``params`` with ``settings`` applied to ``work/params.yaml``.

    ``settings`` (dotted key -> value, as ``--set`` gives them) meet the rules of
    ``params.yaml`` itself: the result is validated with :func:`churn.config.parse_params`
    before it is written, so an unknown key or a bad value stops the benchmark before any
    stage runs.
    """
    from churn.config import apply_overrides, parse_params

    params = apply_overrides(params, settings or {})
    parse_params(params, source=f"{work / 'params.yaml'} with --set {settings}")
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (work / "data" / "raw").mkdir(parents=True, exist_ok=True)


def read_earlier_stages(progress: Path, names: list[str]) -> list[dict[str, Any]]:
    """Return the figures of stages ``names`` from an earlier run's progress file.

    Raises:
        ValueError: If the file is missing or lacks one of the stages.
    """
    if not names:
        return []
    if not progress.is_file():
        raise ValueError(f"no {progress}: the stages before the one to start from were not run")
    rows = {row["stage"]: row for row in json.loads(progress.read_text())["stages"]}
    missing = [name for name in names if name not in rows]
    if missing:
        raise ValueError(f"{progress} has no figures for {missing}: start from an earlier stage")
    return [rows[name] for name in names]


def run_pipeline(
    work: Path,
    customers: int,
    months: int | None = None,
    progress: Path | None = None,
    seed: int | None = None,
    from_stage: str | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run every stage in ``work`` and the floor; return the JSON-ready results.

    Args:
        work: The scratch folder.
        customers: ``simulate.customers`` (with ``from_stage``: the folder's own, read back).
        months: ``simulate.months`` (``None``: as in ``params.yaml``).
        progress: If given, the stages measured so far are written here as JSON after each
            stage (a long run on a busy machine leaves figures even if it is stopped).
        seed: ``simulate.seed`` (``None``: as in ``params.yaml``).
        from_stage: Run only this stage and the ones after it, on the data an earlier run
            left in ``work`` (its ``params.yaml`` kept); the earlier stages' figures are taken
            from ``progress``. Each row records the commit it was measured with, so a table
            that mixes two versions of the code says so.
        settings: Dotted ``params.yaml`` keys -> values for this run (``--set``), applied
            to the folder's parameters (a continued run's too) and validated first.
    """
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    ordered = order_stages(stages)
    results: list[dict[str, Any]] = []
    if from_stage is None:
        write_params(work, customers, months, seed, settings)
    else:
        if from_stage not in stages:
            raise ValueError(f"no stage {from_stage!r} in dvc.yaml: one of {ordered}")
        if progress is None or not (work / "params.yaml").is_file():
            raise ValueError(f"{work} holds no earlier run to continue (params.yaml)")
        if settings:
            update_params(work, settings)
        customers = int(yaml.safe_load((work / "params.yaml").read_text())["simulate"]["customers"])
        earlier = ordered[: ordered.index(from_stage)]
        results = read_earlier_stages(progress, earlier)
        ordered = ordered[len(earlier) :]
    logs = work / "bench_logs"
    logs.mkdir(exist_ok=True)
    load_before = load_average()
    commit = read_commit()
    early_floor: dict[str, float] | None = None
    for name in ordered:
        stage = stages[name]
        command = shlex.split(" ".join(stage["cmd"].split()))
        measured = run_measured(command, work, logs / f"{name}.log")
        deps = [d for d in stage.get("deps", []) if isinstance(d, str)]
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage.get("outs", [])]
        rows_in, rows_out = count_rows(work, deps), count_rows(work, outs)
        results.append(
            {
                "stage": name,
                "commit": commit,
                **measured,
                "rows_in": rows_in,
                "rows_out": rows_out,
                "rows_per_s": rows_in / measured["wall_s"] if measured["wall_s"] else 0.0,
            }
        )
        print(f"{name}: {measured['wall_s']:.1f} s", file=sys.stderr, flush=True)
        if name == "simulate":  # the raw tables the floor scans exist from here on
            early_floor = measure_floor(work, logs / "floor_after_simulate.log")
        if progress is not None:
            partial = {"customers": customers, "load_average_before": load_before}
            partial |= {"load_average_now": load_average(), "stages": results}
            progress.write_text(json.dumps(partial, indent=2) + "\n")
    floor = measure_floor(work, logs / "floor.log")
    floor["rows_in"] = count_rows(work, ["data/simulated/raw"])
    for row in results:
        row["wall_x_floor"] = row["wall_s"] / floor["wall_s"]
        row["cpu_x_floor"] = row["cpu_s"] / floor["cpu_s"]
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": describe_machine(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "customers": customers,
        "months": months,
        "seed": seed,
        "from_stage": from_stage,
        "settings": settings or {},
        "floor": floor,
        "floor_after_simulate": early_floor,
        "stages": results,
        "total": {
            "wall_s": sum(r["wall_s"] for r in results),
            "cpu_s": sum(r["cpu_s"] for r in results),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "peak_tree_rss_mb": max(r["peak_tree_rss_mb"] for r in results),
        },
    }


def render_markdown(result: dict[str, Any]) -> str:
    """The results as a Markdown table, one row per stage plus the floor and the total."""
    head = (
        f"Pipeline at {result['customers']:,} customers, {result['date']}, "
        f"{result['machine']['cpus']} CPUs, load {result['load_average_before']} before, "
        f"{result['load_average_after']} after (shared machine).\n\n"
    )
    commits = {row.get("commit") for row in result["stages"]}
    if len(commits) > 1:
        code = "; ".join(
            f"{row['stage']} at {row.get('commit') or 'an unrecorded commit'}"
            for row in result["stages"]
        )
        head += f"Stages measured with different code: {code}.\n\n"
    lines = [
        "| stage | wall s | CPU s | peak RSS MB, largest process | peak RSS MB, all processes "
        "| rows in | rows out | rows/s | wall x floor | CPU x floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["stages"]:
        lines.append(
            f"| {row['stage']} | {row['wall_s']:.1f} | {row['cpu_s']:.1f} | "
            f"{row['peak_rss_mb']:,.0f} | {row['peak_tree_rss_mb']:,.0f} | "
            f"{row['rows_in']:,} | {row['rows_out']:,} | "
            f"{row['rows_per_s']:,.0f} | {row['wall_x_floor']:.1f} | {row['cpu_x_floor']:.1f} |"
        )
    floor, total = result["floor"], result["total"]
    lines.append(
        f"| floor: one DuckDB scan of the raw tables | {floor['wall_s']:.1f} | "
        f"{floor['cpu_s']:.1f} | {floor['peak_rss_mb']:,.0f} | "
        f"{floor['peak_tree_rss_mb']:,.0f} | {floor['rows_in']:,} | | | 1.0 | 1.0 |"
    )
    lines.append(
        f"| total | {total['wall_s']:.1f} | {total['cpu_s']:.1f} | "
        f"{total['peak_rss_mb']:,.0f} | {total['peak_tree_rss_mb']:,.0f} | | | | | |"
    )
    tail = ""
    early = result.get("floor_after_simulate")
    if early and early["cpu_s"] > 0:
        tail = (
            f"\nThe floor right after simulate: {early['wall_s']:.1f} s wall, "
            f"{early['cpu_s']:.1f} s CPU; after the last stage {floor['wall_s']:.1f} s, "
            f"{floor['cpu_s']:.1f} s CPU ({floor['cpu_s'] / early['cpu_s']:.2f}x: how the "
            "machine's speed moved during the run).\n"
        )
    return head + "\n".join(lines) + "\n" + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=None, help="default: params.yaml")
    parser.add_argument("--seed", type=int, default=None, help="default: params.yaml")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (kept)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here")
    parser.add_argument(
        "--from-stage",
        default=None,
        help="continue the run in --work from this stage (earlier figures from its progress file)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a params.yaml setting for this run, e.g. features.duckdb_memory_limit=8GB "
        "(repeatable; validated like params.yaml)",
    )
    args = parser.parse_args(argv)
    if args.from_stage is not None and args.work is None:
        parser.error("--from-stage needs --work: the folder of the run to continue")
    try:
        settings = parse_settings(args.set)
    except ValueError as error:
        parser.error(str(error))
    if args.work is None:
        with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as work:
            result = run_pipeline(
                Path(work), args.customers, args.months, seed=args.seed, settings=settings
            )
    else:
        args.work.mkdir(parents=True, exist_ok=True)
        progress = args.work / "bench_progress.json"
        result = run_pipeline(
            args.work, args.customers, args.months, progress, args.seed, args.from_stage, settings
        )
    write_results(result, render_markdown(result), args.json, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
