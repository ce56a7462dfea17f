"""Training: out-of-time split, guards, LightGBM + calibration, a baseline, and ``run_train``.

The core (:func:`train_churn_models` and the functions it calls) takes frames and parameters and
returns a :class:`TrainResult`; it touches neither the disk nor MLflow. :func:`run_train` reads
the inputs, logs the run and registers the model through :mod:`churn.tracking`, applies the
champion/challenger gate, and exports the model directory used for scoring without a registry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from churn.config import Params, TrainConfig
from churn.domain.catalog import catalog_specs, select_feature_catalog
from churn.errors import ModelError
from churn.model.artifact import (
    Calibrator,
    ChurnModel,
    prepare_features,
)
from churn.model.baseline import fit_sample_baseline, predict_baseline
from churn.model.leakage import check_leakage, check_plausible_auc, compute_single_feature_aucs
from churn.model.metrics import summarize_predictions
from churn.model.pooling import learn_all_pooled_levels
from churn.model.reason_reference import (
    REFERENCE_KEY,
    build_reason_reference,
    select_reference_rows,
)
from churn.model.sampling import TrainingSample, sample_training_rows
from churn.model.split import Split, label_array, split_by_time
from churn.model.treeshap import compute_raw_scores

if TYPE_CHECKING:
    from churn.model.baseline import LogisticBaseline

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Everything a training run produced, before anything is written or logged.

    Attributes:
        split: The train/validation/test split.
        model: The calibrated LightGBM model.
        baseline: The logistic-regression baseline (plain numbers, saved as JSON).
        metrics: ``{"validation"|"test"|"baseline_validation"|"baseline_test": {metric: value}}``.
        feature_aucs: Single-feature test ROC AUC (``max(auc, 1 - auc)``) per feature.
        importance: Gain and split importance per feature, most important first.
        test_predictions: Test rows: ``customer_id``, ``cutoff``, ``label``,
            ``churn_probability``, ``raw_probability`` (uncalibrated), ``baseline_probability``.
        trials: Tuning trials (``number``, ``params``, ``validation_pr_auc``); empty if off.
        tuned_params: Hyperparameters chosen by tuning (empty if off).
        dropped_features: Features left out of the model before fitting, with why
            (:func:`find_dead_features`).
    """

    split: Split
    model: ChurnModel
    baseline: LogisticBaseline
    metrics: dict[str, dict[str, float]]
    feature_aucs: dict[str, float]
    importance: pd.DataFrame
    test_predictions: pd.DataFrame
    trials: list[dict[str, Any]] = field(default_factory=list)
    tuned_params: dict[str, Any] = field(default_factory=dict)
    dropped_features: dict[str, str] = field(default_factory=dict)


