"""Tests for :mod:`churn.spark.scoring`: Spark scores equal ``score_frame`` + ``finalize_scores``.

Everything runs a real local PySpark session (``local[2]``, the ``spark`` fixture) and a real
SQLite MLflow store; the runner check is also marked ``slow``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.hostile import write_marker_pickle
from support.mlflow_store import fresh_store, log_registered_churn_model
from support.tiny import fit_tiny_model, make_feature_frame

from churn.config import Params
from churn.model.scoring import finalize_scores, score_frame
from churn.tracking.pyfunc import ARTIFACT_KEY, ChurnPyfuncModel

pytest.importorskip("pyspark")  # the optional churn[spark] extra

pytestmark = pytest.mark.spark


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
            log_registered_churn_model(
                root / "churn_model",
                3,
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
    from churn.spark import score_dtypes, score_spark, spark_to_pandas

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

    from churn.spark.scoring import score_spark

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
    from churn.spark import score_dtypes, spark_to_pandas

    return spark_to_pandas(scores, score_dtypes(scores))


@pytest.mark.slow
def test_run_score_spark_scores_the_latest_cutoff(spark, registry, tmp_path, monkeypatch):
    from churn.io import write_parquet
    from churn.spark.scoring import run_score_spark

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


@pytest.mark.parametrize("model_form", ["classifier", "hazard"])
def test_spark_scores_have_the_horizon_columns_of_churn_score(spark, tmp_path, model_form):
    from support.survival_frames import save_model_with_head

    from churn.model.horizon_scoring import add_horizon_columns_if_fitted, score_with_model_form
    from churn.spark import score_dtypes, score_spark, spark_to_pandas
    from churn.tracking.loading import load_model

    folder = tmp_path / "churn"
    features, params = save_model_with_head(folder, n_customers=200)
    params = params.model_copy(
        update={"train": params.train.model_copy(update={"model_form": model_form})}
    )
    local = score_with_model_form(load_model(folder), features, folder, params).scores
    want = finalize_scores(add_horizon_columns_if_fitted(local, features, folder, params))
    scores = score_spark(
        spark, features, folder, params.score.reasons, horizon_days=60, model_form=model_form
    )
    got = spark_to_pandas(scores, score_dtypes(scores))
    assert {"churn_probability_30d", "churn_probability_90d", "next_decision_date"} <= set(got)
    assert list(got.columns) == list(want.columns)
    assert got.dtypes.to_dict() == want.dtypes.to_dict()
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=0, atol=1e-9)


def test_a_worker_loads_the_broadcast_model_without_leaving_files_behind(
    registry, tmp_path, monkeypatch
):
    """The unpacked model folder is removed once loaded: one per worker used to pile up."""
    import tempfile
    from types import SimpleNamespace

    from churn.spark import scoring

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(scoring, "_WORKER_MODELS", {})
    # Spark's Broadcast is read through ``.value`` only.
    broadcast = SimpleNamespace(value=scoring._archive(registry["exported"]))
    model, head = scoring._worker_model("digest", broadcast)
    frame = _one_cutoff(registry["frame"])
    np.testing.assert_array_equal(
        model.predict_proba(frame), registry["model"].predict_proba(frame)
    )
    assert head is None
    assert list(tmp_path.iterdir()) == []
    assert scoring._worker_model("digest", broadcast)[0] is model
