"""Measure the survival head against the classifier at every horizon, on one split (pure).

Both model forms are fitted on the same rows of one out-of-time split whose purge window is the
**longest** horizon plus grace (:func:`split_for_horizons`), so every horizon's outcome is
observed on validation and test and no training outcome reaches into a later slice:

* ``hazard``: one :class:`~churn.model.survival.SurvivalHead`, risk at every horizon;
* ``classifier``: the classic form, one calibrated LightGBM per horizon (label at ``H``),
  i.e. what "a classifier per horizon" costs.

Each is summarised at each horizon with :func:`churn.model.metrics.summarize_ranking` (ROC AUC,
PR AUC, ECE, lift, ...) and, with the simulator's truth, the oracle at the same horizon
(:func:`churn.model.oracle.compute_oracle_probabilities`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churn.config import Params
from churn.domain.catalog import CUTOFF, KEY_COLUMNS
from churn.errors import ModelError
from churn.io import read_parquet_frame
from churn.model.artifact import ChurnModel
from churn.model.fit import build_lgb_params, find_dead_features, fit_churn_model
from churn.model.hazard import label_at_horizon
from churn.model.metrics import TOP_DECILE, compute_lift, compute_roc_auc, summarize_ranking
from churn.model.oracle import compute_oracle_probabilities
from churn.model.split import Split, split_by_time, take_file_rows, take_rows
from churn.model.survival import CHURN_TIME_COLUMNS, SurvivalHead, fit_survival_head

logger = logging.getLogger(__name__)


def read_churn_times(
    labels_path: str | Path, cutoffs: Sequence[pd.Timestamp] | None = None
) -> pd.DataFrame:
    """Read the labels' keys and churn times: what :func:`attach_churn_times` attaches.

    Args:
        labels_path: The labels Parquet file.
        cutoffs: Read only the rows at these cutoffs (all rows when ``None``).
    """
    columns = [*KEY_COLUMNS[:2], *CHURN_TIME_COLUMNS]
    filters = None if cutoffs is None else [(CUTOFF, "in", list(cutoffs))]
    return read_parquet_frame(labels_path, columns=columns, filters=filters)


def attach_churn_times(features: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Return ``features`` with the labels' churn-time columns, matched on customer and cutoff.

    The features stage writes one row per label row, in the labels' order, so the keys of the
    two files usually agree row for row: then the columns are attached by position (comparing
    the keys costs milliseconds; joining a million text ids about 1.4 s, paid by train and by
    every model-form fit of evaluate). Otherwise, e.g. on a slice of the rows or after a
    reorder, they are joined on the keys.

    Raises:
        ModelError: If the labels lack the churn-time columns or a feature row has no label row.
    """
    missing = [c for c in CHURN_TIME_COLUMNS if c not in labels.columns]
    if missing:
        raise ModelError(f"the labels lack {missing}: rebuild them with 'churn label'")
    times = labels[["customer_id", "cutoff", *CHURN_TIME_COLUMNS]]
    if len(times) == len(features) and all(
        features[key].reset_index(drop=True).equals(times[key].reset_index(drop=True))
        for key in ("customer_id", "cutoff")
    ):
        aligned = times[list(CHURN_TIME_COLUMNS)].set_axis(features.index)
        # Columns appended in one concat, not inserted one by one: a frame read column by
        # column has a block per column, and pandas warns on (and slows down) each insert
        # into a frame of over 100 blocks. Copy-on-write shares the feature columns.
        kept = features.drop(columns=[c for c in CHURN_TIME_COLUMNS if c in features.columns])
        return pd.concat([kept, aligned], axis=1)
    keys = features
    if times["customer_id"].dtype != features["customer_id"].dtype:
        # Ids of two types (e.g. integers and their text) match as text; ids of one type
        # match as they are, without formatting a million ids.
        times = times.assign(customer_id=times["customer_id"].astype(str))
        keys = features.assign(customer_id=features["customer_id"].astype(str))
    merged = keys.merge(times, on=["customer_id", "cutoff"], how="left", validate="one_to_one")
    merged["customer_id"] = features["customer_id"].to_numpy()
    unmatched = int(merged["observed_days"].isna().sum())
    if unmatched:
        raise ModelError(f"{unmatched} feature row(s) have no labels row (customer, cutoff)")
    merged.index = features.index
    return merged


