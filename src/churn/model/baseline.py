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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churn.domain.categories import code_category_texts, code_levels
from churn.errors import ModelError
from churn.model.matrix import ColumnSource, fill_columns, numeric_source
from churn.model.metrics import median_of_present
from churn.model.sampling import TrainingSample, hash_row_keys
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

    def design_matrix(
        self, frame: pd.DataFrame, *, sparse: bool = False, positions: np.ndarray | None = None
    ) -> Any:
        """Return the standardised, one-hot design matrix of ``frame`` (columns by name).

        Args:
            frame: Rows to encode.
            sparse: Return a SciPy CSR matrix instead of a dense array (the fit uses it when
                the one-hot block is wide, :data:`NEWTON_MAX_COLUMNS`).
            positions: Encode only the rows at these positions of ``frame`` (``None``: all),
                without a copy of those rows (a training sample).
        """
        from scipy.sparse import csr_matrix, hstack

        rows = len(frame) if positions is None else len(positions)
        codes = self.encode_levels(frame, positions)
        width = len(self.numeric)
        if not sparse:
            # Filled in place: the numbers are read straight into their block, so the matrix
            # is the only array of its size (a stacked copy doubled the fit's peak).
            design = np.zeros((rows, width + sum(len(levels) for levels in self.levels)))
            self.standardise_numbers(frame, positions, out=design[:, :width])
            offset = width
            for levels, code in zip(self.levels, codes, strict=True):
                seen = np.flatnonzero(code >= 0)
                design[seen, code[seen] + offset] = 1.0
                offset += len(levels)
            return design
        numbers = self.standardise_numbers(frame, positions)
        # One-hot cells of every categorical: (row, the level's design column) for each level
        # seen in training; an unseen level sets no cell.
        cells_rows, cells_columns, offset = [np.empty(0, np.int64)], [np.empty(0, np.int64)], 0
        for levels, code in zip(self.levels, codes, strict=True):
            seen = np.flatnonzero(code >= 0)
            cells_rows.append(seen)
            cells_columns.append(code[seen] + offset)
            offset += len(levels)
        cells = (np.concatenate(cells_rows), np.concatenate(cells_columns))
        one_hot = csr_matrix((np.ones(len(cells[0])), cells), shape=(rows, offset))
        return hstack([csr_matrix(numbers), one_hot], format="csr")

    def standardise_numbers(
        self,
        frame: pd.DataFrame,
        positions: np.ndarray | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Return the numeric block: numbers imputed by the median, centred and scaled.

        Computed in place in one array (``out`` when given: a block of a larger matrix), with
        the values of ``(where(isnan, median, x) - mean) / scale``.
        """
        self.check_columns(frame)
        if not self.numeric:
            return np.empty((len(frame) if positions is None else len(positions), 0))
        numbers = read_numbers(frame, self.numeric, positions, out)
        np.copyto(numbers, np.asarray(self.medians), where=np.isnan(numbers))
        numbers -= np.asarray(self.means)
        numbers /= np.asarray(self.scales)
        return numbers

    def encode_levels(
        self, frame: pd.DataFrame, positions: np.ndarray | None = None
    ) -> list[np.ndarray]:
        """Return each categorical column as level positions (-1: a level unseen in training),
        of every row or of the rows at ``positions``."""
        self.check_columns(frame)
        return [
            code_levels(take_column(frame, name, positions), levels, MISSING_LEVEL)
            for name, levels in zip(self.categorical, self.levels, strict=True)
        ]

    def check_columns(self, frame: pd.DataFrame) -> None:
        """Raise :class:`ModelError` naming the input columns ``frame`` lacks."""
        missing = [column for column in self.feature_names if column not in frame.columns]
        if missing:
            raise ModelError(f"baseline input is missing column(s): {missing[:20]}")

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Return churn probabilities of the rows of ``frame``.

        The one-hot block is never built: a row's categorical term is its level's coefficient,
        looked up from the level positions (an unseen level adds nothing).
        """
        coefficients = np.asarray(self.coefficients)
        width = len(self.numeric)
        logits = self.standardise_numbers(frame) @ coefficients[:width] + self.intercept
        for levels, code in zip(self.levels, self.encode_levels(frame), strict=True):
            block = coefficients[width : width + len(levels)]
            logits = logits + np.where(code >= 0, block[np.maximum(code, 0)], 0.0)
            width += len(levels)
        return 1.0 / (1.0 + np.exp(-logits))


def take_column(frame: pd.DataFrame, name: str, positions: np.ndarray | None) -> pd.Series:
    """Return column ``name`` of ``frame``, or its values at ``positions``."""
    return frame[name] if positions is None else frame[name].iloc[positions]


def read_numbers(
    frame: pd.DataFrame,
    names: tuple[str, ...],
    positions: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Return the named columns as a float64 array (missing as NaN), column by column.

    Args:
        frame: The rows.
        names: Numeric columns.
        positions: Only the rows at these positions (``None``: all).
        out: The array to fill (rows x names), e.g. a block of a design matrix.

    Raises:
        ModelError: If a column is not numeric.
    """
    rows = len(frame) if positions is None else len(positions)
    # Column-major, as the frame's own array was: each column is filled in one run, and a
    # product with the coefficients sums in the order it always did (the last bit of the
    # baseline's probabilities depends on it).
    values = np.empty((rows, len(names)), dtype=np.float64, order="F") if out is None else out

    def source(name: str) -> ColumnSource:
        try:
            return numeric_source(frame[name], positions)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"baseline numeric input is not numeric: {exc}") from None

    # ``out`` is a row-major design block when the fit builds its matrix: fill_columns writes
    # it a block of whole rows at a time (the same values, without a cache miss per cell).
    return fill_columns(values, [source(name) for name in names])


def list_levels(column: pd.Series) -> tuple[str, ...]:
    """Return the sorted level texts of a categorical column, :data:`MISSING_LEVEL` among them
    when a value is missing.

    Categories are compared as text, so an integer-coded column works like a string one
    (:mod:`churn.domain.categories`).
    """
    positions, texts = code_category_texts(column)
    found = set(texts.tolist())
    if (positions < 0).any():
        found.add(MISSING_LEVEL)
    return tuple(sorted(found))


#: Widest design matrix (numeric columns plus one-hot levels) fitted by Newton's method.
#: Newton-Cholesky (scikit-learn's ``newton-cholesky``) forms and factors the ``p x p`` Hessian
#: of the ``p`` design columns at each step: at 1,000 columns that is 8 MB and a fraction of a
#: second, and it reaches the optimum in a handful of steps. L-BFGS stopped early in a flat
#: valley on the 100k simulated business (intercept -1.78 where the optimum is -4.19, the same
#: AUC within 0.0005) and cost 1.5-1.7x the CPU there (docs/training.md). Wider designs (a
#: categorical with thousands of levels) are fitted by L-BFGS on a sparse matrix, whose cost
#: per step grows with the non-zero cells, not with the square of the width.
NEWTON_MAX_COLUMNS = 1_000


def learn_encoding(
    train: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    positions: np.ndarray | None = None,
) -> LogisticBaseline:
    """Return the baseline's encoding learned on ``train`` (its rows at ``positions``, when
    given), with zero coefficients.

    Numbers: the median of the present values imputes a missing one (0 for a column missing on
    every row), then the imputed column is centred on its mean and divided by its standard
    deviation (1 for a constant column). Categories: the sorted levels seen in training as text
    (a missing value is the level ``missing``).
    """
    medians: list[float] = []
    means: list[float] = []
    scales: list[float] = []
    if numeric:
        numbers = read_numbers(train, tuple(numeric), positions)
        for column in numbers.T:
            median = median_of_present(column)
            median = 0.0 if math.isnan(median) else median
            imputed = np.where(np.isnan(column), median, column)
            # A constant column (or none at all) is centred but not scaled.
            constant = len(imputed) == 0 or float(imputed.max()) == float(imputed.min())
            spread = 0.0 if constant else float(imputed.std())
            medians.append(median)
            means.append(float(imputed.mean()) if len(imputed) else 0.0)
            scales.append(spread if spread > 0.0 else 1.0)
    levels = tuple(list_levels(take_column(train, name, positions)) for name in categorical)
    width = len(numeric) + sum(len(names) for names in levels)
    return LogisticBaseline(
        numeric=tuple(numeric),
        medians=tuple(medians),
        means=tuple(means),
        scales=tuple(scales),
        categorical=tuple(categorical),
        levels=levels,
        coefficients=(0.0,) * width,
        intercept=0.0,
    )


def fit_baseline(
    train: pd.DataFrame,
    feature_catalog: pd.DataFrame,
    seed: int = 0,
    sample_weight: np.ndarray | None = None,
    positions: np.ndarray | None = None,
) -> LogisticBaseline:
    """Fit a logistic regression on the catalog's features, using the training rows only.

    Numbers: median imputation and scaling; categories: a ``missing`` level and one-hot
    encoding that ignores levels unseen in training (:func:`learn_encoding`). The design matrix
    is built by the same code that applies the baseline (:meth:`LogisticBaseline.design_matrix`),
    so fitting and scoring cannot encode a row differently. scikit-learn's
    ``LogisticRegression`` (L2 penalty, ``C = 1``) fits it: by Newton-Cholesky up to
    :data:`NEWTON_MAX_COLUMNS` design columns, by L-BFGS on a sparse matrix beyond.

    Args:
        train: Training rows (``label`` present).
        feature_catalog: One row per feature to use (``name``, ``kind``), e.g. a model's catalog.
        seed: Random state of the solver.
        sample_weight: Row weights of the loss (negative downsampling,
            :func:`churn.model.sampling.sample_training_rows`); ``None``: every row weighs 1.
        positions: Fit on the rows of ``train`` at these positions only (a training sample's
            :attr:`~churn.model.sampling.TrainingSample.positions`), read column by column
            without a copy of those rows; ``None``: every row.

    Returns:
        The fitted baseline as plain numbers; it selects its columns by name.
    """
    from sklearn.linear_model import LogisticRegression

    is_cat = feature_catalog["kind"] == "categorical"
    numeric = list(feature_catalog.loc[~is_cat, "name"])
    categorical = list(feature_catalog.loc[is_cat, "name"])
    encoding = learn_encoding(train, numeric, categorical, positions)
    wide = len(encoding.coefficients) > NEWTON_MAX_COLUMNS
    model = LogisticRegression(
        solver="lbfgs" if wide else "newton-cholesky", max_iter=2000, random_state=seed
    )
    labels = label_array(train) if positions is None else label_array(train)[positions]
    design = encoding.design_matrix(train, sparse=wide, positions=positions)
    model.fit(design, labels, sample_weight=sample_weight)
    return replace(
        encoding,
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


def fit_sample_baseline(
    sample: TrainingSample, catalog: pd.DataFrame, seed: int, max_rows: int | None = None
) -> LogisticBaseline:
    """Fit the logistic baseline on the classifier's sample with its weights (a fair
    comparison; its solver then costs no more than LightGBM on large data), reading the kept
    rows in place (:func:`churn.model.baseline.fit_baseline`'s ``positions``).

    Past ``max_rows`` (``train.baseline_max_rows``) rows it is fitted on a seeded uniform
    share of the sample, their weights scaled so that they sum to the sample's total: the loss
    is then an unbiased estimate of the whole sample's, with the same weight against the L2
    penalty. The share is the ``max_rows`` sample rows with the smallest hash of (customer,
    cutoff) under a key of its own (:func:`churn.model.sampling.hash_row_keys`), so the same
    rows whatever the frame's order or the ids' type. A linear model of about a hundred
    columns has converged long before that many rows, while its Newton solver costs rows x
    columns squared per step: at a million customers (1.4M sample rows) 250,000 rows took the
    fit 70.2 s -> 6.8 s with test ROC AUC 0.86430 -> 0.86414 and PR AUC 0.30534 -> 0.30502
    (2026-12-04, docs/training.md).
    """
    positions, weights = sample.positions, sample.weights
    if max_rows is not None and sample.size > max_rows:
        # A key of its own, so the share does not follow the negative sampling's draws.
        keys = sample.source[["customer_id", "cutoff"]]
        keys = keys if sample.positions is None else keys.iloc[sample.positions]
        hashes = hash_row_keys(keys, f"baseline-{seed}")
        kept = np.sort(np.argsort(hashes, kind="stable")[:max_rows])
        full = np.ones(sample.size) if weights is None else np.asarray(weights, dtype=float)
        weights = full[kept] * (full.sum() / full[kept].sum())
        positions = kept if positions is None else positions[kept]
    return fit_baseline(
        sample.source,
        catalog,
        seed=seed,
        sample_weight=weights,
        positions=positions,
    )


def count_baseline_rows(max_rows: int | None, sample_rows: int | None) -> int | None:
    """Return how many rows :func:`fit_sample_baseline` fits on: ``sample_rows`` capped at
    ``max_rows`` (``None`` when the sample's size is not known)."""
    if sample_rows is None:
        return None
    return sample_rows if max_rows is None else min(sample_rows, max_rows)
