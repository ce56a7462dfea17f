"""The features runner streams from Parquet: same file as the in-memory core, nothing left over."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from support.synthetic import make_tables

from churn.config import parse_params
from churn.features.build import build_features
from churn.features.families.usage import resolve_usage_event_types
from churn.io import read_tables, write_parquet
from churn.stages.features import read_feature_tables, run_features
from churn.stages.label import run_label


def test_runner_file_equals_the_in_memory_features(tmp_path: Path) -> None:
    validated = tmp_path / "validated"
    for name, frame in make_tables(11, n_customers=40).items():
        write_parquet(frame, validated / f"{name}.parquet")
    params = parse_params(
        {
            "label": {"min_history_days": 90, "min_tenure_days": 0},
            "features": {"windows_days": [7, 30], "duckdb_memory_limit": "256MB"},
        }
    )
    labels_path = tmp_path / "labels.parquet"
    run_label(params=params, validated_dir=validated, out_path=labels_path)
    out = tmp_path / "features" / "features.parquet"
    run_features(params, validated, labels_path, out, tmp_path / "catalog.csv")

    # Only customers is read into pandas; DuckDB scans the rest from the files.
    sources = read_feature_tables(params, validated)
    assert isinstance(sources["customers"], pd.DataFrame)
    assert all(isinstance(sources[n], Path) for n in sources if n != "customers")
    assert len(sources) == 8

    tables = read_tables(validated, list(sources))
    labels = pd.read_parquet(labels_path)
    cfg = resolve_usage_event_types(params.features, tables, labels["cutoff"].min())
    write_parquet(build_features(tables, labels, cfg).frame, tmp_path / "expected.parquet")
    expected = pd.read_parquet(tmp_path / "expected.parquet")
    assert len(expected) > 40
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected, check_exact=True)
    assert [p.name for p in out.parent.iterdir()] == ["features.parquet"]
