"""Both model forms at every horizon, the exported head on test, and the MLflow flattening."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support.survival_frames import make_survival_frame, survival_catalog

from churn.config import parse_params
from churn.errors import ModelError
from churn.model.hazard import label_at_horizon
from churn.model.horizon_evaluation import (
    attach_churn_times,
    compare_model_forms,
    flatten_horizons_for_mlflow,
    split_for_horizons,
)

PARAMS = parse_params(
    {
        "label": {"horizon_days": 60, "grace_days": 0},
        "train": {"n_estimators": 40, "min_child_samples": 20, "num_threads": 1},
    }
)


def test_attach_churn_times_matches_by_key_and_refuses_gaps() -> None:
    frame = make_survival_frame(n_customers=20, n_cutoffs=2)
    features = frame.drop(columns=["days_to_churn", "observed_days"])
    labels = frame[["customer_id", "cutoff", "days_to_churn", "observed_days"]].sample(
        frac=1.0, random_state=0
    )
    merged = attach_churn_times(features, labels)
    np.testing.assert_array_equal(merged["days_to_churn"], frame["days_to_churn"])
    with pytest.raises(ModelError, match="no labels row"):
        attach_churn_times(features, labels.iloc[1:])


def test_attach_churn_times_by_position_equals_the_join() -> None:
    """Labels in the features' order are attached by position: the same frame as the join."""
    frame = make_survival_frame(n_customers=20, n_cutoffs=3)
    features = frame.drop(columns=["days_to_churn", "observed_days"]).iloc[7:]
    features.index = features.index * 10  # not a range: positions, not labels, must match
    labels = frame[["customer_id", "cutoff", "days_to_churn", "observed_days"]].iloc[7:]
    in_order = attach_churn_times(features, labels)
    joined = attach_churn_times(features, labels.iloc[::-1])
    pd.testing.assert_frame_equal(in_order, joined)
    np.testing.assert_array_equal(in_order["days_to_churn"], labels["days_to_churn"])
    assert in_order.index.equals(features.index)
    # Keys that differ in one place (two rows swapped) are joined, not attached by position.
    swapped = labels.iloc[[1, 0, *range(2, len(labels))]]
    pd.testing.assert_frame_equal(attach_churn_times(features, swapped), joined)


def test_attach_churn_times_appends_to_a_frame_of_many_blocks_without_copying(tmp_path) -> None:
    """A features file read column by column has a block per column; over 100 of them, each
    insert warned (an error here) and slowed down. The columns come back shared, not copied."""
    from churn.io import read_parquet_frame

    frame = make_survival_frame(n_customers=20, n_cutoffs=2)
    extra = pd.DataFrame({f"x{i}": np.arange(len(frame), dtype="float64") + i for i in range(120)})
    wide = pd.concat([frame.drop(columns=["days_to_churn", "observed_days"]), extra], axis=1)
    wide.to_parquet(tmp_path / "wide.parquet", index=False)
    features = read_parquet_frame(tmp_path / "wide.parquet")
    assert features._mgr.nblocks > 100
    labels = frame[["customer_id", "cutoff", "days_to_churn", "observed_days"]]
    merged = attach_churn_times(features, labels)  # warnings are errors in the tests
    assert list(merged.columns) == [*features.columns, "days_to_churn", "observed_days"]
    np.testing.assert_array_equal(merged["observed_days"], frame["observed_days"])
    assert np.shares_memory(merged["x7"].to_numpy(), features["x7"].to_numpy())


@pytest.mark.parametrize("label_ids", ["same", "text"])
def test_attach_churn_times_matches_integer_ids_as_they_are_or_as_text(label_ids) -> None:
    """Integer ids (a third-party export) match labels holding the same integers or their text;
    the features keep their own ids either way."""
    frame = make_survival_frame(n_customers=20, n_cutoffs=2)
    codes = {cid: 1000 + i for i, cid in enumerate(sorted(frame["customer_id"].unique()))}
    frame = frame.assign(customer_id=frame["customer_id"].map(codes).astype("int64"))
    features = frame.drop(columns=["days_to_churn", "observed_days"])
    labels = frame[["customer_id", "cutoff", "days_to_churn", "observed_days"]].iloc[::-1]
    if label_ids == "text":
        labels = labels.assign(customer_id=labels["customer_id"].astype(str))
    merged = attach_churn_times(features, labels)
    np.testing.assert_array_equal(merged["days_to_churn"], frame["days_to_churn"])
    np.testing.assert_array_equal(merged["observed_days"], frame["observed_days"])
    assert merged["customer_id"].dtype == np.dtype("int64")
    np.testing.assert_array_equal(merged["customer_id"], frame["customer_id"])
    assert merged.index.equals(features.index)


def test_split_uses_the_longest_horizon_window() -> None:
    frame = make_survival_frame(n_customers=50, n_cutoffs=8)
    split = split_for_horizons(frame, PARAMS)
    # 90 days + 0 grace: a training cutoff is at least 90 days before the validation cutoff.
    gap = (split.validation_cutoffs[0] - max(split.train_cutoffs)).days
    assert gap >= 90


def test_both_forms_are_measured_at_every_horizon() -> None:
    frame = make_survival_frame(n_customers=500, n_cutoffs=8)
    result = compare_model_forms(frame, survival_catalog(), PARAMS)
    assert set(result["hazard"]) == set(result["classifier"]) == {"30", "60", "90"}
    assert result["monotone_share"] == 1.0
    test = frame[frame["cutoff"] == max(frame["cutoff"])]
    positives = int(np.nansum(label_at_horizon(test["days_to_churn"], test["observed_days"], 60)))
    assert result["hazard"]["60"]["positives"] == positives
    # The known hazard depends on usage_score only: both forms rank well above chance.
    assert result["hazard"]["60"]["roc_auc"] > 0.7 and result["classifier"]["60"]["roc_auc"] > 0.7
    flat = flatten_horizons_for_mlflow({"test": {}, "comparison": result})
    assert flat["eval_60d_hazard_roc_auc"] == result["hazard"]["60"]["roc_auc"]
    assert "eval_90d_classifier_ece" in flat
    assert result["head"]["horizons_days"] == [30, 60, 90]


def test_flatten_skips_missing_blocks_and_non_numbers() -> None:
    assert flatten_horizons_for_mlflow(None) == {}
    flat = flatten_horizons_for_mlflow(
        {"test": {"90": {"observable": False, "note": "x"}, "30": {"roc_auc": 0.8}}}
    )
    assert flat == {"eval_30d_roc_auc": 0.8}
