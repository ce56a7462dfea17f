"""MLflow helpers for the train and evaluate runners: run logging, model registry, gate.

Stage cores never import this module; runners call it after the pure work is done, so a
training that fails a guard never touches the tracking store.

Where the store lives: ``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///mlflow.db`` in the
working directory (:func:`churn.model_source.tracking_uri`, shared with ``score`` and
``explain`` so every stage reads the store training wrote). A new ``churn`` experiment on a
SQLite store gets its artifact root explicitly: ``mlartifacts/`` beside the database file.

Offline by design: the model's pip requirements are pinned from the installed versions (no
dependency inference), MLflow telemetry is off unless the user set ``MLFLOW_DISABLE_TELEMETRY``,
and MLflow's own warnings and progress bars are silenced while churn calls it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churn.errors import ModelError
from churn.metrics import compute_brier, compute_log_loss, compute_pr_auc, compute_roc_auc
from churn.split import label_array

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.models import ModelSignature

    from churn.config import GateConfig, Params
    from churn.model import ChurnModel
    from churn.train import TrainResult

log = logging.getLogger(__name__)

EXPERIMENT_NAME = "churn"
CHAMPION = "champion"
CHALLENGER = "challenger"
# What the pyfunc needs at load time. churn itself must be installed where the model is served:
# it is not on PyPI, and listing it would pull an unrelated package of the same name.
MODEL_REQUIREMENTS = ("mlflow", "lightgbm", "numpy", "pandas", "pyarrow", "scikit-learn")
GATE_METRICS = {
    "roc_auc": compute_roc_auc,
    "pr_auc": compute_pr_auc,
    "brier": compute_brier,
    "log_loss": compute_log_loss,
}
LOWER_IS_BETTER = frozenset({"brier", "log_loss"})
INPUT_EXAMPLE_ROWS = 5


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """Silence MLflow's warnings, INFO chatter and progress bars, and keep it offline.

    Environment defaults (telemetry off, no progress bars) apply only inside the block and only
    where the user has not set the variable.
    """
    defaults = {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    added = [name for name in defaults if name not in os.environ]
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [logger.level for logger in loggers]
    try:
        for name in added:
            os.environ[name] = defaults[name]
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"mlflow(\.|$)")
            yield
    finally:
        for name in added:
            os.environ.pop(name, None)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def default_artifact_location(tracking_uri: str) -> str | None:
    """Return ``mlartifacts/`` beside a SQLite store's file, or ``None`` for other stores."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix) or tracking_uri.endswith(":memory:"):
        return None
    return (Path(tracking_uri.removeprefix(prefix)).resolve().parent / "mlartifacts").as_uri()


def connect_tracking(experiment_name: str = EXPERIMENT_NAME) -> tuple[MlflowClient, str]:
    """Point MLflow at the store and return a client and the experiment id (created if new)."""
    import mlflow
    from mlflow import MlflowClient

    from churn.model_source import tracking_uri

    uri = tracking_uri()
    # The registry follows the tracking URI unless MLFLOW_REGISTRY_URI is set. Not calling
    # set_registry_uri matters: it writes the variable into os.environ, where a later
    # connection to another store would pick it up.
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return client, client.create_experiment(
            experiment_name, artifact_location=default_artifact_location(uri)
        )
    if experiment.lifecycle_stage == "deleted":
        log.warning("experiment %r was deleted; restoring it", experiment_name)
        client.restore_experiment(experiment.experiment_id)
    return client, experiment.experiment_id


def read_git_commit(directory: Path | None = None) -> tuple[str | None, bool | None]:
    """Return ``(HEAD commit, working tree has uncommitted changes)``, or Nones outside git."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=directory, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status)


def read_dvc_md5(features_path: Path) -> str | None:
    """Return the md5 that ``dvc.lock`` records for ``features_path``, if any.

    Looks for ``dvc.lock`` in the working directory and in the features file's parents; out
    paths in a lock file are relative to the lock file's directory.
    """
    import yaml

    target = Path(features_path).resolve()
    candidates = [Path.cwd() / "dvc.lock", *(parent / "dvc.lock" for parent in target.parents)]
    for lock in dict.fromkeys(candidates):
        if not lock.is_file():
            continue
        try:
            stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        except yaml.YAMLError:
            log.warning("%s is not valid YAML; no data version tag", lock)
            return None
        # The features stage first: it is the one that writes the features file.
        ordered = sorted(stages.items(), key=lambda item: item[0] != "features")
        for _, stage in ordered:
            for out in (stage or {}).get("outs", []) or []:
                if (lock.parent / str(out.get("path", ""))).resolve() == target:
                    return out.get("md5")
    return None


def flatten_params(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested mappings into ``a.b`` keys with string values (MLflow params)."""
    flat: dict[str, str] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def pin_model_requirements() -> list[str]:
    """Return ``name==installed version`` for the packages the pyfunc needs."""
    return [f"{name}=={metadata.version(name)}" for name in MODEL_REQUIREMENTS]


