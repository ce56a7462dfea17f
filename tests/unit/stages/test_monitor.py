"""The monitor stage: core on tiny frames, the runner's history, and the CLI's exit code."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.tiny import fit_tiny_model, make_feature_frame
from typer.testing import CliRunner

from churn import cli
from churn.config import parse_params
from churn.errors import DataContractError
from churn.model.artifact import Calibrator, ChurnModel
from churn.stages.monitor import (
    list_monitored_cutoffs,
    monitor_champion,
    predict_rows_once,
    run_monitor,
    select_backfill_cutoffs,
    select_reference_rows,
)

TRAIN_CUTOFFS = 4
ALL_CUTOFFS = 9  # 4 training, 4 later labeled or open, the last one scored


@pytest.fixture(scope="module")
def world() -> tuple[ChurnModel, pd.DataFrame]:
    frame = make_feature_frame(n_customers=1500, n_cutoffs=ALL_CUTOFFS, seed=4)
    cutoffs = sorted(frame["cutoff"].unique())
    train = frame[frame["cutoff"].isin(cutoffs[:TRAIN_CUTOFFS - 1])]
    # Calibrated on a later cutoff, as train does: an in-sample calibration is overconfident,
    # and confidence-based estimates are only as good as the calibration.
    held_out = frame[frame["cutoff"] == cutoffs[TRAIN_CUTOFFS - 1]]
    model = fit_tiny_model(train)
    calibrator = Calibrator.fit(model.predict_raw(held_out), held_out["label"].to_numpy(int),
                                "platt")
    model = replace(model, calibrator=calibrator)
    strings = [f"{pd.Timestamp(c):%Y-%m-%d}" for c in cutoffs]
    model = replace(model, metadata={"train_cutoffs": strings[:TRAIN_CUTOFFS],
                                     "test_cutoffs": strings[TRAIN_CUTOFFS:TRAIN_CUTOFFS + 1]})
    return model, frame


def split(frame: pd.DataFrame, model: ChurnModel, *, shift_tickets: float = 1.0):
    """Return (features table without the last cutoff, scores and features at the last one)."""
    last = frame["cutoff"].max()
    history = frame[frame["cutoff"] < last]
    current = frame[frame["cutoff"] == last].copy()
    current["support_tickets_last_30d"] *= shift_tickets
    scores = current[["customer_id", "cutoff"]].assign(
        churn_probability=model.predict_proba(current))
    return history, scores, current


def run_core(model: ChurnModel, frame: pd.DataFrame, data_end: str, params=None, **shift):
    history, scores, current = split(frame, model, **shift)
    return monitor_champion(
        model=model, model_version="1", features=history,
        labels=history[["customer_id", "cutoff", "label"]],
        data_end=pd.Timestamp(data_end, tz="UTC"), scores=scores, scoring_features=current,
        history=pd.DataFrame(), params=params or parse_params({}),
    )


def test_unshifted_data_is_ok_and_estimates_match_realized(world) -> None:
    model, frame = world
    # Cutoffs 2025-01..08 in the table; 2025-05-01 + 74 days = 07-14: 05 and 06 are closed.
    outcome = run_core(model, frame, "2025-08-20")
    report = outcome.report
    assert report["status"] == "ok", report["reasons"]
    closed = [r for r in report["by_cutoff"] if r["realized_roc_auc"] is not None]
    assert [r["cutoff"] for r in closed] == ["2025-05-01", "2025-06-01"]
    assert report["estimated_vs_realized"]["mean_absolute_difference"] < 0.03
    sources = [(r["cutoff"], r["source"]) for r in report["by_cutoff"]]
    assert sources[-1] == ("2025-09-01", "scored")
    assert {s for _, s in sources[:-1]} == {"backfilled"}


def test_only_closed_horizons_are_realized(world) -> None:
    model, frame = world
    # Every backfilled cutoff has label rows, but with data ending 2025-06-10 none is closed.
    report = run_core(model, frame, "2025-06-10").report
    assert report["realized"] == []
    assert all(r["realized_roc_auc"] is None for r in report["by_cutoff"])


def test_injected_shift_is_flagged_at_the_first_scoring(world) -> None:
    model, frame = world
    report = run_core(model, frame, "2025-08-20", shift_tickets=3.0).report
    flagged = {r["subject"] for r in report["reasons"]}
    assert "support_tickets_last_30d" in flagged
    assert report["status"] in {"warn", "retrain"}
    assert "support_tickets_last_30d" in {r["feature"] for r in report["flagged_features"]}
    top = report["drift"][0]
    assert top["feature"] == "support_tickets_last_30d" and top["psi"] >= 0.25


def test_backfill_picks_the_last_cutoffs_after_training() -> None:
    cutoffs = list(pd.date_range("2025-01-01", periods=8, freq="MS", tz="UTC"))
    chosen = select_backfill_cutoffs(cutoffs, cutoffs[3], 2, skip=cutoffs[7])
    assert chosen == cutoffs[5:7]
    assert select_backfill_cutoffs(cutoffs, cutoffs[3], 0, None) == []


def write_inputs(root: Path, model: ChurnModel, frame: pd.DataFrame, shift: float = 1.0):
    history, scores, current = split(frame, model, shift_tickets=shift)
    model.save(root / "model")
    history.to_parquet(root / "features.parquet")
    history[["customer_id", "cutoff", "label"]].to_parquet(root / "labels.parquet")
    (root / "labels.json").write_text(json.dumps({"data_end": "2025-08-20T00:00:00+00:00"}))
    (root / "scores").mkdir(exist_ok=True)
    scores.to_parquet(root / "scores" / "scores.parquet")
    current[["customer_id", "cutoff", *model.feature_names]].to_parquet(
        root / "scores" / "scores_features.parquet")
    return {
        "features_path": root / "features.parquet", "labels_path": root / "labels.parquet",
        "labels_report": root / "labels.json", "model_dir": root / "model",
        "scores_path": root / "scores" / "scores.parquet", "history_dir": root / "history",
        "out_path": root / "monitor.json",
    }


def test_rerunning_a_cutoff_replaces_its_history_entry(world, tmp_path: Path) -> None:
    model, frame = world
    paths = write_inputs(tmp_path, model, frame)
    params = parse_params({"monitor": {"backfill_cutoffs": 2, "estimate_draws": 20}})
    run_monitor(params, **paths)
    files = sorted(p.relative_to(tmp_path) for p in (tmp_path / "history").rglob("*.*"))
    first = pd.read_parquet(next((tmp_path / "history" / "scores").glob("cutoff=2025-09-01*")))
    run_monitor(params, **paths)
    again = sorted(p.relative_to(tmp_path) for p in (tmp_path / "history").rglob("*.*"))
    assert again == files and len(files) == 6  # 3 entries x (scores, record)
    second = pd.read_parquet(next((tmp_path / "history" / "scores").glob("cutoff=2025-09-01*")))
    pd.testing.assert_frame_equal(first, second)
    report = json.loads(paths["out_path"].read_text())
    assert len(report["history_entries"]) == 3
    assert all(e.endswith("__model=" + report["model_version"]) for e in report["history_entries"])


def test_the_runner_reads_only_the_cutoffs_the_core_uses_and_reports_the_same(
    world, tmp_path: Path
) -> None:
    model, frame = world
    params = parse_params({"monitor": {"backfill_cutoffs": 2, "reference_cutoffs": 2,
                                       "estimate_draws": 20}})
    history, scores, _ = split(frame, model)
    cutoffs = sorted(pd.DatetimeIndex(history["cutoff"].unique()))
    needed = list_monitored_cutoffs(cutoffs, model, params, scores["cutoff"].iloc[0])
    # Reference: training cutoffs 3-4; test: 5; backfill: 7-8 (the last two before scoring).
    assert needed == [cutoffs[i] for i in (2, 3, 4, 6, 7)]
    run_runner_and_core(model, frame, params, tmp_path)


def run_runner_and_core(model: ChurnModel, frame: pd.DataFrame, params, tmp_path: Path):
    """The runner's report on files of ``frame``, checked equal to the core's on every row of
    it; returns the runner's report and the core's outcome."""
    paths = write_inputs(tmp_path, model, frame)
    history, scores, current = split(frame, model)
    report = run_monitor(params, **paths)
    whole = monitor_champion(
        model=model, model_version=report["model_version"], features=history,
        labels=history[["customer_id", "cutoff", "label"]],
        data_end=pd.Timestamp("2025-08-20", tz="UTC"), scores=scores, scoring_features=current,
        history=pd.DataFrame(), params=params,
    )
    assert json.loads(paths["out_path"].read_text()) == json.loads(
        json.dumps(whole.report, default=str))
    return report, whole


def test_a_row_limit_reads_and_reports_a_repeatable_sample_of_each_cutoff(
    world, tmp_path: Path
) -> None:
    model, frame = world
    params = parse_params({"monitor": {"backfill_cutoffs": 2, "reference_cutoffs": 2,
                                       "estimate_draws": 20, "max_rows_per_cutoff": 400}})
    # The core given every row samples the same rows the runner read.
    report, whole = run_runner_and_core(model, frame, params, tmp_path)
    _, scores, _ = split(frame, model)
    assert report["reference"]["rows"] == 2 * 400
    entries = {entry.record["source"]: entry for entry in whole.entries}
    backfilled = [e for e in whole.entries if e.record["source"] == "backfilled"]
    assert [len(e.scores) for e in backfilled] == [400, 400]
    # The current scoring is the score stage's output, every row of it.
    assert len(entries["scored"].scores) == len(scores) == 1500
    # The same customers at every backfilled cutoff (each cutoff holds all 1,500).
    first, second = (set(e.scores["customer_id"]) for e in backfilled)
    assert first == second


def test_a_row_limit_above_every_cutoff_changes_nothing(world) -> None:
    model, frame = world
    unlimited = run_core(model, frame, "2025-08-20",
                         parse_params({"monitor": {"max_rows_per_cutoff": None}}))
    limited = run_core(model, frame, "2025-08-20",
                       parse_params({"monitor": {"max_rows_per_cutoff": 1500}}))
    assert limited.report["reference"]["rows"] == unlimited.report["reference"]["rows"] > 1500
    assert {**limited.report, "thresholds": None} == {**unlimited.report, "thresholds": None}


def test_fail_on_sets_the_exit_code(world, tmp_path: Path) -> None:
    model, frame = world
    params_file = tmp_path / "params.yaml"
    params_file.write_text("monitor:\n  estimate_draws: 10\n  backfill_cutoffs: 1\n")

    def invoke(root: Path, shift: float, *extra: str) -> int:
        root.mkdir()
        paths = write_inputs(root, model, frame, shift)
        args = ["monitor", "--params", str(params_file), "--features", str(paths["features_path"]),
                "--labels", str(paths["labels_path"]), "--labels-report",
                str(paths["labels_report"]), "--model-dir", str(paths["model_dir"]),
                "--scores", str(paths["scores_path"]), "--history", str(paths["history_dir"]),
                "--out", str(paths["out_path"]), *extra]
        return CliRunner().invoke(cli.app, args).exit_code

    assert invoke(tmp_path / "ok", 1.0, "--fail-on", "warn") == 0
    assert invoke(tmp_path / "shift_plain", 4.0) == 0
    assert invoke(tmp_path / "shift_warn", 4.0, "--fail-on", "warn") == 1
    assert invoke(tmp_path / "bad", 1.0, "--fail-on", "sometimes") == 2


def test_entity_mode_with_integer_ids_has_drift_but_no_horizon(world) -> None:
    """Entity mode: one cutoff (the as-of date), no backfill, no realized performance."""
    model, frame = world
    one = frame[frame["cutoff"] == frame["cutoff"].min()].copy()
    one["customer_id"] = np.arange(len(one))  # integer ids from a CRM export
    scores = one[["customer_id", "cutoff"]].assign(churn_probability=model.predict_proba(one))
    params = parse_params({"ingest": {"mode": "entity"}})
    report = monitor_champion(
        model=model, model_version="1", features=one,
        labels=one[["customer_id", "cutoff", "label"]], data_end=None, scores=scores,
        scoring_features=one, history=pd.DataFrame(), params=params,
    ).report
    assert report["mode"] == "entity" and report["status"] == "ok"
    assert report["realized"] == [] and "entity mode" in report["realized_note"]
    assert [r["source"] for r in report["by_cutoff"]] == ["scored"]
    assert report["drift"] and max(r["psi"] for r in report["drift"]) < 0.01


def test_stored_entries_of_an_older_model_stay_and_are_realized(world) -> None:
    model, frame = world
    history, scores, current = split(frame, model)
    old_cutoff = history[history["cutoff"] == pd.Timestamp("2025-05-01", tz="UTC")]
    old = old_cutoff[["customer_id", "cutoff"]].assign(
        churn_probability=0.05, model_version="0", source="scored")
    report = monitor_champion(
        model=model, model_version="1", features=history,
        labels=history[["customer_id", "cutoff", "label"]],
        data_end=pd.Timestamp("2025-08-20", tz="UTC"), scores=scores, scoring_features=current,
        history=old, params=parse_params({}),
    ).report
    assert "cutoff=2025-05-01__model=0" in report["history_entries"]
    old_realized = [r for r in report["realized"] if r["model_version"] == "0"]
    assert len(old_realized) == 1 and old_realized[0]["roc_auc"] == 0.5  # a constant score


def test_reference_rows_are_the_last_training_cutoffs_present():
    cutoffs = pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01", "2024-03-01"], utc=True)
    features = pd.DataFrame(
        {"customer_id": [1, 2, 3, 4], "cutoff": cutoffs.astype("datetime64[us, UTC]")}
    )
    train_cutoffs = [pd.Timestamp(d, tz="UTC") for d in ("2023-12-01", "2024-02-01", "2024-03-01")]
    rows = select_reference_rows(features, train_cutoffs, count=1, entity=False)
    assert list(rows["customer_id"]) == [3, 4]
    rows = select_reference_rows(features, train_cutoffs, count=5, entity=False)
    assert list(rows["customer_id"]) == [2, 3, 4]  # 2023-12 is not in the table
    assert len(select_reference_rows(features, [], count=1, entity=True)) == 4
    with pytest.raises(DataContractError, match="none of the champion's training cutoffs"):
        select_reference_rows(features, train_cutoffs[:1], count=1, entity=False)


def test_reference_auc_is_that_of_a_fresh_prediction_of_the_test_rows(world) -> None:
    from sklearn.metrics import roc_auc_score

    model, frame = world
    report = run_core(model, frame, "2025-08-20").report
    test_cutoff = pd.Timestamp(model.metadata["test_cutoffs"][0], tz="UTC")
    # The test cutoff is one of the backfilled ones: its scores are reused, not predicted again.
    assert f"{test_cutoff:%Y-%m-%d}" in [
        r["cutoff"] for r in report["by_cutoff"] if r["source"] == "backfilled"
    ]
    test = frame[(frame["cutoff"] == test_cutoff) & frame["label"].notna()]
    expected = roc_auc_score(test["label"].astype(int), model.predict_proba(test))
    assert report["reference"]["roc_auc"] == expected


def test_predict_rows_once_takes_known_rows_and_predicts_the_rest(world) -> None:
    model, frame = world
    rows = frame.iloc[:40]
    # Impossible probabilities mark the rows that must come from the stored scores.
    scored = pd.Series(2.0, index=rows.index[::2])
    probabilities = predict_rows_once(model, rows, scored)
    np.testing.assert_array_equal(probabilities[::2], 2.0)
    np.testing.assert_array_equal(probabilities[1::2], model.predict_proba(rows.iloc[1::2]))


def test_monitor_matches_rows_to_scores_when_the_index_repeats(world) -> None:
    model, frame = world
    history, scores, current = split(frame, model)
    repeated = history.set_axis(np.zeros(len(history), dtype=int))
    args = dict(model=model, model_version="1", labels=history[["customer_id", "cutoff", "label"]],
                data_end=pd.Timestamp("2025-08-20", tz="UTC"), scores=scores,
                scoring_features=current, history=pd.DataFrame(), params=parse_params({}))
    expected = monitor_champion(features=history, **args).report
    assert monitor_champion(features=repeated, **args).report == expected

