"""Tests for :mod:`churn.spark.features`: Spark features equal the local engine's.

Everything runs a real local PySpark session (``local[2]``, the ``spark`` fixture). Select or
skip the module with ``pytest -m spark`` / ``pytest -m "not spark"``; the heavier end-to-end
checks are also marked ``slow``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support.synthetic import all_keys, make_tables

from churn.config import FeaturesConfig, Params, SimulateConfig
from churn.features.build import build_features

pytest.importorskip("pyspark")  # the optional churn[spark] extra

pytestmark = pytest.mark.spark


def spark_cfg(shards: int) -> FeaturesConfig:
    """Default feature settings with ``shards`` customer shards."""
    cfg = FeaturesConfig()
    return cfg.model_copy(update={"spark": cfg.spark.model_copy(update={"shards": shards})})


def assert_same_features(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Same columns, dtypes and row order; numbers within 1e-9 with NaN in the same places."""
    assert list(got.columns) == list(want.columns)
    assert got.dtypes.to_dict() == want.dtypes.to_dict()
    assert len(got) == len(want)
    for name in want.columns:
        left, right = got[name], want[name]
        if right.dtype == "float64":
            np.testing.assert_array_equal(left.isna().to_numpy(), right.isna().to_numpy(), name)
            np.testing.assert_allclose(
                left.to_numpy(), right.to_numpy(), rtol=0, atol=1e-9, equal_nan=True, err_msg=name
            )
        else:
            pd.testing.assert_series_equal(left, right, check_exact=True, obj=name)


def test_spark_features_equal_local_features(spark):
    from churn.spark.features import build_features_spark

    tables = make_tables(5, n_customers=40)
    # Boundary-heavy random tables; a shuffled population checks the order is kept.
    population = all_keys(tables).sample(frac=1.0, random_state=5).reset_index(drop=True)
    cfg = spark_cfg(3)
    want = build_features(tables, population, cfg)
    got = build_features_spark(spark, tables, population, cfg)
    assert_same_features(got.frame, want.frame)
    pd.testing.assert_frame_equal(got.catalog, want.catalog)
    assert got.skipped == want.skipped
    # The sorted Spark frame holds the same rows (what a cluster job writes).
    assert_same_features(_restore(got.sdf.toPandas(), want.frame), want.frame)


