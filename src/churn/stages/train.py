"""The ``churn train`` stage: read features, fit, log to MLflow, gate, export."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from churn.config import Params
from churn.errors import ModelError
from churn.layout import BASELINE_FILE, REGISTRY_FILE
from churn.model.fit import read_catalog, train_churn_models
from churn.model.metrics import make_jsonable

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


#: Name of the feature catalog among the training run's MLflow artifacts.
CATALOG_FILE_NAME = "feature_catalog.csv"


def run_train(
    params: Params,
    features_path: Path,
    model_dir: Path,
    report_path: Path,
    catalog_path: Path,
) -> dict[str, Any]:
    """Train, log to MLflow, register and gate the model, export it and write the report.

    Args:
        params: All parameters.
        features_path: Features Parquet from ``churn features``.
        model_dir: Export directory: the ChurnModel files, ``baseline.joblib`` and
            ``registry.json`` (run id, model version, alias decision); replaced atomically.
        report_path: JSON summary (split, metrics, gate decision).
        catalog_path: Feature catalog CSV from ``churn features``.

    Returns:
        The report written to ``report_path``.
    """
    import joblib

    from churn.io import atomic_path, read_frame, write_json
    from churn.tracking.runs import log_training_run

    features_path, model_dir, report_path = Path(features_path), Path(model_dir), Path(report_path)
    catalog_path = Path(catalog_path)
    if not features_path.exists():
        raise ModelError(f"features file not found: {features_path}")
    catalog = read_catalog(catalog_path)
    features = read_frame(features_path)
    result = train_churn_models(features, catalog, params)

    with tempfile.TemporaryDirectory(prefix="churn-train-") as staging_name:
        staging = Path(staging_name)
        model_path = staging / "churn_model"
        result.model.save(model_path)
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
            model_path=model_path,
            artifact_dir=artifact_dir,
        )
        with atomic_path(model_dir) as tmp:
            shutil.copytree(model_path, tmp)
            joblib.dump(result.baseline, tmp / BASELINE_FILE)
            write_json(make_jsonable(record), tmp / REGISTRY_FILE)
    report = make_jsonable(
        {
            "split": result.split.describe(),
            "metrics": result.metrics,
            "best_iteration": result.model.metadata["best_iteration"],
            "tuned_params": result.tuned_params,
            "top_single_feature_aucs": dict(
                sorted(result.feature_aucs.items(), key=lambda item: -item[1])[:10]
            ),
            "registry": record,
        }
    )
    write_json(report, report_path)
    gate = record["gate"]
    logger.info("model version %s: %s (%s)", record["model_version"], gate["alias"], gate["reason"])
    return report


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
