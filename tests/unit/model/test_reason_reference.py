"""Tests for churn.model.reason_reference: typical values and level churn ratios."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from churn.errors import ModelError
from churn.model.artifact import ChurnModel
from churn.model.pooling import POOLED_LEVEL
from churn.model.reason_reference import (
    REFERENCE_KEY,
    SMOOTHING_ROWS,
    compute_level_ratios,
    compute_typical_value,
    select_reference_rows,
)


def test_level_ratios_match_a_naive_m_estimate():
    values = pd.Series(["x"] * 10 + ["y"] * 30 + ["rare"] * 2 + [None] * 8, dtype="str")
    labels = np.array([1] * 6 + [0] * 4 + [1] * 3 + [0] * 27 + [1, 1] + [0] * 8)
    ratios = compute_level_ratios(values, labels, ("x", "y", POOLED_LEVEL))
    average = labels.mean()
    for level, churners, rows in (("x", 6, 10), ("y", 3, 30), (POOLED_LEVEL, 2, 2)):
        smoothed = (churners + SMOOTHING_ROWS * average) / (rows + SMOOTHING_ROWS)
        assert ratios[level] == pytest.approx(smoothed / average)
    assert set(ratios) == {"x", "y", POOLED_LEVEL}  # missing is not a level
    assert ratios["x"] > 1 > ratios["y"]
    assert compute_level_ratios(values, np.zeros(len(values)), ("x",)) == {}


def _level_ratios_by_grouping(values, labels, levels):
    """Naive reference: every row's text grouped by pandas, counts and churners per group."""
    from churn.model.pooling import pool_values

    labels = np.asarray(labels, dtype=np.float64)
    average = labels.mean()
    read = pool_values(values, levels).to_numpy(dtype=object)
    present = pd.notna(read)
    grouped = pd.DataFrame({"level": read[present], "label": labels[present]}).groupby("level")
    stats = grouped["label"].agg(["sum", "count"])
    smoothed = (stats["sum"] + SMOOTHING_ROWS * average) / (stats["count"] + SMOOTHING_ROWS)
    return {str(level): float(ratio) for level, ratio in (smoothed / average).items()}


