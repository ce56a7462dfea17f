"""Optional hyperparameter search (``train.tuning.enabled``) with optuna's TPE sampler (pure).

Each trial fits the same model as the final fit (:func:`churn.model.fit.fit_and_score_validation`)
with the trial's hyperparameters and is scored by validation PR AUC of the raw booster scores the
fit returns (ranking quality; calibration is fitted afterwards and is monotone). Trials are
returned, not logged: the runner records each as a nested MLflow run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from churn.config import TrainConfig
from churn.model.metrics import compute_pr_auc
from churn.model.split import label_array


def suggest_params(trial: Any) -> dict[str, Any]:
    """Draw one set of LightGBM hyperparameters (train-section names) from the search space."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 4, 63, log=True),
        "max_depth": trial.suggest_int("max_depth", 2, 8),
        "min_child_samples": trial.suggest_int("min_child_samples", 10, 300, log=True),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
    }


def tune_hyperparameters(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    catalog: pd.DataFrame,
    cfg: TrainConfig,
    *,
    fit: Callable[[pd.DataFrame, pd.DataFrame, pd.DataFrame, TrainConfig], tuple[Any, Any]],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Search hyperparameters maximising validation PR AUC.

    Args:
        train: Training rows.
        validation: Validation rows (early stopping and the objective).
        catalog: Feature catalog.
        cfg: Train section; ``cfg.tuning`` sets the trial budget, ``cfg.seed`` the sampler seed.
        fit: The fitting function (:func:`churn.model.fit.fit_and_score_validation`: the model
            and its raw scores of ``validation``), passed in so that tuning does not import the
            module that calls it.

    Returns:
        ``(best_params, trials)`` where each trial is ``{"number", "params",
        "validation_pr_auc"}``.
    """
    import optuna

    labels = label_array(validation)
    trials: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial)
        _, validation_raw = fit(train, validation, catalog, cfg.model_copy(update=params))
        value = compute_pr_auc(labels, validation_raw)
        trials.append({"number": trial.number, "params": params, "validation_pr_auc": value})
        return value

    verbosity = optuna.logging.get_verbosity()
    # Optuna logs every trial at INFO; the runner's own summary is enough.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=cfg.seed)
        )
        study.optimize(objective, n_trials=cfg.tuning.trials, timeout=cfg.tuning.timeout_seconds)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return dict(study.best_params), trials
