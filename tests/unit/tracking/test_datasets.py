"""Tests for churn.tracking.datasets: sampled dataset inputs with a whole-slice digest."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
from support.tiny import make_feature_frame

from churn.tracking.datasets import (
    build_sampled_dataset,
    digest_file,
    digest_slice,
    sample_evenly,
)


def test_file_digest_is_the_sha256_of_its_bytes(tmp_path):
    path = tmp_path / "features.parquet"
    path.write_bytes(b"x" * 20_000_000)  # more than one read chunk
    assert digest_file(path) == hashlib.sha256(b"x" * 20_000_000).hexdigest()
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "a.parquet").write_bytes(b"1")
    before = digest_file(folder)
    (folder / "a.parquet").write_bytes(b"2")
    assert digest_file(folder) != before


def test_slice_digest_follows_source_rows_and_columns():
    frame = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "x": [1.0, 2.0, 3.0, 4.0]})
    base = digest_slice("file-1", frame.iloc[[0, 2]])
    assert digest_slice("file-1", frame.iloc[[0, 2]]) == base
    assert digest_slice("file-2", frame.iloc[[0, 2]]) != base
    assert digest_slice("file-1", frame.iloc[[0, 3]]) != base
    assert digest_slice("file-1", frame.iloc[[0, 2]][["x"]]) != base
    # Without positions (a text index) the content decides.
    keyed = frame.set_index("customer_id")
    assert digest_slice("f", keyed) != digest_slice("f", keyed.assign(x=keyed["x"] + 1))


def test_sample_is_spread_evenly_and_in_order():
    frame = pd.DataFrame({"v": np.arange(10_000)})
    sample = sample_evenly(frame, 1000)
    assert len(sample) == 1000
    assert sample["v"].iloc[0] == 0 and sample["v"].iloc[-1] == 9_999
    assert sample["v"].is_monotonic_increasing and sample["v"].diff().max() <= 11
    short = frame.head(5)
    assert sample_evenly(short, 1000) is short


def test_dataset_profile_counts_the_whole_slice_and_keeps_the_digest():
    frame = make_feature_frame(n_customers=800, n_cutoffs=3, seed=4)
    dataset = build_sampled_dataset(frame, source="features.parquet", name="n", digest="d1")
    described = dataset.to_dict()
    profile = json.loads(described["profile"])
    assert profile == {
        "num_rows": len(frame),
        "num_elements": int(frame.size),
        "sample_rows": 1000,
    }
    assert described["digest"] == "d1"
    schema = json.loads(described["schema"])["mlflow_colspec"]
    assert [column["name"] for column in schema] == list(frame.columns)