def split_for_horizons(frame: pd.DataFrame, params: Params) -> Split:
    """Split with the longest horizon's label and purge window (see the module docstring)."""
    longest = max(params.label.horizons_days)
    labeled = frame.assign(
        label=pd.array(
            label_at_horizon(
                frame["days_to_churn"].to_numpy("float64"),
                frame["observed_days"].astype("float64").to_numpy(),
                longest,
            ),
            dtype="Float64",
        ).astype("Int8")
    )
    label_cfg = params.label.model_copy(update={"horizon_days": longest})
    return split_by_time(labeled, params.train, label_cfg, mode=params.ingest.mode)


def _summarize(
    labels: np.ndarray, probabilities: np.ndarray, params: Params, oracle: np.ndarray | None
) -> dict[str, Any]:
    out = summarize_ranking(
        labels,
        probabilities,
        bins=params.evaluate.calibration_bins,
        top_fractions=params.evaluate.top_fractions,
    )
    if oracle is not None:
        oracle_auc = compute_roc_auc(labels, oracle)
        oracle_lift = compute_lift(labels, oracle, TOP_DECILE)
        out["oracle_roc_auc"] = oracle_auc
        out["oracle_lift_top_decile"] = oracle_lift
        out["roc_auc_ratio_to_oracle"] = out["roc_auc"] / oracle_auc
        out["lift_ratio_to_oracle"] = out["lift_top_decile"] / oracle_lift
    return out


@dataclass(frozen=True)
class ModelFormPlan:
    """What both model forms of the comparison share: the split and the live features.

    Attributes:
        split: The split with the longest horizon's purge window (:func:`split_for_horizons`).
        names: Live features (the catalog's, minus those dead on the training rows).
        categorical: The categorical ones among ``names``.
        catalog: The catalog rows of ``names``.
    """

    split: Split
    names: list[str]
    categorical: list[str]
    catalog: pd.DataFrame


def plan_model_forms(frame: pd.DataFrame, catalog: pd.DataFrame, params: Params) -> ModelFormPlan:
    """Return the split and features both model forms are fitted on (deterministic).

    Every fit of the comparison calls this on the same frame, so fits in separate worker
    processes (:mod:`churn.stages.fit_workers`) use exactly the same rows and features.
    """
    split = split_for_horizons(frame, params)
    train = take_rows(frame, split.train)
    names = [c for c in catalog["name"] if c in frame.columns and c not in KEY_COLUMNS]
    dead = find_dead_features(train, names)
    names = [n for n in names if n not in dead]
    model_catalog = catalog.drop_duplicates("name").set_index("name").loc[names].reset_index()
    categorical = list(model_catalog.loc[model_catalog["kind"] == "categorical", "name"])
    return ModelFormPlan(split, names, categorical, model_catalog)


