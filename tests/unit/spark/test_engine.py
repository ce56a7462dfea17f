"""Tests for the Spark engine (:mod:`churn.spark.engine`): same features and scores as local.

Everything runs a real local PySpark session (``local[2]``), shared by the module. Select or skip
the module with ``pytest -m spark`` / ``pytest -m "not spark"``; the heavier end-to-end checks are
also marked ``slow``.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from support.hostile import write_marker_pickle
from support.mlflow_store import fresh_store
from support.synthetic import CUTOFFS, all_keys, make_tables
from support.tiny import fit_tiny_model, make_feature_frame

from churn.config import FeaturesConfig, Params, SimulateConfig
from churn.features.build import build_features
from churn.model.scoring import finalize_scores, score_frame
from churn.tracking.pyfunc import ARTIFACT_KEY, ChurnPyfuncModel, pyfunc_log_arguments

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


@pytest.fixture(scope="module")
def spark():
    """One local session for the module (starting one takes seconds)."""
    from churn.spark.engine import build_spark_session

    session = build_spark_session("local[2]", app_name="churn-tests")
    yield session
    session.stop()


# --------------------------------------------------------------------------------------------
# Session, time zone, shards
# --------------------------------------------------------------------------------------------


def test_session_and_workers_run_in_utc(spark):
    from churn.spark.engine import check_session_utc, worker_utc_offsets

    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.sql.execution.arrow.pyspark.enabled") == "true"
    assert worker_utc_offsets(spark) == [0, 0]
    check_session_utc(spark)
    assert os.environ["PYSPARK_PYTHON"]  # set (to this interpreter unless the user chose one)
    # An instant that does not exist in Central Europe (DST gap) survives the JVM round trip.
    instant = pd.Timestamp("2024-03-31 02:30:00", tz="UTC")
    frame = spark.createDataFrame(pa.table({"t": pa.array([instant], pa.timestamp("us", "UTC"))}))
    assert frame.selectExpr("cast(t as string) as s").collect()[0].s == "2024-03-31 02:30:00"
    assert frame.toArrow().column("t")[0].as_py() == instant.to_pydatetime()


def test_a_session_not_in_utc_is_refused(spark):
    from churn.errors import ChurnError
    from churn.spark.engine import check_session_utc

    spark.conf.set("spark.sql.session.timeZone", "Europe/Berlin")
    try:
        with pytest.raises(ChurnError, match="timeZone"):
            check_session_utc(spark)
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")


def test_shards_are_a_fixed_function_of_the_customer_id(spark):
    from churn.spark.engine import shard_of

    ids = ["c00000", "c00001", "c00002", "c00003", "C00000042", "ü-kunde"]
    frame = spark.createDataFrame([(i,) for i in ids], "customer_id string")
    got = frame.select(
        shard_of("customer_id", 8).alias("s8"), shard_of("customer_id", 3).alias("s3")
    )
    # pmod(xxhash64(id, seed 42), n): pinned, so a shard never moves between runs or versions.
    assert [(r.s8, r.s3) for r in got.collect()] == [(1, 2), (6, 0), (4, 1), (4, 0), (0, 1), (5, 2)]


@pytest.mark.parametrize("shards", [1, 3, 8])
def test_each_shard_gets_its_own_partition(spark, shards):
    from pyspark.sql import functions as sf

    from churn.spark.engine import shard_routing

    labels = shard_routing(spark, shards)
    frame = spark.createDataFrame(
        [(k, label) for k, label in enumerate(labels)], "k int, label int"
    )
    placed = frame.repartition(shards, "label").select("k", sf.spark_partition_id().alias("p"))
    assert sorted((r.k, r.p) for r in placed.collect()) == [(k, k) for k in range(shards)]


# --------------------------------------------------------------------------------------------
# The sharding machinery
# --------------------------------------------------------------------------------------------


def test_map_shards_equals_one_local_call_in_population_order(spark):
    from churn.spark.engine import collect_rows, map_shards

    # Defined here, not at module level: Spark workers cannot import a test module, and a
    # nested function is shipped by value.
    def _toy(tables: dict[str, pd.DataFrame], population: pd.DataFrame) -> pd.DataFrame:
        """A per-customer function: events before the cutoff, and the customer's channel."""
        keys = population[["customer_id", "cutoff"]].drop_duplicates()
        merged = keys.merge(tables["usage_events"], on="customer_id", how="left")
        merged["events"] = (merged["occurred_at"] < merged["cutoff"]).astype("float64")
        counts = merged.groupby(["customer_id", "cutoff"], as_index=False)["events"].sum()
        out = population[["customer_id", "cutoff", "label"]].merge(
            counts, on=["customer_id", "cutoff"], how="left"
        )
        channels = tables["customers"].set_index("customer_id")["acquisition_channel"]
        out["channel"] = out["customer_id"].map(channels).astype("str")
        return out

    tables = make_tables(1, n_customers=40)
    inputs = {name: tables[name] for name in ("customers", "usage_events")}
    # Shuffled, with a duplicated row and a customer unknown to every table.
    population = all_keys(tables).sample(frac=1.0, random_state=3)
    population = pd.concat([population, population.head(2)], ignore_index=True)
    population.loc[len(population)] = ["nobody", CUTOFFS[0], pd.NA]
    want = _toy(inputs, population.reset_index(drop=True))
    dtypes = want.dtypes.to_dict()
    # More shards than some tables have customers: empty shards and empty tables per shard.
    rows = map_shards(spark, inputs, population, _toy, dtypes, shards=7)
    pd.testing.assert_frame_equal(collect_rows(rows, dtypes), want)


