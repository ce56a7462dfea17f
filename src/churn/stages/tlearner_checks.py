"""The target stage's T-learner cross-check, one play per worker process.

The cross-check (:func:`churn.targeting.uplift.t_learner_save_rate`) is reported in
``reports/target.json`` beside the play effects, and nothing the stage chooses depends on it.
So the stage starts it as soon as the logged rows are annotated and collects it when it writes
its metrics: meanwhile the workers fit while the stage's own process explains the test cutoff,
plans the contacts and compares the policies, parts of which run on one core.

Each play is one task in a spawned worker process (:func:`churn.stages.fit_workers.open_fit_pool`,
one LightGBM thread per fit). The fits used to run in Python threads of the stage's process;
``churn target`` died once with a segmentation fault inside LightGBM at a million customers
(2026-12-05), and separate processes share no native state. The largest play goes first, so
the last task to start is a small one. A task carries the play's rows as Arrow IPC bytes and
its outcomes and arms as int8 bytes, never a pickle of a frame; a result is numbers. The
numbers do not depend on where a task runs (``tests/unit/stages/test_tlearner_checks.py``).
"""

from __future__ import annotations

from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from churn.config import TargetConfig
from churn.io import decode_frame, encode_frame
from churn.stages.fit_workers import open_fit_pool
from churn.targeting.uplift import t_learner_save_rate

#: Fewer logged rows than this in all plays' checks together are checked in the stage's own
#: process: a worker needs 3-5 s to start (importing LightGBM and scikit-learn, 2026-12-05),
#: more than the fits of a few thousand rows take. At 100k simulated customers the checks hold
#: about 16,000 rows (about 9 s of fits), at a million about 170,000 (about 50 s).
MIN_ROWS_FOR_WORKERS = 10_000

#: Columns of the cross-check table (``tlearner_check`` in ``reports/target.json``).
CHECK_COLUMNS = ("play", "segment", "save_rate", "standard_error", "treated_rows", "control_rows")


@dataclass(frozen=True)
class PlayCheck:
    """One play's cross-check inputs: its addressed logged rows, in the logged order.

    Attributes:
        play: The play.
        features: The model's features of the rows (categories as the model's codes).
        churned: Outcome of each row (0/1).
        control: Whether each row is in the held-out control arm.
    """

    play: str
    features: pd.DataFrame
    churned: np.ndarray
    control: np.ndarray


def plan_play_checks(
    rows: pd.DataFrame, model_features: pd.DataFrame, config: TargetConfig
) -> list[PlayCheck]:
    """The plays with at least ``target.min_rows_per_arm`` addressed rows in each arm.

    Args:
        rows: :func:`churn.stages.target.learn_effects`' logged rows (``play``,
            ``addressed``, ``control``, ``churned``).
        model_features: The model's feature columns for those rows (same order).
        config: The ``target`` section (plays, ``min_rows_per_arm``).

    Returns:
        One :class:`PlayCheck` per such play, in playbook order.
    """
    if rows.empty:
        return []
    control = rows["control"].to_numpy(dtype=bool)
    churned = rows["churned"].to_numpy(dtype=np.int8)
    checks = []
    for name in config.plays:
        mask = ((rows["play"] == name) & rows["addressed"]).to_numpy(dtype=bool)
        if min(int((mask & ~control).sum()), int((mask & control).sum())) < (
            config.min_rows_per_arm
        ):
            continue
        checks.append(
            PlayCheck(
                name, model_features[mask].reset_index(drop=True), churned[mask], control[mask]
            )
        )
    return checks


def check_play(check: PlayCheck, rounds: int, seed: int) -> dict[str, Any]:
    """The T-learner's save rate of one play over its addressed rows, with its bootstrap error.

    Returns:
        A :data:`CHECK_COLUMNS` record (segment ``addressed``).
    """
    treated = ~check.control
    estimate, spread = t_learner_save_rate(
        (check.features[treated], check.churned[treated]),
        (check.features[check.control], check.churned[check.control]),
        check.features,
        rounds=rounds,
        seed=seed,
    )
    return {
        "play": check.play,
        "segment": "addressed",
        "save_rate": estimate,
        "standard_error": spread,
        "treated_rows": int(treated.sum()),
        "control_rows": int(check.control.sum()),
    }


def check_play_in_worker(task: dict[str, Any]) -> dict[str, Any]:
    """Worker entry point: decode one play's rows and run :func:`check_play`."""
    check = PlayCheck(
        task["play"],
        decode_frame(task["features"]),
        np.frombuffer(task["churned"], dtype=np.int8),
        np.frombuffer(task["control"], dtype=np.int8).astype(bool),
    )
    return check_play(check, task["rounds"], task["seed"])


class PlayChecksRun:
    """The cross-check under way: started by :func:`start_play_checks`, read by :meth:`collect`.

    Use it as a context manager: leaving the block (also on an error) stops the workers, and
    tasks not yet started are dropped.
    """

    def __init__(self, checks: list[PlayCheck], rounds: int, seed: int, workers: int) -> None:
        self._checks = checks
        self._rounds, self._seed = rounds, seed
        #: Worker processes checking the plays (0: this process does, in :meth:`collect`).
        self.workers = workers
        self._pool: Executor | None = None
        self._futures: dict[str, Future[dict[str, Any]]] = {}
        if workers:
            self._pool = open_fit_pool(workers)
            # Largest first: the last task to start is a small one.
            for check in sorted(checks, key=lambda c: -len(c.features)):
                self._futures[check.play] = self._pool.submit(
                    check_play_in_worker, _encode_check(check, rounds, seed)
                )

    def collect(self) -> pd.DataFrame:
        """Wait for every play's result; one :data:`CHECK_COLUMNS` row per play, in playbook
        order (without workers, the plays are checked here, one after another)."""
        records = [
            self._futures[c.play].result()
            if self._pool is not None
            else check_play(c, self._rounds, self._seed)
            for c in self._checks
        ]
        return pd.DataFrame(records, columns=list(CHECK_COLUMNS))

    def __enter__(self) -> PlayChecksRun:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def start_play_checks(
    checks: list[PlayCheck],
    config: TargetConfig,
    workers: int,
    *,
    min_rows_for_workers: int = MIN_ROWS_FOR_WORKERS,
) -> PlayChecksRun:
    """Start the cross-check of ``checks``: in worker processes when it pays for them.

    Args:
        checks: :func:`plan_play_checks` output.
        config: The ``target`` section (``tlearner_bootstrap_rounds``, ``seed``).
        workers: Processes at most (``train.num_threads``: each fit runs on one thread).
        min_rows_for_workers: With fewer rows in all ``checks`` together, or no bootstrap,
            the plays are checked in this process (:data:`MIN_ROWS_FOR_WORKERS`).

    Returns:
        The run; :meth:`PlayChecksRun.collect` gives the table.
    """
    rounds = config.tlearner_bootstrap_rounds
    rows = sum(len(check.features) for check in checks)
    worth_it = workers > 1 and len(checks) > 1 and rounds > 0 and rows >= min_rows_for_workers
    return PlayChecksRun(checks, rounds, config.seed, min(workers, len(checks)) if worth_it else 0)


def _encode_check(check: PlayCheck, rounds: int, seed: int) -> dict[str, Any]:
    return {
        "play": check.play,
        "features": encode_frame(check.features),
        "churned": np.ascontiguousarray(check.churned, dtype=np.int8).tobytes(),
        "control": np.ascontiguousarray(check.control, dtype=np.int8).tobytes(),
        "rounds": rounds,
        "seed": seed,
    }
