"""Tests for the MLflow pyfunc and for scoring with a registered model (real SQLite store)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support.mlflow_store import fresh_store, log_registered_churn_model
from support.tiny import fit_tiny_model, make_feature_frame

from churn.errors import ModelError
from churn.model.scoring import score_frame
from churn.tracking.loading import load_model
from churn.tracking.pyfunc import pyfunc_log_arguments
from churn.tracking.signature import pin_model_requirements
from churn.tracking.store import connect_tracking, quiet_mlflow


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A SQLite MLflow store holding the tiny model as ``churn`` version 1, alias ``champion``."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ParamSchema, ParamSpec

    root = tmp_path_factory.mktemp("mlflow")
    frame = make_feature_frame(n_customers=100, n_cutoffs=2)
    model = fit_tiny_model(frame)
    model.save(root / "churn_model")
    with fresh_store(root, tmp_path_factory.getbasetemp()) as uri, quiet_mlflow():
        _, experiment_id = connect_tracking()  # artifacts beside the store, not in the cwd
        with mlflow.start_run(experiment_id=experiment_id):
            info = log_registered_churn_model(
                root / "churn_model",
                2,
                # MLflow passes `params` to predict only when the signature declares them.
                signature=ModelSignature(
                    inputs=None, params=ParamSchema([ParamSpec("reasons", "long", 2)])
                ),
            )
        MlflowClient(uri).set_registered_model_alias("churn", "champion", "1")
        yield {
            "uri": uri,
            "model_uri": info.model_uri,
            "run_id": info.run_id,
            "model": model,
            "frame": frame,
        }


def test_logged_pyfunc_predicts_the_score_frame(registry, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry["uri"])
    loaded = mlflow.pyfunc.load_model(registry["model_uri"])
    frame = registry["frame"]
    predicted = loaded.predict(frame)
    expected = score_frame(registry["model"], frame, reasons=2)
    pd.testing.assert_frame_equal(predicted.reset_index(drop=True), expected.reset_index(drop=True))
    with_five = loaded.predict(frame.head(10), params={"reasons": 5})
    assert "reason_5_text" in with_five.columns


def test_champion_alias_resolves_to_the_logged_churn_model(registry, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry["uri"])
    model = load_model("models:/churn@champion")
    frame = registry["frame"]
    np.testing.assert_array_equal(
        model.predict_proba(frame), registry["model"].predict_proba(frame)
    )
    assert model.feature_names == registry["model"].feature_names


def test_missing_champion_is_a_clear_error(registry, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry["uri"])
    with pytest.raises(ModelError, match="--model models/churn"):
        load_model("models:/churn@challenger")
    with pytest.raises(ModelError, match="--model models/churn"):
        load_model("models:/not_registered@champion")


@pytest.fixture(scope="module")
def signed_model(tmp_path_factory):
    """The tiny model logged with the training signature (``build_model_signature``)."""
    import mlflow

    from churn.tracking.signature import build_model_signature

    root = tmp_path_factory.mktemp("mlflow_signed")
    frame = make_feature_frame(n_customers=100, n_cutoffs=2, seed=5)
    model = fit_tiny_model(frame)
    model.save(root / "churn_model")
    example = frame.drop(columns=["label"]).head(5)
    with fresh_store(root, tmp_path_factory.getbasetemp()) as uri, quiet_mlflow():
        _, experiment_id = connect_tracking()
        with mlflow.start_run(experiment_id=experiment_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                **pyfunc_log_arguments(root / "churn_model", reasons=2),
                pip_requirements=pin_model_requirements(),
                signature=build_model_signature(model, example, reasons=2),
            )
        yield {"uri": uri, "model_uri": info.model_uri, "model": model, "frame": frame}


def _third_party_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Raw entity rows as an export holds them: integer ids and counts, no cutoff, no label."""
    rows = frame.drop(columns=["label", "cutoff"]).head(12).reset_index(drop=True)
    rows["customer_id"] = range(7001, 7001 + len(rows))  # integer ids
    for name in ("support_tickets_last_30d", "active_days_last_30d", "last_nps_score"):
        rows[name] = rows[name].fillna(0).round().astype("int64")
    return rows