def _restore(frame: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    from churn.spark.arrow import coerce_dtypes

    return coerce_dtypes(frame, like.dtypes.to_dict())


def test_spark_features_skip_the_same_families_when_tables_are_absent(spark):
    from churn.spark.features import build_features_spark

    tables = make_tables(6, n_customers=20)
    kept = {k: v for k, v in tables.items() if k in ("customers", "subscriptions", "nps_responses")}
    population = all_keys(tables)
    want = build_features(kept, population, spark_cfg(2))
    got = build_features_spark(spark, kept, population, spark_cfg(2))
    assert got.skipped == want.skipped and "support" in got.skipped
    assert_same_features(got.frame, want.frame)


def test_entity_mode_features_equal_local(spark):
    from churn.spark.features import build_features_spark

    rng = np.random.default_rng(0)
    n = 60
    customers = pd.DataFrame(
        {
            "customer_id": pd.array([f"e{i:03d}" for i in range(n)], dtype="str"),
            "seats": pd.array(rng.integers(1, 50, n), dtype="Int64"),
            "spend": np.where(rng.random(n) < 0.2, np.nan, rng.gamma(2.0, 100.0, n)),
            "region": pd.array(rng.choice(["eu", "us", None], n), dtype="str"),
            "signed_up_at": pd.Series(
                pd.Timestamp("2024-01-01", tz="UTC")
                + pd.to_timedelta(rng.integers(0, 300, n), unit="D")
            ).astype("datetime64[us, UTC]"),
        }
    )
    population = pd.DataFrame(
        {
            "customer_id": customers["customer_id"],
            "cutoff": pd.Series([pd.Timestamp("2025-01-01", tz="UTC")] * n).astype(
                "datetime64[us, UTC]"
            ),
            "label": pd.array(rng.integers(0, 2, n), dtype="Int8"),
        }
    )
    want = build_features({"customers": customers}, population, spark_cfg(3), mode="entity")
    got = build_features_spark(
        spark, {"customers": customers}, population, spark_cfg(3), mode="entity"
    )
    assert_same_features(got.frame, want.frame)
    pd.testing.assert_frame_equal(got.catalog, want.catalog)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """A tiny simulated business, validated and labelled, written like the pipeline does."""
    from churn.io import write_parquet
    from churn.labels.build import build_labels
    from churn.stages.ingest import validate_tables
    from churn.stages.simulate import simulate

    root = tmp_path_factory.mktemp("simulated")
    params = Params(simulate=SimulateConfig(customers=150, months=12, seed=11))
    raw = simulate(params.simulate).tables
    as_of = pd.Timestamp(params.simulate.start_date, tz="UTC") + pd.DateOffset(months=12)
    valid = validate_tables(raw, params.ingest, as_of).valid
    for name, frame in valid.items():
        write_parquet(frame, root / "validated" / f"{name}.parquet")
    labels = build_labels(valid, params.label)
    write_parquet(labels, root / "labels.parquet")
    return {"root": root, "params": params, "tables": valid, "labels": labels}


@pytest.mark.slow
def test_features_runner_with_the_spark_engine_writes_the_local_file(spark, simulated, tmp_path):
    from churn.stages.features import run_features

    root, params = simulated["root"], simulated["params"]
    outputs = {}
    for engine in ("local", "spark"):
        p = params.model_copy(
            update={"features": params.features.model_copy(update={"engine": engine})}
        )
        run_features(
            params=p,
            validated_dir=root / "validated",
            labels_path=root / "labels.parquet",
            out_path=tmp_path / engine / "features.parquet",
            catalog_path=tmp_path / engine / "catalog.csv",
            scoring_out=tmp_path / engine / "scoring.parquet",
        )
        outputs[engine] = pd.read_parquet(tmp_path / engine / "features.parquet")
    assert_same_features(outputs["spark"], outputs["local"])
    # The scoring rows come from the local engine only; Spark's file says so, without rows.
    from churn.stages.scoring_population import read_scoring_rows

    cutoff = pd.Timestamp("2030-01-01", tz="UTC")
    frame, note = read_scoring_rows(tmp_path / "spark" / "scoring.parquet", "", cutoff, [])
    assert frame is None and "only the local engine" in note
    assert len(pd.read_parquet(tmp_path / "local" / "scoring.parquet")) > 0
    assert (tmp_path / "spark" / "catalog.csv").read_text() == (
        tmp_path / "local" / "catalog.csv"
    ).read_text()


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["file", "directory"])
def test_run_features_spark_reads_and_writes_parquet(spark, simulated, tmp_path, layout):
    from churn.spark.features import run_features_spark

    root, params = simulated["root"], simulated["params"]
    want = build_features(simulated["tables"], simulated["labels"], params.features).frame
    out = tmp_path / ("features.parquet" if layout == "file" else "features")
    summary = run_features_spark(
        params,
        root / "validated",
        root / "labels.parquet",
        out,
        tmp_path / "catalog.csv",
        spark=spark,
        layout=layout,
    )
    assert summary["features"] == want.shape[1] - 3
    got = pd.read_parquet(out)
    if layout == "directory":
        from churn.spark.arrow import pandas_dtypes_of_parquet

        assert out.is_dir() and (out / "_SUCCESS").exists()
        # Standard UTC microsecond timestamps (not Spark's legacy INT96, read back as naive ns).
        assert got["cutoff"].dtype == "datetime64[us, UTC]"
        # No pandas metadata in Spark's files: readers of this directory use the Spark types.
        assert pandas_dtypes_of_parquet(out) is None
        got = _restore(got, want)  # without pandas metadata the nullable label reads as float
    assert_same_features(got, want)


@pytest.mark.slow
def test_score_runner_with_the_spark_engine_writes_the_local_scores(spark, simulated, tmp_path):
    import lightgbm as lgb

    from churn.model.artifact import (
        Calibrator,
        ChurnModel,
        learn_categorical_levels,
        prepare_features,
    )
    from churn.stages.score import run_score

    params, tables, labels = simulated["params"], simulated["tables"], simulated["labels"]
    result = build_features(tables, labels, params.features)
    names = ["support_tickets_last_30d", "mrr_at_cutoff", "last_nps_score", "plan"]
    catalog = result.catalog.set_index("name").loc[names].reset_index()
    train = result.frame[result.frame["label"].notna()]
    levels = learn_categorical_levels(train, ["plan"])
    matrix = prepare_features(train, tuple(names), levels)
    data = lgb.Dataset(matrix, train["label"].to_numpy(dtype=int), feature_name=names)
    settings = {"objective": "binary", "num_leaves": 4, "verbose": -1, "num_threads": 1}
    model = ChurnModel(
        booster=lgb.train(settings, data, num_boost_round=10),
        feature_names=tuple(names),
        categorical_levels=levels,
        calibrator=Calibrator(method="identity"),
        catalog=catalog,
    )
    model.save(tmp_path / "model")
    scores = {}
    for engine in ("local", "spark"):
        p = params.model_copy(
            update={"features": params.features.model_copy(update={"engine": engine})}
        )
        out = tmp_path / engine / "scores.parquet"
        run_score(p, simulated["root"] / "validated", tmp_path / "model", out)
        scores[engine] = pd.read_parquet(out)
    assert len(scores["local"]) > 0
    pd.testing.assert_frame_equal(
        scores["spark"], scores["local"], check_exact=False, rtol=0, atol=1e-9
    )
