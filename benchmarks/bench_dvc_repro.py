"""Benchmark: the whole pipeline as users run it, through one real ``dvc repro``.

``bench_pipeline.py`` runs every stage's command itself, so its figures leave out what DVC
does around the commands: hashing every dependency and output, copying the outputs into its
cache, writing ``dvc.lock``, and its own start. Issue #14 states its goals for ``dvc repro``
("`dvc repro` at 1M customers completes in under 20 minutes"), so this script measures that
run itself. Usage::

    python benchmarks/bench_dvc_repro.py [--customers 100000] [--months 24] [--seed 42]
        [--work DIR] [--json out.json] [--markdown out.md] [--set KEY=VALUE ...]

In a scratch folder (``--work``, default a temporary one) it builds a project as a fresh clone
has it (``git init``, ``dvc init``, the repository's ``dvc.yaml``, ``.dvc/config``,
``.dvcignore`` and ``src/``; ``params.yaml`` with the run's size and ``--set`` settings,
validated as ``bench_pipeline.py`` does), then runs ``dvc repro`` once, with the copied
``src/`` as the code (``PYTHONPATH``), so the code measured is the code DVC hashed.

It records the run's wall time, CPU time (``dvc`` and every process under it), the largest
single process's peak memory and the peak of all processes at once, and, per stage, the wall
time from DVC's ``Running stage '<name>':`` line to the next one (the last to the end of the
run): the stage's command plus DVC's hashing and caching of its outputs and its check of the
next stage's dependencies. DVC's own start, before the first stage, is a row of its own. The
floor of ``measuring.py`` (one DuckDB scan of the raw tables) is measured after the run,
as the reference for how fast the machine was.

Per stage it also records how busy the machine's cores were: the whole machine's busy and idle
CPU time (``/proc/stat``) is read every second during the run, and each one-second interval
counts for the stage running at its end. ``busy_cores`` is a stage's busy core-seconds over its
wall; ``idle_core_s`` is what the cores left unused (on a machine shared with other work, that
work counts as busy). Where a stage leaves a core idle is where it could go faster without
doing less.
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_pipeline  # parameters of a run, as bench_pipeline.py writes them
from measuring import (
    describe_machine,
    load_average,
    measure_floor,
    read_commit,
    run_measured,
    write_results,
)

ROOT = Path(__file__).resolve().parents[1]
#: DVC's line announcing a stage (``dvc repro``'s own output).
STAGE_LINE = re.compile(r"^Running stage '(?P<stage>[^']+)':")
#: The row of the time before DVC starts the first stage.
DVC_START = "dvc: start, before the first stage"


def find_source_root() -> Path:
    """Return the ``src`` folder of the ``churn`` package this interpreter imports.

    That is the code measured: a snapshot put first on ``PYTHONPATH`` (to compare two
    commits) is copied into the project rather than this checkout's ``src``.
    """
    import churn

    return Path(churn.__file__).resolve().parents[1]


def run_checked(command: Sequence[str], cwd: Path, env: Mapping[str, str]) -> None:
    """Run a set-up command, failing with its output."""
    done = subprocess.run(
        list(command), cwd=cwd, env=dict(env), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )


def project_env(work: Path) -> dict[str, str]:
    """The environment ``dvc repro`` runs in: the copied code, this interpreter's tools, UTC.

    No ``MLFLOW_`` or ``DVC_`` variable of the caller reaches the run (a tracking URI of the
    shell would send its runs elsewhere); output is unbuffered so that each of DVC's lines is
    timed when DVC writes it, not when a buffer fills.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(work / "src")
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYTHONUNBUFFERED"] = "1"
    env["TZ"] = "UTC"
    return env


def build_project(
    work: Path,
    source: Path,
    write_params: Callable[[Path], None],
    repository: Path = ROOT,
) -> dict[str, str]:
    """Make ``work`` a project as a fresh clone has it, before any stage ran.

    Args:
        work: An empty folder.
        source: The ``src`` folder to copy (the code measured).
        write_params: Called with ``work`` to write ``work/params.yaml``.
        repository: Where ``dvc.yaml``, ``.dvc/config``, ``.dvcignore`` and
            ``data/raw/README.md`` come from.

    Returns:
        The environment to run ``dvc repro`` in (:func:`project_env`).
    """
    env = project_env(work)
    run_checked(["git", "init", "-q"], work, env)
    run_checked([sys.executable, "-m", "dvc", "init", "-q"], work, env)
    shutil.copy(repository / "dvc.yaml", work / "dvc.yaml")
    # The repository's settings, not dvc init's: no usage reports, no update checks.
    shutil.copy(repository / ".dvc" / "config", work / ".dvc" / "config")
    shutil.copy(repository / ".dvcignore", work / ".dvcignore")
    shutil.copytree(source, work / "src", ignore=shutil.ignore_patterns("__pycache__"))
    raw = work / "data" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    readme = repository / "data" / "raw" / "README.md"
    if readme.is_file():  # ingest's folder of own files exists in a clone through it
        shutil.copy(readme, raw / "README.md")
    write_params(work)
    return env


