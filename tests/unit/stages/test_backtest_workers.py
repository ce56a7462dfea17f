"""Tests for the backtest refits in worker processes (spawned, one LightGBM thread each)."""

from __future__ import annotations

import pandas as pd
import pytest
from support.tiny import TINY_CATALOG, make_feature_frame

from churn.config import Params, parse_params
from churn.domain.catalog import KEY_COLUMNS
from churn.model.evaluation import refit_backtest_cutoff, select_backtest_cutoffs
from churn.stages.backtest_workers import (
    count_backtest_workers,
    decode_frame,
    encode_frame,
    read_backtest_frame,
    refit_side_by_side,
)


def tiny_params(num_threads: int = 1, min_positives: int = 20) -> Params:
    return parse_params(
        {
            "label": {"horizon_days": 20, "grace_days": 5},
            "train": {
                "min_child_samples": 20,
                "n_estimators": 60,
                "num_threads": num_threads,
                "min_positives": min_positives,
            },
            "evaluate": {"backtest_cutoffs": 3},
        }
    )


@pytest.fixture(scope="module")
def features_file(tmp_path_factory):
    features = make_feature_frame(n_customers=400, n_cutoffs=6, seed=9)
    # Integer ids, as a third-party export would have them.
    features["customer_id"] = features["customer_id"].str.extract(r"(\d+)")[0].astype("int64")
    path = tmp_path_factory.mktemp("features") / "features.parquet"
    features.to_parquet(path)
    return features, path


def test_workers_follow_train_threads_and_refits():
    assert count_backtest_workers(tiny_params(num_threads=2), 3) == 2
    assert count_backtest_workers(tiny_params(num_threads=4), 2) == 2
    assert count_backtest_workers(tiny_params(num_threads=1), 3) == 0
    assert count_backtest_workers(tiny_params(num_threads=2), 1) == 0


def test_catalog_crosses_as_arrow_bytes_unchanged():
    decoded = decode_frame(encode_frame(TINY_CATALOG))
    pd.testing.assert_frame_equal(decoded, TINY_CATALOG.reset_index(drop=True))


def test_worker_reads_only_rows_up_to_its_cutoff_in_order(features_file):
    features, path = features_file
    cutoff = sorted(features["cutoff"].unique())[3]
    columns = [*KEY_COLUMNS, "mrr_at_cutoff"]
    expected = features.loc[features["cutoff"] <= cutoff, columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(read_backtest_frame(path, columns, cutoff), expected)


def test_side_by_side_refits_equal_the_serial_ones(features_file):
    features, path = features_file
    params = tiny_params(num_threads=2)
    serial_params = tiny_params(num_threads=1)  # what each worker uses
    cutoffs, _ = select_backtest_cutoffs(features, params)
    serial = [refit_backtest_cutoff(features, TINY_CATALOG, serial_params, c) for c in cutoffs]
    parallel = refit_side_by_side(
        path, list(features.columns), TINY_CATALOG, params, cutoffs, workers=2
    )
    assert [entry["cutoff"] for entry in parallel] == [f"{c:%Y-%m-%d}" for c in cutoffs]
    assert parallel == serial
    assert all("roc_auc" in entry for entry in parallel)


def test_a_thin_cutoff_comes_back_skipped_from_a_worker(features_file):
    features, path = features_file
    params = tiny_params(num_threads=2, min_positives=10_000)
    cutoffs, _ = select_backtest_cutoffs(features, params)
    entries = refit_side_by_side(
        path, list(features.columns), TINY_CATALOG, params, cutoffs[:2], workers=2
    )
    assert all("train.min_positives" in entry["skipped"] for entry in entries)
