"""The MLflow model registry: the champion/challenger gate."""

from __future__ import annotations

import logging
from dataclasses import dataclass
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


# The model export's record of its MLflow run, version and gate decision (``churn train`` writes
# it beside the model; evaluate and explain read the run id from it). Here, below the stages, so
# tracking code can read it without importing a stage.
REGISTRY_FILE = "registry.json"


CHAMPION = "champion"


CHALLENGER = "challenger"


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
    """

    alias: str
    outcome: str
    reason: str
    metric: str
    new_score: float
    champion_score: float | None = None
    champion_version: str | None = None


def gate_model_version(
    client: MlflowClient,
    name: str,
    version: str,
    test: pd.DataFrame,
    new_probabilities: np.ndarray,
    gate: GateConfig,
) -> GateDecision:
    """Compare a new version with the ``@champion`` on the same test rows and set its alias.

    The new version becomes ``@champion`` when there is no champion, when it beats the champion
    by more than ``gate.margin``, or when the champion cannot be scored on the current
    features (missing columns, or its artifact cannot be loaded): a champion that cannot be
    evaluated cannot defend its title, and keeping it would freeze the registry on a model the
    current pipeline can no longer feed. Otherwise the new version becomes ``@challenger`` and
    the champion stays.
    """
    from churn.tracking.loading import load_model

    labels = label_array(test)
    score = GATE_METRICS[gate.metric]
    new_score = score(labels, new_probabilities)
    current = client.get_registered_model(name).aliases.get(CHAMPION)
    current = None if current is None else str(current)  # MLflow returns int versions here
    if current is None:
        decision = GateDecision(CHAMPION, "first_model", "no champion yet", gate.metric, new_score)
    else:
        try:
            champion = load_model(f"models:/{name}/{current}")
            champion_score = score(labels, champion.predict_proba(test))
        except (ModelError, OSError) as exc:
            decision = GateDecision(
                CHAMPION,
                "incomparable",
                f"champion v{current} cannot be scored on the current features ({exc}); "
                "promoting the new model",
                gate.metric,
                new_score,
                None,
                current,
            )
        else:
            better = is_better(new_score, champion_score, gate.metric, gate.margin)
            verdict = "beats" if better else "does not beat"
            decision = GateDecision(
                CHAMPION if better else CHALLENGER,
                "promoted" if better else "rejected",
                f"test {gate.metric} {new_score:.4f} {verdict} champion v{current} "
                f"({champion_score:.4f}) by more than {gate.margin}",
                gate.metric,
                new_score,
                champion_score,
                current,
            )
    if decision.outcome == "incomparable":
        logger.warning(decision.reason)
    client.set_registered_model_alias(name, decision.alias, version)
    return decision