def test_signed_pyfunc_scores_int_columns_without_a_cutoff(signed_model, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", signed_model["uri"])
    loaded = mlflow.pyfunc.load_model(signed_model["model_uri"])
    rows = _third_party_rows(signed_model["frame"])
    predicted = loaded.predict(rows)
    reference = rows.astype({n: "float64" for n in rows.columns if rows[n].dtype == "int64"})
    reference["customer_id"] = reference["customer_id"].astype("int64").astype(str)
    expected = score_frame(signed_model["model"], reference, reasons=2)
    np.testing.assert_allclose(
        predicted["churn_probability"].to_numpy(), expected["churn_probability"].to_numpy()
    )
    assert predicted["customer_id"].tolist() == [str(i) for i in range(7001, 7013)]
    today = pd.Timestamp.now(tz="UTC").floor("D")
    assert (pd.to_datetime(predicted["cutoff"], utc=True) == today).all()


def test_signed_pyfunc_names_a_missing_feature_column(signed_model, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", signed_model["uri"])
    loaded = mlflow.pyfunc.load_model(signed_model["model_uri"])
    rows = _third_party_rows(signed_model["frame"]).drop(columns=["active_days_last_30d"])
    with pytest.raises(Exception, match="active_days_last_30d"):
        loaded.predict(rows)


def test_signed_pyfunc_names_a_mistyped_feature_column(signed_model, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", signed_model["uri"])
    loaded = mlflow.pyfunc.load_model(signed_model["model_uri"])
    rows = _third_party_rows(signed_model["frame"])
    rows["support_tickets_last_30d"] = "many"
    with pytest.raises(Exception, match="support_tickets_last_30d"):
        loaded.predict(rows)


@pytest.fixture(scope="module")
def model_with_head(tmp_path_factory):
    """An export folder holding a classifier and its survival head (survival frames)."""
    from support.survival_frames import save_model_with_head

    folder = tmp_path_factory.mktemp("export") / "churn"
    test, params = save_model_with_head(folder)
    return folder, test, params


class _Context:
    def __init__(self, folder, config):
        self.artifacts = {"churn_model": str(folder)}
        self.model_config = config


@pytest.mark.parametrize("model_form", ["classifier", "hazard"])
def test_pyfunc_returns_the_horizon_columns_of_churn_score(model_with_head, model_form):
    from churn.model.horizon_scoring import (
        add_horizon_columns_if_fitted,
        score_with_model_form,
    )
    from churn.tracking.pyfunc import ChurnPyfuncModel

    folder, test, params = model_with_head
    params = params.model_copy(
        update={"train": params.train.model_copy(update={"model_form": model_form})}
    )
    arguments = pyfunc_log_arguments(
        folder, 3, horizon_days=params.label.horizon_days, model_form=model_form
    )
    wrapper = ChurnPyfuncModel()
    wrapper.load_context(_Context(folder, arguments["model_config"]))
    predicted = wrapper.predict(None, test)
    # The local score stage's path: reasons per model form, then the horizon columns.
    model = load_model(folder)
    local = add_horizon_columns_if_fitted(
        score_with_model_form(model, test, folder, params).scores, test, folder, params
    )
    assert {"churn_probability_30d", "churn_probability_90d", "next_decision_date"} <= set(
        predicted.columns
    )
    pd.testing.assert_frame_equal(predicted, local)
    if model_form == "hazard":
        assert (predicted["churn_probability"] == predicted["churn_probability_60d"]).all()
    else:
        assert (predicted["churn_probability"] != predicted["churn_probability_60d"]).any()



def test_a_registered_model_scores_with_its_horizon_columns(
    model_with_head, tmp_path, tmp_path_factory, monkeypatch
):
    """``churn score --model models:/churn@champion`` gets the head too (open_model_folder)."""
    import mlflow
    from mlflow import MlflowClient

    from churn.model.horizon_scoring import add_horizon_columns_if_fitted, score_with_model_form
    from churn.model.survival import has_survival_head
    from churn.tracking.loading import open_model_folder

    folder, test, params = model_with_head
    with fresh_store(tmp_path, tmp_path_factory.getbasetemp()) as uri, quiet_mlflow():
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        _, experiment_id = connect_tracking()
        with mlflow.start_run(experiment_id=experiment_id):
            log_registered_churn_model(folder, 3, horizon_days=params.label.horizon_days)
        MlflowClient(uri).set_registered_model_alias("churn", "champion", "1")

        def score(source):
            model = load_model(source)
            scored = score_with_model_form(model, test, source, params).scores
            return add_horizon_columns_if_fitted(scored, test, source, params)

        with open_model_folder("models:/churn@champion") as downloaded:
            assert downloaded != folder and has_survival_head(downloaded)
            from_registry = score(downloaded)
        assert not downloaded.exists()  # the download is removed after use
    assert "churn_probability_30d" in from_registry.columns
    pd.testing.assert_frame_equal(from_registry, score(folder))