def test_map_shards_refuses_an_output_that_breaks_the_schema(spark):
    from churn.spark.engine import collect_rows, map_shards

    tables = make_tables(2, n_customers=10)
    population = all_keys(tables)

    def wrong(frames: dict[str, pd.DataFrame], pop: pd.DataFrame) -> pd.DataFrame:
        return pop.assign(extra=1.0)

    dtypes = {"customer_id": "str", "cutoff": "datetime64[us, UTC]", "label": "Int8"}
    rows = map_shards(spark, {"customers": tables["customers"]}, population, wrong, dtypes, 2)
    with pytest.raises(Exception, match="output columns differ"):
        collect_rows(rows, dtypes)


def test_arrow_round_trip_restores_the_validated_dtypes():
    from churn.spark.engine import arrow_to_pandas

    frame = pd.DataFrame(
        {
            "s": pd.array(["a", None], dtype="str"),
            "t": pd.Series(pd.to_datetime(["2024-01-01", None], utc=True)).astype(
                "datetime64[us, UTC]"
            ),
            "i": pd.array([1, None], dtype="Int64"),
            "b": pd.array([True, None], dtype="boolean"),
            "l": pd.array([None, 1], dtype="Int8"),
            "f": [np.nan, 1.5],
        }
    )
    # What Spark hands back: naive nanosecond timestamps, floats for nullable integers.
    table = pa.table(
        {
            "s": pa.array(["a", None]),
            "t": pa.array([pd.Timestamp("2024-01-01"), None], pa.timestamp("ns")),
            "i": pa.array([1.0, None]),
            "b": pa.array([True, None]),
            "l": pa.array([None, 1], pa.int8()),
            "f": pa.array([None, 1.5]),
        }
    )
    pd.testing.assert_frame_equal(arrow_to_pandas(table, frame.dtypes.to_dict()), frame)


# --------------------------------------------------------------------------------------------
# Features: Spark equals local
# --------------------------------------------------------------------------------------------


def test_spark_features_equal_local_features(spark):
    from churn.spark.engine import build_features_spark

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
    from churn.spark.engine import coerce_dtypes

    return coerce_dtypes(frame, like.dtypes.to_dict())


def test_spark_features_skip_the_same_families_when_tables_are_absent(spark):
    from churn.spark.engine import build_features_spark

    tables = make_tables(6, n_customers=20)
    kept = {k: v for k, v in tables.items() if k in ("customers", "subscriptions", "nps_responses")}
    population = all_keys(tables)
    want = build_features(kept, population, spark_cfg(2))
    got = build_features_spark(spark, kept, population, spark_cfg(2))
    assert got.skipped == want.skipped and "support" in got.skipped
    assert_same_features(got.frame, want.frame)


