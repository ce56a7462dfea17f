"""The logistic-regression baseline: the same features, a simple model, fitted on train only.

A churn model earns its complexity only if it beats this; train logs both, evaluate scores both
on the same test rows. scikit-learn fits it; what is kept is plain numbers
(:class:`LogisticBaseline`: imputation medians, scaler statistics, category levels,
coefficients, intercept), saved as JSON (``baseline.json``) beside the ChurnModel and applied
with numpy. Nothing is unpickled: a pickled pipeline would run whatever code the file names.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churn.errors import ModelError
from churn.model.split import label_array

BASELINE_FORMAT = "churn-logistic-baseline"
BASELINE_FORMAT_VERSION = 1
MISSING_LEVEL = "missing"


@dataclass(frozen=True)
class LogisticBaseline:
    """A fitted logistic regression over imputed, scaled numbers and one-hot categories.

    Attributes:
        numeric: Numeric feature names, in design-matrix order.
        medians: Training median of each numeric feature (imputes a missing value; 0 for a
            column that was entirely missing in training).
        means: Training mean of each imputed numeric feature (scaler centre).
        scales: Training standard deviation of each imputed numeric feature (1 where constant).
        categorical: Categorical feature names, after the numeric block.
        levels: Per categorical feature, the one-hot levels seen in training (as text; a
            missing value is the level ``missing``; an unseen level sets no column).
        coefficients: One coefficient per design column (numeric, then each level).
        intercept: The intercept (log-odds).
    """

    numeric: tuple[str, ...]
    medians: tuple[float, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]
    categorical: tuple[str, ...]
    levels: tuple[tuple[str, ...], ...]
    coefficients: tuple[float, ...]
    intercept: float

    @property
    def feature_names(self) -> list[str]:
        """Input columns, numeric then categorical."""
        return [*self.numeric, *self.categorical]

    def to_dict(self) -> dict[str, Any]:
        """Serialise to JSON-compatible types."""
        return {
            "format": BASELINE_FORMAT,
            "format_version": BASELINE_FORMAT_VERSION,
            "numeric": list(self.numeric),
            "medians": list(self.medians),
            "means": list(self.means),
            "scales": list(self.scales),
            "categorical": list(self.categorical),
            "levels": [list(levels) for levels in self.levels],
            "coefficients": list(self.coefficients),
            "intercept": self.intercept,
        }

    @classmethod
    def from_dict(cls, payload: Any, source: str = "baseline") -> LogisticBaseline:
        """Validate and rebuild a baseline from :meth:`to_dict` output.

        Args:
            payload: The parsed JSON.
            source: Name of the file it came from, for error messages.

        Raises:
            ModelError: If a field is missing, of the wrong type or length, or not finite.
        """

        def fail(problem: str) -> ModelError:
            return ModelError(f"{source} is not a valid baseline: {problem}")

        if not isinstance(payload, dict) or payload.get("format") != BASELINE_FORMAT:
            raise fail(f"'format' must be {BASELINE_FORMAT!r}")
        if payload.get("format_version") != BASELINE_FORMAT_VERSION:
            raise fail(f"unsupported format_version {payload.get('format_version')!r}")

        def names(key: str) -> tuple[str, ...]:
            value = payload.get(key)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise fail(f"{key!r} must be a list of names")
            return tuple(value)

        def numbers(key: str, length: int) -> tuple[float, ...]:
            value = payload.get(key)
            if not isinstance(value, list) or len(value) != length:
                raise fail(f"{key!r} must be a list of {length} numbers")
            if not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in value
            ):
                raise fail(f"{key!r} holds a value that is not a finite number")
            return tuple(float(v) for v in value)

        numeric, categorical = names("numeric"), names("categorical")
        levels = payload.get("levels")
        if (
            not isinstance(levels, list)
            or len(levels) != len(categorical)
            or not all(
                isinstance(ls, list) and all(isinstance(v, str) for v in ls) for ls in levels
            )
        ):
            raise fail("'levels' must hold one list of level names per categorical feature")
        width = len(numeric) + sum(len(ls) for ls in levels)
        intercept = payload.get("intercept")
        if not isinstance(intercept, int | float) or not math.isfinite(intercept):
            raise fail("'intercept' must be a finite number")
        scales = numbers("scales", len(numeric))
        if any(s <= 0 for s in scales):
            raise fail("'scales' must be positive")
        return cls(
            numeric=numeric,
            medians=numbers("medians", len(numeric)),
            means=numbers("means", len(numeric)),
            scales=scales,
            categorical=categorical,
            levels=tuple(tuple(ls) for ls in levels),
            coefficients=numbers("coefficients", width),
            intercept=float(intercept),
        )

    def design_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """Return the standardised, one-hot design matrix of ``frame`` (columns by name)."""
        missing = [column for column in self.feature_names if column not in frame.columns]
        if missing:
            raise ModelError(f"baseline input is missing column(s): {missing[:20]}")
        blocks = []
        if self.numeric:
            try:
                values = frame[list(self.numeric)].apply(pd.to_numeric, errors="raise")
            except (TypeError, ValueError) as exc:
                raise ModelError(f"baseline numeric input is not numeric: {exc}") from None
            numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
            numbers = np.where(np.isnan(numbers), np.asarray(self.medians), numbers)
            blocks.append((numbers - np.asarray(self.means)) / np.asarray(self.scales))
        for name, levels in zip(self.categorical, self.levels, strict=True):
            column = frame[name]
            text = column.astype("object").where(column.notna(), MISSING_LEVEL).astype(str)
            blocks.append(
                (text.to_numpy()[:, None] == np.asarray(levels, dtype=object)[None, :]).astype(
                    np.float64
                )
            )
        if not blocks:
            return np.empty((len(frame), 0))
        return np.hstack(blocks)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Return churn probabilities of the rows of ``frame``."""
        logits = self.design_matrix(frame) @ np.asarray(self.coefficients) + self.intercept
        return 1.0 / (1.0 + np.exp(-logits))


