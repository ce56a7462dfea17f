"""The rolling backtest: the split replayed as if each of the last cutoffs were the latest, the
model and the baseline refitted there, and both measured on its test rows.

:func:`run_rolling_backtest` scores the exported model where its refit would reproduce it
(:func:`is_backtest_fit`) and refits the other cutoffs (:func:`refit_backtest_cutoff`, one task
that reads nothing but its arguments, so the evaluate stage can run it in worker processes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churn.config import Params, TrainConfig
from churn.domain.modes import Mode
from churn.errors import ModelError
from churn.model.baseline import count_baseline_rows, fit_sample_baseline, predict_baseline
from churn.model.fit import (
    UNSAMPLED,
    build_lgb_params,
    describe_negative_sampling,
    fit_churn_model,
)
from churn.model.metrics import TOP_DECILE, compute_lift, compute_roc_auc, summarize_predictions
from churn.model.sampling import sample_training_rows
from churn.model.split import Split, label_array, split_by_time, take_file_rows

if TYPE_CHECKING:
    from churn.model.artifact import ChurnModel
    from churn.model.baseline import LogisticBaseline

logger = logging.getLogger(__name__)


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
    features: pd.DataFrame, params: Params, cutoff: pd.Timestamp, split: Split | None = None
) -> tuple[Split, tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame], str | None]:
    """Replay the split as if ``cutoff`` were the latest labeled one.

    Args:
        features: The rows to split (at least the keys and the label).
        params: All parameters.
        cutoff: The backtest cutoff.
        split: That split of ``features``, when the caller has made it already
            (:func:`split_backtest_cutoffs`); default: made here.

    Returns:
        ``(split, (train, validation, test), skip reason or None)``.

    Raises:
        ModelError: If the split rules leave an empty slice.
    """
    cfg = build_backtest_config(params)
    if split is None:
        split = split_by_time(features, cfg, params.label, last_cutoff=cutoff)
    parts = split.slices(features)
    return split, parts, _backtest_skip_reason(*parts, cfg.min_positives)


def split_backtest_cutoffs(
    features: pd.DataFrame, params: Params, cutoffs: Sequence[pd.Timestamp]
) -> dict[pd.Timestamp, Split | None]:
    """Return the split of each backtest cutoff (:func:`split_backtest_cutoff`), ``None`` where
    the split rules leave an empty slice (the refit then reports it).

    The evaluate stage splits its keys once for both what it plans from them (the refits'
    memory, the cutoffs the exported model answers): at a million customers a split of the
    keys takes about half a second.
    """
    cfg = build_backtest_config(params)
    splits: dict[pd.Timestamp, Split | None] = {}
    for cutoff in cutoffs:
        try:
            splits[cutoff] = split_by_time(features, cfg, params.label, last_cutoff=cutoff)
        except ModelError:
            splits[cutoff] = None
    return splits


@dataclass(frozen=True)
class ScoredTestRows:
    """The exported model's raw scores and the baseline's probabilities on a cutoff's test
    rows, named by their positions in the features file (:attr:`Split.test`).

    The backtest scores the exported model's own cutoff with it; when those test rows are the
    evaluation's, :func:`churn.model.evaluation.evaluate_models` takes the scores from here
    instead of predicting the same rows again (at a million customers 618k rows: about 12 s of
    the evaluate stage's own work before its refits start).
    """

    positions: np.ndarray
    raw: np.ndarray
    baseline: np.ndarray


def summarize_backtest_cutoff(
    cutoff: pd.Timestamp,
    parts: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
    model: ChurnModel,
    baseline: LogisticBaseline,
    scores: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Return one backtest entry: the model's and the baseline's metrics on the test rows.

    Args:
        cutoff: The backtest cutoff.
        parts: Its (train, validation, test) slices.
        model: The model fitted at the cutoff.
        baseline: The baseline fitted there.
        scores: The model's raw scores and the baseline's probabilities on the test rows, when
            the caller has them (:func:`score_exported_cutoffs`); default: predicted here.
    """
    train, _, test = parts
    labels = label_array(test)
    raw, baseline_probabilities = scores or (model.predict_raw(test),
                                             predict_baseline(baseline, test))
    probabilities = model.calibrator.transform(raw)
    summary = summarize_predictions(labels, probabilities)
    return {
        "cutoff": cutoff.strftime("%Y-%m-%d"),
        "n_train": len(train),
        "n_test": summary.pop("n"),
        **summary,
        "lift_top_decile": compute_lift(labels, probabilities, TOP_DECILE),
        "baseline_roc_auc": compute_roc_auc(labels, baseline_probabilities),
    }


def refit_backtest_cutoff(
    features: pd.DataFrame,
    catalog: pd.DataFrame,
    params: Params,
    cutoff: pd.Timestamp,
    read_rows: Callable[[np.ndarray], pd.DataFrame] | None = None,
) -> dict[str, Any]:
    """Refit the model and the baseline as of ``cutoff`` and return its backtest entry.

    This is one task of the backtest: it reads nothing but its arguments, so it runs the
    same in this process or in a worker process (:mod:`churn.stages.fit_workers`).

    Args:
        features: The rows up to ``cutoff`` (at least), on a ``RangeIndex``: every feature
            column, or, with ``read_rows``, only the keys, the label and the categorical
            features (all that the split, the sample and the fit read of every row).
        catalog: The feature catalog.
        params: All parameters.
        cutoff: The backtest cutoff.
        read_rows: Returns the rows at the given positions of ``features`` (increasing) with
            every feature column, indexed by those positions. With it only the rows the fits
            and the metrics use are read in full: the sampled training rows, validation and
            test (at a million customers about a third of the training rows instead of all of
            them); the entry is the same.

    Returns:
        The entry (metrics), or ``{"cutoff", "skipped": reason}`` when the slices are too thin.
    """
    entry: dict[str, Any] = {"cutoff": cutoff.strftime("%Y-%m-%d")}
    cfg = build_backtest_config(params)
    try:
        split, parts, reason = split_backtest_cutoff(features, params, cutoff)
        if reason is None:
            train, validation, test = parts
            sample = sample_training_rows(train, cfg)
            if read_rows is not None:
                sampled = sample.index.to_numpy(dtype=np.int64)
                wide = read_rows(np.union1d(np.union1d(sampled, split.validation), split.test))
                sample = replace(sample, source=take_file_rows(wide, sampled), positions=None)
                validation = take_file_rows(wide, split.validation)
                test = take_file_rows(wide, split.test)
                parts = (train, validation, test)
            model = fit_churn_model(train, validation, catalog, cfg, sample=sample)
            baseline = fit_sample_baseline(sample, catalog, cfg.seed, cfg.baseline_max_rows)
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

    sample_rows = meta.get("n_train_fitted", meta.get("n_train"))

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
        # The exported baseline is the refit's when both fit the same rows of the sample (a
        # model saved before the cap existed fitted all of them; one saved before sampling
        # existed fitted every training row).
        and count_baseline_rows(meta.get("baseline_max_rows"), sample_rows)
        == count_baseline_rows(cfg.baseline_max_rows, sample_rows)
    )


