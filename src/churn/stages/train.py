"""The ``churn train`` stage: read features, fit, log to MLflow, gate, export."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from churn.config import Params
from churn.domain.catalog import CUTOFF, read_catalog
from churn.errors import ModelError
from churn.layout import BASELINE_FILE, REGISTRY_FILE
from churn.model.fit import train_churn_models
from churn.model.metrics import make_jsonable

if TYPE_CHECKING:
    from churn.model.fit import TrainResult
    from churn.model.split import Split
    from churn.model.survival import SurvivalHead

logger = logging.getLogger(__name__)

#: Name of the feature catalog among the MLflow run's artifacts (not a path on disk).
CATALOG_FILE_NAME = "feature_catalog.csv"


#: Name of the feature catalog among the training run's MLflow artifacts.
def run_train(
    params: Params,
    features_path: Path,
    model_dir: Path,
    report_path: Path,
    catalog_path: Path,
    *,
    challenger_dir: Path,
    model_record_path: Path,
    labels_path: Path | None = None,
) -> dict[str, Any]:
    """Train, log to MLflow, register and gate the model, export the champion, write reports.

    One model identity: the gate decides which version every later stage uses (the new one if
    promoted, else the champion that kept the title). That version is exported to
    ``model_dir`` and named in ``model_record_path``; ``evaluate``, ``explain`` and ``score``
    read ``model_dir`` and the report reads the record, so all of them describe one model.

    ``model_dir`` changes only when the champion changes: it is left untouched when it already
    holds the champion (its ``registry.json`` names the same version and run), and is re-exported
    from the champion's registered model (whose ``churn_model`` artifact is the whole export
    directory, logged once) when it is missing or stale (``dvc repro`` deletes stage
    outputs before running). A refused challenger is exported to ``challenger_dir`` for
    inspection; when the new model is promoted, ``challenger_dir`` holds only its
    ``registry.json`` record (the model itself is in ``model_dir``).

    The tracking store is checked before anything is read (see
    :func:`churn.tracking.store.check_tracking_store`).

    Args:
        params: All parameters.
        features_path: Features Parquet from ``churn features``.
        model_dir: Export directory of the champion: the ChurnModel files, ``baseline.json``,
            ``registry.json`` (the champion's store, run id and version) and ``manifest.json``
            (the SHA-256 of each, checked on load); replaced atomically.
        report_path: JSON summary (split, metrics, gate decision) of the model trained here.
        catalog_path: Feature catalog CSV from ``churn features``.
        challenger_dir: Export directory of a refused challenger (see above).
        model_record_path: JSON record of the model later stages use (see
            :func:`build_model_record`).
        labels_path: Labels Parquet with the churn time; when given (events mode), the
            survival head (docs/survival.md) is fitted too and exported beside the classifier.

    Returns:
        The report written to ``report_path``.

    Raises:
        TrackingStoreError: If the store is missing, read-only or unreachable.
        ModelError: If training fails a guard or the champion cannot be exported.
    """
    from churn.io import write_json
    from churn.tracking.runs import log_training_run
    from churn.tracking.store import check_tracking_store, tracking_uri

    features_path, model_dir, report_path = Path(features_path), Path(model_dir), Path(report_path)
    challenger_dir, model_record_path = Path(challenger_dir), Path(model_record_path)
    catalog_path = Path(catalog_path)
    check_tracking_store(tracking_uri(), create=params.train.create_tracking_store)
    if not features_path.exists():
        raise ModelError(f"features file not found: {features_path}")
    catalog = read_catalog(catalog_path)
    features, split = read_training_rows(features_path, params)
    result = train_churn_models(features, catalog, params, split=split)
    head = None if labels_path is None else fit_head(features, Path(labels_path), result, params)

    with tempfile.TemporaryDirectory(prefix="churn-train-") as staging_name:
        staging = Path(staging_name)
        model_path = staging / "model"
        result.model.save(model_path)
        # MLflow names the pyfunc's artifact folder after this directory: the ``churn_model``
        # folder of the logged model is the whole export.
        export_dir = staging / "churn_model"
        write_model_export(result, model_path, export_dir, head)
        artifact_dir = staging / "artifacts"
        artifact_dir.mkdir()
        shutil.copyfile(catalog_path, artifact_dir / CATALOG_FILE_NAME)
        result.importance.to_csv(artifact_dir / "feature_importance.csv", index=False)
        write_calibration_plot(result.test_predictions, artifact_dir / "calibration.png")
        record = log_training_run(
            result,
            features,
            params,
            features_path=features_path,
            export_dir=export_dir,
            artifact_dir=artifact_dir,
        )
        champion = record["champion"]
        if record["promoted"]:
            champion_export: Path | None = export_dir
        elif holds_version(model_dir, champion):
            champion_export = None  # already the champion: leave it byte for byte
        else:
            champion_export = download_champion_export(champion, staging / "champion")
        report = build_train_report(result, record, allow_high_auc=params.train.allow_high_auc)
        report["survival_head"] = None if head is None else make_jsonable(dict(head.metadata))
        # Everything is computed; write the outputs last, each atomically.
        if champion_export is not None:
            publish_export(champion_export, champion, model_dir)
        if record["promoted"]:
            publish_record_only(record, challenger_dir)
        else:
            publish_export(export_dir, record, challenger_dir)
    write_json(build_model_record(record), model_record_path)
    write_json(report, report_path)
    gate = record["gate"]
    logger.info("model version %s: %s (%s)", record["model_version"], gate["alias"], gate["reason"])
    if not record["promoted"]:
        logger.info(
            "later stages use champion v%s (exported to %s); the refused model is in %s",
            champion["model_version"],
            model_dir,
            challenger_dir,
        )
    return report


def read_training_rows(features_path: Path, params: Params) -> tuple[pd.DataFrame, Split]:
    """Read the rows training uses, and their split: the file's keys first, then those rows.

    The split (:func:`churn.model.split.split_by_time`) needs only each row's cutoff and
    label. Out of time, every row at one of the split's cutoffs is read (the unlabeled recent
    cutoffs and the purged ones are not: 37.5% of the rows at 100k customers); a random split
    reads the rows of its slices. The split comes back relocated to the rows read, with the
    counts and notes of the whole file, and the frame's index holds each row's position in the
    file, as a whole-file read's range index does (the MLflow datasets' digests hash it): the
    model, ``train.json`` and the MLflow run are those of a whole-file read.

    Args:
        features_path: Features Parquet from ``churn features``.
        params: All parameters.

    Returns:
        ``(frame, split)``: the rows read (file order, indexed by file position) and their
        split (positions in the frame).
    """
    import numpy as np

    from churn.io import read_frame_positions, read_parquet_frame
    from churn.model.split import split_by_time

    keys = read_parquet_frame(features_path, columns=[CUTOFF, "label"])
    split = split_by_time(keys, params.train, params.label, mode=params.ingest.mode)
    if split.mode == "time":
        kept = np.flatnonzero(pd.DatetimeIndex(keys[CUTOFF]).isin(split.used_cutoffs()))
    else:
        kept = np.union1d(np.union1d(split.train, split.validation), split.test)
    del keys
    frame = read_frame_positions(features_path, kept)
    frame.index = pd.Index(kept)
    return frame, split.relocate(kept)


def fit_head(
    features: pd.DataFrame, labels_path: Path, result: TrainResult, params: Params
) -> SurvivalHead | None:
    """Fit the survival head on the classifier's split (``None``: no contract schedule).

    Only the labels at the cutoffs ``features`` holds are read: when it holds the split's
    rows only (:func:`read_training_rows`) the churn times line up with them by position.
    """
    from churn.model.horizon_evaluation import (
        attach_churn_times,
        fit_head_for_model,
        read_churn_times,
    )

    if params.ingest.mode == "entity":
        return None
    cutoffs = sorted(pd.unique(pd.DatetimeIndex(features[CUTOFF])))
    frame = attach_churn_times(features, read_churn_times(labels_path, cutoffs))
    try:
        head = fit_head_for_model(frame, result.split, result.model, params)
    except ModelError as exc:
        if params.train.model_form == "hazard":
            raise
        # The classifier is the model: a head that cannot be fitted (a slice without a churn
        # event, a horizon with one class) costs the horizon columns, not the run.
        logger.warning("no survival head: %s", exc)
        return None
    if head is None and params.train.model_form == "hazard":
        raise ModelError(
            "train.model_form is 'hazard' but the data has no contract schedule "
            "(days_to_renewal); use train.model_form: classifier"
        )
    return head


def write_model_export(
    result: TrainResult, model_path: Path, export_dir: Path, head: SurvivalHead | None = None
) -> None:
    """Write the export directory's model files: the ChurnModel, its baseline (as JSON) and,
    when fitted, the survival head (LightGBM text and JSON)."""
    from churn.model.baseline import save_baseline
    from churn.model.verification import write_manifest

    shutil.copytree(model_path, export_dir)
    save_baseline(result.baseline, export_dir / BASELINE_FILE)
    if head is not None:
        head.save(export_dir)
    write_manifest(export_dir)  # now covering the baseline too


def holds_version(model_dir: Path, version_record: dict[str, Any]) -> bool:
    """Tell whether ``model_dir`` already holds the version in ``version_record`` (same run)."""
    registry = Path(model_dir) / REGISTRY_FILE
    if not registry.is_file():
        return False
    try:
        held = json.loads(registry.read_text())
    except (json.JSONDecodeError, OSError):
        return False
    keys = ("registered_model_name", "model_version", "run_id")
    return isinstance(held, dict) and all(held.get(k) == version_record.get(k) for k in keys)


def download_champion_export(champion: dict[str, Any], destination: Path) -> Path:
    """Fetch the champion's export directory: its registered model's ``churn_model`` artifact.

    Older champions are still found: one trained when the export was logged twice has only the
    ChurnModel files in its model and the whole export as the run's ``export/`` artifact; one
    older still has no ``export/`` either and is exported without a baseline, with a warning
    (``churn evaluate`` will then ask for a retrain).
    """
    from churn.tracking.loading import download_artifacts, find_churn_model_dir
    from churn.tracking.runs import EXPORT_ARTIFACT_DIR

    model_dir = find_churn_model_dir(
        download_artifacts(champion["model_uri"], destination / "model")
    )
    if (model_dir / BASELINE_FILE).is_file():
        return model_dir
    try:
        return download_artifacts(
            f"runs:/{champion['run_id']}/{EXPORT_ARTIFACT_DIR}", destination / "export"
        )
    except ModelError:
        logger.warning(
            "champion v%s has neither a baseline in its model nor an %s/ artifact (trained by "
            "an older churn); exporting its model without a baseline",
            champion["model_version"],
            EXPORT_ARTIFACT_DIR,
        )
    return model_dir


def publish_export(export_dir: Path, version_record: dict[str, Any], target: Path) -> None:
    """Replace ``target`` atomically with ``export_dir`` plus the version's ``registry.json``."""
    from churn.io import atomic_path, write_json
    from churn.model.verification import write_manifest

    with atomic_path(target) as tmp:
        shutil.copytree(export_dir, tmp)
        write_json(make_jsonable(version_record), tmp / REGISTRY_FILE)
        write_manifest(tmp)  # re-signed: the registry record is part of the verified set


