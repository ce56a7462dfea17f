"""The MLflow model registry: the champion/challenger gate, and which version later stages use.

The gate's read-compare-set (read ``@champion``, score it, set the alias) runs under an exclusive
file lock beside a SQLite store (:func:`hold_gate_lock`), so two trainings racing against one
store are compared one after the other: the second is gated against the first's outcome, and
two models can never both be promoted over the same champion. Other stores (an HTTP server)
get no cross-process lock; there the champion is re-read just before the alias is set and the
comparison repeated if it moved, which narrows the race to that last call.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churn.errors import ModelError
from churn.model.gate import GATE_METRICS, is_better
from churn.model.split import label_array

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from churn.config import GateConfig

logger = logging.getLogger(__name__)




CHAMPION = "champion"


CHALLENGER = "challenger"


#: Suffix of the gate's lock file beside a SQLite store (``mlflow.db`` -> ``mlflow.db.gate.lock``).
GATE_LOCK_SUFFIX = ".gate.lock"


#: Comparisons retried when the champion moves between reading and setting (unlocked stores).
MAX_GATE_ATTEMPTS = 5


@dataclass(frozen=True)
class GateDecision:
    """Outcome of the champion/challenger comparison.

    Attributes:
        alias: Alias given to the new version: ``champion`` or ``challenger``.
        outcome: ``first_model``, ``promoted``, ``rejected`` or ``incomparable``.
        reason: One sentence for the log, the run tag and the report.
        metric: Gate metric compared on the same test rows.
        new_score: The new model's score.
        champion_score: The previous champion's score (``None`` if none was scored).
        champion_version: The previous champion's version (``None`` if none).
        version: The version that was gated.
    """

    alias: str
    outcome: str
    reason: str
    metric: str
    new_score: float
    champion_score: float | None = None
    champion_version: str | None = None
    version: str | None = None

    @property
    def promoted(self) -> bool:
        """Whether the gated version is now the champion."""
        return self.alias == CHAMPION

    @property
    def champion_after(self) -> str:
        """The champion's version once the gate has run: the one every later stage uses."""
        if self.promoted or self.champion_version is None:
            return str(self.version)
        return self.champion_version


@contextlib.contextmanager
def hold_gate_lock(store_uri: str) -> Iterator[None]:
    """Hold an exclusive lock beside a SQLite store for the block (blocking); else do nothing.

    The lock file (``<database>.gate.lock``) is left in place: deleting it while another
    process waits on it would let a third one lock a new file and run beside the waiter.
    """
    from churn.tracking.store import sqlite_store_path

    database = sqlite_store_path(store_uri)
    if database is None:
        yield
        return
    lock_path = database.with_name(database.name + GATE_LOCK_SUFFIX)
    with Path(lock_path).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_champion_version(client: MlflowClient, name: str) -> str | None:
    """Return the version that holds ``@champion``, or ``None``."""
    current = client.get_registered_model(name).aliases.get(CHAMPION)
    return None if current is None else str(current)  # MLflow returns int versions here


def gate_model_version(
    client: MlflowClient,
    name: str,
    version: str,
    test: pd.DataFrame,
    new_probabilities: np.ndarray,
    gate: GateConfig,
    store_uri: str,
) -> GateDecision:
    """Compare a new version with the ``@champion`` on the same test rows and set its alias.

    The new version becomes ``@champion`` when there is no champion, when it beats the champion
    by more than ``gate.margin``, or when the champion cannot be scored on the current
    features (missing columns, or its artifact cannot be loaded): a champion that cannot be
    evaluated cannot defend its title, and keeping it would freeze the registry on a model the
    current pipeline can no longer feed. Otherwise the new version becomes ``@challenger`` and
    the champion stays. The whole read-compare-set holds the gate lock (see the module
    docstring).

    Args:
        client: A client of the store the version is registered in.
        name: Registered model name.
        version: The new version.
        test: Test rows (features and label) both models are scored on.
        new_probabilities: The new model's probabilities for ``test``.
        gate: The gate's metric and margin.
        store_uri: The tracking URI (where the lock lives).

    Returns:
        The decision; :attr:`GateDecision.champion_after` names the champion it left.
    """
    with hold_gate_lock(store_uri):
        for _ in range(MAX_GATE_ATTEMPTS):
            current = read_champion_version(client, name)
            decision = decide_against_champion(
                name, version, current, test, new_probabilities, gate
            )
            # Under the lock nobody moves the alias; without one, compare again if it moved.
            if read_champion_version(client, name) == current:
                break
        if decision.outcome == "incomparable":
            logger.warning(decision.reason)
        client.set_registered_model_alias(name, decision.alias, version)
    return decision


def decide_against_champion(
    name: str,
    version: str,
    current: str | None,
    test: pd.DataFrame,
    new_probabilities: np.ndarray,
    gate: GateConfig,
) -> GateDecision:
    """Decide the new version's alias against champion version ``current`` (no registry write)."""
    from churn.tracking.loading import load_model

    labels = label_array(test)
    score = GATE_METRICS[gate.metric]
    new_score = score(labels, new_probabilities)
    if current is None:
        return GateDecision(
            CHAMPION, "first_model", "no champion yet", gate.metric, new_score, version=version
        )
    try:
        champion = load_model(f"models:/{name}/{current}")
        champion_score = score(labels, champion.predict_proba(test))
    except (ModelError, OSError) as exc:
        return GateDecision(
            CHAMPION,
            "incomparable",
            f"champion v{current} cannot be scored on the current features ({exc}); "
            "promoting the new model",
            gate.metric,
            new_score,
            None,
            current,
            version,
        )
    better = is_better(new_score, champion_score, gate.metric, gate.margin)
    verdict = "beats" if better else "does not beat"
    return GateDecision(
        CHAMPION if better else CHALLENGER,
        "promoted" if better else "rejected",
        f"test {gate.metric} {new_score:.4f} {verdict} champion v{current} "
        f"({champion_score:.4f}) by more than {gate.margin}",
        gate.metric,
        new_score,
        champion_score,
        current,
        version,
    )
