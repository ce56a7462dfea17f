"""Evaluation on the held-out test cutoff(s): metrics, segments, oracle, backtest, plot data.

The core (:func:`evaluate_models`) scores the exported model and the baseline on the test rows
of the same split training used (:func:`churn.model.split.split_by_time`), and optionally compares
with the simulator's ground truth; :func:`run_rolling_backtest` retrains on earlier cutoffs.
:func:`run_evaluate` does the I/O: ``metrics.json`` (nested, for ``dvc metrics``), curve CSVs
(``dvc plots``), ``test_predictions.parquet`` (for the report), and ``eval_*`` metrics on the
training run in MLflow.

The oracle (simulator only): truth holds each customer's true monthly churn hazard ``p_m``, so
the true probability of churning within the horizon after cutoff ``c`` is
``1 - prod(1 - p_m)`` over the months whose ``month_start`` lies in ``[c, c + horizon_days)``.
Ranking customers by it gives the best ROC AUC any model could reach on those rows, which is
what ``test.roc_auc_ratio_to_oracle`` compares with. A model cannot rank better than the truth:
beating the oracle's AUC by more than noise (``evaluate.oracle_tolerance_se`` standard errors,
:func:`check_model_below_oracle`) means leakage, and stops the run unless
``train.allow_high_auc`` is true.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churn.config import Params, TrainConfig
from churn.domain.modes import Mode
from churn.errors import ModelError
from churn.model.baseline import fit_baseline, predict_baseline
from churn.model.explanation_check import compute_reason_agreement
from churn.model.fit import (
    UNSAMPLED,
    build_importance,
    build_lgb_params,
    describe_negative_sampling,
    describe_strongest_features,
    fit_churn_model,
)
from churn.model.metrics import (
    TOP_DECILE,
    build_calibration_table,
    build_gains_curve,
    build_pr_curve,
    build_roc_curve,
    compute_lift,
    compute_pr_auc,
    compute_roc_auc,
    downsample_curve,
    summarize_predictions,
    summarize_ranking,
)
from churn.model.sampling import sample_training_rows
from churn.model.split import Split, label_array, split_by_time

if TYPE_CHECKING:
    from churn.model.artifact import ChurnModel
    from churn.model.baseline import LogisticBaseline

logger = logging.getLogger(__name__)


REVENUE_COLUMNS = ("mrr_at_cutoff", "mrr")


MAX_SEGMENT_LEVELS = 50


MAX_CURVE_POINTS = 500


@dataclass
class Evaluation:
    """What :func:`evaluate_models` produced.

    Attributes:
        metrics: The nested metrics (the content of ``metrics.json``).
        plots: Curve tables by name (``roc``, ``precision_recall``, ``calibration``, ``gains``).
        predictions: Test rows with label, model, baseline (and oracle) probabilities.
    """

    metrics: dict[str, Any]
    plots: dict[str, pd.DataFrame] = field(default_factory=dict)
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame)


def _as_naive_utc(values: pd.Series) -> np.ndarray:
    """Return ``values`` as UTC wall times in ``datetime64`` (no time zone).

    ``to_numpy()`` of a time-zone-aware column makes an object array of Timestamps, which
    took 6 s per horizon on 100k customers' truth; dropping the zone after converting to UTC
    keeps the native type, and both sides of every comparison are converted alike.
    """
    return pd.to_datetime(values, utc=True).dt.tz_localize(None).to_numpy()


def compute_oracle_probabilities(
    keys: pd.DataFrame, truth: pd.DataFrame, horizon_days: int
) -> np.ndarray:
    """Return each row's true probability of churning within the horizon.

    Args:
        keys: Rows with ``customer_id`` and ``cutoff``.
        truth: Monthly truth with ``customer_id``, ``month_start`` and ``churn_probability``
            (the month's hazard).
        horizon_days: Label horizon.

    Returns:
        ``1 - prod(1 - p_m)`` over months with ``month_start`` in ``[cutoff, cutoff + horizon)``;
        0 for a row without such months.
    """
    if keys.empty:
        return np.zeros(0)
    cutoffs = _as_naive_utc(keys["cutoff"])
    rows = pd.DataFrame(
        {
            "row": np.arange(len(keys)),
            "customer_id": keys["customer_id"].astype(str).to_numpy(),
            "cutoff": cutoffs,
        }
    )
    month_start = _as_naive_utc(truth["month_start"])
    # Only months inside some row's window can count: keep those before converting ids to
    # text and joining (a test cutoff needs 2-3 of the truth's 24 months). Same result.
    end = cutoffs.max() + np.timedelta64(horizon_days, "D")
    window = (month_start >= cutoffs.min()) & (month_start < end)
    months = pd.DataFrame(
        {
            "customer_id": truth["customer_id"].to_numpy()[window].astype(str),
            "month_start": month_start[window],
            "hazard": truth["churn_probability"].to_numpy(dtype=float)[window],
        }
    )
    joined = rows.merge(months, on="customer_id", how="inner")
    start = joined["cutoff"]
    inside = (joined["month_start"] >= start) & (
        joined["month_start"] < start + pd.Timedelta(days=horizon_days)
    )
    joined = joined[inside]
    survival = (1.0 - joined["hazard"]).groupby(joined["row"]).prod()
    return 1.0 - survival.reindex(rows["row"], fill_value=1.0).to_numpy()


def summarize_segments(
    test: pd.DataFrame, columns: tuple[str, ...] | list[str], predictions: pd.DataFrame
) -> tuple[dict[str, Any], list[str]]:
    """Return ROC AUC per level of each segment column (model and baseline), and notes.

    Columns absent from the frame, with more than 50 levels, and levels holding a single class
    are skipped and named in the notes. Missing values form the level ``missing``.
    """
    segments: dict[str, Any] = {}
    notes: list[str] = []
    labels = predictions["label"].to_numpy()
    for column in columns:
        if column not in test.columns:
            notes.append(f"segment {column!r} skipped: not a column of the features frame")
            continue
        values = test[column].astype("object").where(test[column].notna(), "missing")
        values = values.astype(str).to_numpy()
        levels = sorted(set(values))
        if len(levels) > MAX_SEGMENT_LEVELS:
            notes.append(f"segment {column!r} skipped: {len(levels)} levels")
            continue
        segments[column] = {}
        for level in levels:
            mask = values == level
            y = labels[mask]
            if y.min() == y.max():
                notes.append(f"segment {column}={level} skipped: one class ({mask.sum()} rows)")
                continue
            segments[column][level] = {
                "n": int(mask.sum()),
                "positives": int(y.sum()),
                "roc_auc": compute_roc_auc(y, predictions["churn_probability"].to_numpy()[mask]),
                "baseline_roc_auc": compute_roc_auc(
                    y, predictions["baseline_probability"].to_numpy()[mask]
                ),
            }
    return segments, notes


def build_plot_tables(
    labels: np.ndarray, probabilities: np.ndarray, bins: int
) -> dict[str, pd.DataFrame]:
    """Return the curve tables for ``dvc plots``, each at most 500 rows."""
    calibration = build_calibration_table(labels, probabilities, bins)
    return {
        "roc": downsample_curve(build_roc_curve(labels, probabilities), MAX_CURVE_POINTS),
        "precision_recall": downsample_curve(
            build_pr_curve(labels, probabilities), MAX_CURVE_POINTS
        ),
        "calibration": calibration[["mean_predicted", "fraction_positive"]],
        "gains": downsample_curve(build_gains_curve(labels, probabilities), MAX_CURVE_POINTS),
    }


def compute_auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Return the Hanley-McNeil (1982) standard error of a ROC AUC on this many rows."""
    if positives == 0 or negatives == 0:
        return float("nan")
    q1, q2 = auc / (2.0 - auc), 2.0 * auc * auc / (1.0 + auc)
    variance = (
        auc * (1.0 - auc)
        + (positives - 1) * (q1 - auc * auc)
        + (negatives - 1) * (q2 - auc * auc)
    ) / (positives * negatives)
    return float(np.sqrt(max(variance, 0.0)))


def check_model_below_oracle(
    labels: np.ndarray,
    model_auc: float,
    oracle_auc: float,
    model: ChurnModel,
    params: Params,
) -> str | None:
    """Fail when the model's test ROC AUC beats the oracle's by more than noise.

    The margin is ``evaluate.oracle_tolerance_se`` Hanley-McNeil standard errors of the
    oracle's AUC on the test rows: the two AUCs share the rows, so their difference varies
    less than one AUC does, and this margin is conservative.

    Returns:
        A note for the metrics when the model beats the oracle but ``train.allow_high_auc``
        accepts it; ``None`` when the model is below the oracle (within noise).

    Raises:
        ModelError: Naming both AUCs, the margin and the strongest features by gain.
    """
    if not (np.isfinite(model_auc) and np.isfinite(oracle_auc)):
        return None
    positives = int(np.sum(labels))
    se = compute_auc_standard_error(oracle_auc, positives, int(labels.size) - positives)
    margin = params.evaluate.oracle_tolerance_se * se
    if not model_auc - oracle_auc > margin:
        return None
    shown = (
        f"test ROC AUC {model_auc:.3f} beats the simulator oracle's {oracle_auc:.3f} (the true "
        f"probabilities; ratio {model_auc / oracle_auc:.3f}) by more than "
        f"evaluate.oracle_tolerance_se = {params.evaluate.oracle_tolerance_se:g} standard "
        f"errors ({margin:.3f})"
    )
    strongest = describe_strongest_features(build_importance(model))
    if params.train.allow_high_auc:
        note = f"{shown}; accepted because train.allow_high_auc is true"
        logger.warning("%s; strongest features: %s", note, strongest)
        return note
    raise ModelError(
        f"label leakage suspected: the {shown}. No model can rank better than the truth, so "
        f"features (strongest by gain: {strongest}) or labels must use information from after "
        "the cutoff; check them (and reports/labels.json for implausible cutoffs)"
    )


def evaluate_models(
    features: pd.DataFrame,
    model: ChurnModel,
    baseline: LogisticBaseline,
    params: Params,
    truth: pd.DataFrame | None = None,
) -> Evaluation:
    """Score the model and the baseline on the test rows and collect every metric.

    Args:
        features: The features frame.
        model: The exported ChurnModel.
        baseline: The exported baseline.
        params: All parameters (evaluate, train, label, ingest sections).
        truth: Simulator ``customer_months`` for the oracle, or ``None``.

    Returns:
        The evaluation (metrics without the backtest, plot tables, test predictions).
    """
    cfg = params.evaluate
    split = split_by_time(features, params.train, params.label, mode=params.ingest.mode)
    test = features.iloc[split.test]
    labels = label_array(test)
    predictions = test[["customer_id", "cutoff"]].reset_index(drop=True)
    predictions["label"] = labels
    predictions["churn_probability"] = model.predict_proba(test)
    predictions["baseline_probability"] = predict_baseline(baseline, test)
    notes = list(split.notes)
    evaluated_on = split.describe()["cutoffs"]["test"]
    trained_on = model.metadata.get("test_cutoffs")
    if trained_on is not None and trained_on != evaluated_on:
        notes.append(f"the model was tested on {trained_on} at training; here on {evaluated_on}")
    revenue_column = next((c for c in REVENUE_COLUMNS if c in test.columns), None)
    revenue = None if revenue_column is None else test[revenue_column].to_numpy(dtype=float)
    if revenue is None:
        notes.append(f"no revenue column ({' or '.join(REVENUE_COLUMNS)}): no revenue capture")

    def summarize(probabilities: pd.Series) -> dict[str, Any]:
        return summarize_ranking(
            labels,
            probabilities.to_numpy(),
            bins=cfg.calibration_bins,
            top_fractions=cfg.top_fractions,
            revenue=revenue,
        )

    metrics: dict[str, Any] = {
        "split": {
            "mode": split.mode,
            "test_cutoffs": evaluated_on,
            "n_test": int(labels.size),
        },
        "test": summarize(predictions["churn_probability"]),
        "baseline": {"test": summarize(predictions["baseline_probability"])},
    }
    # Ranking quality of the booster before calibration: a calibrator with few steps ties
    # customers together and costs ranking quality, and this makes that cost visible.
    raw = model.predict_raw(test)
    metrics["test"]["raw_roc_auc"] = compute_roc_auc(labels, raw)
    metrics["test"]["raw_pr_auc"] = compute_pr_auc(labels, raw)
    if truth is not None:
        oracle = compute_oracle_probabilities(test, truth, params.label.horizon_days)
        predictions["oracle_probability"] = oracle
        oracle_auc = compute_roc_auc(labels, oracle)
        metrics["test"]["oracle_roc_auc"] = oracle_auc
        metrics["test"]["oracle_lift_top_decile"] = compute_lift(labels, oracle, TOP_DECILE)
        metrics["test"]["roc_auc_ratio_to_oracle"] = metrics["test"]["roc_auc"] / oracle_auc
        accepted = check_model_below_oracle(
            labels, metrics["test"]["roc_auc"], oracle_auc, model, params
        )
        if accepted is not None:
            notes.append(accepted)
        metrics["explanations"] = compute_reason_agreement(model, test, truth, TOP_DECILE)
    metrics["segments"], segment_notes = summarize_segments(test, cfg.segments, predictions)
    metrics["notes"] = notes + segment_notes
    plots = build_plot_tables(
        labels, predictions["churn_probability"].to_numpy(), cfg.calibration_bins
    )
    return Evaluation(metrics=metrics, plots=plots, predictions=predictions)


def select_backtest_cutoffs(
    features: pd.DataFrame, params: Params
) -> tuple[list[pd.Timestamp], list[str]]:
    """Return the labeled cutoffs the rolling backtest tests on (the last ``k``), and notes."""
    k = params.evaluate.backtest_cutoffs
    labeled = pd.DatetimeIndex(features.loc[features["label"].notna(), "cutoff"])
    cutoffs = sorted(pd.unique(labeled))
    if k == 0:
        return [], []
    if params.ingest.mode is Mode.ENTITY or len(cutoffs) < 2:
        return [], ["no rolling backtest: the data has a single cutoff (entity mode)"]
    return [pd.Timestamp(cutoff) for cutoff in cutoffs[-k:]], []


def build_backtest_config(params: Params) -> TrainConfig:
    """Return the train section the backtest refits with: one test cutoff, else as trained."""
    return params.train.model_copy(update={"test_cutoffs": 1})


def split_backtest_cutoff(
    features: pd.DataFrame, params: Params, cutoff: pd.Timestamp
) -> tuple[Split, tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame], str | None]:
    """Replay the split as if ``cutoff`` were the latest labeled one.

    Returns:
        ``(split, (train, validation, test), skip reason or None)``.

    Raises:
        ModelError: If the split rules leave an empty slice.
    """
    cfg = build_backtest_config(params)
    split = split_by_time(features, cfg, params.label, last_cutoff=cutoff)
    parts = tuple(features.iloc[rows] for rows in (split.train, split.validation, split.test))
    return split, parts, _backtest_skip_reason(*parts, cfg.min_positives)


