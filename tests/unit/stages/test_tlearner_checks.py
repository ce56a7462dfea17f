"""The T-learner cross-check in worker processes: the same numbers as here, errors surface."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.config import parse_params
from churn.stages.tlearner_checks import (
    CHECK_COLUMNS,
    PlayCheck,
    plan_play_checks,
    start_play_checks,
)
from churn.targeting.uplift import t_learner_save_rate

PLAYS = {
    "call": {"families": ["support"], "team": "support", "cost": 1, "save_rate": 0.2},
    "tour": {"families": ["usage"], "team": "success", "cost": 1, "save_rate": 0.2},
    "rare": {"families": ["billing"], "team": "sales", "cost": 1, "save_rate": 0.2},
    "gift": {"families": ["billing"], "team": "sales", "cost": 1, "save_rate": 0.2},
}


def _config(rounds: int = 3):
    return parse_params({"target": {
        "teams": {"support": 5, "success": 5, "sales": 5}, "plays": PLAYS,
        "min_rows_per_arm": 40, "tlearner_bootstrap_rounds": rounds, "seed": 11,
    }}).target


def _logged(n: int = 1500, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Logged rows of four plays (``rare`` with too few control rows) and their features."""
    rng = np.random.default_rng(seed)
    play = rng.choice(["call", "tour", "gift", "rare"], n, p=[0.35, 0.3, 0.25, 0.1])
    control = rng.random(n) < np.where(play == "rare", 0.05, 0.4)
    features = pd.DataFrame({"risk": rng.normal(size=n), "tenure": rng.integers(0, 30, n) * 1.0})
    risk = 1 / (1 + np.exp(1.0 - features["risk"].to_numpy()))
    churned = (rng.random(n) < np.where(control, risk, 0.7 * risk)).astype(np.int64)
    rows = pd.DataFrame({
        "play": play, "control": control, "churned": churned,
        "addressed": rng.random(n) < 0.8,
    }, index=rng.permutation(n))  # the rows' index is not their position
    return rows, features.set_axis(rows.index)


def test_plan_keeps_each_play_addressed_rows_in_order_when_both_arms_are_large_enough():
    rows, features = _logged()
    checks = plan_play_checks(rows, features, _config())
    assert [c.play for c in checks] == ["call", "tour", "gift"]  # playbook order, no "rare"
    for check in checks:
        mask = ((rows["play"] == check.play) & rows["addressed"]).to_numpy()
        pd.testing.assert_frame_equal(check.features, features[mask].reset_index(drop=True))
        np.testing.assert_array_equal(check.churned, rows["churned"].to_numpy()[mask])
        np.testing.assert_array_equal(check.control, rows["control"].to_numpy()[mask])
    rare = ((rows["play"] == "rare") & rows["addressed"] & rows["control"]).sum()
    assert 0 < rare < 40
    assert plan_play_checks(rows.iloc[:0], features.iloc[:0], _config()) == []


def test_checks_in_two_worker_processes_equal_the_checks_run_here_and_a_naive_call():
    rows, features = _logged()
    config = _config()
    checks = plan_play_checks(rows, features, config)
    with start_play_checks(checks, config, workers=2, min_rows_for_workers=0) as run:
        assert run.workers == 2
        in_workers = run.collect()
    with start_play_checks(checks, config, workers=1, min_rows_for_workers=0) as run:
        assert run.workers == 0
        here = run.collect()
    assert list(in_workers.columns) == list(CHECK_COLUMNS)
    pd.testing.assert_frame_equal(in_workers, here)  # bit for bit, not approximately
    assert list(here["play"]) == ["call", "tour", "gift"]
    for check, record in zip(checks, here.to_dict(orient="records"), strict=True):
        treated = ~check.control
        naive = t_learner_save_rate(
            (check.features[treated], check.churned[treated]),
            (check.features[check.control], check.churned[check.control]),
            check.features, rounds=3, seed=11)
        assert (record["save_rate"], record["standard_error"]) == naive
        assert record["treated_rows"] == treated.sum() > 0
        assert record["control_rows"] == check.control.sum() >= 40


def test_a_failing_check_in_a_worker_raises_its_error_here():
    rows, features = _logged()
    config = _config()
    checks = plan_play_checks(rows, features, config)
    # Text in a feature column: LightGBM refuses it, in the worker as it would here.
    broken = PlayCheck("tour", checks[1].features.assign(risk="high"), checks[1].churned,
                       checks[1].control)
    with (
        pytest.raises(ValueError, match="risk"),
        start_play_checks([checks[0], broken], config, 2, min_rows_for_workers=0) as run,
    ):
        assert run.workers == 2
        run.collect()


def test_no_checks_give_an_empty_table_with_the_columns():
    with start_play_checks([], _config(), workers=2) as run:
        table = run.collect()
    assert table.empty and list(table.columns) == list(CHECK_COLUMNS)


def test_small_checks_and_checks_without_bootstrap_run_here_without_workers():
    rows, features = _logged()
    checks = plan_play_checks(rows, features, _config())
    total = sum(len(c.features) for c in checks)
    with start_play_checks(checks, _config(), 2, min_rows_for_workers=total + 1) as run:
        assert run.workers == 0
    with start_play_checks(checks, _config(), 2, min_rows_for_workers=total) as run:
        assert run.workers == 2
    with start_play_checks(checks, _config(rounds=0), 2, min_rows_for_workers=0) as run:
        assert run.workers == 0
        assert run.collect()["standard_error"].isna().all()
