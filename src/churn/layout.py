"""Names of the files *inside* the pipeline's output directories, defined once.

``dvc.yaml`` is the only home of paths: it names every file and directory a stage reads or
writes, and passes them to the CLI. When a stage writes a *directory* (``data/raw``,
``data/truth``, ``data/validated``, ``models/churn``, ``reports/plots``, ``reports/explain``)
or files beside a file it was given (the scores' sidecars), the names inside are conventions
shared by the writer and its readers; they live here so both sides agree by construction.

This module is a leaf of the bottom layer: it imports nothing from ``churn``.
"""

from __future__ import annotations

from pathlib import Path

#: Suffix of a contract table written by the pipeline (raw, truth, validated, quarantine).
TABLE_SUFFIX = ".parquet"

#: Ground-truth table (simulator only) with one row per customer and month.
TRUTH_CUSTOMER_MONTHS = "customer_months"

#: Exported model directory (``churn train --model-dir``): the baseline model.
BASELINE_FILE = "baseline.json"

#: Exported model directory: the training run, model version and gate decision.
REGISTRY_FILE = "registry.json"

#: Exported model directory: the :class:`churn.model.artifact.ChurnModel` metadata.
MODEL_META_FILE = "churn_model.json"

#: Exported model directory: the feature catalog the model was trained with.
MODEL_CATALOG_FILE = "catalog.csv"

#: Plot data written by ``churn evaluate`` into its plots directory, one CSV per name.
PLOT_NAMES = ("roc", "precision_recall", "calibration", "gains")

#: Plots directory: the test rows' predictions.
TEST_PREDICTIONS_FILE = "test_predictions.parquet"

#: Explanation tables written by ``churn explain`` into its directory, one CSV per name.
EXPLAIN_TABLES = ("global_importance", "family_importance", "phase_importance")

#: Explanation directory: the summary JSON.
EXPLAIN_SUMMARY_FILE = "explain.json"

#: Explanation directory: suffix of the figures (every one is embedded by the report).
FIGURE_SUFFIX = ".png"

#: Sidecar beside a scores file: every feature's contribution per customer.
CONTRIBUTIONS_SUFFIX = "_contributions"

#: Sidecar beside a scores file: what changed since the previous scoring.
CHANGES_SUFFIX = "_changes"

#: Sidecar beside a scores file: the model's feature values per customer (drift monitoring).
FEATURES_SUFFIX = "_features"

#: Suffix of the scores' sidecars, whatever the scores file's own format.
SIDECAR_SUFFIX = ".parquet"


def table_file_name(table: str) -> str:
    """Return the file name of contract table ``table`` in a pipeline-written directory."""
    return f"{table}{TABLE_SUFFIX}"


def plot_file_name(name: str) -> str:
    """Return the file name of plot data ``name`` (see :data:`PLOT_NAMES`)."""
    return f"{name}.csv"


def explain_table_file_name(name: str) -> str:
    """Return the file name of explanation table ``name`` (see :data:`EXPLAIN_TABLES`)."""
    return f"{name}.csv"


def sidecar_path(scores_path: str | Path, suffix: str) -> Path:
    """Return ``<dir>/<scores stem><suffix>.parquet`` beside a scores file.

    Args:
        scores_path: The scores file (Parquet or CSV).
        suffix: :data:`CONTRIBUTIONS_SUFFIX` or :data:`CHANGES_SUFFIX`.
    """
    scores_path = Path(scores_path)
    return scores_path.with_name(f"{scores_path.stem}{suffix}{SIDECAR_SUFFIX}")


#: Files inside ``churn target``'s output folder (the report reads the first and the last).
TARGETS_FILE = "targets.parquet"
CANDIDATES_FILE = "candidates.parquet"
CURVES_FILE = "curves.parquet"