def test_entity_mode_features_equal_local(spark):
    from churn.spark.engine import build_features_spark

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


# --------------------------------------------------------------------------------------------
# The runner hooks, end to end on simulated data
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """A tiny simulated business, validated and labelled, written like the pipeline does."""
    from churn.io import write_parquet
    from churn.labels.build import build_labels
    from churn.stages.ingest import validate_tables
    from churn.stages.simulate.engine import simulate

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
        )
        outputs[engine] = pd.read_parquet(tmp_path / engine / "features.parquet")
    assert_same_features(outputs["spark"], outputs["local"])
    assert (tmp_path / "spark" / "catalog.csv").read_text() == (
        tmp_path / "local" / "catalog.csv"
    ).read_text()


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["file", "directory"])
def test_run_features_spark_reads_and_writes_parquet(spark, simulated, tmp_path, layout):
    from churn.spark.engine import run_features_spark

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
        from churn.spark.engine import pandas_dtypes_of_parquet

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

    from churn.model.artifact import Calibrator, ChurnModel, learn_categorical_levels
    from churn.stages.score import run_score

    params, tables, labels = simulated["params"], simulated["tables"], simulated["labels"]
    result = build_features(tables, labels, params.features)
    names = ["support_tickets_last_30d", "mrr_at_cutoff", "last_nps_score", "plan"]
    catalog = result.catalog.set_index("name").loc[names].reset_index()
    train = result.frame[result.frame["label"].notna()]
    model = ChurnModel(
        booster=None,  # type: ignore[arg-type]  # prepare() needs only names and levels
        feature_names=tuple(names),
        categorical_levels=learn_categorical_levels(train, ["plan"]),
        calibrator=Calibrator(method="identity"),
        catalog=catalog,
    )
    data = lgb.Dataset(model.prepare(train), train["label"].to_numpy(dtype=int), feature_name=names)
    settings = {"objective": "binary", "num_leaves": 4, "verbose": -1, "num_threads": 1}
    model.booster = lgb.train(settings, data, num_boost_round=10)
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


# --------------------------------------------------------------------------------------------
# Scoring: Spark equals score_frame + finalize_scores
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A real SQLite MLflow store with the tiny model logged twice (with and without params)."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec

    from churn.tracking.signature import pin_model_requirements
    from churn.tracking.store import connect_tracking, quiet_mlflow

    root = tmp_path_factory.mktemp("spark-mlflow")
    frame = make_feature_frame(n_customers=300, n_cutoffs=3)
    model = fit_tiny_model(frame)
    model.save(root / "churn_model")
    with fresh_store(root, tmp_path_factory.getbasetemp()) as uri, quiet_mlflow():
        _, experiment_id = connect_tracking()
        with mlflow.start_run(experiment_id=experiment_id):
            mlflow.pyfunc.log_model(
                name="model",
                **pyfunc_log_arguments(root / "churn_model", reasons=3),
                registered_model_name="churn",
                pip_requirements=pin_model_requirements(),
                signature=ModelSignature(
                    inputs=None, params=ParamSchema([ParamSpec("reasons", "long", 3)])
                ),
            )
            # The way models were logged before "models from code": a pickled wrapper
            # (python_model.pkl) beside the ChurnModel files.
            fixed = mlflow.pyfunc.log_model(
                name="fixed",
                python_model=ChurnPyfuncModel(reasons=3),
                artifacts={ARTIFACT_KEY: str(root / "churn_model")},
                pip_requirements=pin_model_requirements(),
            )
        MlflowClient(uri).set_registered_model_alias("churn", "champion", "1")
        yield {
            "uri": uri,
            "fixed_uri": fixed.model_uri,
            "exported": root / "churn_model",
            "model": model,
            "frame": frame,
        }


def _one_cutoff(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["cutoff"] == frame["cutoff"].max()].reset_index(drop=True)


def _spark_scores(spark, features, model_uri, reasons) -> pd.DataFrame:
    from churn.spark.engine import score_dtypes, score_spark, spark_to_pandas

    scores = score_spark(spark, features, model_uri, reasons)
    return spark_to_pandas(scores, score_dtypes(scores))