def fit_hazard_form(
    frame: pd.DataFrame, plan: ModelFormPlan, params: Params
) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit the survival head of the comparison and predict every horizon on its test rows.

    Returns:
        ``(probabilities, head metadata)``: probabilities has one row per test row and one
        column per ``label.horizons_days`` entry.
    """
    split = plan.split
    train, validation, test = split.slices(frame)
    head = fit_survival_head(
        train,
        validation,
        plan.names,
        plan.categorical,
        params.train,
        params.label,
        build_lgb_params(params.train),
        validation_start=split.validation_cutoffs[0] if split.validation_cutoffs else None,
        test_start=split.test_cutoffs[0] if split.test_cutoffs else None,
    )
    return head.predict_horizons(test), dict(head.metadata)


def _labels_at(part: pd.DataFrame, horizon: int) -> np.ndarray:
    return label_at_horizon(
        part["days_to_churn"].to_numpy("float64"),
        part["observed_days"].astype("float64").to_numpy(),
        horizon,
    )


def fit_classifier_form(
    frame: pd.DataFrame, plan: ModelFormPlan, params: Params, horizon: int
) -> np.ndarray:
    """Fit the classic form at ``horizon`` (a classifier on the label at ``horizon``, same
    rows) and return its probabilities on the test rows whose outcome at ``horizon`` is known.
    """
    split = plan.split
    train, validation, test = split.slices(frame)
    columns = [*KEY_COLUMNS, *plan.names]

    def at(part: pd.DataFrame) -> pd.DataFrame:
        # No copy: with copy-on-write the selected columns share ``part``'s arrays and the new
        # label column leaves ``part`` alone (a copy cost a training slice per fit).
        out = part[columns]
        out["label"] = pd.array(_labels_at(part, horizon), dtype="Float64").astype("Int8")
        known = out["label"].notna()
        return out if bool(known.all()) else out[known]

    classifier = fit_churn_model(at(train), at(validation), plan.catalog, params.train)
    return classifier.predict_proba(test[np.isfinite(_labels_at(test, horizon))])


def summarize_model_forms(
    frame: pd.DataFrame,
    plan: ModelFormPlan,
    params: Params,
    hazard: tuple[np.ndarray, dict[str, Any]],
    classifiers: dict[int, np.ndarray],
    truth: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Measure both forms at every horizon on the comparison's test rows.

    Args:
        frame: The frame the forms were fitted on.
        plan: :func:`plan_model_forms` of ``frame``.
        params: All parameters.
        hazard: :func:`fit_hazard_form`'s result.
        classifiers: Horizon -> :func:`fit_classifier_form`'s probabilities.
        truth: Simulator ``customer_months`` for the oracle, or ``None``.

    Returns:
        ``{"split", "head", "hazard": {H: metrics}, "classifier": {H: metrics},
        "monotone_share", "zero_exposure_share"}``.
    """
    horizons = params.label.horizons_days
    split = plan.split
    test = take_rows(frame, split.test)
    hazard_probabilities, head_metadata = hazard
    result: dict[str, Any] = {
        "split": {
            "train_cutoffs": [c.strftime("%Y-%m-%d") for c in split.train_cutoffs],
            "validation_cutoffs": [c.strftime("%Y-%m-%d") for c in split.validation_cutoffs],
            "test_cutoffs": [c.strftime("%Y-%m-%d") for c in split.test_cutoffs],
            "n_test": len(test),
        },
        "head": head_metadata,
        "hazard": {},
        "classifier": {},
        "monotone_share": float(
            np.mean(np.all(np.diff(hazard_probabilities, axis=1) >= 0, axis=1))
        ),
        "zero_exposure_share": {
            str(h): float(np.mean(hazard_probabilities[:, k] == 0)) for k, h in enumerate(horizons)
        },
    }
    for k, horizon in enumerate(horizons):
        labels = _labels_at(test, horizon)
        keep = np.isfinite(labels)
        y = labels[keep].astype(int)
        oracle = None if truth is None else compute_oracle_probabilities(test[keep], truth, horizon)
        hazard_block = _summarize(y, hazard_probabilities[keep, k], params, oracle)
        classifier_block = _summarize(y, classifiers[horizon], params, oracle)
        result["hazard"][str(horizon)] = hazard_block
        result["classifier"][str(horizon)] = classifier_block
        logger.info(
            "%d days: hazard ROC AUC %.4f lift %.2f ECE %.4f | classifier %.4f lift %.2f ECE %.4f",
            horizon,
            hazard_block["roc_auc"],
            hazard_block["lift_top_decile"],
            hazard_block["ece"],
            classifier_block["roc_auc"],
            classifier_block["lift_top_decile"],
            classifier_block["ece"],
        )
    return result