def _mlflow_type(dtype: Any) -> str:
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "long"
    if pd.api.types.is_numeric_dtype(dtype):
        return "double"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "string"


def _fallback_output_columns(model: ChurnModel, reasons: int) -> list[tuple[str, str]]:
    columns = [("customer_id", "string"), ("cutoff", "datetime")]
    columns += [(c, "double") for c in ("churn_probability", "mrr", "expected_revenue_at_risk")]
    for i in range(1, reasons + 1):
        columns += [
            (f"reason_{i}_feature", "string"),
            (f"reason_{i}_value", "string"),
            (f"reason_{i}_contribution", "double"),
            (f"reason_{i}_text", "string"),
        ]
    groups = [*sorted(set(model.catalog.get("family", []))), "pre_sale", "post_sale"]
    return columns + [(f"risk_share_{group}", "double") for group in groups]


def build_model_signature(model: ChurnModel, example: pd.DataFrame, reasons: int) -> ModelSignature:
    """Describe the pyfunc's input (the features frame) and output (the score frame).

    ``cutoff`` is declared ``any``: MLflow's ``datetime`` type rejects time-zone-aware values,
    and the features frame's cutoffs are UTC-aware by contract. The output schema comes from
    running :func:`churn.score.score_frame` on ``example``; if that fails (for instance while
    the score stage is being built) it is written out by hand from the documented columns.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType, ParamSchema, ParamSpec

    inputs = [ColSpec("string", "customer_id"), ColSpec(AnyType(), "cutoff")]
    inputs += [
        ColSpec("string" if name in model.categorical_levels else "double", name)
        for name in model.feature_names
    ]
    try:
        from churn.score import score_frame

        scored = score_frame(model, example, reasons=reasons)
        outputs = [(str(name), _mlflow_type(dtype)) for name, dtype in scored.dtypes.items()]
    except Exception as exc:  # any failure here must not block training
        log.warning("output schema written by hand: score_frame failed on the example (%s)", exc)
        outputs = _fallback_output_columns(model, reasons)
    # Declaring the parameter lets callers of the registered model ask for more or fewer
    # reasons (predict(..., params={"reasons": k})); MLflow drops undeclared params.
    return ModelSignature(
        inputs=Schema(inputs),
        outputs=Schema([ColSpec(kind, name) for name, kind in outputs]),
        params=ParamSchema([ParamSpec("reasons", "long", reasons)]),
    )


def log_datasets(frames: Mapping[str, pd.DataFrame], source: Path) -> None:
    """Log each frame as an MLflow dataset input (with digest) under its context name."""
    import mlflow
    import mlflow.data

    for context, frame in frames.items():
        logged = frame.copy()
        # MLflow's schema and digest code warns on time-zone-aware columns; UTC-naive is the
        # same instant and keeps the run log clean.
        logged["cutoff"] = pd.DatetimeIndex(logged["cutoff"]).tz_convert(None)
        dataset = mlflow.data.from_pandas(
            logged, source=str(source), targets="label", name=f"features_{context}"
        )
        mlflow.log_input(dataset, context=context)


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


def is_better(new_score: float, champion_score: float, metric: str, margin: float) -> bool:
    """Return whether ``new_score`` beats ``champion_score`` by more than ``margin``.

    Lower is better for ``brier`` and ``log_loss``, higher for the others; a NaN never wins.
    """
    gain = champion_score - new_score if metric in LOWER_IS_BETTER else new_score - champion_score
    return bool(np.isfinite(gain) and gain > margin)


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
    from churn.model_source import load_model

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
        log.warning(decision.reason)
    client.set_registered_model_alias(name, decision.alias, version)
    return decision


def log_training_run(
    result: TrainResult,
    features: pd.DataFrame,
    params: Params,
    *,
    features_path: Path,
    model_path: Path,
    artifact_dir: Path,
) -> dict[str, Any]:
    """Log one training run, register the model, apply the gate; return the registry record.

    Args:
        result: The training result.
        features: The features frame the result was trained on (for dataset inputs).
        params: All parameters.
        features_path: Where the features came from (dataset source, ``dvc.lock`` lookup).
        model_path: The saved ChurnModel directory (logged as the pyfunc's artifact).
        artifact_dir: Files to attach to the run (catalog, plots, importance).

    Returns:
        ``registry.json`` content: tracking URI, experiment and run ids, model name, version and
        URI, alias, and the gate decision.
    """
    import mlflow
    import mlflow.pyfunc

    from churn.pyfunc import ARTIFACT_KEY, ChurnPyfuncModel

    cfg = params.train
    with quiet_mlflow():
        client, experiment_id = connect_tracking()
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_params(flatten_params(cfg.model_dump(mode="json")))
            mlflow.log_params(
                {
                    "label.horizon_days": params.label.horizon_days,
                    "label.grace_days": params.label.grace_days,
                }
            )
            if result.tuned_params:
                mlflow.log_params(flatten_params(result.tuned_params, prefix="tuned."))
            mlflow.log_metrics(
                {
                    f"{part}_{name}": value
                    for part, values in result.metrics.items()
                    for name, value in values.items()
                    if np.isfinite(value)
                }
            )
            mlflow.log_metric("best_iteration", result.model.metadata["best_iteration"])
            slices = {
                "training": result.split.train,
                "validation": result.split.validation,
                "test": result.split.test,
            }
            log_datasets({ctx: features.iloc[rows] for ctx, rows in slices.items()}, features_path)
            commit, dirty = read_git_commit()
            mlflow.set_tags(
                {
                    key: value
                    for key, value in {
                        "git_commit": commit,
                        "git_dirty": dirty,
                        "dvc_features_md5": read_dvc_md5(features_path),
                        "split_mode": result.split.mode,
                    }.items()
                    if value is not None
                }
            )
            mlflow.log_dict(result.split.describe(), "split.json")
            mlflow.log_artifacts(str(artifact_dir))
            for trial in result.trials:
                # Without experiment_id a nested run lands in the globally active experiment
                # (usually "Default"), not in its parent's.
                with mlflow.start_run(
                    experiment_id=experiment_id, run_name=f"trial-{trial['number']}", nested=True
                ):
                    mlflow.log_params(trial["params"])
                    mlflow.log_metric("validation_pr_auc", trial["validation_pr_auc"])
            test = features.iloc[result.split.test]
            example = test.drop(columns=["label"]).head(INPUT_EXAMPLE_ROWS)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=ChurnPyfuncModel(reasons=params.score.reasons),
                artifacts={ARTIFACT_KEY: str(model_path)},
                signature=build_model_signature(result.model, example, params.score.reasons),
                input_example=example,
                registered_model_name=cfg.registered_model_name,
                pip_requirements=pin_model_requirements(),
            )
            version = str(info.registered_model_version)
            decision = gate_model_version(
                client,
                cfg.registered_model_name,
                version,
                test,
                result.test_predictions["churn_probability"].to_numpy(),
                cfg.gate,
            )
            mlflow.set_tags(
                {
                    "gate_outcome": decision.outcome,
                    "gate_reason": decision.reason,
                    "registered_model_version": version,
                    "model_alias": decision.alias,
                }
            )
    return {
        "tracking_uri": mlflow.get_tracking_uri(),
        "experiment_id": experiment_id,
        "run_id": run.info.run_id,
        "registered_model_name": cfg.registered_model_name,
        "model_version": version,
        "model_uri": f"models:/{cfg.registered_model_name}/{version}",
        "alias": decision.alias,
        "gate": asdict(decision),
    }


def log_eval_metrics(registry: Mapping[str, Any], metrics: Mapping[str, float]) -> bool:
    """Add ``metrics`` to the training run named in a ``registry.json`` record.

    A missing or unreachable run is a warning, not an error: the metrics file on disk is the
    evaluate stage's output, the MLflow copy a convenience.

    Returns:
        Whether the metrics were logged.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException

    from churn.model_source import tracking_uri

    run_id = registry.get("run_id")
    if not run_id:
        return False
    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        # Connecting would silently create an empty store instead of finding the run.
        log.warning("no MLflow store at %s: evaluation metrics not logged to the run", uri)
        return False
    now = int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)
    batch = [
        Metric(key, float(value), now, 0)
        for key, value in metrics.items()
        if value is not None and np.isfinite(value)
    ]
    with quiet_mlflow():
        try:
            client = MlflowClient(tracking_uri=uri)
            for start in range(0, len(batch), 500):  # MLflow caps a batch at 1000 entries
                client.log_batch(run_id, metrics=batch[start : start + 500])
        except MlflowException as exc:
            log.warning("evaluation metrics not logged to MLflow run %s: %s", run_id, exc.message)
            return False
    return True