def read_machine_seconds(stat_text: str, ticks_per_second: float) -> tuple[float, float]:
    """Return the machine's busy and idle CPU seconds since boot from ``/proc/stat``'s text.

    Busy is user, nice, system, irq, softirq and steal time; idle is idle and iowait (guest
    time is already inside user time).
    """
    fields = stat_text.splitlines()[0].split()
    if fields[0] != "cpu" or len(fields) < 9:
        raise ValueError(f"not /proc/stat's first line: {fields[:3]}")
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    busy = user + nice + system + irq + softirq + steal
    return busy / ticks_per_second, (idle + iowait) / ticks_per_second


class MachineSampler:
    """Reads the machine's busy and idle CPU seconds every ``interval`` seconds on a thread.

    :attr:`samples` holds ``(seconds since start, busy seconds, idle seconds)`` of each
    interval, from :meth:`start` to :meth:`stop`; empty where ``/proc/stat`` does not exist.
    """

    def __init__(self, interval: float = 1.0, stat_path: Path = Path("/proc/stat")) -> None:
        self.interval = interval
        self.stat_path = stat_path
        self.samples: list[tuple[float, float, float]] = []
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._ticks = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0

    def _read(self) -> tuple[float, float]:
        return read_machine_seconds(self.stat_path.read_text(), self._ticks)

    def start(self) -> None:
        """Start sampling (the samples' seconds count from here)."""
        started = time.perf_counter()
        if not self.stat_path.exists():
            return

        def sample() -> None:
            last = self._read()
            while not self._done.wait(self.interval):
                current = self._read()
                self.samples.append(
                    (time.perf_counter() - started, current[0] - last[0], current[1] - last[1])
                )
                last = current

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return started

    def stop(self) -> None:
        """Stop sampling (the interval under way is not recorded)."""
        self._done.set()
        if self._thread is not None:
            self._thread.join()


def add_machine_busy(
    rows: list[dict[str, Any]], samples: Sequence[tuple[float, float, float]]
) -> list[dict[str, Any]]:
    """Add each stage's busy and idle core-seconds and busy cores to :func:`split_stage_walls`'
    rows, each sample counted for the row running at the sample's end.

    Args:
        rows: Rows of :func:`split_stage_walls`, in order (their walls add up to the run).
        samples: ``(seconds since the run began, busy seconds, idle seconds)`` per interval.

    Returns:
        The rows with ``busy_core_s``, ``idle_core_s`` and ``busy_cores`` (busy over the
        sampled seconds; ``None`` for a row without a sample).
    """
    ends = list(itertools.accumulate(row["wall_s"] for row in rows))
    busy = [0.0] * len(rows)
    idle = [0.0] * len(rows)
    sampled = [0.0] * len(rows)
    previous = 0.0
    for at, busy_s, idle_s in samples:
        row = min(bisect.bisect_right(ends, at), len(rows) - 1)
        busy[row] += busy_s
        idle[row] += idle_s
        sampled[row] += at - previous
        previous = at
    return [
        {**row, "busy_core_s": b, "idle_core_s": i, "busy_cores": b / t if t > 0 else None}
        for row, b, i, t in zip(rows, busy, idle, sampled, strict=True)
    ]


def split_stage_walls(starts: Sequence[tuple[str, float]], end: float) -> list[dict[str, Any]]:
    """Return each stage's wall time from the announced starts, DVC's start first.

    Args:
        starts: ``(stage, seconds since the run began)`` in the order DVC announced them.
        end: Seconds from the run's beginning to its end.

    Returns:
        Rows ``{"stage", "wall_s"}``: :data:`DVC_START` (the time to the first stage, or the
        whole run when no stage ran), then one per stage, each to the next one's start (the
        last to ``end``); together they add up to ``end``.

    Raises:
        ValueError: If the starts go back in time or pass ``end``.
    """
    times = [at for _, at in starts]
    if any(b < a for a, b in itertools.pairwise(times)) or any(at < 0 or at > end for at in times):
        raise ValueError(f"stage starts {starts} are not in order within the run's {end} s")
    rows = [{"stage": DVC_START, "wall_s": times[0] if times else end}]
    bounds = [*times, end]
    for (stage, at), following in zip(starts, bounds[1:], strict=True):
        rows.append({"stage": stage, "wall_s": following - at})
    return rows


