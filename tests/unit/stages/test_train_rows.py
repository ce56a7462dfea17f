"""Tests for the train runner's row-selective read: the split of the keys, then its rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support.tiny import TINY_CATALOG, make_feature_frame

from churn.config import parse_params
from churn.model.fit import train_churn_models
from churn.model.split import split_by_time
from churn.stages.train import read_training_rows
from churn.tracking.datasets import digest_slice

TRAIN = {"min_child_samples": 20, "n_estimators": 40, "num_threads": 1}


def export_shaped_frame(n_cutoffs: int = 8) -> pd.DataFrame:
    """Integer ids (a third-party export); with several cutoffs the last is unlabeled (its
    label window is still open)."""
    frame = make_feature_frame(n_customers=150, n_cutoffs=n_cutoffs, seed=5)
    frame["customer_id"] = frame["customer_id"].str[1:].astype("int64")
    if n_cutoffs > 1:
        frame.loc[frame["cutoff"] == frame["cutoff"].max(), "label"] = pd.NA
    return frame


def test_training_reads_the_split_cutoffs_only_and_keeps_the_whole_file_split(tmp_path):
    frame = export_shaped_frame()
    path = tmp_path / "features.parquet"
    frame.to_parquet(path, index=False, row_group_size=100)
    # A 40-day window purges the cutoff before validation and the one before test.
    params = parse_params({"label": {"horizon_days": 40, "grace_days": 5}, "train": TRAIN})
    whole = split_by_time(frame, params.train, params.label)
    assert whole.removed["label_window_overlaps_test"] > 0

    read, split = read_training_rows(path, params)

    used = [*whole.train_cutoffs, *whole.validation_cutoffs, *whole.test_cutoffs]
    assert whole.used_cutoffs() == sorted(used) and len(set(used)) == len(used)
    naive = frame[frame["cutoff"].isin(used)]
    pd.testing.assert_frame_equal(read, naive, check_index_type=False)
    assert len(read) < len(frame) - frame["label"].isna().sum()  # purged cutoffs left out too
    assert split.describe() == whole.describe()  # the whole file's counts and notes
    # Same rows and the same file positions as index (what the MLflow digests hash).
    for full_slice, read_slice in zip(whole.slices(frame), split.slices(read), strict=True):
        pd.testing.assert_frame_equal(full_slice, read_slice, check_index_type=False)
        assert digest_slice("file", read_slice) == digest_slice("file", full_slice)
    # The model trained on the rows read is the model of the whole file.
    from_file = train_churn_models(frame, TINY_CATALOG, params)
    from_rows = train_churn_models(read, TINY_CATALOG, params, split=split)
    assert from_rows.model.booster.model_to_string() == from_file.model.booster.model_to_string()
    assert from_rows.metrics == from_file.metrics


def test_an_entity_split_reads_the_rows_of_its_slices(tmp_path):
    frame = export_shaped_frame(n_cutoffs=1)
    frame.loc[::7, "label"] = pd.NA  # some rows of the one cutoff have no label
    path = tmp_path / "features.parquet"
    frame.to_parquet(path, index=False, row_group_size=64)
    params = parse_params({"ingest": {"mode": "entity"}, "train": TRAIN})
    whole = split_by_time(frame, params.train, params.label, mode=params.ingest.mode)

    read, split = read_training_rows(path, params)

    assert split.mode == "entity" and split.describe() == whole.describe()
    assert len(read) == frame["label"].notna().sum()
    for full_slice, read_slice in zip(whole.slices(frame), split.slices(read), strict=True):
        pd.testing.assert_frame_equal(full_slice, read_slice, check_index_type=False)


def test_relocating_a_split_refuses_rows_that_were_not_kept():
    frame = export_shaped_frame()
    params = parse_params({"label": {"horizon_days": 40, "grace_days": 5}, "train": TRAIN})
    whole = split_by_time(frame, params.train, params.label)
    kept = np.union1d(whole.train, whole.test)  # validation left out
    with pytest.raises(ValueError, match="not among the kept rows"):
        whole.relocate(kept)