def publish_record_only(version_record: dict[str, Any], target: Path) -> None:
    """Replace ``target`` atomically with a directory holding only ``registry.json``."""
    from churn.io import atomic_path, write_json

    with atomic_path(target) as tmp:
        tmp.mkdir()
        write_json(make_jsonable(version_record), tmp / REGISTRY_FILE)


def build_model_record(record: dict[str, Any]) -> dict[str, Any]:
    """Return the model identity later stages share, from :func:`log_training_run`'s record.

    Keys: ``registered_model_name``, ``version``, ``run_id``, ``model_uri`` and ``alias`` of the
    model every later stage uses (the champion after the gate); ``promoted`` (whether the model
    trained in this run became that champion); ``trained_version`` and ``trained_run_id``;
    ``challenger_version`` (the trained version when refused, else ``None``); the gate's
    ``gate_outcome`` and ``gate_reason``; and ``tracking_uri``.
    """
    champion, gate = record["champion"], record["gate"]
    return make_jsonable(
        {
            "registered_model_name": champion["registered_model_name"],
            "version": champion["model_version"],
            "run_id": champion["run_id"],
            "model_uri": champion["model_uri"],
            "alias": champion["alias"],
            "promoted": record["promoted"],
            "trained_version": record["model_version"],
            "trained_run_id": record["run_id"],
            "challenger_version": None if record["promoted"] else record["model_version"],
            "gate_outcome": gate["outcome"],
            "gate_reason": gate["reason"],
            "tracking_uri": record["tracking_uri"],
        }
    )