def summarize_backtest_cutoff(
    cutoff: pd.Timestamp,
    parts: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
    model: ChurnModel,
    baseline: LogisticBaseline,
) -> dict[str, Any]:
    """Return one backtest entry: the model's and the baseline's metrics on the test rows."""
    train, _, test = parts
    labels = label_array(test)
    probabilities = model.predict_proba(test)
    summary = summarize_predictions(labels, probabilities)
    return {
        "cutoff": cutoff.strftime("%Y-%m-%d"),
        "n_train": len(train),
        "n_test": summary.pop("n"),
        **summary,
        "lift_top_decile": compute_lift(labels, probabilities, TOP_DECILE),
        "baseline_roc_auc": compute_roc_auc(labels, predict_baseline(baseline, test)),
    }


def refit_backtest_cutoff(
    features: pd.DataFrame, catalog: pd.DataFrame, params: Params, cutoff: pd.Timestamp
) -> dict[str, Any]:
    """Refit the model and the baseline as of ``cutoff`` and return its backtest entry.

    This is one task of the backtest: it reads nothing but its arguments, so it runs the
    same in this process or in a worker process (:mod:`churn.stages.fit_workers`).

    Returns:
        The entry (metrics), or ``{"cutoff", "skipped": reason}`` when the slices are too thin.
    """
    entry: dict[str, Any] = {"cutoff": cutoff.strftime("%Y-%m-%d")}
    cfg = build_backtest_config(params)
    try:
        _, parts, reason = split_backtest_cutoff(features, params, cutoff)
        if reason is None:
            train, validation, _ = parts
            model = fit_churn_model(train, validation, catalog, cfg)
            sample = sample_training_rows(train, cfg)
            baseline = fit_baseline(
                sample.rows, catalog, seed=cfg.seed, sample_weight=sample.weights
            )
    except ModelError as exc:
        reason = str(exc)
    if reason is not None:
        logger.info("backtest %s skipped: %s", entry["cutoff"], reason)
        return {**entry, "skipped": reason}
    return summarize_backtest_cutoff(cutoff, parts, model, baseline)