@pytest.mark.parametrize("reasons", [3, 5])
def test_spark_scores_equal_local_scores_with_the_registered_model(
    spark, registry, monkeypatch, reasons
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry["uri"])
    features = _one_cutoff(registry["frame"])
    features.loc[features.index[::7], "last_nps_score"] = np.nan  # missing values reach reasons
    want = finalize_scores(score_frame(registry["model"], features, reasons))
    got = _spark_scores(spark, features, "models:/churn@champion", reasons)
    assert list(got.columns) == list(want.columns)
    assert got.dtypes.to_dict() == want.dtypes.to_dict()
    text = [c for c in want.columns if want[c].dtype != "float64"]
    pd.testing.assert_frame_equal(got[text], want[text], check_exact=True)  # reasons, deciles
    for name in [c for c in want.columns if c not in text]:
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-9, err_msg=name)
    # Empty reason slots stay missing (spark_udf would have turned them into the text "nan").
    assert want["reason_3_feature"].isna().any()
    assert not (got.filter(like="reason_").astype("object") == "nan").any().any()


def test_spark_scores_an_exported_model_directory(spark, registry):
    features = _one_cutoff(registry["frame"])
    want = finalize_scores(score_frame(registry["model"], features, 2))
    got = _spark_scores(spark, features, registry["exported"], 2)
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=0, atol=1e-9)


def test_a_pickled_legacy_model_is_scored_from_its_data_files_never_unpickled(
    spark, registry, monkeypatch, tmp_path
):
    import mlflow.artifacts

    from churn.spark.engine import score_spark

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry["uri"])
    local = Path(mlflow.artifacts.download_artifacts(registry["fixed_uri"], dst_path=tmp_path))
    marker = tmp_path / "pickle-ran"
    write_marker_pickle(local / "python_model.pkl", marker)
    features = _one_cutoff(registry["frame"]).head(50)
    got = spark_to_pandas_scores(score_spark(spark, features, local, reasons=2))
    want = finalize_scores(score_frame(registry["model"], features, 2))
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=0, atol=1e-9)
    assert not marker.exists()


def spark_to_pandas_scores(scores) -> pd.DataFrame:
    from churn.spark.engine import score_dtypes, spark_to_pandas

    return spark_to_pandas(scores, score_dtypes(scores))


@pytest.mark.slow
def test_run_score_spark_scores_the_latest_cutoff(spark, registry, tmp_path, monkeypatch):
    from churn.io import write_parquet
    from churn.spark.engine import run_score_spark

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry["uri"])
    frame = registry["frame"]
    write_parquet(frame, tmp_path / "features.parquet")
    summary = run_score_spark(
        Params(),
        tmp_path / "features.parquet",
        "models:/churn@champion",
        tmp_path / "scores.parquet",
        spark=spark,
    )
    latest = frame["cutoff"].max()
    assert summary["cutoff"] == latest.isoformat()
    want = finalize_scores(score_frame(registry["model"], _one_cutoff(frame), 3))
    got = pd.read_parquet(tmp_path / "scores.parquet")
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=0, atol=1e-9)
    # An explicit cutoff picks other rows; a cutoff with no rows is a clear error.
    earlier = Params().model_copy(
        update={"score": Params().score.model_copy(update={"cutoff": frame["cutoff"].min().date()})}
    )
    run_score_spark(
        earlier,
        tmp_path / "features.parquet",
        registry["exported"],
        tmp_path / "early.parquet",
        spark=spark,
    )
    assert (pd.read_parquet(tmp_path / "early.parquet")["cutoff"] == frame["cutoff"].min()).all()
    from churn.errors import EmptyPopulationError

    missing = Params().model_copy(
        update={"score": Params().score.model_copy(update={"cutoff": dt.date(1999, 1, 1)})}
    )
    with pytest.raises(EmptyPopulationError):
        run_score_spark(
            missing,
            tmp_path / "features.parquet",
            registry["exported"],
            tmp_path / "x.parquet",
            spark=spark,
        )


def test_module_import_starts_nothing():
    """Importing churn.spark.engine creates no session and no JVM (no import-time side effects)."""
    import subprocess

    code = "import sys, churn.spark.engine; assert 'pyspark' not in sys.modules, 'pyspark imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
