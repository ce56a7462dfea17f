"""Reliability: a stage writing several files leaves either the old set or the new one.

A kill is simulated by an exception raised between two writes. Staging folders of killed runs
are removed by the next run, and are made beside an output folder, never inside it (where
``dvc commit`` would hash them into the output).
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
from support.tiny import TINY_CATALOG, fit_tiny_model, make_feature_frame

from churn.config import Params
from churn.io import STAGING_MARK
from churn.model.changes import sidecar_path
from churn.stages import explain as explain_stage
from churn.stages import score as score_stage
from churn.stages.explain import run_explain
from churn.stages.score import run_score


class KilledError(RuntimeError):
    """Stands in for SIGKILL between two writes."""


@pytest.fixture
def scoring(monkeypatch, tmp_path, tiny_model):
    """A model, validated tables and stand-ins for population and features (see test_score)."""
    state = {"features": make_feature_frame(n_customers=120, n_cutoffs=1, seed=8)}

    def active_population(tables, cutoff, cfg):
        frame = state["features"]
        return pd.DataFrame(
            {
                "customer_id": frame["customer_id"].array,
                "cutoff": pd.Series(cutoff, index=frame.index).astype("datetime64[us, UTC]"),
                "label": pd.array([pd.NA] * len(frame), dtype="Int8"),
                "mrr": frame["mrr_at_cutoff"].to_numpy(),
            }
        )

    def build_features(tables, population, cfg, **options):
        frame = state["features"].assign(cutoff=population["cutoff"].to_numpy())
        return types.SimpleNamespace(frame=frame, catalog=TINY_CATALOG.copy(), skipped={})

    monkeypatch.setattr("churn.labels.build.active_population", active_population)
    monkeypatch.setattr("churn.stages.features.build_features", build_features)
    validated = tmp_path / "validated"
    validated.mkdir()
    customers = pd.DataFrame(
        {
            "customer_id": ["c00000"],
            "converted_at": pd.to_datetime(["2024-01-01"], utc=True).astype("datetime64[us, UTC]"),
        }
    )
    customers.to_parquet(validated / "customers.parquet")
    customers.rename(columns={"converted_at": "started_at"}).to_parquet(
        validated / "subscriptions.parquet"
    )
    tiny_model.save(tmp_path / "model")
    out = tmp_path / "scores" / "scores.parquet"
    return types.SimpleNamespace(
        state=state, validated=validated, model=tmp_path / "model", out=out
    )


def score(scoring):
    return run_score(Params(), scoring.validated, str(scoring.model), scoring.out)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_a_kill_between_score_writes_leaves_the_old_scores_and_contributions(scoring, monkeypatch):
    score(scoring)
    score(scoring)  # a second night: scores, contributions and changes exist
    before = snapshot(scoring.out.parent)
    assert set(before) == {
        "scores.parquet",
        sidecar_path(scoring.out, "_contributions").name,
        sidecar_path(scoring.out, "_changes").name,
        sidecar_path(scoring.out, "_features").name,
    }
    scoring.state["features"] = make_feature_frame(n_customers=120, n_cutoffs=1, seed=9)
    real_write_table = score_stage.write_table

    def killed(*args, **kwargs):  # contributions and changes are written by now
        raise KilledError

    monkeypatch.setattr(score_stage, "write_table", killed)
    with pytest.raises(KilledError):
        score(scoring)
    assert snapshot(scoring.out.parent) == before
    assert not [p for p in scoring.out.parent.parent.iterdir() if STAGING_MARK in p.name]
    monkeypatch.setattr(score_stage, "write_table", real_write_table)
    score(scoring)
    assert snapshot(scoring.out.parent) != before


def test_explain_killed_midway_leaves_the_previous_folder(tiny_model, feature_frame, tmp_path):
    tiny_model.save(tmp_path / "model")
    feature_frame.to_parquet(tmp_path / "features.parquet")
    params = Params.model_validate({"explain": {"sample_rows": 60, "dependence_features": 1}})
    out = tmp_path / "explain"
    run_explain(params, tmp_path / "features.parquet", tmp_path / "model", out)
    before = snapshot(out)

    def draw_then_die(*args, **kwargs):
        raise KilledError

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(explain_stage, "draw_plots", draw_then_die)  # CSVs are written by now
        with pytest.raises(KilledError):
            run_explain(params, tmp_path / "features.parquet", tmp_path / "model", out)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["explain", "features.parquet", "model"]


def test_mathtext_in_a_category_neither_crashes_explain_nor_mixes_the_folder(
    feature_frame, tmp_path
):
    hostile = r"$\notacommand{a}{b}$"
    frame = feature_frame.assign(plan=feature_frame["plan"].replace("starter", hostile))
    model = fit_tiny_model(frame)
    model.save(tmp_path / "model")
    frame.to_parquet(tmp_path / "features.parquet")
    params = Params.model_validate({"explain": {"sample_rows": 150, "dependence_features": 7}})
    summary = run_explain(params, tmp_path / "features.parquet", tmp_path / "model", tmp_path / "x")
    assert "dependence_plan.png" in summary["plots"]
    written = {p.name for p in (tmp_path / "x").iterdir()}
    assert written == {
        *summary["plots"],
        *(f"{t}_importance.csv" for t in ("global", "family", "phase")),
        "explain.json",
    }


def test_staging_left_by_a_killed_process_is_removed_and_never_inside_the_output(scoring, tmp_path):
    """A real kill: a child process is SIGKILLed while it writes the scores folder."""
    score(scoring)
    parent = scoring.out.parent.parent
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, signal, sys\n"
            "from churn.io import atomic_directory\n"
            "with atomic_directory(sys.argv[1]) as staging:\n"
            "    (staging / 'scores.parquet').write_bytes(b'half')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n",
            str(scoring.out.parent),
        ]
    )
    assert child.wait(timeout=120) == -9
    leftovers = [p for p in parent.iterdir() if STAGING_MARK in p.name]
    assert len(leftovers) == 1  # beside the output folder ...
    assert not [p for p in scoring.out.parent.iterdir() if STAGING_MARK in p.name]  # not in it
    assert pd.read_parquet(scoring.out)["customer_id"].nunique() == 120  # old set intact
    score(scoring)
    assert not [p for p in parent.iterdir() if STAGING_MARK in p.name]  # removed next run
