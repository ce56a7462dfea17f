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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the files holding slow or Spark tests first, each file's tests in their order.

    ``make test`` hands whole files to two workers (``--dist loadfile``) in collection order
    (``--no-loadscope-reorder``; xdist's default would start with the files holding the most
    tests, so the few-test files that each run a whole pipeline came last and one of them ended
    the run alone). Starting with the longest files lets the many short ones fill the gaps.
    """
    heavy = {item.path for item in items
             if item.get_closest_marker("slow") or item.get_closest_marker("spark")}
    items.sort(key=lambda item: item.path not in heavy)  # stable: order within a file is kept
