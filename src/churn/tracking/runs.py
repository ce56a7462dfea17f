"""MLflow helpers for the train and evaluate runners: run logging, model registry, gate.

Stage cores never import this module; runners call it after the pure work is done, so a
training that fails a guard never touches the tracking store.

Where the store lives: ``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///mlflow.db`` in the
working directory (:func:`churn.tracking.store.tracking_uri`, shared with ``score`` and
``explain`` so every stage reads the store training wrote). A new ``churn`` experiment on a
SQLite store gets its artifact root explicitly: ``mlartifacts/`` beside the database file.

Offline by design: the model's pip requirements are pinned from the installed versions (no
dependency inference), MLflow telemetry is off unless the user set ``MLFLOW_DISABLE_TELEMETRY``
(from MLflow's first import on: :func:`churn.tracking.store.import_mlflow`), and MLflow's own
warnings and progress bars are silenced while churn calls it.

Logged once: the whole exported model directory (ChurnModel files, baseline, survival head,
manifest) is the pyfunc's ``churn_model`` artifact, which a later run downloads to re-export
this version as the champion; it is not logged a second time as a run artifact. The signature
is declared (:func:`churn.tracking.signature.build_model_signature`), not inferred.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churn.model.split import take_rows
from churn.tracking.datasets import build_sampled_dataset, digest_file, digest_slice
from churn.tracking.registry import CHAMPION, gate_model_version
from churn.tracking.signature import (
    INPUT_EXAMPLE_ROWS,
    build_model_signature,
    pin_model_requirements,
)
from churn.tracking.store import (
    TrackingStoreError,
    connect_tracking,
    import_mlflow,
    quiet_mlflow,
    tracking_uri,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from churn.config import Params
    from churn.model.fit import TrainResult

logger = logging.getLogger(__name__)


#: Run artifact folder where runs before the export became the pyfunc's artifact logged a second
#: copy of the exported model directory; still read to re-export such an older champion.
EXPORT_ARTIFACT_DIR = "export"


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
            logger.warning("%s is not valid YAML; no data version tag", lock)
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


def log_datasets(frames: Mapping[str, pd.DataFrame], source: Path) -> None:
    """Log each frame as an MLflow dataset input (with digest) under its context name.

    MLflow digests and profiles the whole frame and infers its schema column by column when
    given a frame; on the full training frames that alone took 40 s at 100k customers. Each
    input is therefore logged as a small evenly spaced sample (:data:`DATASET_SAMPLE_ROWS`
    rows: the schema is the same) with the digest of the whole slice (:func:`digest_slice`)
    and a profile counting the whole slice's rows.
    """
    import_mlflow()
    import mlflow

    source_digest = digest_file(source) if Path(source).exists() else str(source)
    for context, frame in frames.items():
        dataset = build_sampled_dataset(
            frame,
            source=source,
            name=f"features_{context}",
            digest=digest_slice(source_digest, frame),
        )
        mlflow.log_input(dataset, context=context)


def log_training_run(
    result: TrainResult,
    features: pd.DataFrame,
    params: Params,
    *,
    features_path: Path,
    export_dir: Path,
    artifact_dir: Path,
) -> dict[str, Any]:
    """Log one training run, register the model, apply the gate; return the registry record.

    Args:
        result: The training result.
        features: The features frame the result was trained on (for dataset inputs).
        params: All parameters.
        features_path: Where the features came from (dataset source, ``dvc.lock`` lookup).
        export_dir: The whole export directory (ChurnModel files, baseline, manifest), logged
            once, as the pyfunc's ``churn_model`` artifact: scoring loads its ChurnModel and a
            later run re-exports this version as the champion from it.
        artifact_dir: Files to attach to the run (catalog, plots, importance).

    Returns:
        The record of the version trained in this run: tracking URI, experiment and run ids,
        model name, version and URI, alias, the gate decision, ``promoted``, and ``champion``
        (:func:`describe_model_version` of the champion after the gate: the new version if
        promoted, else the one that kept the title).

    Raises:
        TrackingStoreError: If the store fails while logging (read-only, unreachable).
    """
    import_mlflow()
    from mlflow.exceptions import MlflowException

    try:
        return _log_training_run(
            result,
            features,
            params,
            features_path=features_path,
            export_dir=export_dir,
            artifact_dir=artifact_dir,
        )
    except MlflowException as exc:
        raise TrackingStoreError(
            f"the MLflow tracking store failed while logging the training run: {exc.message}"
        ) from None


def describe_model_version(client: MlflowClient, name: str, version: str) -> dict[str, Any]:
    """Return the record of a registered version: store, experiment, run, name, version, URI."""

    run_id = client.get_model_version(name, version).run_id
    return {
        "tracking_uri": tracking_uri(),
        "experiment_id": client.get_run(run_id).info.experiment_id,
        "run_id": run_id,
        "registered_model_name": name,
        "model_version": str(version),
        "model_uri": f"models:/{name}/{version}",
    }


def _log_training_run(
    result: TrainResult,
    features: pd.DataFrame,
    params: Params,
    *,
    features_path: Path,
    export_dir: Path,
    artifact_dir: Path,
) -> dict[str, Any]:
    import_mlflow()
    import mlflow
    import mlflow.pyfunc

    from churn.tracking.pyfunc import pyfunc_log_arguments

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
            log_datasets(
                {ctx: take_rows(features, rows) for ctx, rows in slices.items()}, features_path
            )
            commit, dirty = read_git_commit()
            mlflow.set_tags(
                {
                    key: value
                    for key, value in {
                        "git_commit": commit,
                        "git_dirty": dirty,
                        "dvc_features_md5": read_dvc_md5(features_path),
                        "split_mode": result.split.mode,
                        # Tagged only when a too-good model was let through on purpose.
                        "allow_high_auc": "true"
                        if result.model.metadata.get("high_auc_accepted")
                        else None,
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
            test = take_rows(features, result.split.test)
            example = test.drop(columns=["label"]).head(INPUT_EXAMPLE_ROWS)
            info = mlflow.pyfunc.log_model(
                name="model",
                # The export folder: the classifier plus its survival head, so the pyfunc
                # returns the horizon columns of `churn score` too.
                **pyfunc_log_arguments(
                    export_dir,
                    params.score.reasons,
                    horizon_days=params.label.horizon_days,
                    model_form=params.train.model_form,
                ),
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
                mlflow.get_tracking_uri(),
            )
            mlflow.set_tags(
                {
                    "gate_outcome": decision.outcome,
                    "gate_reason": decision.reason,
                    "registered_model_version": version,
                    "model_alias": decision.alias,
                }
            )
        champion = describe_model_version(
            client, cfg.registered_model_name, decision.champion_after
        )
    return {
        "tracking_uri": tracking_uri(),
        "experiment_id": experiment_id,
        "run_id": run.info.run_id,
        "registered_model_name": cfg.registered_model_name,
        "model_version": version,
        "model_uri": f"models:/{cfg.registered_model_name}/{version}",
        "alias": decision.alias,
        "gate": asdict(decision),
        "promoted": decision.promoted,
        "champion": {**champion, "alias": CHAMPION},
    }


@dataclass(frozen=True)
class TrainingRun:
    """An open MLflow client and the id of the training run it logs to
    (:func:`connect_training_run`)."""

    client: MlflowClient
    run_id: str


def connect_training_run(registry: Mapping[str, Any]) -> TrainingRun | None:
    """Import MLflow and open a client of the training run a ``registry.json`` record names.

    The evaluate stage connects while its backtest refits run in worker processes and it has
    nothing else to do (about 2 s: MLflow's import and its SQL store's), and logs once they are
    done (:func:`log_run_metrics`).

    A missing run id, a missing store or one that cannot be opened is ``None`` (a warning for
    the last two), not an error: the metrics file on disk is the evaluate stage's output, the
    MLflow copy a convenience.
    """
    import_mlflow()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from churn.tracking.store import connection_uri, tracking_uri

    run_id = registry.get("run_id")
    if not run_id:
        return None
    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        # Connecting would silently create an empty store instead of finding the run.
        logger.warning("no MLflow store at %s: evaluation metrics not logged to the run", uri)
        return None
    with quiet_mlflow():
        try:
            return TrainingRun(MlflowClient(tracking_uri=connection_uri(uri)), str(run_id))
        except MlflowException as exc:
            logger.warning(
                "evaluation metrics not logged to MLflow run %s: %s", run_id, exc.message
            )
            return None


def log_run_metrics(run: TrainingRun | None, metrics: Mapping[str, float]) -> bool:
    """Add the finite ``metrics`` to ``run`` (:func:`connect_training_run`); ``None`` logs
    nothing.

    An unknown run is a warning, not an error (see :func:`connect_training_run`).

    Returns:
        Whether the metrics were logged.
    """
    if run is None:
        return False
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException

    now = int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)
    batch = [
        Metric(key, float(value), now, 0)
        for key, value in metrics.items()
        if value is not None and np.isfinite(value)
    ]
    with quiet_mlflow():
        try:
            for start in range(0, len(batch), 500):  # MLflow caps a batch at 1000 entries
                run.client.log_batch(run.run_id, metrics=batch[start : start + 500])
        except MlflowException as exc:
            logger.warning(
                "evaluation metrics not logged to MLflow run %s: %s", run.run_id, exc.message
            )
            return False
    return True