def build_train_report(
    result: TrainResult, record: dict[str, Any], *, allow_high_auc: bool
) -> dict[str, Any]:
    """Return ``train.json``: split, metrics and tuning of the model trained here, its record.

    ``allow_high_auc`` (``train.allow_high_auc``) is recorded beside whether the override was
    actually needed (``high_auc_accepted``), so an accepted too-good model is never silent.
    """
    return make_jsonable(
        {
            "split": result.split.describe(),
            "metrics": result.metrics,
            "best_iteration": result.model.metadata["best_iteration"],
            "tuned_params": result.tuned_params,
            "dropped_features": result.dropped_features,
            "allow_high_auc": allow_high_auc,
            "high_auc_accepted": result.model.metadata.get("high_auc_accepted", False),
            "top_single_feature_aucs": dict(
                sorted(result.feature_aucs.items(), key=lambda item: -item[1])[:10]
            ),
            "registry": record,
        }
    )


def write_calibration_plot(predictions: pd.DataFrame, path: Path, bins: int = 10) -> None:
    """Draw the test rows' reliability diagram, raw and calibrated, to a PNG.

    Args:
        predictions: :attr:`TrainResult.test_predictions`.
        path: PNG file to write.
        bins: Equal-width probability bins.
    """
    # The object-oriented API keeps pyplot's global figure registry (and its GUI backend
    # selection) out of a library call.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from churn.model.metrics import build_calibration_table

    figure = Figure(figsize=(5, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect calibration")
    for column, label in (("raw_probability", "LightGBM raw"), ("churn_probability", "calibrated")):
        table = build_calibration_table(predictions["label"], predictions[column], bins)
        axes.plot(table["mean_predicted"], table["fraction_positive"], marker="o", label=label)
    axes.set_xlabel("mean predicted probability")
    axes.set_ylabel("fraction churned")
    axes.set_title("Calibration on the test cutoff(s)")
    axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
