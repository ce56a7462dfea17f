"""Test helpers: cached random feature runs and comparison with the references."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from churn.config import FeaturesConfig
from churn.features.build import FeatureResult, build_features
from support.synthetic import all_keys, make_tables

CFG = FeaturesConfig()
SEEDS = range(20)


@functools.cache
def random_case(seed: int) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, FeatureResult]:
    """Tables, the all-keys population and the features for one seed (computed once)."""
    tables = make_tables(seed)
    population = all_keys(tables)
    return tables, population, build_features(tables, population, FeaturesConfig())


def assert_family_matches(result: FeatureResult, expected: pd.DataFrame, family: str) -> None:
    """Compare a family's columns with a reference frame indexed by (customer_id, cutoff)."""
    names = result.catalog.loc[result.catalog["family"] == family, "name"].tolist()
    assert sorted(names) == sorted(expected.columns)
    got = result.frame.set_index(["customer_id", "cutoff"])
    for name in names:
        actual = got[name]
        wanted = expected[name].reindex(actual.index)
        if actual.dtype == "float64":
            np.testing.assert_allclose(
                actual.to_numpy(),
                wanted.astype("float64").to_numpy(),
                rtol=1e-9,
                atol=1e-9,
                equal_nan=True,
                err_msg=name,
            )
        else:
            assert actual.dtype == "str", name
            pd.testing.assert_series_equal(
                actual, wanted.astype("str"), check_names=False, obj=name
            )


def row(result: FeatureResult, customer_id: str, cutoff: str) -> pd.Series:
    """The feature row of one key."""
    frame = result.frame
    mask = (frame["customer_id"] == customer_id) & (
        frame["cutoff"] == pd.Timestamp(cutoff, tz="UTC")
    )
    assert mask.sum() == 1
    return frame[mask].iloc[0]
