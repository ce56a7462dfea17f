"""Tests for churn.model.split: no leakage across time, purge counts, entity mode."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support.tiny import make_feature_frame

from churn.config import LabelConfig, TrainConfig
from churn.errors import ModelError
from churn.model.split import label_array, split_by_time, take_file_rows, take_rows


def _cutoffs(frame: pd.DataFrame, rows: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(frame["cutoff"].iloc[rows])


@pytest.mark.parametrize(("horizon", "grace", "n_cutoffs"), [(60, 14, 8), (20, 5, 5), (30, 0, 7)])
def test_time_split_never_lets_a_label_window_cross_into_a_later_slice(horizon, grace, n_cutoffs):
    frame = make_feature_frame(n_customers=50, n_cutoffs=n_cutoffs)
    label_cfg = LabelConfig(horizon_days=horizon, grace_days=grace)
    split = split_by_time(frame, TrainConfig(), label_cfg)
    window = pd.Timedelta(days=horizon + grace)
    train, val, test = (
        _cutoffs(frame, rows) for rows in (split.train, split.validation, split.test)
    )
    assert split.mode == "time"
    assert train.max() + window <= val.min()
    assert val.max() + window <= test.min()
    assert test.unique().size == 1 and test.max() == frame["cutoff"].max()
    keys = [
        set(zip(frame["customer_id"].iloc[rows], frame["cutoff"].iloc[rows], strict=True))
        for rows in (split.train, split.validation, split.test)
    ]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])


def test_purge_counts_the_rows_each_rule_removed():
    # Monthly cutoffs Jan..Aug, window 74 days: test Aug; Jun and Jul overlap it; validation May;
    # Mar and Apr overlap May; train Jan and Feb.
    frame = make_feature_frame(n_customers=30, n_cutoffs=8)
    split = split_by_time(frame, TrainConfig(), LabelConfig(horizon_days=60, grace_days=14))
    months = lambda rows: sorted(_cutoffs(frame, rows).month.unique())  # noqa: E731
    assert months(split.train) == [1, 2]
    assert months(split.validation) == [5]
    assert months(split.test) == [8]
    assert split.removed["label_window_overlaps_test"] == 2 * 30
    assert split.removed["label_window_overlaps_validation"] == 2 * 30
    described = split.describe()
    assert described["sizes"] == {"train": 60, "validation": 30, "test": 30}
    assert "dropped" in described["notes"][0]


def test_unlabeled_rows_are_never_used_and_are_counted():
    frame = make_feature_frame(n_customers=40, n_cutoffs=5)
    last = frame["cutoff"] == frame["cutoff"].max()
    frame.loc[last, "label"] = pd.NA  # a scoring cutoff: horizon not observed yet
    split = split_by_time(frame, TrainConfig(), LabelConfig(horizon_days=20, grace_days=5))
    used = np.concatenate([split.train, split.validation, split.test])
    assert frame["label"].iloc[used].notna().all()
    assert split.removed["unlabeled"] == 40
    assert _cutoffs(frame, split.test).max() < frame["cutoff"].max()


def test_last_cutoff_replays_the_split_as_of_an_earlier_date():
    frame = make_feature_frame(n_customers=20, n_cutoffs=6)
    cutoffs = sorted(frame["cutoff"].unique())
    split = split_by_time(
        frame, TrainConfig(), LabelConfig(horizon_days=20, grace_days=5), last_cutoff=cutoffs[3]
    )
    assert _cutoffs(frame, split.test).unique().tolist() == [cutoffs[3]]
    assert split.removed["after_last_cutoff"] == 2 * 20


def test_too_few_cutoffs_for_the_label_window_is_a_clear_error():
    frame = make_feature_frame(n_customers=20, n_cutoffs=4)
    with pytest.raises(ModelError, match=r"label window \(cutoff \+ 60 \+ 14 days\)"):
        split_by_time(frame, TrainConfig(), LabelConfig(horizon_days=60, grace_days=14))


@pytest.mark.parametrize("seed", range(3))
def test_entity_split_is_stratified_and_disjoint(seed):
    frame = make_feature_frame(n_customers=1000, n_cutoffs=1, seed=seed)
    cfg = TrainConfig(entity_test_share=0.2, entity_validation_share=0.25, seed=seed)
    split = split_by_time(frame, cfg, LabelConfig())
    assert split.mode == "entity"
    assert "entity mode" in split.notes[0]
    parts = (split.train, split.validation, split.test)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(frame)))
    assert [part.size for part in parts] == [550, 250, 200]
    rate = frame["label"].astype(float).mean()
    for part in parts:
        # Stratified: each slice's churn rate is the overall rate up to one row's rounding.
        assert abs(frame["label"].iloc[part].astype(float).mean() - rate) <= 1.5 / part.size


def test_entity_mode_from_params_even_with_several_cutoffs():
    frame = make_feature_frame(n_customers=200, n_cutoffs=3)
    split = split_by_time(frame, TrainConfig(), LabelConfig(), mode="entity")
    assert split.mode == "entity"
    assert "ingest.mode is 'entity'" in split.notes[0]


def test_label_array_returns_ints_and_refuses_missing_labels():
    frame = make_feature_frame(n_customers=3, n_cutoffs=1)
    assert label_array(frame).dtype.kind == "i"
    frame.loc[0, "label"] = pd.NA
    with pytest.raises(ModelError, match="1 row"):
        label_array(frame)


def test_take_rows_shares_a_run_of_rows_and_equals_iloc_otherwise() -> None:
    frame = pd.DataFrame(
        {"customer_id": np.arange(10) + 500, "score": np.linspace(0.0, 1.0, 10)},
        index=np.arange(10) * 2,  # positions, not labels
    )
    run = np.arange(3, 8)
    taken = take_rows(frame, run)
    pd.testing.assert_frame_equal(taken, frame.iloc[run])
    # A run is a slice of the caller's arrays, not a copy; writing to it copies first.
    assert np.shares_memory(taken["score"].to_numpy(), frame["score"].to_numpy())
    taken.loc[6, "score"] = -1.0
    assert frame.loc[6, "score"] == pytest.approx(1 / 3)
    for positions in ([4], [1, 2, 4], [5, 4, 3], [2, 2, 3], []):
        positions = np.asarray(positions, dtype=np.int64)
        pd.testing.assert_frame_equal(take_rows(frame, positions), frame.iloc[positions])
    assert not np.shares_memory(
        take_rows(frame, np.array([1, 2, 4]))["score"].to_numpy(), frame["score"].to_numpy()
    )


def test_take_file_rows_finds_rows_by_file_position_and_refuses_unread_ones():
    frame = make_feature_frame(n_customers=20, n_cutoffs=3)
    read = np.array([2, 3, 4, 5, 9, 40, 41])  # the rows a reader kept, indexed by position
    kept = frame.iloc[read].set_axis(pd.Index(read))
    run = take_file_rows(kept, np.array([3, 4, 5]))
    pd.testing.assert_frame_equal(run, frame.iloc[[3, 4, 5]])
    # One run of consecutive rows is shared with the frame, not copied.
    assert np.shares_memory(run["mrr_at_cutoff"].to_numpy(), kept["mrr_at_cutoff"].to_numpy())
    pd.testing.assert_frame_equal(
        take_file_rows(kept, np.array([41, 2, 9])), frame.iloc[[41, 2, 9]]
    )
    assert len(take_file_rows(kept, np.array([], dtype=np.int64))) == 0
    with pytest.raises(KeyError, match="position 6"):
        take_file_rows(kept, np.array([5, 6, 9]))
