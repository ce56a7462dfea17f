"""The trained churn model artifact: LightGBM booster + calibrator + the metadata to use it.

:class:`ChurnModel` is what training produces, what the MLflow pyfunc wraps and what scoring,
explanation and Spark use, so every consumer prepares inputs the same way:

* Columns are matched **by name** (:meth:`ChurnModel.prepare`): a reordered frame scores
  identically, extra columns are ignored, a missing feature is a :class:`ModelError` naming it.
  (A raw LightGBM ``Booster.predict`` on a numpy array would silently mis-score reordered columns.)
* Categorical features are encoded to integer codes with the levels seen in training; an unseen
  or missing level becomes NaN, which LightGBM routes as missing: no crash, no made-up level.
* Probabilities are calibrated (:class:`Calibrator`, isotonic or Platt) on a validation slice.
* Complete and immutable: the constructor receives everything (booster, calibrator, feature
  names, categorical levels, catalog, typical values, metadata) and checks it fits together; no
  attribute can be assigned afterwards, and the mappings are read-only views of private copies.
  A changed model is a new one (``dataclasses.replace``). The catalog frame is a validated copy
  (:func:`churn.domain.catalog.validate_catalog_frame`); pandas cannot freeze a frame, so callers
  must treat ``catalog`` as read-only.
* Saved as plain files (``model.txt``, ``churn_model.json``, ``catalog.csv``) plus
  ``manifest.json`` (the SHA-256 of every file): no pickle. :meth:`ChurnModel.load` trusts
  nothing: it checks every checksum before parsing anything, validates the JSON against the
  schema (:func:`validate_model_metadata`), and checks the LightGBM text structurally
  (:func:`check_lightgbm_text`) before LightGBM parses it, because a corrupt LightGBM file can
  abort the Python process (SIGABRT) instead of raising. Every failure is a
  :class:`ModelError` naming the file.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd

from churn.domain.catalog import validate_catalog_frame
from churn.domain.categories import code_levels
from churn.errors import ModelError
from churn.layout import MODEL_CATALOG_FILE, MODEL_META_FILE
from churn.model.matrix import ColumnSource, fill_columns, numeric_source, slice_of
from churn.model.pooling import POOLED_LEVEL
from churn.model.treeshap import (
    compute_contributions,
    compute_contributions_and_raw_scores,
    compute_raw_scores,
    start_compiling,
)
from churn.model.verification import (
    FORMAT_VERSION,
    check_lightgbm_text,
    compute_sha256,
    validate_model_catalog,
    validate_model_metadata,
    verify_manifest,
    write_manifest,
)

MODEL_FILE = "model.txt"


META_FILE = MODEL_META_FILE


CATALOG_FILE = MODEL_CATALOG_FILE


PROBABILITY_FLOOR = 1e-6


@dataclass(frozen=True)
class Calibrator:
    """Maps raw LightGBM scores (log-odds) to calibrated probabilities.

    Attributes:
        method: ``isotonic`` (piecewise-linear interpolation through the fitted isotonic
            steps) or ``platt`` (a logistic curve on the raw score).
        x: Isotonic knots (raw scores), increasing.
        y: Isotonic values at the knots.
        slope: Platt slope.
        intercept: Platt intercept.
    """

    method: Literal["isotonic", "platt", "identity"]
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    slope: float = 1.0
    intercept: float = 0.0

    @classmethod
    def fit(
        cls, raw_scores: np.ndarray, labels: np.ndarray, method: Literal["isotonic", "platt"]
    ) -> Calibrator:
        """Fit a calibrator on validation scores and labels.

        Args:
            raw_scores: Raw model scores (log-odds) of the validation rows.
            labels: 0/1 labels of the same rows.
            method: ``isotonic`` or ``platt``.

        Returns:
            The fitted calibrator.

        Raises:
            ModelError: If the labels hold a single class.
        """
        raw_scores = np.asarray(raw_scores, dtype=float)
        labels = np.asarray(labels, dtype=int)
        if np.unique(labels).size < 2:
            raise ModelError("cannot calibrate: the validation slice holds a single class")
        if method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
            iso.fit(raw_scores, labels)
            return cls(
                method="isotonic",
                x=tuple(float(v) for v in iso.X_thresholds_),
                y=tuple(float(v) for v in iso.y_thresholds_),
            )
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e6, max_iter=1000)
        lr.fit(raw_scores.reshape(-1, 1), labels)
        return cls(method="platt", slope=float(lr.coef_[0, 0]), intercept=float(lr.intercept_[0]))

    def transform(self, raw_scores: np.ndarray) -> np.ndarray:
        """Return calibrated probabilities for raw scores."""
        raw_scores = np.asarray(raw_scores, dtype=float)
        if self.method == "isotonic":
            probabilities = np.interp(raw_scores, np.asarray(self.x), np.asarray(self.y))
        elif self.method == "platt":
            probabilities = 1.0 / (1.0 + np.exp(-(self.slope * raw_scores + self.intercept)))
        else:
            probabilities = 1.0 / (1.0 + np.exp(-raw_scores))
        # An isotonic step can reach exactly 0 or 1; no customer is certain to stay or leave,
        # and a hard 0 makes the log loss of a single surprise infinite.
        return np.clip(probabilities, PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)

    def to_dict(self) -> dict[str, Any]:
        """Serialise to JSON-compatible types."""
        return {
            "method": self.method,
            "x": list(self.x),
            "y": list(self.y),
            "slope": self.slope,
            "intercept": self.intercept,
        }

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Calibrator:
        """Inverse of :meth:`to_dict`."""
        return cls(
            method=payload["method"],
            x=tuple(payload.get("x", ())),
            y=tuple(payload.get("y", ())),
            slope=float(payload.get("slope", 1.0)),
            intercept=float(payload.get("intercept", 0.0)),
        )


def encode_categories(values: pd.Series, levels: tuple[str, ...]) -> np.ndarray:
    """Encode a categorical column as float codes into ``levels``; unseen or missing -> NaN.

    With a pooled level among ``levels`` (:data:`churn.model.pooling.POOLED_LEVEL`), an unseen
    (non-missing) level gets the pooled level's code instead of NaN.
    """
    # Missing values never become text (their text form, "nan" or "<NA>", could collide with
    # a real level): code_levels gives them -1 before any lookup.
    codes = code_levels(values, levels, unseen_level=POOLED_LEVEL)
    out = codes.astype(np.float64)
    out[codes < 0] = np.nan
    return out


def prepare_features(
    frame: pd.DataFrame,
    feature_names: tuple[str, ...],
    categorical_levels: Mapping[str, tuple[str, ...]],
    positions: np.ndarray | None = None,
) -> np.ndarray:
    """Turn a feature frame into a booster's float matrix, matching columns by name.

    The one encoding used to train (before a :class:`ChurnModel` exists) and to apply a model
    (:meth:`ChurnModel.prepare`).

    Args:
        frame: Any frame holding at least ``feature_names`` (any order; extra columns are
            ignored).
        feature_names: Model input columns, in booster order.
        categorical_levels: Known levels of each categorical feature.
        positions: Encode only the rows at these positions of ``frame`` (``None``: all),
            gathered a chunk of rows at a time: the matrix of ``frame.iloc[positions]``
            without that copy of every column (a training sample,
            :class:`churn.model.sampling.TrainingSample`).

    Returns:
        A ``float64`` array of shape ``(rows, len(feature_names))``.

    Raises:
        ModelError: If required feature columns are missing, naming them, or a numeric feature
            holds values that are not numbers.
    """
    check_feature_columns(frame, feature_names)
    rows = len(frame) if positions is None else len(positions)
    sources = [
        feature_column_source(frame, name, categorical_levels.get(name), positions)
        for name in feature_names
    ]
    matrix = np.empty((rows, len(feature_names)), dtype=np.float64)
    return fill_columns(matrix, sources)


def check_feature_columns(frame: pd.DataFrame, feature_names: Sequence[str]) -> None:
    """Raise :class:`ModelError` naming the model input columns ``frame`` lacks, if any."""
    missing = [name for name in feature_names if name not in frame.columns]
    if missing:
        raise ModelError(
            f"input is missing {len(missing)} required feature column(s): {missing[:20]}"
        )


def feature_column_source(
    frame: pd.DataFrame,
    name: str,
    levels: tuple[str, ...] | None,
    positions: np.ndarray | None = None,
) -> ColumnSource:
    """Return the source of one model input column (:func:`churn.model.matrix.fill_columns`).

    A column of NumPy numbers (float, integer or boolean: every numeric feature the features
    stage writes) is read where it is, its rows gathered a chunk at a time and converted to
    ``float64`` as they are copied. A categorical column (its float codes into ``levels``) and
    any other column (nullable or Arrow-backed numbers, text holding numbers; pandas'
    ``to_numeric``) is converted whole when the source is made, so a column that is not
    numeric fails before anything is written. Those conversions each hold one ``float64``
    column until the matrix is filled: a frame of only such columns needs about the matrix's
    size again (the features stage writes NumPy floats, and a few categoricals).

    Args:
        frame: The rows.
        name: The column.
        levels: Its known levels when it is categorical (``None``: numeric).
        positions: Only the rows at these positions (``None``: all).

    Raises:
        ModelError: If a numeric feature holds values that are not numbers.
    """
    column = frame[name]
    if levels is not None:
        chosen = column if positions is None else column.iloc[positions]
        return slice_of(encode_categories(chosen, levels))
    try:
        return numeric_source(column, positions)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"feature {name!r} must be numeric: {exc}") from None


def learn_categorical_levels(frame: pd.DataFrame, columns: list[str]) -> dict[str, tuple[str, ...]]:
    """Return the sorted observed levels of each categorical column (missing excluded)."""
    return {col: tuple(sorted(str(v) for v in frame[col].dropna().unique())) for col in columns}


def _read_only(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return a read-only view of a private deep copy of ``mapping``."""
    return MappingProxyType(copy.deepcopy(dict(mapping)))