def run_rolling_backtest(
    features: pd.DataFrame,
    catalog: pd.DataFrame,
    params: Params,
    *,
    fitted: tuple[ChurnModel, LogisticBaseline] | None = None,
    refit: Callable[[list[pd.Timestamp]], list[dict[str, Any]]] | None = None,
    rows: pd.DataFrame | None = None,
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
        rows: The rows ``fitted`` is scored on when ``features`` holds only the file's keys
            (``cutoff``, ``label``; then ``refit`` is required): some of the file's rows with
            the model's features, indexed by file position
            (:func:`churn.model.split.take_file_rows`). A cutoff whose test rows are not all
            among them is refitted. Default: ``features`` itself.

    Returns:
        ``(entries, notes)``: one entry per cutoff (metrics, or ``skipped`` with a reason).
    """
    plan = score_exported_cutoffs(features, params, fitted=fitted, rows=rows)
    if refit is None:
        results = [refit_backtest_cutoff(features, catalog, params, c) for c in plan.pending]
    else:
        results = refit(plan.pending) if plan.pending else []
    return finish_backtest(plan, results)


@dataclass(frozen=True)
class BacktestPlan:
    """The backtest's cutoffs, those the exported model already answers, scored, and the rest.

    Attributes:
        cutoffs: The backtest's cutoffs (:func:`select_backtest_cutoffs`), in order.
        entries: Cutoff -> entry of the cutoffs scored with the exported model.
        notes: :func:`select_backtest_cutoffs`' notes (kept only when there is no cutoff).
        scored: Cutoff -> the exported model's scores behind its entry.
    """

    cutoffs: list[pd.Timestamp]
    entries: dict[pd.Timestamp, dict[str, Any]]
    notes: list[str]
    scored: dict[pd.Timestamp, ScoredTestRows] = field(default_factory=dict)

    @property
    def pending(self) -> list[pd.Timestamp]:
        """The cutoffs still to refit, in order."""
        return [cutoff for cutoff in self.cutoffs if cutoff not in self.entries]


def score_exported_cutoffs(
    features: pd.DataFrame,
    params: Params,
    *,
    fitted: tuple[ChurnModel, LogisticBaseline] | None = None,
    rows: pd.DataFrame | None = None,
    splits: Mapping[pd.Timestamp, Split | None] | None = None,
) -> BacktestPlan:
    """Select the backtest's cutoffs and score those the exported model answers.

    The first half of :func:`run_rolling_backtest` (same arguments; :func:`finish_backtest`
    is the second): a caller that holds ``rows`` only for this can let them go before the
    refits run, as the evaluate stage does (its refit workers run for minutes at 1M customers).
    ``splits``: :func:`split_backtest_cutoffs` of ``features`` and ``params`` when the caller
    has them; default: made here.
    """
    cutoffs, notes = select_backtest_cutoffs(features, params)
    entries: dict[pd.Timestamp, dict[str, Any]] = {}
    scored: dict[pd.Timestamp, ScoredTestRows] = {}
    if fitted is not None:
        if splits is None:
            splits = split_backtest_cutoffs(features, params, cutoffs)
        for cutoff in cutoffs:
            made = splits[cutoff]
            if made is None:
                continue  # the refit reports it
            split, parts, reason = split_backtest_cutoff(features, params, cutoff, made)
            if reason is None and is_backtest_fit(fitted[0], split, params):
                if rows is not None:
                    try:
                        parts = (parts[0], parts[1], take_file_rows(rows, split.test))
                    except KeyError:
                        continue  # its test rows were not read: refitted instead
                logger.info("backtest %s: the exported model is this fit", f"{cutoff:%Y-%m-%d}")
                model, baseline = fitted
                test = parts[2]
                scores = model.predict_raw(test), predict_baseline(baseline, test)
                entries[cutoff] = summarize_backtest_cutoff(cutoff, parts, model, baseline, scores)
                scored[cutoff] = ScoredTestRows(np.asarray(split.test, dtype=np.int64), *scores)
    return BacktestPlan(cutoffs, entries, notes, scored)


def finish_backtest(
    plan: BacktestPlan, results: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Return :func:`run_rolling_backtest`'s ``(entries, notes)`` from ``plan`` and the
    refits' ``results`` (one per :attr:`BacktestPlan.pending` cutoff, in order)."""
    if not plan.cutoffs:
        return [], plan.notes
    entries = {**plan.entries, **dict(zip(plan.pending, results, strict=True))}
    ordered = [entries[cutoff] for cutoff in plan.cutoffs]
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
