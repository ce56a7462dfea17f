"""Tests for churn.model.artifact: name-matched inputs, unseen categories, calibration, checksums."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.errors import ModelError
from churn.model.artifact import MODEL_FILE, Calibrator, ChurnModel, encode_categories


def test_reordered_columns_score_identically(tiny_model, feature_frame):
    shuffled = feature_frame[list(reversed(feature_frame.columns))]
    np.testing.assert_array_equal(
        tiny_model.predict_proba(feature_frame), tiny_model.predict_proba(shuffled)
    )


def test_missing_feature_is_a_clear_error(tiny_model, feature_frame):
    with pytest.raises(ModelError, match="last_nps_score"):
        tiny_model.predict_proba(feature_frame.drop(columns=["last_nps_score"]))


def test_unseen_category_is_scored_as_missing(tiny_model, feature_frame):
    rows = feature_frame.head(50).copy()
    unseen = rows.copy()
    unseen["acquisition_channel"] = "a_channel_never_seen"
    missing = rows.copy()
    missing["acquisition_channel"] = pd.NA
    np.testing.assert_allclose(tiny_model.predict_raw(unseen), tiny_model.predict_raw(missing))


def test_encode_categories_matches_naive_reference():
    values = pd.Series(["b", "a", None, "zz", "c"], dtype="object")
    levels = ("a", "b", "c")
    expected = [1.0, 0.0, np.nan, np.nan, 2.0]
    np.testing.assert_array_equal(encode_categories(values, levels), expected)


def test_contributions_add_up_to_raw_score(tiny_model, feature_frame):
    contributions, base = tiny_model.contributions(feature_frame)
    np.testing.assert_allclose(
        contributions.sum(axis=1) + base, tiny_model.predict_raw(feature_frame), atol=1e-9
    )


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibrator_is_monotone_and_bounded(method):
    rng = np.random.default_rng(3)
    raw = rng.normal(size=2000)
    labels = (rng.random(2000) < 1 / (1 + np.exp(-(2 * raw - 1)))).astype(int)
    calibrator = Calibrator.fit(raw, labels, method)
    grid = np.linspace(-5, 5, 101)
    probabilities = calibrator.transform(grid)
    assert np.all(np.diff(probabilities) >= -1e-12)
    assert probabilities.min() >= 0 and probabilities.max() <= 1
    assert Calibrator.from_dict(calibrator.to_dict()) == calibrator


def test_calibrator_refuses_single_class():
    with pytest.raises(ModelError, match="single class"):
        Calibrator.fit(np.zeros(10), np.zeros(10), "isotonic")


def test_save_load_round_trip(tiny_model, feature_frame, tmp_path):
    tiny_model.save(tmp_path / "m")
    loaded = ChurnModel.load(tmp_path / "m")
    np.testing.assert_array_equal(
        loaded.predict_proba(feature_frame), tiny_model.predict_proba(feature_frame)
    )
    assert loaded.categorical_levels == tiny_model.categorical_levels
    assert list(loaded.catalog["name"]) == list(tiny_model.catalog["name"])


def test_corrupt_model_file_is_refused_before_parsing(tiny_model, tmp_path):
    tiny_model.save(tmp_path / "m")
    path = tmp_path / "m" / MODEL_FILE
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ModelError, match="checksum mismatch"):
        ChurnModel.load(tmp_path / "m")


def test_contributions_equal_lightgbm_reference(tiny_model, feature_frame):
    fast, fast_base = tiny_model.contributions(feature_frame)
    reference, reference_base = tiny_model.contributions_reference(feature_frame)
    np.testing.assert_allclose(fast, reference, atol=1e-9, rtol=0)
    np.testing.assert_allclose(fast_base, reference_base, atol=1e-12, rtol=0)


def test_encode_categories_keeps_missing_apart_from_text_lookalikes():
    values = pd.Series(["nan", None, "<NA>", np.nan], dtype="object")
    codes = encode_categories(values, ("<NA>", "nan"))
    np.testing.assert_array_equal(codes, [1.0, np.nan, 0.0, np.nan])