@dataclass(frozen=True)
class ChurnModel:
    """A trained, calibrated churn model and everything needed to apply and explain it.

    Attributes:
        booster: The LightGBM booster (binary objective; raw score = log-odds).
        feature_names: Model input columns, in booster order.
        categorical_levels: Known levels of each categorical feature (name -> levels).
        calibrator: Raw score -> calibrated probability.
        catalog: Feature catalog rows for ``feature_names`` (name, family, phase, kind, unit,
            description).
        typical_values: A typical value per feature among active training customers (median
            for numbers, most frequent level for categories), for reason sentences.
        metadata: Free-form training facts (cutoffs, params, metrics, versions).

    Raises:
        ModelError: At construction, if the booster is missing or its feature count differs
            from ``feature_names``, or a categorical level list names an unknown feature.
        DataContractError: At construction, if the catalog is invalid.
    """

    booster: lgb.Booster
    feature_names: tuple[str, ...]
    categorical_levels: Mapping[str, tuple[str, ...]]
    calibrator: Calibrator
    catalog: pd.DataFrame
    typical_values: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.booster, lgb.Booster):
            raise ModelError(f"a ChurnModel needs a trained LightGBM booster, got {self.booster!r}")
        names = tuple(str(name) for name in self.feature_names)
        if self.booster.num_feature() != len(names):
            raise ModelError(
                f"the booster has {self.booster.num_feature()} features but {len(names)} feature "
                "names were given"
            )
        unknown = sorted(set(self.categorical_levels) - set(names))
        if unknown:
            raise ModelError(f"categorical levels given for unknown features: {unknown}")
        levels = {name: tuple(self.categorical_levels[name]) for name in self.categorical_levels}
        # Frozen dataclass: __post_init__ normalises through object.__setattr__, the only writes.
        object.__setattr__(self, "feature_names", names)
        object.__setattr__(self, "categorical_levels", MappingProxyType(levels))
        object.__setattr__(self, "catalog", validate_catalog_frame(self.catalog, "model catalog"))
        object.__setattr__(self, "typical_values", _read_only(self.typical_values))
        object.__setattr__(self, "metadata", _read_only(self.metadata))

    @property
    def categorical_features(self) -> list[str]:
        """Names of categorical features, in model order."""
        return [name for name in self.feature_names if name in self.categorical_levels]

    def prepare(self, frame: pd.DataFrame) -> np.ndarray:
        """Turn a feature frame into the booster's float matrix (see :func:`prepare_features`)."""
        return prepare_features(frame, self.feature_names, self.categorical_levels)

    def predict_raw(self, frame: pd.DataFrame) -> np.ndarray:
        """Return raw scores (log-odds) for each row.

        LightGBM's own numbers bit for bit; large calls are walked by
        :func:`churn.model.treeshap.compute_raw_scores`' kernel (about twice LightGBM's speed).
        """
        return self.predict_raw_matrix(self.prepare(frame))

    def predict_raw_matrix(
        self, matrix: np.ndarray, *, population_rows: int | None = None
    ) -> np.ndarray:
        """Return raw scores of a matrix :meth:`prepare` built (see :meth:`predict_raw`).

        Args:
            matrix: The booster's float matrix of some rows.
            population_rows: The rows of the population ``matrix`` is a batch of, when it is
                one (:func:`churn.model.treeshap.compute_raw_scores`: the same numbers, the
                backend chosen by the population's size).
        """
        return compute_raw_scores(self.booster, matrix, population_rows=population_rows)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Return calibrated churn probabilities for each row."""
        return self.calibrator.transform(self.predict_raw(frame))

    def contributions(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Return exact TreeSHAP contributions (log-odds) and the base value per row.

        ``contributions.sum(axis=1) + base == predict_raw(frame)`` for every row. Computed by
        :mod:`churn.model.treeshap` (the same values as LightGBM's ``pred_contrib`` and
        ``shap.TreeExplainer``, about ten times faster on shallow models); it uses
        ``pred_contrib`` itself for calls too small to repay compiling its kernel and where its
        tables would not fit.

        Returns:
            ``(contributions, base)`` with shapes ``(n, n_features)`` and ``(n,)``.
        """
        return compute_contributions(self.booster, self.prepare(frame))

    def start_compiling(
        self, rows: int, *, contributions: bool = True, raw_scores: bool = True
    ) -> threading.Thread | None:
        """Start compiling the kernels that scoring ``rows`` rows will use, on a thread.

        See :func:`churn.model.treeshap.start_compiling` (``contributions=False``: predictions
        only; ``raw_scores=False``: explanations only); ``None`` when no kernel would be used.
        """
        return start_compiling(
            self.booster, rows, contributions=contributions, raw_scores=raw_scores
        )

    def contributions_and_raw_of_matrix(
        self, matrix: np.ndarray, *, population_rows: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return :meth:`contributions` and :meth:`predict_raw_matrix` of a matrix :meth:`prepare`
        built, from one walk of the trees when the kernel explains them (the same numbers,
        :func:`churn.model.treeshap.compute_contributions_and_raw_scores`)."""
        return compute_contributions_and_raw_scores(
            self.booster, matrix, population_rows=population_rows
        )

    def contributions_reference(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Return LightGBM's own ``pred_contrib`` TreeSHAP values (the reference kernel)."""
        raw = self.booster.predict(self.prepare(frame), pred_contrib=True)
        return raw[:, :-1], raw[:, -1]

    def save(self, directory: str | Path) -> None:
        """Write the model files and their manifest into ``directory`` (created if needed).

        Callers wanting atomicity write into a temporary directory and rename it
        (``churn.io.atomic_directory``). A caller adding files to the directory afterwards (the
        baseline, the registry record) calls :func:`write_manifest` again to cover them.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / MODEL_FILE))
        self.catalog.to_csv(directory / CATALOG_FILE, index=False)
        meta = {
            "format_version": FORMAT_VERSION,
            "model_sha256": compute_sha256(directory / MODEL_FILE),
            "feature_names": list(self.feature_names),
            "categorical_levels": {k: list(v) for k, v in self.categorical_levels.items()},
            "calibrator": self.calibrator.to_dict(),
            "typical_values": dict(self.typical_values),
            "metadata": dict(self.metadata),
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        write_manifest(directory)

    @classmethod
    def load(cls, directory: str | Path) -> ChurnModel:
        """Load a saved model, verifying every file before anything is parsed.

        Order: the manifest's checksums (every listed file, and the model files must be listed),
        then the metadata schema, then the LightGBM text's structure, and only then LightGBM.

        Raises:
            ModelError: Naming the file, if a file is missing, unlisted or changed after
                training, the metadata does not fit the schema or the booster, or the LightGBM
                text is malformed.
        """
        directory = Path(directory)
        verify_manifest(directory, required=(MODEL_FILE, META_FILE, CATALOG_FILE))
        meta_path, model_path = directory / META_FILE, directory / MODEL_FILE
        try:
            meta = json.loads(meta_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{meta_path} is not valid JSON: {exc}") from None
        validate_model_metadata(meta, str(meta_path))
        try:
            model_text = model_path.read_text()
        except UnicodeDecodeError:
            raise ModelError(f"{model_path} is not a LightGBM text model (not UTF-8)") from None
        check_lightgbm_text(model_text, str(model_path), tuple(meta["feature_names"]))
        try:
            booster = lgb.Booster(model_str=model_text)
        except lgb.basic.LightGBMError as exc:
            raise ModelError(f"{model_path} cannot be parsed by LightGBM: {exc}") from None
        try:
            catalog = pd.read_csv(directory / CATALOG_FILE)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise ModelError(f"{directory / CATALOG_FILE} is not a readable CSV: {exc}") from None
        validate_model_catalog(catalog, meta, str(directory / CATALOG_FILE))
        return cls(
            booster=booster,
            feature_names=tuple(meta["feature_names"]),
            categorical_levels={k: tuple(v) for k, v in meta["categorical_levels"].items()},
            calibrator=Calibrator.from_dict(meta["calibrator"]),
            catalog=catalog,
            typical_values=meta.get("typical_values", {}),
            metadata=meta.get("metadata", {}),
        )
