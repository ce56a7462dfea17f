"""Smoke test of ``benchmarks/bench_pipeline.py``: a 1,200-customer run gives a full table.

Slow (the whole pipeline runs, stage by stage, in a scratch folder). It checks the shape of
the results, not speed: one row per ``dvc.yaml`` stage in dependency order, measured
quantities that are positive, rows that add up, and the Markdown table.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from support.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]

bench = load_script("benchmarks/bench_pipeline.py")
measuring = load_script("benchmarks/measuring.py")


def test_stages_are_ordered_after_the_stages_they_read():
    stages = {
        "report": {"deps": ["reports/a.json", "reports/b.json"]},
        "b": {"deps": ["data/a"], "metrics": [{"reports/b.json": {"cache": False}}]},
        "a": {"outs": ["data/a", {"reports/a.json": {"cache": False}}]},
    }

    assert bench.order_stages(stages) == ["a", "b", "report"]


def test_settings_are_read_as_yaml_values_and_a_malformed_one_is_refused():
    settings = bench.parse_settings(
        ["features.duckdb_memory_limit=8GB", "features.duckdb_threads=1", "train.seed = 7"]
    )

    assert settings == {
        "features.duckdb_memory_limit": "8GB",
        "features.duckdb_threads": 1,
        "train.seed": 7,
    }
    for malformed in ("features.duckdb_threads", "=3"):
        with pytest.raises(ValueError, match="expected KEY=VALUE"):
            bench.parse_settings([malformed])


def test_written_params_carry_the_settings_and_a_continued_run_keeps_its_size(tmp_path):
    bench.write_params(tmp_path, 1234, 18, settings={"features.duckdb_memory_limit": "8GB"})
    written = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert written["simulate"]["customers"] == 1234 and written["simulate"]["months"] == 18
    assert written["features"]["duckdb_memory_limit"] == "8GB"

    bench.update_params(tmp_path, {"features.duckdb_threads": 1})
    continued = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert continued["simulate"]["customers"] == 1234
    assert continued["features"]["duckdb_memory_limit"] == "8GB"
    assert continued["features"]["duckdb_threads"] == 1


def test_a_misspelt_or_invalid_setting_stops_before_anything_is_written(tmp_path):
    from churn.config import ConfigError

    with pytest.raises(ConfigError, match="duckdb_memory_limt"):
        bench.write_params(tmp_path, 1000, None, settings={"features.duckdb_memory_limt": "8GB"})
    with pytest.raises(ConfigError, match="duckdb_threads"):
        bench.write_params(tmp_path, 1000, None, settings={"features.duckdb_threads": 0})
    assert not (tmp_path / "params.yaml").exists()


def test_a_run_from_the_first_stage_needs_no_earlier_figures(tmp_path):
    assert bench.read_earlier_stages(tmp_path / "missing.json", []) == []
    with pytest.raises(ValueError, match="were not run"):
        bench.read_earlier_stages(tmp_path / "missing.json", ["simulate"])


@pytest.mark.slow
def test_small_run_gives_one_measured_row_per_stage(tmp_path):
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"

    bench.main(
        [
            "--customers",
            "1200",
            "--months",
            "18",
            "--work",
            str(tmp_path / "work"),
            "--json",
            str(out_json),
            "--markdown",
            str(out_md),
            "--set",
            "features.duckdb_threads=1",
        ]
    )

    result = json.loads(out_json.read_text())
    assert result["settings"] == {"features.duckdb_threads": 1}
    written = yaml.safe_load((tmp_path / "work" / "params.yaml").read_text())
    assert written["features"]["duckdb_threads"] == 1
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert [row["stage"] for row in result["stages"]] == bench.order_stages(stages)
    for row in result["stages"]:
        assert set(bench.COLUMNS) <= set(row)
        assert row["wall_s"] > 0 and row["cpu_s"] > 0 and row["peak_rss_mb"] > 10
        assert row["peak_tree_rss_mb"] >= row["peak_rss_mb"]
    by_stage = {row["stage"]: row for row in result["stages"]}
    floor = result["floor"]
    # simulate writes the raw tables the floor scans; ingest reads them (its other dep,
    # data/raw, holds only a README) and writes valid + quarantined rows: the same count.
    assert by_stage["simulate"]["rows_out"] > floor["rows_in"] > 2000
    assert by_stage["ingest"]["rows_in"] == floor["rows_in"]
    assert by_stage["ingest"]["rows_out"] == floor["rows_in"]
    assert floor["cpu_s"] > 0
    assert by_stage["ingest"]["cpu_x_floor"] == pytest.approx(
        by_stage["ingest"]["cpu_s"] / floor["cpu_s"]
    )
    table = out_md.read_text().splitlines()
    assert sum(line.startswith("| ") for line in table) == len(stages) + 3  # header, floor, total
    # The same floor, measured right after simulate too: the machine's drift over the run.
    early = result["floor_after_simulate"]
    assert early["cpu_s"] > 0 and early["wall_s"] > 0
    assert (tmp_path / "work" / "bench_logs" / "floor_after_simulate.log").is_file()
    drift = [line for line in table if line.startswith("The floor right after simulate")]
    assert drift and f"{floor['cpu_s'] / early['cpu_s']:.2f}x" in drift[0]

    # Continued from the last stage on the same folder: the earlier figures carried over, the
    # last stage measured again, each row naming the commit it was measured with.
    last = bench.order_stages(stages)[-1]
    again = bench.run_pipeline(
        tmp_path / "work", 1, progress=tmp_path / "work" / "bench_progress.json", from_stage=last
    )
    assert again["customers"] == 1200 and again["from_stage"] == last
    assert [row["stage"] for row in again["stages"]] == bench.order_stages(stages)
    for before, after in zip(result["stages"][:-1], again["stages"][:-1], strict=True):
        assert after["wall_s"] == before["wall_s"] and after["commit"] == before["commit"]
    assert again["stages"][-1]["wall_s"] != result["stages"][-1]["wall_s"]
    assert again["stages"][-1]["commit"] == measuring.read_commit()
    assert again["floor_after_simulate"] is None  # simulate did not run: no early floor
    assert "right after simulate" not in bench.render_markdown(again)
    with pytest.raises(ValueError, match="no stage 'nope'"):
        bench.run_pipeline(tmp_path / "work", 1, progress=tmp_path / "p.json", from_stage="nope")
    with pytest.raises(ValueError, match="no figures for"):
        (tmp_path / "p.json").write_text(json.dumps({"stages": result["stages"][:2]}))
        bench.run_pipeline(tmp_path / "work", 1, progress=tmp_path / "p.json", from_stage=last)