def is_backtest_fit(model: ChurnModel, split: Split, params: Params) -> bool:
    """Tell whether ``model`` is what the backtest would refit on ``split`` (no refit needed).

    True when the model's recorded training facts match the split's (train, validation and
    test cutoffs, row counts) and its training settings (boosting rounds, early stopping,
    calibration, LightGBM parameters apart from the thread count: ``deterministic`` training
    gives the same trees) equal the backtest's; a model saved without those facts is refitted.
    The last backtest cutoff of a default run is exactly the split training used, so evaluate
    scores the exported model there instead of fitting it a second time.
    """
    meta = model.metadata
    cfg = build_backtest_config(params)

    def dates(values: tuple[pd.Timestamp, ...]) -> list[str]:
        return [value.strftime("%Y-%m-%d") for value in values]

    def without_threads(lgb_params: Mapping[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in lgb_params.items() if key != "num_threads"}

    return (
        list(meta.get("train_cutoffs") or []) == dates(split.train_cutoffs)
        and list(meta.get("validation_cutoffs") or []) == dates(split.validation_cutoffs)
        and list(meta.get("test_cutoffs") or []) == dates(split.test_cutoffs)
        and meta.get("n_train") == len(split.train)
        and meta.get("n_validation") == len(split.validation)
        and meta.get("calibration") == cfg.calibration
        and meta.get("n_estimators") == cfg.n_estimators
        and meta.get("early_stopping_rounds") == cfg.early_stopping_rounds
        and without_threads(meta.get("lgb_params") or {}) == without_threads(build_lgb_params(cfg))
        # A model saved before negative sampling existed was fitted on every row.
        and meta.get("negative_sampling", UNSAMPLED) == describe_negative_sampling(cfg)
    )


def run_rolling_backtest(
    features: pd.DataFrame,
    catalog: pd.DataFrame,
    params: Params,
    *,
    fitted: tuple[ChurnModel, LogisticBaseline] | None = None,
    refit: Callable[[list[pd.Timestamp]], list[dict[str, Any]]] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Retrain and test on each of the last ``evaluate.backtest_cutoffs`` labeled cutoffs.

    For each cutoff ``c`` the split is replayed as if ``c`` were the latest labeled cutoff
    (one test cutoff, same purge rules), and the model is refitted with the training
    parameters (no registry). A cutoff whose slices are too small is skipped with its reason.

    Args:
        features: The features frame (keys, label and the model's features).
        catalog: The feature catalog of those features.
        params: All parameters.
        fitted: The exported model and baseline; a cutoff whose refit would reproduce them
            (:func:`is_backtest_fit`) is scored with them instead of being refitted.
        refit: Runs :func:`refit_backtest_cutoff` for a list of cutoffs and returns their
            entries in order (e.g. side by side in worker processes); default: one after
            another in this process.

    Returns:
        ``(entries, notes)``: one entry per cutoff (metrics, or ``skipped`` with a reason).
    """
    cutoffs, notes = select_backtest_cutoffs(features, params)
    if not cutoffs:
        return [], notes
    entries: dict[pd.Timestamp, dict[str, Any]] = {}
    if fitted is not None:
        for cutoff in cutoffs:
            try:
                split, parts, reason = split_backtest_cutoff(features, params, cutoff)
            except ModelError:
                continue  # the refit reports it
            if reason is None and is_backtest_fit(fitted[0], split, params):
                logger.info("backtest %s: the exported model is this fit", f"{cutoff:%Y-%m-%d}")
                entries[cutoff] = summarize_backtest_cutoff(cutoff, parts, *fitted)
    pending = [cutoff for cutoff in cutoffs if cutoff not in entries]
    if refit is None:
        results = [refit_backtest_cutoff(features, catalog, params, c) for c in pending]
    else:
        results = refit(pending) if pending else []
    entries.update(zip(pending, results, strict=True))
    ordered = [entries[cutoff] for cutoff in cutoffs]
    skipped = sum("skipped" in entry for entry in ordered)
    notes = [f"backtest: {skipped} of {len(ordered)} cutoff(s) skipped"] if skipped else []
    return ordered, notes


def _backtest_skip_reason(
    train: pd.DataFrame, validation: pd.DataFrame, test: pd.DataFrame, min_positives: int
) -> str | None:
    positives = int(train["label"].sum())
    if positives < min_positives:
        return f"{positives} training positives, fewer than train.min_positives = {min_positives}"
    for name, part in (("validation", validation), ("test", test)):
        if part["label"].nunique() < 2:
            return f"the {name} cutoff holds a single class"
    return None


def flatten_for_mlflow(metrics: dict[str, Any]) -> dict[str, float]:
    """Return ``eval_``-prefixed scalar metrics of the ``test``, ``baseline.test`` and
    ``explanations`` blocks."""
    flat: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}_{key}", item)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[prefix] = float(value)

    walk("eval_test", metrics.get("test", {}))
    walk("eval_baseline_test", metrics.get("baseline", {}).get("test", {}))
    walk("eval_explanations", metrics.get("explanations", {}))  # reason agreement (simulated)
    return flat
