"""The fingerprint of Parquet files: names, sizes and footers, not paths or time stamps."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from churn.io import fingerprint_parquet_files, write_parquet


@pytest.fixture
def files(tmp_path):
    folder = tmp_path / "a"
    folder.mkdir()
    frames = {
        "customers": pd.DataFrame({"customer_id": ["1", "2", "3"], "mrr": [10.0, 20.0, 30.0]}),
        "usage_events": pd.DataFrame({"customer_id": ["1", "1", "3"], "n": [1, 2, 3]}),
    }
    paths = {}
    for name, frame in frames.items():
        paths[name] = folder / f"{name}.parquet"
        write_parquet(frame, paths[name])
    return paths


def test_the_same_files_elsewhere_and_touched_keep_their_fingerprint(files, tmp_path):
    before = fingerprint_parquet_files(files)
    assert len(before) == 64
    copies = {}
    for name, path in files.items():
        copies[name] = tmp_path / "b" / path.name
        copies[name].parent.mkdir(exist_ok=True)
        copies[name].write_bytes(path.read_bytes())
        os.utime(copies[name], (1_000_000, 1_000_000))  # another modification time
    assert fingerprint_parquet_files(copies) == before


def test_another_row_a_missing_file_or_other_text_change_it(files):
    before = fingerprint_parquet_files(files)
    changed = pd.DataFrame({"customer_id": ["1", "1", "3"], "n": [1, 2, 4]})  # one value
    write_parquet(changed, files["usage_events"])
    after = fingerprint_parquet_files(files)
    assert after != before
    assert fingerprint_parquet_files({"customers": files["customers"]}) != after
    renamed = {"clients": files["customers"], "usage_events": files["usage_events"]}
    assert fingerprint_parquet_files(renamed) != after
    assert fingerprint_parquet_files(files, "features: 7 days") != after
    assert fingerprint_parquet_files(files, "features: 7 days") != fingerprint_parquet_files(
        files, "features: 8 days"
    )


def test_a_file_that_is_not_parquet_is_refused_by_name(files, tmp_path):
    text = tmp_path / "notes.parquet"
    text.write_text("customer_id,mrr\n1,10\n")
    with pytest.raises(ValueError, match=r"notes\.parquet is not a Parquet file"):
        fingerprint_parquet_files({**files, "notes": text})
    short = tmp_path / "short.parquet"
    short.write_bytes(b"PAR1")
    with pytest.raises(ValueError, match=r"short\.parquet is not a Parquet file"):
        fingerprint_parquet_files({"short": short})