class StageStarts:
    """Collects the stages DVC announces in ``dvc repro``'s output, with their times.

    Called with each output line and the seconds since the run began
    (``measuring.run_measured``'s ``on_line``); :attr:`starts` holds ``(stage, seconds)``
    per ``Running stage`` line, in order.
    """

    def __init__(self) -> None:
        self.starts: list[tuple[str, float]] = []

    def __call__(self, line: str, at: float) -> None:
        match = STAGE_LINE.match(line.strip())
        if match:
            self.starts.append((match.group("stage"), at))


def run_dvc_repro(work: Path, env: Mapping[str, str], log_path: Path) -> dict[str, Any]:
    """Run ``dvc repro`` in ``work``; return the run's and the stages' figures.

    Raises:
        RuntimeError: If ``dvc repro`` fails (with the tail of its output).
    """
    stages = StageStarts()
    machine = MachineSampler()
    machine.start()
    try:
        measured = run_measured(
            [sys.executable, "-m", "dvc", "repro"], work, log_path, env=dict(env), on_line=stages
        )
    finally:
        machine.stop()
    rows = split_stage_walls(stages.starts, measured["wall_s"])
    return {**measured, "stages": add_machine_busy(rows, machine.samples)}


def run_benchmark(
    work: Path,
    customers: int,
    months: int | None = None,
    seed: int | None = None,
    settings: dict[str, Any] | None = None,
    source: Path | None = None,
) -> dict[str, Any]:
    """Build the project in ``work``, run ``dvc repro`` and the floor; return the results."""
    source = find_source_root() if source is None else source
    env = build_project(
        work,
        source,
        lambda folder: bench_pipeline.write_params(folder, customers, months, seed, settings),
    )
    load_before = load_average()
    logs = work / "bench_logs"
    logs.mkdir(exist_ok=True)
    run = run_dvc_repro(work, env, logs / "dvc_repro.log")
    floor = measure_floor(work, logs / "floor.log")
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": describe_machine(),
        "commit": read_commit(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "customers": customers,
        "months": months,
        "seed": seed,
        "settings": settings or {},
        "floor": floor,
        **run,
    }


def render_markdown(result: Mapping[str, Any]) -> str:
    """The results as a Markdown table: DVC's start, each stage, the floor and the total."""
    head = (
        f"`dvc repro` at {result['customers']:,} customers, {result['date']}, "
        f"{result['machine']['cpus']} CPUs, load {result['load_average_before']} before, "
        f"{result['load_average_after']} after (shared machine).\n\n"
    )
    lines = [
        "| stage (under `dvc repro`) | wall s | cores busy (machine) | idle core-s |",
        "|---|---:|---:|---:|",
    ]
    for row in result["stages"]:
        cores = row.get("busy_cores")
        shown = "" if cores is None else f"{cores:.2f}"
        idle = row.get("idle_core_s")
        lines.append(
            f"| {row['stage']} | {row['wall_s']:.1f} | {shown} | "
            f"{'' if idle is None else f'{idle:.1f}'} |"
        )
    floor = result["floor"]
    lines.append(
        f"| floor: one DuckDB scan of the raw tables (after the run) | {floor['wall_s']:.1f} | | |"
    )
    busy_total = sum(row.get("busy_core_s") or 0.0 for row in result["stages"])
    idle_total = sum(row.get("idle_core_s") or 0.0 for row in result["stages"])
    sampled = busy_total + idle_total
    average = f"{busy_total / sampled * result['machine']['cpus']:.2f}" if sampled else ""
    lines.append(
        f"| **total** (CPU {result['cpu_s']:.1f} s; peak RSS {result['peak_rss_mb']:,.0f} MB "
        f"largest process, {result['peak_tree_rss_mb']:,.0f} MB all at once) | "
        f"**{result['wall_s']:.1f}** | {average} | {idle_total:.1f} |"
    )
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=None, help="default: params.yaml")
    parser.add_argument("--seed", type=int, default=None, help="default: params.yaml")
    parser.add_argument(
        "--work", type=Path, default=None, help="an empty or new scratch folder (kept)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a params.yaml setting for this run (repeatable; validated)",
    )
    args = parser.parse_args(argv)
    try:
        settings = bench_pipeline.parse_settings(args.set)
    except ValueError as error:
        parser.error(str(error))
    if args.work is not None and args.work.exists() and any(args.work.iterdir()):
        parser.error(f"--work {args.work} is not empty: the run starts from a fresh project")
    if args.work is None:
        with tempfile.TemporaryDirectory(prefix="bench_dvc_repro_") as work:
            result = run_benchmark(Path(work), args.customers, args.months, args.seed, settings)
    else:
        args.work.mkdir(parents=True, exist_ok=True)
        result = run_benchmark(args.work, args.customers, args.months, args.seed, settings)
    write_results(result, render_markdown(result), args.json, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
