"""Shared fixtures: a tiny feature frame and a tiny trained model (see tests/support/tiny.py)."""

from __future__ import annotations

import pandas as pd
import pytest
from support.tiny import fit_tiny_model, make_feature_frame

from churn.model.artifact import ChurnModel


@pytest.fixture
def feature_frame() -> pd.DataFrame:
    """A synthetic features frame with 4 cutoffs x 400 customers."""
    return make_feature_frame()


@pytest.fixture
def tiny_model(feature_frame: pd.DataFrame) -> ChurnModel:
    """A small real LightGBM ChurnModel fitted on ``feature_frame``."""
    return fit_tiny_model(feature_frame)
