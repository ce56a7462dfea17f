"""The logistic-regression baseline: the same features, a simple model, fitted on train only.

A churn model earns its complexity only if it beats this; train logs both, evaluate scores both
on the same test rows. It is saved with joblib beside the ChurnModel (``baseline.joblib``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churn.errors import ModelError
from churn.model.split import label_array

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


def fit_baseline(train: pd.DataFrame, feature_catalog: pd.DataFrame, seed: int = 0) -> Pipeline:
    """Fit a logistic regression on the catalog's features, using the training rows only.

    Numbers: median imputation and scaling; categories: a ``missing`` level and one-hot
    encoding that ignores levels unseen in training.

    Args:
        train: Training rows (``label`` present).
        feature_catalog: One row per feature to use (``name``, ``kind``), e.g. a model's catalog.
        seed: Random state of the solver.

    Returns:
        The fitted pipeline; it selects its columns by name.
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
        SimpleImputer(strategy="constant", fill_value="missing"),
        OneHotEncoder(handle_unknown="ignore"),
    )
    prepare = ColumnTransformer(
        [("numeric", numeric_steps, numeric), ("categorical", categorical_steps, categorical)]
    )
    pipeline = Pipeline(
        [("prepare", prepare), ("model", LogisticRegression(max_iter=2000, random_state=seed))]
    )
    pipeline.fit(train[numeric + categorical], label_array(train))
    return pipeline


def predict_baseline(baseline: Pipeline, frame: pd.DataFrame) -> np.ndarray:
    """Return the baseline's churn probabilities, matching columns by name.

    Raises:
        ModelError: If ``frame`` lacks a column the baseline was fitted on.
    """
    columns = list(baseline.feature_names_in_)
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ModelError(f"baseline input is missing column(s): {missing[:20]}")
    return baseline.predict_proba(frame[columns])[:, 1]