def find_dead_features(train: pd.DataFrame, names: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Return feature -> why it cannot help the model, for the features that are dead on train.

    A feature is dead when it is missing on every training row, or has one and the same value
    on every training row (missing counts as a value: "present vs missing" is information). It
    can never split a tree, so it is left out rather than shown as a model feature with zero
    importance (e.g. a usage type the data does not have, 100% missing). Only the training rows
    decide: validation and test rows must not choose the model's inputs.
    """
    dead: dict[str, str] = {}
    for name in names:
        column = train[name]
        missing = column.isna()
        if missing.all():
            dead[name] = f"missing on all {len(train):,} training rows"
        elif not missing.any() and bool(column.eq(column.iloc[0]).all()):
            # Every value equal to the first is one distinct value, as ``nunique`` counts
            # them (``-0.0`` and ``0.0``, ``1`` and ``1.0`` alike), without hashing the
            # column: 4.0 s -> 0.9 s for 113 features of a million customers' 4.8M training rows
            # (2026-12-07).
            value = column.iloc[0]
            value = value.item() if isinstance(value, np.generic) else value  # plain repr
            dead[name] = f"constant ({value!r}) on all {len(train):,} training rows"
    return dead


def build_lgb_params(
    cfg: TrainConfig, interaction_groups: list[list[int]] | None = None
) -> dict[str, Any]:
    """Translate the train section into deterministic LightGBM parameters.

    Args:
        cfg: Train section.
        interaction_groups: LightGBM ``interaction_constraints`` (feature positions allowed to
            share a tree branch, :func:`build_family_interaction_groups`); ``None``: none.
    """
    constraints = (
        {}
        if interaction_groups is None
        else {"interaction_constraints": [list(group) for group in interaction_groups]}
    )
    return constraints | {
        "objective": "binary",
        "metric": cfg.early_stopping_metric,
        "learning_rate": cfg.learning_rate,
        "num_leaves": cfg.num_leaves,
        "max_depth": cfg.max_depth,
        "min_data_in_leaf": cfg.min_child_samples,
        "bagging_fraction": cfg.subsample,
        "bagging_freq": 1 if cfg.subsample < 1.0 else 0,
        "feature_fraction": cfg.colsample_bytree,
        "lambda_l2": cfg.reg_lambda,
        "scale_pos_weight": cfg.scale_pos_weight,
        "num_threads": cfg.num_threads,
        "seed": cfg.seed,
        # Same data + same seed -> the same model, so retraining is reproducible.
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }


def build_family_interaction_groups(catalog: pd.DataFrame) -> list[list[int]]:
    """Return one interaction group per feature family: the family's features plus timing.

    Features of one family may share a tree branch only with each other, so the model is a sum
    of one function per family (Lou et al. 2013, explainable boosting machines) and a family's
    summed TreeSHAP values are exactly its own function's deviation. Features that are never a
    reason (exposure and contract timing, catalog ``reason_eligible`` false) join every group:
    whether a customer *can* leave now gates every driver.

    Args:
        catalog: Feature catalog rows of the model's features, in model order.

    Returns:
        Feature positions per group, families in first-appearance order.
    """
    specs = catalog_specs(catalog)
    families = [spec.family for spec in specs]
    eligible = [bool(spec.reason_eligible) for spec in specs]
    timing = [j for j, keep in enumerate(eligible) if not keep]
    groups = []
    for family in dict.fromkeys(f for f, keep in zip(families, eligible, strict=True) if keep):
        members = [j for j, f in enumerate(families) if f == family and eligible[j]]
        groups.append(members + timing)
    return groups or [timing]


def fit_churn_model(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    catalog: pd.DataFrame,
    cfg: TrainConfig,
    sample: TrainingSample | None = None,
) -> ChurnModel:
    """Fit LightGBM on ``train`` (early stopping on ``validation``) and calibrate on validation.

    See :func:`fit_and_score_validation` (the same fit, with its validation raw scores).
    """
    return fit_and_score_validation(train, validation, catalog, cfg, sample)[0]


def fit_and_score_validation(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    catalog: pd.DataFrame,
    cfg: TrainConfig,
    sample: TrainingSample | None = None,
) -> tuple[ChurnModel, np.ndarray]:
    """Fit LightGBM on ``train`` (early stopping on ``validation``) and calibrate on validation.

    The calibrator is fitted on the booster's raw scores of the validation rows; they are
    returned beside the model, so a caller that reports validation metrics does not predict
    those rows a second time (``model.calibrator.transform(raw)`` equals
    ``model.predict_proba(validation)`` bit for bit).

    LightGBM sees every churned training row and, with ``train.negative_sample_rate`` below 1
    or a ``train.max_training_rows`` budget, a weighted sample of the retained ones
    (:func:`sample_training_negatives`); levels, typical values, early stopping and the
    calibrator use all their rows.

    Args:
        train: Training rows of the features frame (labels present). With ``sample``, it may
            hold only the keys, the label and the categorical features: all the fit reads of
            the rows it is not fitted on (their levels, labels, cutoffs and count), so a
            caller can leave the other columns of those rows unread
            (:func:`churn.model.backtest.refit_backtest_cutoff`); the typical values then come
            from the validation rows, which must all be later than the training rows.
        validation: Validation rows (labels present, both classes).
        catalog: Feature catalog (at least the frame's feature columns).
        cfg: Train section.
        sample: :func:`sample_training_rows` of ``train`` under ``cfg``, when the caller has
            drawn it already (it is drawn here otherwise), with every feature column.

    Returns:
        The calibrated model and its raw scores (log-odds) of the validation rows, in their
        order. Categorical levels come from train only, levels on fewer than
        ``cfg.min_category_count`` rows pooled (:mod:`churn.model.pooling`); typical values and
        categorical churn rates from the latest labeled cutoff of train and validation
        (:mod:`churn.model.reason_reference`).
    """
    feature_catalog = select_feature_catalog(train if sample is None else sample.source, catalog)
    names = tuple(feature_catalog["name"])
    categorical = list(feature_catalog.loc[feature_catalog["kind"] == "categorical", "name"])
    levels = learn_all_pooled_levels(train, categorical, cfg.min_category_count)
    typical, reference = build_reason_reference(
        _select_typical_rows(train, validation, names), names, levels, cfg.first_reason
    )
    val_y = label_array(validation)
    positives = int(label_array(train).sum())
    sample = sample_training_rows(train, cfg) if sample is None else sample
    cat_index = [names.index(name) for name in categorical]
    train_set = lgb.Dataset(
        prepare_features(sample.source, names, levels, sample.positions),
        sample.labels(),
        weight=sample.weights,
        feature_name=list(names),
        categorical_feature=cat_index,
    )
    validation_matrix = prepare_features(validation, names, levels)
    val_set = lgb.Dataset(validation_matrix, val_y, reference=train_set)
    lgb_params = build_lgb_params(
        cfg,
        build_family_interaction_groups(feature_catalog)
        if cfg.interaction_groups == "family"
        else None,
    )
    booster = lgb.train(
        lgb_params,
        train_set,
        num_boost_round=cfg.n_estimators,
        valid_sets=[val_set],
        callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)],
    )
    validation_raw = compute_raw_scores(booster, validation_matrix)  # LightGBM's, bit for bit
    model = ChurnModel(
        booster=booster,
        feature_names=names,
        categorical_levels=levels,
        calibrator=Calibrator.fit(validation_raw, val_y, cfg.calibration),
        catalog=feature_catalog,
        typical_values=typical,
        metadata={
            REFERENCE_KEY: reference,
            "min_category_count": cfg.min_category_count,
            "lgb_params": lgb_params,
            "best_iteration": int(booster.best_iteration or booster.current_iteration()),
            "calibration": cfg.calibration,
            "n_estimators": cfg.n_estimators,
            "early_stopping_rounds": cfg.early_stopping_rounds,
            "train_cutoffs": _cutoff_strings(train),
            "validation_cutoffs": _cutoff_strings(validation),
            "n_train": len(train),
            "n_validation": len(validation),
            "train_positives": positives,
            # The settings (what a refit must match) and what they drew on this split.
            "negative_sampling": describe_negative_sampling(cfg),
            "negative_sample_rate_applied": sample.rate,
            "n_train_fitted": sample.size,
            # The baseline fitted beside this model is capped by it (fit_sample_baseline).
            "baseline_max_rows": cfg.baseline_max_rows,
            "validation_positives": int(val_y.sum()),
            "lightgbm_version": lgb.__version__,
        },
    )
    return model, np.asarray(validation_raw, dtype=np.float64)


#: The sampling settings of a model fitted on every training row.
UNSAMPLED: Mapping[str, Any] = MappingProxyType(
    {"negative_sample_rate": 1.0, "max_training_rows": None}
)


def describe_negative_sampling(cfg: TrainConfig) -> dict[str, Any]:
    """Return the sampling settings a model records and a refit must share to be the same."""
    return {
        "negative_sample_rate": cfg.negative_sample_rate,
        "max_training_rows": cfg.max_training_rows,
    }


def _select_typical_rows(
    train: pd.DataFrame, validation: pd.DataFrame, names: tuple[str, ...]
) -> pd.DataFrame:
    """Return the rows typical values are taken from (:func:`select_reference_rows`), also
    when ``train`` holds only some feature columns (see :func:`fit_churn_model`)."""
    if all(name in train.columns for name in names):
        return select_reference_rows(train, validation)
    if len(train) and len(validation) and train["cutoff"].max() < validation["cutoff"].min():
        # The latest cutoff of train and validation is validation's: no training row is used.
        return select_reference_rows(validation)
    raise ModelError(
        "training rows without every feature column need validation rows, all of them later "
        "than the training rows, to take typical values from"
    )


def _cutoff_strings(frame: pd.DataFrame) -> list[str]:
    return [c.strftime("%Y-%m-%d") for c in sorted(pd.unique(pd.DatetimeIndex(frame["cutoff"])))]


def check_label_balance(labels: np.ndarray, min_positives: int, where: str) -> None:
    """Fail unless ``labels`` hold both classes and at least ``min_positives`` positives.

    Raises:
        ModelError: Naming the slice, its size and its positives.
    """
    positives = int(np.sum(labels))
    if positives in (0, len(labels)):
        raise ModelError(
            f"the {where} rows hold a single class ({len(labels)} rows, {positives} churned); "
            "a churn model needs both churned and retained customers"
        )
    if positives < min_positives:
        raise ModelError(
            f"the {where} rows hold only {positives} churned customer(s), fewer than "
            f"train.min_positives = {min_positives}; add history or lower train.min_positives"
        )


def build_importance(model: ChurnModel) -> pd.DataFrame:
    """Return gain and split importance per feature with its family, most important first."""
    frame = pd.DataFrame(
        {
            "feature": list(model.feature_names),
            "gain": model.booster.feature_importance("gain"),
            "split": model.booster.feature_importance("split"),
        }
    )
    families = dict(zip(model.catalog["name"], model.catalog["family"], strict=True))
    frame.insert(1, "family", frame["feature"].map(families))
    return frame.sort_values("gain", ascending=False, ignore_index=True)


def train_churn_models(
    features: pd.DataFrame, catalog: pd.DataFrame, params: Params, split: Split | None = None
) -> TrainResult:
    """Split, guard, (tune,) fit, calibrate and score the model and the baseline.

    Args:
        features: The features frame (``customer_id``, ``cutoff``, ``label``, features).
        catalog: The feature catalog.
        params: All parameters (train, label and ingest sections are used).
        split: The split of ``features`` when the caller made it already (the train runner
            splits the file's keys, then reads only the split's rows:
            :func:`churn.stages.train.read_training_rows`); made here otherwise.

    Returns:
        The training result; nothing is written or logged to MLflow. Features missing or
        constant on every training row are left out before anything is fitted, logged and
        listed in :attr:`TrainResult.dropped_features` and the model's metadata.

    Raises:
        ModelError: Too few cutoffs, a single class, too few positives, no live feature, or
            label leakage
            (one feature alone, or the whole model above ``train.max_plausible_auc``).
    """
    cfg = params.train
    if split is None:
        split = split_by_time(features, cfg, params.label, mode=params.ingest.mode)
    for note in split.notes:
        logger.info(note)
    train, validation, test = split.slices(features)
    logger.info("rows: %d train, %d validation, %d test", len(train), len(validation), len(test))
    train_y, val_y, test_y = (label_array(part) for part in (train, validation, test))
    check_label_balance(train_y, cfg.min_positives, "training")
    check_label_balance(val_y, 1, "validation")
    check_label_balance(test_y, 1, "test")
    catalog = select_feature_catalog(features, catalog)
    dropped = find_dead_features(train, list(catalog["name"]))
    for name, why in dropped.items():
        logger.warning("feature %s left out of the model: %s", name, why)
    if len(dropped) == len(catalog):
        raise ModelError("every feature is missing or constant on the training rows")
    if dropped:
        train, validation, test = (
            part.drop(columns=list(dropped)) for part in (train, validation, test)
        )
        catalog = catalog[~catalog["name"].isin(list(dropped))].reset_index(drop=True)
    feature_aucs = compute_single_feature_aucs(train, test, catalog, cfg.num_threads)
    families = dict(zip(catalog["name"], catalog["family"], strict=True))
    check_leakage(feature_aucs, cfg.leakage_auc_threshold, families)

    trials: list[dict[str, Any]] = []
    tuned: dict[str, Any] = {}
    if cfg.tuning.enabled:
        from churn.model.tuning import tune_hyperparameters

        tuned, trials = tune_hyperparameters(
            train, validation, catalog, cfg, fit=fit_and_score_validation
        )
        cfg = cfg.model_copy(update=tuned)
    sample = sample_training_rows(train, cfg)
    model, validation_raw = fit_and_score_validation(train, validation, catalog, cfg, sample)
    baseline = fit_sample_baseline(sample, catalog, cfg.seed, cfg.baseline_max_rows)
    predictions = test[["customer_id", "cutoff"]].reset_index(drop=True)
    predictions["label"] = test_y
    test_raw = model.predict_raw(test)  # once: calibrated and raw probabilities share it
    predictions["churn_probability"] = model.calibrator.transform(test_raw)
    predictions["raw_probability"] = 1.0 / (1.0 + np.exp(-test_raw))
    predictions["baseline_probability"] = predict_baseline(baseline, test)
    # The model is immutable: the test facts make a new one (same booster and calibrator).
    model = replace(
        model,
        metadata={
            **model.metadata,
            "split_mode": split.mode,
            "test_cutoffs": _cutoff_strings(test),
            "n_test": len(test),
            "test_positives": int(test_y.sum()),
            "label_horizon_days": params.label.horizon_days,
            "label_grace_days": params.label.grace_days,
            "tuned_params": tuned,
            "dropped_features": dropped,
        },
    )
    metrics = {
        # The validation rows' scores from the fit: the same numbers as predict_proba.
        "validation": summarize_predictions(val_y, model.calibrator.transform(validation_raw)),
        "test": summarize_predictions(test_y, predictions["churn_probability"]),
        "baseline_validation": summarize_predictions(val_y, predict_baseline(baseline, validation)),
        "baseline_test": summarize_predictions(test_y, predictions["baseline_probability"]),
    }
    logger.info(
        "test ROC AUC %.3f (baseline %.3f), PR AUC %.3f (baseline %.3f)",
        metrics["test"]["roc_auc"],
        metrics["baseline_test"]["roc_auc"],
        metrics["test"]["pr_auc"],
        metrics["baseline_test"]["pr_auc"],
    )
    importance = build_importance(model)
    high_auc_accepted = check_plausible_auc(metrics, importance, cfg)
    model = replace(model, metadata={**model.metadata, "high_auc_accepted": high_auc_accepted})
    return TrainResult(
        split=split,
        model=model,
        baseline=baseline,
        metrics=metrics,
        feature_aucs=feature_aucs,
        importance=importance,
        test_predictions=predictions,
        trials=trials,
        tuned_params=tuned,
        dropped_features=dropped,
    )