def fit_baseline(
    train: pd.DataFrame,
    feature_catalog: pd.DataFrame,
    seed: int = 0,
    sample_weight: np.ndarray | None = None,
) -> LogisticBaseline:
    """Fit a logistic regression on the catalog's features, using the training rows only.

    Numbers: median imputation and scaling; categories: a ``missing`` level and one-hot
    encoding that ignores levels unseen in training. Categories are compared as text, so an
    integer-coded category column works the same as a string one.

    Args:
        train: Training rows (``label`` present).
        feature_catalog: One row per feature to use (``name``, ``kind``), e.g. a model's catalog.
        seed: Random state of the solver.
        sample_weight: Row weights of the loss (negative downsampling,
            :func:`churn.model.sampling.sample_training_rows`); ``None``: every row weighs 1.

    Returns:
        The fitted baseline as plain numbers; it selects its columns by name.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    is_cat = feature_catalog["kind"] == "categorical"
    numeric = list(feature_catalog.loc[~is_cat, "name"])
    categorical = list(feature_catalog.loc[is_cat, "name"])
    # keep_empty_features: an all-missing column stays (as zeros) instead of vanishing.
    numeric_steps = make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()
    )
    categorical_steps = make_pipeline(
        # An optional column absent from the user's files is all missing: keep it (one level).
        SimpleImputer(strategy="constant", fill_value=MISSING_LEVEL, keep_empty_features=True),
        OneHotEncoder(handle_unknown="ignore"),
    )
    prepare = ColumnTransformer(
        [("numeric", numeric_steps, numeric), ("categorical", categorical_steps, categorical)]
    )
    pipeline = Pipeline(
        [("prepare", prepare), ("model", LogisticRegression(max_iter=2000, random_state=seed))]
    )
    inputs = train[numeric + categorical].copy()
    for name in categorical:
        # As text: the exported levels are text, so fit and apply must see the same values.
        present = inputs[name].notna()
        inputs[name] = inputs[name].astype("object").map(str).where(present, np.nan)
    pipeline.fit(inputs, label_array(train), model__sample_weight=sample_weight)
    fitted = pipeline.named_steps["prepare"].named_transformers_
    model = pipeline.named_steps["model"]
    if numeric:
        imputer, scaler = fitted["numeric"][0], fitted["numeric"][1]
        medians, means, scales = imputer.statistics_, scaler.mean_, scaler.scale_
    else:
        medians = means = scales = np.empty(0)
    levels: tuple[tuple[str, ...], ...] = ()
    if categorical:
        levels = tuple(tuple(str(v) for v in cats) for cats in fitted["categorical"][1].categories_)
    return LogisticBaseline(
        numeric=tuple(numeric),
        medians=tuple(float(v) for v in medians),
        means=tuple(float(v) for v in means),
        scales=tuple(float(v) for v in scales),
        categorical=tuple(categorical),
        levels=levels,
        coefficients=tuple(float(v) for v in model.coef_[0]),
        intercept=float(model.intercept_[0]),
    )


def predict_baseline(baseline: LogisticBaseline, frame: pd.DataFrame) -> np.ndarray:
    """Return the baseline's churn probabilities, matching columns by name.

    Raises:
        ModelError: If ``frame`` lacks a column the baseline was fitted on.
    """
    return baseline.predict_proba(frame)


def save_baseline(baseline: LogisticBaseline, path: str | Path) -> None:
    """Write the baseline as JSON to ``path`` (callers write into a staging directory)."""
    Path(path).write_text(json.dumps(baseline.to_dict(), indent=2) + "\n")


def load_baseline(path: str | Path) -> LogisticBaseline:
    """Read and validate a baseline written by :func:`save_baseline`.

    The caller verifies the file's checksum first (:func:`churn.model.artifact.verify_manifest`).

    Raises:
        ModelError: If the file is missing, not JSON, or not a valid baseline; naming it.
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"baseline not found at {path}; run 'churn train' first")
    try:
        payload = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from None
    return LogisticBaseline.from_dict(payload, source=str(path))
