"""Tests of ``benchmarks/bench_dvc_repro.py``: the pipeline timed through one real ``dvc repro``.

The stage split and the output reading run on small made-up inputs; the project set-up and the
measured run use a two-stage ``dvc.yaml`` of plain commands (the real pipeline's run is what
``bench_pipeline.py``'s smoke test and the end-to-end tests cover), so the real ``dvc`` runs
here in seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from support.scripts import load_script

bench = load_script("benchmarks/bench_dvc_repro.py")


def test_stage_walls_run_from_each_start_to_the_next_and_add_up_to_the_run():
    rows = bench.split_stage_walls([("simulate", 1.5), ("ingest", 4.0), ("label", 9.0)], 10.0)

    assert rows == [
        {"stage": bench.DVC_START, "wall_s": 1.5},
        {"stage": "simulate", "wall_s": 2.5},
        {"stage": "ingest", "wall_s": 5.0},
        {"stage": "label", "wall_s": 1.0},
    ]
    assert sum(row["wall_s"] for row in rows) == pytest.approx(10.0)


def test_a_run_without_stages_is_all_dvc_start_and_disordered_starts_are_refused():
    assert bench.split_stage_walls([], 2.0) == [{"stage": bench.DVC_START, "wall_s": 2.0}]
    with pytest.raises(ValueError, match="not in order"):
        bench.split_stage_walls([("a", 3.0), ("b", 2.0)], 5.0)
    with pytest.raises(ValueError, match="not in order"):
        bench.split_stage_walls([("a", 1.0)], 0.5)


def test_stage_starts_are_taken_from_dvc_lines_only():
    lines = [
        ("Running stage 'simulate':\n", 1.0),
        ("> churn simulate --params params.yaml\n", 1.1),
        ("some log line mentioning Running stage 'nothing': not at the start\n", 3.0),
        ("Updating lock file 'dvc.lock'\n", 5.0),
        ("\n", 5.5),
        ("Running stage 'ingest':\n", 6.5),
    ]
    starts = bench.StageStarts()

    for line, at in lines:
        starts(line, at)

    assert starts.starts == [("simulate", 1.0), ("ingest", 6.5)]


def test_the_machines_busy_and_idle_seconds_are_read_from_proc_stat():
    text = "cpu  100 20 30 400 50 6 4 10 7 0\ncpu0 50 10 15 200 25 3 2 5 3 0\n"
    busy, idle = bench.read_machine_seconds(text, 100.0)
    assert busy == pytest.approx((100 + 20 + 30 + 6 + 4 + 10) / 100)  # guest is in user
    assert idle == pytest.approx((400 + 50) / 100)
    with pytest.raises(ValueError, match="not /proc/stat"):
        bench.read_machine_seconds("intr 1 2 3\n", 100.0)


def test_each_sample_counts_for_the_stage_running_at_its_end():
    rows = bench.split_stage_walls([("simulate", 1.0), ("ingest", 3.0)], 5.0)
    samples = [
        (1.0, 0.5, 1.5),
        (2.0, 2.0, 0.0),
        (3.0, 1.0, 1.0),
        (4.0, 1.5, 0.5),
        (5.2, 2.0, 0.0),
    ]  # the last one ends after the run: the last stage's
    rows = bench.add_machine_busy(rows, samples)

    # Naive reference: the stage whose [start, end) holds the sample's end.
    bounds = {bench.DVC_START: (0.0, 1.0), "simulate": (1.0, 3.0), "ingest": (3.0, 5.0)}
    for row in rows:
        low, high = bounds[row["stage"]]
        mine = [
            s for s in samples if low <= s[0] < high or (row["stage"] == "ingest" and s[0] >= high)
        ]
        assert row["busy_core_s"] == pytest.approx(sum(s[1] for s in mine))
        assert row["idle_core_s"] == pytest.approx(sum(s[2] for s in mine))
    # Busy cores: busy seconds over the sampled seconds (intervals 1.0, 1.0 | 1.0, 1.0, 1.2).
    assert rows[0]["busy_cores"] is None  # no sample ended before the first stage
    assert rows[1]["busy_cores"] == pytest.approx(2.5 / 2.0)
    assert rows[2]["busy_cores"] == pytest.approx(4.5 / 3.2)
    empty = bench.add_machine_busy(bench.split_stage_walls([("a", 0.5)], 1.0), [])
    assert [row["busy_cores"] for row in empty] == [None, None]


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux's /proc/stat")
def test_the_sampler_reads_one_interval_at_a_time_until_stopped():
    import os
    import time

    sampler = bench.MachineSampler(interval=0.05)
    sampler.start()
    time.sleep(0.4)
    sampler.stop()
    count = len(sampler.samples)
    assert count >= 3
    times = [at for at, _, _ in sampler.samples]
    assert times == sorted(times)
    # Every interval's busy and idle seconds add up to about its length on every core.
    total = sum(busy + idle for _, busy, idle in sampler.samples)
    assert total == pytest.approx(times[-1] * os.cpu_count(), rel=0.5)
    time.sleep(0.15)
    assert len(sampler.samples) == count  # stopped


def _two_stage_repository(root: Path) -> Path:
    """A repository with what build_project copies and a dvc.yaml of two plain commands."""
    python = sys.executable
    stages = {
        "stages": {
            "first": {
                "cmd": f'{python} -c "import pathlib; '
                "pathlib.Path('data/a.txt').write_text('a')\"",
                "deps": ["src/tool"],
                "outs": ["data/a.txt"],
            },
            "second": {
                "cmd": f'{python} -c "import pathlib, time; time.sleep(0.3); '
                "pathlib.Path('data/b.txt').write_text(pathlib.Path('data/a.txt').read_text())\"",
                "deps": ["data/a.txt"],
                "outs": ["data/b.txt"],
            },
        }
    }
    (root / ".dvc").mkdir(parents=True)
    (root / ".dvc" / "config").write_text("[core]\n    analytics = false\n")
    (root / ".dvcignore").write_text("__pycache__/\n")
    (root / "dvc.yaml").write_text(yaml.safe_dump(stages, sort_keys=False))
    (root / "data" / "raw").mkdir(parents=True)
    (root / "data" / "raw" / "README.md").write_text("own files go here\n")
    return root


def test_a_fresh_project_runs_every_stage_through_dvc_and_is_timed(tmp_path):
    repository = _two_stage_repository(tmp_path / "repository")
    source = tmp_path / "source"
    (source / "tool" / "__pycache__").mkdir(parents=True)
    (source / "tool" / "__init__.py").write_text("")
    (source / "tool" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    work = tmp_path / "work"
    work.mkdir()

    env = bench.build_project(
        work, source, lambda folder: (folder / "params.yaml").write_text("{}\n"), repository
    )
    run = bench.run_dvc_repro(work, env, tmp_path / "dvc_repro.log")

    # The project is a clone's: the repository's DVC settings, code without bytecode.
    assert (work / ".dvc" / "config").read_text() == (repository / ".dvc" / "config").read_text()
    assert (work / "src" / "tool" / "__init__.py").exists()
    assert not (work / "src" / "tool" / "__pycache__").exists()
    assert (work / "data" / "raw" / "README.md").exists()
    assert env["PYTHONPATH"] == str(work / "src")
    # DVC ran both stages and recorded them, as a user's dvc repro does.
    assert (work / "data" / "b.txt").read_text() == "a"
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"first", "second"}
    assert [row["stage"] for row in run["stages"]] == [bench.DVC_START, "first", "second"]
    assert sum(row["wall_s"] for row in run["stages"]) == pytest.approx(run["wall_s"])
    assert run["stages"][2]["wall_s"] >= 0.3  # the second stage's own sleep
    # How busy the machine was, per stage, from /proc/stat (where it exists).
    sampled = [row for row in run["stages"] if row["busy_cores"] is not None]
    assert all(row["busy_core_s"] >= 0 and row["idle_core_s"] >= 0 for row in run["stages"])
    if Path("/proc/stat").exists() and run["wall_s"] > 2:
        assert sampled
    assert run["cpu_s"] > 0 and run["peak_rss_mb"] > 0
    assert run["peak_tree_rss_mb"] >= run["peak_rss_mb"]
    assert "Running stage 'second':" in (tmp_path / "dvc_repro.log").read_text()


def test_a_failing_stage_fails_the_benchmark_with_dvc_output(tmp_path):
    repository = _two_stage_repository(tmp_path / "repository")
    stages = yaml.safe_load((repository / "dvc.yaml").read_text())
    stages["stages"]["second"]["cmd"] = f'{sys.executable} -c "raise SystemExit(3)"'
    (repository / "dvc.yaml").write_text(yaml.safe_dump(stages, sort_keys=False))
    (tmp_path / "source" / "tool").mkdir(parents=True)
    work = tmp_path / "work"
    work.mkdir()
    env = bench.build_project(
        work,
        tmp_path / "source",
        lambda folder: (folder / "params.yaml").write_text("{}\n"),
        repository,
    )

    with pytest.raises(RuntimeError, match="dvc repro failed"):
        bench.run_dvc_repro(work, env, tmp_path / "dvc_repro.log")


def test_a_non_empty_work_folder_is_refused(tmp_path, capsys):
    (tmp_path / "left_over.txt").write_text("x")

    with pytest.raises(SystemExit):
        bench.main(["--work", str(tmp_path)])
    assert "not empty" in capsys.readouterr().err


def test_the_table_shows_every_stage_the_floor_and_the_total():
    result = {
        "customers": 1200,
        "date": "2026-12-06T17:00:00+00:00",
        "machine": {"cpus": 2},
        "load_average_before": [1.0, 1.0, 1.0],
        "load_average_after": [2.0, 1.5, 1.0],
        "stages": [
            {"stage": bench.DVC_START, "wall_s": 1.25},
            {
                "stage": "simulate",
                "wall_s": 3.5,
                "busy_core_s": 5.0,
                "idle_core_s": 2.0,
                "busy_cores": 5.0 / 3.5,
            },
        ],
        "floor": {"wall_s": 0.4},
        "wall_s": 4.75,
        "cpu_s": 6.0,
        "peak_rss_mb": 300.0,
        "peak_tree_rss_mb": 350.0,
    }

    table = bench.render_markdown(result)

    assert "`dvc repro` at 1,200 customers" in table
    assert f"| {bench.DVC_START} | 1.2 |" in table  # 1.25 rounds to even
    assert "| simulate | 3.5 | 1.43 | 2.0 |" in table
    assert f"| {bench.DVC_START} | 1.2 |  |  |" in table  # a run without samples: blank
    assert "| floor: one DuckDB scan of the raw tables (after the run) | 0.4 |" in table
    assert "**4.8**" in table and "350 MB all at once" in table
    assert "| **4.8** | 1.43 | 2.0 |" in table  # the machine's average over the samples