@pytest.mark.parametrize(
    "kind", ["text", "integer codes", "category", "mixed", "no pooling", "floats", "int and float"]
)
def test_level_ratios_equal_those_of_grouping_every_rows_text(kind):
    rng = np.random.default_rng(len(kind))
    n = 3_000
    codes = rng.integers(0, 12, n)
    labels = (rng.random(n) < 0.1 + 0.03 * codes).astype(int)
    if kind == "integer codes":
        values = pd.Series(codes * 7, dtype="Int64")
    elif kind == "mixed":  # an integer and its text are one level
        values = pd.Series([int(c) if i % 2 else str(c) for i, c in enumerate(codes)], dtype=object)
    elif kind == "floats":  # 0.0 and -0.0 are equal numbers but two levels, as their texts
        values = pd.Series(np.where(codes % 2, 1.0, -1.0) * (codes // 2), dtype="float64")
    elif kind == "int and float":  # 3 and 3.0 likewise
        values = pd.Series(
            [int(c) if i % 2 else float(c) for i, c in enumerate(codes)], dtype=object
        )
    else:
        values = pd.Series([f"plan {c}" for c in codes], dtype="str")
        if kind == "category":
            values = values.astype("category")
    values[rng.random(n) < 0.05] = None
    texts = sorted({str(v) for v in values.dropna()})
    levels = tuple(texts) if kind == "no pooling" else (*texts[:6], POOLED_LEVEL)
    ours = compute_level_ratios(values, labels, levels)
    expected = _level_ratios_by_grouping(values, labels, levels)
    assert ours == expected
    assert list(ours) == list(expected)  # the same order of levels


def test_reference_rows_are_the_latest_labeled_cutoff():
    cutoffs = pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01"], utc=True)
    train = pd.DataFrame({"cutoff": cutoffs[:2], "label": [0, 1]})
    validation = pd.DataFrame({"cutoff": cutoffs[2:], "label": [1]})
    rows = select_reference_rows(train, validation)
    assert rows["cutoff"].tolist() == [cutoffs[2]]


@pytest.mark.parametrize(
    "validation_kind", ["float", "older", "text", "category", "empty", "no_cutoff"]
)
def test_reference_rows_equal_those_of_the_stacked_frames(validation_kind):
    # Naive reference: stack every frame whole, keep the latest cutoff's rows. The frames'
    # columns may differ in type (the stacking decides the result's), the latest cutoff may
    # be in both, and a cutoff may be missing.
    cutoffs = pd.to_datetime(["2025-01-01", "2025-02-01", None, "2025-02-01"], utc=True)
    train = pd.DataFrame(
        {
            "cutoff": cutoffs,
            "label": [0, 1, 0, 1],
            "tickets": np.array([1, 2, 3, 4], dtype=np.int64),
            "plan": pd.Categorical(["a", "b", "a", "a"]),
        }
    )
    validation = pd.DataFrame(
        {
            "cutoff": pd.to_datetime(["2025-02-01", "2025-01-01"], utc=True),
            "label": [1, 0],
            "tickets": [5.5, 6.5],
            "plan": ["b", "c"],
        }
    )
    if validation_kind == "older":  # none of its rows is kept, yet its types count
        validation["cutoff"] = pd.to_datetime(["2024-12-01", "2025-01-01"], utc=True)
    elif validation_kind == "text":
        validation["tickets"] = ["5", "6"]
    elif validation_kind == "category":
        validation["plan"] = pd.Categorical(["b", "c"])
    elif validation_kind == "empty":
        validation = validation.iloc[:0]
    elif validation_kind == "no_cutoff":
        validation = validation.drop(columns="cutoff")
    for frames in ((train, validation), (validation, train), (train,)):
        present = [frame for frame in frames if len(frame)]
        stacked = pd.concat(present, ignore_index=True)
        want = stacked[stacked["cutoff"] == stacked["cutoff"].max()].reset_index(drop=True)
        got = select_reference_rows(*frames)
        pd.testing.assert_frame_equal(got, want)
        assert len(got) >= 2 or validation_kind == "no_cutoff"


def test_a_saved_model_keeps_the_reference_and_rejects_a_bad_one(tmp_path, feature_frame):
    from support.tiny import TINY_CATALOG

    from churn.config import Params
    from churn.model.fit import fit_churn_model

    params = Params.model_validate({"train": {"n_estimators": 10, "num_threads": 1}})
    train = feature_frame[feature_frame["cutoff"] < feature_frame["cutoff"].max()]
    validation = feature_frame[feature_frame["cutoff"] == feature_frame["cutoff"].max()]
    model = fit_churn_model(train, validation, TINY_CATALOG, params.train)
    model.save(tmp_path / "m")
    loaded = ChurnModel.load(tmp_path / "m")
    reference = loaded.metadata[REFERENCE_KEY]
    assert reference["rows"] == len(validation)
    assert set(reference["level_ratios"]) == {"acquisition_channel", "plan"}
    # Naive reference: paid_search churns most in the synthetic frame (its logit is +0.7).
    channel = reference["level_ratios"]["acquisition_channel"]
    assert max(channel, key=channel.get) == "paid_search"

    meta_path = tmp_path / "m" / "churn_model.json"
    meta = json.loads(meta_path.read_text())
    meta["metadata"][REFERENCE_KEY]["level_ratios"]["plan"]["pro"] = -1.0
    meta_path.write_text(json.dumps(meta))
    from churn.model.verification import write_manifest

    write_manifest(tmp_path / "m")
    with pytest.raises(ModelError, match=r"level_ratios\['plan'\]\['pro'\] must be a positive"):
        ChurnModel.load(tmp_path / "m")


def test_the_first_reason_mode_is_stored_read_and_validated(tmp_path, feature_frame):
    import dataclasses

    from support.tiny import TINY_CATALOG

    from churn.config import Params
    from churn.model.fit import fit_churn_model
    from churn.model.reason_reference import read_first_reason
    from churn.model.verification import write_manifest

    params = Params.model_validate(
        {"train": {"n_estimators": 10, "num_threads": 1, "first_reason": "family"}}
    )
    train = feature_frame[feature_frame["cutoff"] < feature_frame["cutoff"].max()]
    validation = feature_frame[feature_frame["cutoff"] == feature_frame["cutoff"].max()]
    model = fit_churn_model(train, validation, TINY_CATALOG, params.train)
    model.save(tmp_path / "m")
    assert read_first_reason(ChurnModel.load(tmp_path / "m").metadata) == "family"
    # A model saved before the choice existed reads as the single largest contribution.
    older = {
        **model.metadata,
        REFERENCE_KEY: {
            k: v for k, v in model.metadata[REFERENCE_KEY].items() if k != "first_reason"
        },
    }
    assert read_first_reason(dataclasses.replace(model, metadata=older).metadata) == "feature"
    assert read_first_reason({}) == "feature"
    with pytest.raises(ValueError, match="first_reason must be one of"):
        read_first_reason({REFERENCE_KEY: {"first_reason": "largest"}})

    meta_path = tmp_path / "m" / "churn_model.json"
    meta = json.loads(meta_path.read_text())
    meta["metadata"][REFERENCE_KEY]["first_reason"] = "largest"
    meta_path.write_text(json.dumps(meta))
    write_manifest(tmp_path / "m")
    with pytest.raises(ModelError, match=r"first_reason must be one of"):
        ChurnModel.load(tmp_path / "m")


@pytest.mark.parametrize(
    ("values", "dtype", "expected"),
    [
        ([3.0, np.nan, 1.0, 2.0, np.nan], "float64", 2.0),
        ([4.0, 1.0, 2.0, 3.0], "float64", 2.5),
        ([np.nan, np.nan], "float64", None),
        ([], "float64", None),
        ([7, 1, 3], "int64", 3.0),
        ([7, None, 1, 3, 2], "Int64", 2.5),
        ([None, None], "Float64", None),
    ],
)
def test_a_numbers_typical_value_is_the_median_of_the_values_present(values, dtype, expected):
    typical = compute_typical_value(pd.Series(values, dtype=dtype), categorical=False)
    assert typical == expected
    assert typical is None or type(typical) is float


def test_a_categorys_typical_value_is_its_most_frequent_level():
    column = pd.Series(["b", "a", None, "b", "a", "c"], dtype="str")
    assert compute_typical_value(column, categorical=True) == "a"  # ties: first in sort order
    assert compute_typical_value(pd.Series([None, None], dtype=object), categorical=True) is None
