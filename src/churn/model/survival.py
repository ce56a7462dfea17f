"""The survival head: one LightGBM hazard model over decision points, risk at every horizon.

:func:`fit_survival_head` expands the customer rows into person-periods
(:func:`churn.model.hazard.expand_person_periods`), fits a binary LightGBM on them (customer
features plus :data:`~churn.model.hazard.PERIOD_FEATURES`) with early stopping on the validation
person-periods, combines the hazards into ``P(churn within H)`` for every horizon
(:func:`~churn.model.hazard.combine_hazards`) and calibrates each horizon on the validation rows
(:class:`~churn.model.horizons.HorizonCalibration`).

Censoring keeps the out-of-time split honest: a training row's person-periods stop where its
outcome is observed *and* before the first validation cutoff (minus the grace period), a
validation row's before the first test cutoff, so no outcome after the next slice's start is
learned from. Calibration at a horizon uses validation rows observed at that horizon.

Saved pickle-free beside the classifier: ``survival_model.txt`` (LightGBM text) and
``survival_head.json`` (features, levels, calibration, metadata), covered by the model
folder's ``manifest.json`` and verified before parsing like the classifier
(:mod:`churn.model.verification`).

Explanations (decided in ``docs/survival.md``): TreeSHAP of the hazard logit at the customer's
**next decision row** (decision 0, at ``days_to_renewal``), which exists for every customer,
also one whose next decision lies beyond every horizon. It answers "how likely is this
customer to leave when the contract lets them", the behavioural part; the period features and
contract-timing features have contributions too, and are excluded from reasons by the catalog's
``reason_eligible`` flag.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from churn.config import LabelConfig, TrainConfig
from churn.errors import ModelError
from churn.model.artifact import (
    check_feature_columns,
    feature_column_source,
    prepare_features,
)
from churn.model.hazard import (
    PERIOD_FEATURES,
    build_decision_schedule,
    combine_hazards,
    expand_person_periods,
    find_term_months,
    label_at_horizon,
)
from churn.model.horizons import HorizonCalibration
from churn.model.matrix import fill_columns, slice_of
from churn.model.pooling import learn_all_pooled_levels
from churn.model.sampling import choose_negative_rate, sample_training_negatives
from churn.model.treeshap import compute_contributions, compute_raw_scores
from churn.model.verification import check_lightgbm_text, verify_manifest

logger = logging.getLogger(__name__)

SURVIVAL_MODEL_FILE = "survival_model.txt"
SURVIVAL_META_FILE = "survival_head.json"
SURVIVAL_FORMAT_VERSION = 1

CHURN_TIME_COLUMNS = ("days_to_churn", "observed_days")
"""Label columns the head trains on (:func:`churn.labels.build.build_labels`)."""


@dataclass(frozen=True)
class SurvivalHead:
    """A fitted hazard model and the per-horizon calibration.

    Attributes:
        booster: LightGBM binary model of the hazard at one decision (raw score = log-odds).
        customer_features: The customer feature columns, in booster order (period features
            follow them).
        categorical_levels: Known levels of each categorical customer feature.
        calibration: Per-horizon Platt curves; its horizons are the head's horizons.
        metadata: Training facts (rows, person-periods, events, off-schedule churns).
    """

    booster: lgb.Booster
    customer_features: tuple[str, ...]
    categorical_levels: Mapping[str, tuple[str, ...]]
    calibration: HorizonCalibration
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = self.feature_names
        if self.booster.num_feature() != len(names):
            raise ModelError(
                f"the hazard booster has {self.booster.num_feature()} features, the head names "
                f"{len(names)}"
            )
        object.__setattr__(self, "customer_features", tuple(self.customer_features))
        object.__setattr__(
            self,
            "categorical_levels",
            MappingProxyType({k: tuple(v) for k, v in self.categorical_levels.items()}),
        )
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Booster inputs: customer features then :data:`PERIOD_FEATURES`."""
        return (*self.customer_features, *PERIOD_FEATURES)

    @property
    def horizons(self) -> tuple[int, ...]:
        """Horizons in days, increasing."""
        return self.calibration.horizons

    def predict_raw_horizons(self, frame: pd.DataFrame) -> np.ndarray:
        """Return uncalibrated ``P(churn within H)``, shape ``(len(frame), len(horizons))``."""
        schedule = build_decision_schedule(frame, max(self.horizons))
        matrix = build_person_period_matrix(
            frame, self.customer_features, self.categorical_levels, schedule
        )
        return self.combine_raw_horizons(schedule, matrix, len(frame))

    def combine_raw_horizons(
        self, schedule: pd.DataFrame, matrix: np.ndarray, n_rows: int
    ) -> np.ndarray:
        """Return :meth:`predict_raw_horizons` of ``n_rows`` customer rows from their whole
        decision schedule (to the longest horizon) and its booster matrix, built already."""
        hazards = predict_hazards(self.booster, matrix)
        return combine_hazards(
            hazards, schedule["row"], schedule["days_to_decision"], n_rows, self.horizons
        )

    def predict_horizons(self, frame: pd.DataFrame) -> np.ndarray:
        """Return calibrated ``P(churn within H)`` per row and horizon (non-decreasing)."""
        return self.calibration.transform(self.predict_raw_horizons(frame))

    def next_decision_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """Return the booster matrix of each row's next decision (decision 0)."""
        customer = prepare_features(frame, self.customer_features, self.categorical_levels)
        days = pd.to_numeric(frame["days_to_renewal"], errors="coerce").to_numpy("float64")
        periods = (
            frame["billing_period"] if "billing_period" in frame else pd.Series([None] * len(frame))
        )
        term = find_term_months(periods.reset_index(drop=True)).astype("float64")
        period = np.column_stack([np.zeros(len(frame)), np.nan_to_num(days, nan=0.0), term])
        return np.hstack([customer, period])

    def contributions(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """TreeSHAP of the hazard log-odds at each row's next decision (see the module doc).

        Returns:
            ``(contributions, base)``: shape ``(n, len(feature_names))`` and ``(n,)``; rows add
            up to the booster's raw score on :meth:`next_decision_matrix`.
        """
        return compute_contributions(self.booster, self.next_decision_matrix(frame))

    def save(self, directory: str | Path) -> None:
        """Write ``survival_model.txt`` and ``survival_head.json`` (the caller re-writes the
        folder's manifest)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / SURVIVAL_MODEL_FILE))
        meta = {
            "format_version": SURVIVAL_FORMAT_VERSION,
            "customer_features": list(self.customer_features),
            "period_features": list(PERIOD_FEATURES),
            "categorical_levels": {k: list(v) for k, v in self.categorical_levels.items()},
            "calibration": self.calibration.to_dict(),
            "metadata": dict(self.metadata),
        }
        (directory / SURVIVAL_META_FILE).write_text(json.dumps(meta, indent=2, default=str))

    @classmethod
    def load(cls, directory: str | Path) -> SurvivalHead:
        """Load a saved head, checking the manifest, the JSON and the LightGBM text first.

        Raises:
            ModelError: Naming the file, if a file is unlisted or changed, the JSON does not
                fit the schema, or the LightGBM text is malformed.
        """
        directory = Path(directory)
        verify_manifest(directory, required=(SURVIVAL_MODEL_FILE, SURVIVAL_META_FILE))
        meta_path = directory / SURVIVAL_META_FILE
        try:
            meta = json.loads(meta_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{meta_path} is not valid JSON: {exc}") from None
        validate_survival_metadata(meta, str(meta_path))
        text = (directory / SURVIVAL_MODEL_FILE).read_text()
        names = (*meta["customer_features"], *meta["period_features"])
        check_lightgbm_text(text, str(directory / SURVIVAL_MODEL_FILE), tuple(names))
        try:
            booster = lgb.Booster(model_str=text)
        except lgb.basic.LightGBMError as exc:
            raise ModelError(f"{directory / SURVIVAL_MODEL_FILE} cannot be parsed: {exc}") from None
        return cls(
            booster=booster,
            customer_features=tuple(meta["customer_features"]),
            categorical_levels={k: tuple(v) for k, v in meta["categorical_levels"].items()},
            calibration=HorizonCalibration.from_dict(meta["calibration"]),
            metadata=meta.get("metadata", {}),
        )


def predict_hazards(booster: lgb.Booster, matrix: np.ndarray) -> np.ndarray:
    """Return the hazard booster's probabilities on ``matrix``, equal to ``booster.predict``
    bit for bit.

    The raw scores come from :func:`churn.model.treeshap.compute_raw_scores` (the numba
    prediction kernel on large calls: a million customers' person-periods took 17 s in
    LightGBM's ``predict`` in the score stage alone) and go through the logistic function as
    LightGBM's binary objective does (``1 / (1 + exp(-x))`` with the C library's ``exp``, which
    SciPy's ``expit`` also uses; NumPy's own ``exp`` differs in the last bit for about 2% of
    values). The head is fitted with LightGBM's default ``sigmoid`` of 1
    (:func:`fit_survival_head`).
    """
    from scipy.special import expit

    if not len(matrix):
        return np.empty(0)
    return expit(compute_raw_scores(booster, matrix))


def has_survival_head(directory: str | Path) -> bool:
    """Whether a model folder holds a survival head."""
    return (Path(directory) / SURVIVAL_META_FILE).is_file()


def validate_survival_metadata(meta: Any, source: str) -> None:
    """Check ``survival_head.json`` against its schema.

    Raises:
        ModelError: Naming ``source`` and the field.
    """

    def fail(problem: str) -> ModelError:
        return ModelError(f"{source} is not a valid survival head description: {problem}")

    if not isinstance(meta, dict) or meta.get("format_version") != SURVIVAL_FORMAT_VERSION:
        raise fail(f"format_version must be {SURVIVAL_FORMAT_VERSION}")
    names = meta.get("customer_features")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise fail("'customer_features' must be a non-empty list of names")
    if meta.get("period_features") != list(PERIOD_FEATURES):
        raise fail(f"'period_features' must be {list(PERIOD_FEATURES)}")
    levels = meta.get("categorical_levels")
    if not isinstance(levels, dict) or any(
        name not in names or not isinstance(v, list) or not all(isinstance(x, str) for x in v)
        for name, v in levels.items()
    ):
        raise fail("'categorical_levels' must map customer features to lists of texts")
    calibration = meta.get("calibration")
    if not isinstance(calibration, dict):
        raise fail("'calibration' is missing")
    values = [*calibration.get("slopes", []), *calibration.get("intercepts", [])]
    if not all(isinstance(v, int | float) and np.isfinite(v) for v in values):
        raise fail("the calibration holds a value that is not a finite number")
    HorizonCalibration.from_dict(calibration)


#: The column of a validation schedule that keeps each decision's position through
#: :func:`churn.model.hazard.expand_person_periods` (private to :func:`fit_survival_head`).
_SCHEDULE_POSITION = "_schedule_position"


def build_person_period_matrix(
    frame: pd.DataFrame,
    feature_names: Sequence[str],
    categorical_levels: Mapping[str, tuple[str, ...]],
    schedule: pd.DataFrame,
) -> np.ndarray:
    """Return the booster matrix of person-periods: customer features, then the period columns.

    Each person-period's customer features are its owner row's, gathered from the frame's
    columns straight into the ``float32`` matrix a chunk of rows at a time
    (:func:`churn.model.matrix.fill_columns`), so neither a ``float64`` copy of the slice nor
    one of its encoded owners is made. The values are those of encoding every row
    (:func:`churn.model.artifact.prepare_features`, row by row independent), indexing the
    person-periods' rows and converting to ``float32``. Encoding the owners first and copying
    their rows out took 7.9 s of a million customers' train (four calls; cProfile, 2026-12-07).

    Args:
        frame: Customer rows (features by name).
        feature_names: Customer feature columns, in booster order.
        categorical_levels: Known levels of each categorical feature.
        schedule: Person-periods: ``row`` (position in ``frame``) and :data:`PERIOD_FEATURES`.
    """
    check_feature_columns(frame, feature_names)
    rows = schedule["row"].to_numpy()
    sources = [
        feature_column_source(frame, name, categorical_levels.get(name), rows)
        for name in feature_names
    ]
    sources += [slice_of(schedule[name].to_numpy(dtype="float64")) for name in PERIOD_FEATURES]
    matrix = np.empty((len(rows), len(sources)), dtype="float32")
    return fill_columns(matrix, sources)


def censor_before(
    frame: pd.DataFrame, next_start: pd.Timestamp | None, grace_days: int
) -> np.ndarray:
    """Return ``observed_days`` cut so that no outcome after ``next_start - grace`` is used."""
    observed = frame["observed_days"].astype("float64").to_numpy()
    if next_start is None:
        return observed
    cutoffs = pd.DatetimeIndex(pd.to_datetime(frame["cutoff"], utc=True))
    room = np.asarray((next_start - cutoffs) / pd.Timedelta(days=1), dtype="float64") - grace_days
    return np.minimum(observed, np.maximum(room, 0.0))


def horizon_labels(
    frame: pd.DataFrame, horizons: Sequence[int], observed: np.ndarray
) -> np.ndarray:
    """Return labels per horizon (NaN unobserved) from the churn time and ``observed`` days."""
    days = frame["days_to_churn"].astype("float64").to_numpy()
    return np.column_stack([label_at_horizon(days, observed, h) for h in horizons])


def sample_person_periods(
    frame: pd.DataFrame, rows: pd.DataFrame, cfg: TrainConfig
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Keep the person-periods of every customer row with an event and a share of the others.

    The classifier's negative downsampling (:func:`churn.model.sampling.sample_training_negatives`,
    ``train.negative_sample_rate`` and ``train.max_training_rows``) applied to customer rows
    before their periods are fitted: a row counts as positive when any of its periods holds the
    churn event, so every event is kept; a kept row's periods all weigh the row's ``n / k``.
    Sampling whole rows, not periods, keeps each kept customer's sequence of decisions intact.
    The horizons are calibrated afterwards on the unsampled validation rows.

    Args:
        frame: The training rows (``customer_id``, ``cutoff``) the periods were expanded from.
        rows: Person-periods (``row``: position in ``frame``; ``event``).
        cfg: Train section.

    Returns:
        The kept person-periods (original order) and their weights (``None``: nothing sampled).
    """
    if cfg.negative_sample_rate == 1.0 and cfg.max_training_rows is None:
        return rows, None
    row = rows["row"].to_numpy()
    present = np.flatnonzero(np.bincount(row, minlength=len(frame)) > 0)
    has_event = np.bincount(row, weights=rows["event"].to_numpy(), minlength=len(frame)) > 0
    keys = pd.DataFrame(
        {
            "customer_id": frame["customer_id"].iloc[present].to_numpy(),
            "cutoff": frame["cutoff"].iloc[present].reset_index(drop=True),
            "label": has_event[present].astype(int),
            "position": present,
        }
    )
    positives = int(keys["label"].sum())
    rate = choose_negative_rate(positives, len(keys) - positives, cfg)
    sample = sample_training_negatives(keys, rate, cfg.seed)
    if sample.weights is None:
        return rows, None
    row_weight = np.zeros(len(frame))
    row_weight[sample.rows["position"].to_numpy()] = sample.weights
    period_weight = row_weight[row]
    kept = period_weight > 0
    return rows.loc[kept].reset_index(drop=True), period_weight[kept]


def fit_survival_head(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    customer_features: Sequence[str],
    categorical: Sequence[str],
    cfg: TrainConfig,
    label_cfg: LabelConfig,
    lgb_params: Mapping[str, Any],
    *,
    validation_start: pd.Timestamp | None = None,
    test_start: pd.Timestamp | None = None,
) -> SurvivalHead:
    """Fit the hazard model on person-periods and calibrate every horizon on validation.

    Args:
        train: Training rows: features plus :data:`CHURN_TIME_COLUMNS`.
        validation: Validation rows, the same columns.
        customer_features: Customer feature columns (the classifier's live features).
        categorical: Which of them are categorical.
        cfg: Train section (rounds, early stopping, ``min_category_count``: categorical levels
            on fewer training rows are pooled exactly as for the classifier, so both models
            read a rare or unseen level as :data:`churn.model.pooling.POOLED_LEVEL`).
        label_cfg: Label section (``horizons_days``, ``grace_days``).
        lgb_params: LightGBM parameters (:func:`churn.model.fit.build_lgb_params`).
        validation_start: First validation cutoff: training outcomes are censored before it.
        test_start: First test cutoff: validation outcomes used to fit the booster are
            censored before it.

    Returns:
        The fitted head.

    Raises:
        ModelError: If a churn-time column is missing, or a slice has no event.
    """
    missing = [c for c in CHURN_TIME_COLUMNS if c not in train or c not in validation]
    if missing:
        raise ModelError(f"the survival head needs the label columns {missing} (churn label)")
    horizons = label_cfg.horizons_days
    longest = max(horizons)
    names = tuple(customer_features)
    # The classifier's own rule on the same training slice (churn.model.fit): the head then
    # reads every categorical exactly like the classifier, and cannot memorise rare levels.
    levels = learn_all_pooled_levels(train, list(categorical), cfg.min_category_count)
    parts, matrices = {}, {}
    for part, frame, next_start in (
        ("train", train, validation_start),
        ("validation", validation, test_start),
    ):
        schedule = build_decision_schedule(frame, longest)
        observed = censor_before(frame, next_start, label_cfg.grace_days)
        if part == "validation":
            # The validation rows' whole schedule is encoded once: calibration predicts all of
            # it, and early stopping reads its censored person-periods, a subset of its rows
            # (encoding those on their own repeated the work for most of the rows).
            schedule = schedule.assign(**{_SCHEDULE_POSITION: np.arange(len(schedule))})
        rows, off_schedule = expand_person_periods(
            schedule, frame["days_to_churn"].to_numpy("float64"), observed
        )
        weights = None
        if part == "train":
            rows, weights = sample_person_periods(frame, rows, cfg)
            matrices[part] = build_person_period_matrix(frame, names, levels, rows)
        else:
            whole = build_person_period_matrix(frame, names, levels, schedule)
            validation_schedule = (schedule, whole)
            matrices[part] = whole[rows[_SCHEDULE_POSITION].to_numpy()]
        events = rows["event"].to_numpy()
        if events.sum() == 0:
            raise ModelError(f"the {part} person-periods hold no churn event")
        parts[part] = (events, off_schedule, weights)
        logger.info(
            "survival head %s: %d rows -> %d person-periods, %d events, %d off-schedule churns",
            part,
            len(frame),
            len(rows),
            int(events.sum()),
            off_schedule,
        )
    all_names = [*names, *PERIOD_FEATURES]
    cat_index = [all_names.index(name) for name in levels]
    # The datasets hold the only references to their matrices, so LightGBM's binned copies
    # replace them once constructed (free_raw_data) instead of living beside them.
    train_set = lgb.Dataset(
        matrices.pop("train"),
        parts["train"][0],
        weight=parts["train"][2],
        feature_name=all_names,
        categorical_feature=cat_index,
        free_raw_data=True,
    )
    val_set = lgb.Dataset(matrices.pop("validation"), parts["validation"][0], reference=train_set)
    booster = lgb.train(
        dict(lgb_params),
        train_set,
        num_boost_round=cfg.n_estimators,
        valid_sets=[val_set],
        callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)],
    )
    unfitted = SurvivalHead(
        booster=booster,
        customer_features=names,
        categorical_levels=levels,
        calibration=HorizonCalibration(horizons, (1.0,) * len(horizons), (0.0,) * len(horizons)),
    )
    # Calibration reads each horizon's full observed outcome on validation (as the classifier's
    # calibrator does at horizon_days); docs/survival.md discusses the overlap with test time.
    raw = unfitted.combine_raw_horizons(*validation_schedule, len(validation))
    del validation_schedule
    labels = horizon_labels(validation, horizons, validation["observed_days"].astype("float64"))
    calibration = HorizonCalibration.fit(raw, labels, horizons)
    return SurvivalHead(
        booster=booster,
        customer_features=names,
        categorical_levels=levels,
        calibration=calibration,
        metadata={
            "horizons_days": list(horizons),
            "best_iteration": int(booster.best_iteration or booster.current_iteration()),
            "train_person_periods": len(parts["train"][0]),
            "train_events": int(parts["train"][0].sum()),
            "validation_person_periods": len(parts["validation"][0]),
            "off_schedule_churns_train": parts["train"][1],
            "off_schedule_churns_validation": parts["validation"][1],
        },
    )
