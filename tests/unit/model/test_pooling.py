"""Tests for churn.model.pooling: rare levels pooled, unseen levels join them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support.tiny import TINY_CATALOG

from churn.config import Params
from churn.model.artifact import encode_categories
from churn.model.fit import fit_churn_model
from churn.model.pooling import POOLED_LEVEL, learn_pooled_levels, pool_values


def test_levels_below_the_minimum_count_are_pooled_and_counted_naively():
    values = pd.Series(["a"] * 5 + ["b"] * 3 + ["c"] * 2 + [None] * 9, dtype="str")
    assert learn_pooled_levels(values, 3) == ("a", "b", POOLED_LEVEL)
    assert learn_pooled_levels(values, 4) == ("a", POOLED_LEVEL)
    assert learn_pooled_levels(values, 1) == ("a", "b", "c")  # off: every level, no pool
    # Naive reference: a level is kept iff it appears at least min_count times.
    for min_count in range(2, 7):
        kept = [level for level in "abc" if list(values).count(level) >= min_count]
        assert learn_pooled_levels(values, min_count) == (*kept, POOLED_LEVEL)


def test_rare_and_unseen_levels_share_the_pooled_code_and_missing_stays_missing():
    levels = ("a", "b", POOLED_LEVEL)
    codes = encode_categories(pd.Series(["a", "c", "never_seen", None, "b"], dtype="str"), levels)
    assert codes[:3].tolist() == [0.0, 2.0, 2.0] and np.isnan(codes[3]) and codes[4] == 1.0
    pooled = pool_values(pd.Series(["a", "zzz", None], dtype="str"), levels)
    assert pooled.iloc[:2].tolist() == ["a", POOLED_LEVEL] and pd.isna(pooled.iloc[2])
    # A model without a pooled level keeps scoring unseen levels as missing.
    assert np.isnan(encode_categories(pd.Series(["zzz"]), ("a", "b"))[0])


def test_integer_codes_are_pooled_as_text():
    values = pd.Series([1, 1, 1, 2, 3, 3, 3], dtype="int64")
    assert learn_pooled_levels(values, 2) == ("1", "3", POOLED_LEVEL)
    assert encode_categories(pd.Series([2, 7, 3]), ("1", "3", POOLED_LEVEL)).tolist() == [
        2.0,
        2.0,
        1.0,
    ]


@pytest.mark.parametrize("min_count", [1, 150])
def test_the_threshold_comes_from_train_min_category_count(feature_frame, min_count):
    params = Params.model_validate(
        {"train": {"min_category_count": min_count, "n_estimators": 20, "num_threads": 1}}
    )
    frame = feature_frame.copy()
    rare = frame.index[:40]  # a channel seen on 40 rows only
    frame.loc[rare, "acquisition_channel"] = "tiny_partner"
    train = frame[frame["cutoff"] < frame["cutoff"].max()]
    validation = frame[frame["cutoff"] == frame["cutoff"].max()]
    model = fit_churn_model(train, validation, TINY_CATALOG, params.train)
    levels = model.categorical_levels["acquisition_channel"]
    if min_count == 1:
        assert "tiny_partner" in levels and POOLED_LEVEL not in levels
    else:
        assert "tiny_partner" not in levels and levels[-1] == POOLED_LEVEL
        counts = train["acquisition_channel"].value_counts()
        assert set(levels[:-1]) == set(counts[counts >= min_count].index)
        # Scoring an unseen level gives the same probability as a pooled rare one.
        row = validation.head(1)
        unseen = model.predict_proba(row.assign(acquisition_channel="brand_new"))
        pooled = model.predict_proba(row.assign(acquisition_channel="tiny_partner"))
        assert unseen == pytest.approx(pooled)
    assert model.metadata["min_category_count"] == min_count