def compare_model_forms(
    frame: pd.DataFrame,
    catalog: pd.DataFrame,
    params: Params,
    truth: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Fit both model forms on one split and measure each at every horizon on test.

    The fits run one after another here; the evaluate stage runs the same functions side by
    side in worker processes (:func:`churn.stages.fit_workers.compare_model_forms_side_by_side`).

    Args:
        frame: Features with :data:`~churn.model.survival.CHURN_TIME_COLUMNS`
            (:func:`attach_churn_times`).
        catalog: The feature catalog.
        params: All parameters (``label.horizons_days``, train, evaluate).
        truth: Simulator ``customer_months`` for the oracle, or ``None``.

    Returns:
        :func:`summarize_model_forms`' result.
    """
    plan = plan_model_forms(frame, catalog, params)
    hazard = fit_hazard_form(frame, plan, params)
    classifiers = {
        horizon: fit_classifier_form(frame, plan, params, horizon)
        for horizon in params.label.horizons_days
    }
    return summarize_model_forms(frame, plan, params, hazard, classifiers, truth)


def fit_head_for_model(
    frame: pd.DataFrame, split: Split, model: ChurnModel, params: Params
) -> SurvivalHead | None:
    """Fit the survival head beside a trained classifier, on the classifier's split.

    The head uses the classifier's live features and LightGBM parameters (tuned ones
    included); training outcomes are censored before the first validation cutoff, validation
    outcomes (for the booster) before the first test cutoff.

    Args:
        frame: The features frame with the churn-time columns (:func:`attach_churn_times`).
        split: The classifier's split (:attr:`churn.model.fit.TrainResult.split`).
        model: The trained classifier.
        params: All parameters.

    Returns:
        The head, or ``None`` when the data has no contract schedule (entity mode, or no
        ``days_to_renewal`` feature): the classifier alone is the model (docs/survival.md).
    """
    if split.mode != "time" or "days_to_renewal" not in model.feature_names:
        logger.info("no survival head: no contract schedule (entity mode or no subscriptions)")
        return None
    train, validation = (take_rows(frame, rows) for rows in (split.train, split.validation))
    return fit_survival_head(
        train,
        validation,
        model.feature_names,
        model.categorical_features,
        params.train,
        params.label,
        model.metadata["lgb_params"],
        validation_start=split.validation_cutoffs[0],
        test_start=split.test_cutoffs[0],
    )


def evaluate_horizons(
    frame: pd.DataFrame,
    head: SurvivalHead,
    params: Params,
    truth: pd.DataFrame | None = None,
    *,
    split: Split | None = None,
    known_oracle: Mapping[int, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Measure the exported survival head at each horizon on the classifier's test rows.

    The test rows are those of ``churn evaluate`` (:func:`churn.model.split.split_by_time`);
    a horizon whose outcome is not yet observed on them (e.g. 90 days when the test cutoff is
    77 days before the data end less grace) is reported as unobservable, and is measured by
    :func:`compare_model_forms` on an earlier test cutoff instead.

    Args:
        frame: The features frame with the churn-time columns.
        head: The exported survival head.
        params: All parameters.
        truth: Simulator ``customer_months`` for the oracle, or ``None``.
        split: The split of the features file, made on its keys, when ``frame`` holds only
            some of its rows (at least the test rows) indexed by file position
            (:func:`churn.model.split.take_file_rows`). Default: ``frame`` is the whole file
            and is split here.
        known_oracle: Horizon -> the oracle's probabilities on all the test rows, in their
            order, where the caller has them (the evaluate stage's at the label horizon, from
            :func:`churn.model.evaluation.evaluate_models`); the oracle is a function of each
            row alone, so the rows a horizon observes take theirs from it. Default: computed.

    Returns:
        ``{"<H>": metrics or {"observable": False, "note": ...}}``.

    Raises:
        ValueError: If a known oracle does not have one probability per test row.
    """
    known_oracle = dict(known_oracle or {})
    if split is None:
        split = split_by_time(frame, params.train, params.label, mode=params.ingest.mode)
        test = take_rows(frame, split.test)
    else:
        test = take_file_rows(frame, split.test)
    probabilities = head.predict_horizons(test)
    observed = test["observed_days"].astype("float64").to_numpy()
    days = test["days_to_churn"].to_numpy("float64")
    out: dict[str, Any] = {}
    for k, horizon in enumerate(head.horizons):
        labels = label_at_horizon(days, observed, horizon)
        keep = np.isfinite(labels)
        y = labels[keep].astype(int)
        if keep.sum() == 0 or y.min() == y.max():
            out[str(horizon)] = {
                "observable": False,
                "note": f"the {horizon}-day outcome of the test rows is not observed yet "
                "(or holds one class)",
            }
            continue
        if truth is None:
            oracle = None
        elif horizon in known_oracle:
            if len(known_oracle[horizon]) != len(test):
                raise ValueError(
                    f"{len(known_oracle[horizon])} known oracle probabilities for "
                    f"{len(test)} test rows at {horizon} days"
                )
            oracle = np.asarray(known_oracle[horizon], dtype=np.float64)[keep]
        else:
            oracle = compute_oracle_probabilities(test[keep], truth, horizon)
        out[str(horizon)] = {
            "observable": True,
            **_summarize(y, probabilities[keep, k], params, oracle),
        }
    return out


def flatten_horizons_for_mlflow(horizons: dict[str, Any] | None) -> dict[str, float]:
    """Return MLflow metrics of the horizon block: ``eval_<H>d_<metric>`` for the exported
    head on test, ``eval_<H>d_<form>_<metric>`` for the model-form comparison (scalars only)."""
    flat: dict[str, float] = {}
    if not horizons:
        return flat
    keep = ("roc_auc", "pr_auc", "ece", "lift_top_decile", "roc_auc_ratio_to_oracle")
    for horizon, block in (horizons.get("test") or {}).items():
        for key in keep:
            if isinstance(block.get(key), int | float):
                flat[f"eval_{horizon}d_{key}"] = float(block[key])
    comparison = horizons.get("comparison") or {}
    for form in ("hazard", "classifier"):
        for horizon, block in (comparison.get(form) or {}).items():
            for key in (*keep, "lift_ratio_to_oracle"):
                if isinstance(block.get(key), int | float):
                    flat[f"eval_{horizon}d_{form}_{key}"] = float(block[key])
    return flat
