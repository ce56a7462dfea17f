"""Tests for churn.explain: global importance core and the explain runner's files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from support.mlflow_store import fresh_store
from support.tiny import TINY_CATALOG, fit_tiny_model

from churn.config import Params
from churn.domain.families import FAMILIES
from churn.errors import EmptyPopulationError
from churn.model.importance import compute_global_importance, select_explain_sample
from churn.stages.explain import escape_plot_text, run_explain
from churn.tracking.store import connect_tracking, quiet_mlflow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_global_importance_matches_a_naive_reference():
    rng = np.random.default_rng(11)
    names = list(TINY_CATALOG["name"])
    contributions = pd.DataFrame(rng.normal(size=(200, len(names))), columns=names)
    importance = compute_global_importance(contributions, TINY_CATALOG)

    family_of = dict(zip(TINY_CATALOG["name"], TINY_CATALOG["family"], strict=True))
    expected = {n: float(np.mean([abs(v) for v in contributions[n]])) for n in names}
    got = importance.features.set_index("feature")["mean_abs_shap"]
    for name in names:
        assert got[name] == pytest.approx(expected[name])
    assert importance.features["mean_abs_shap"].is_monotonic_decreasing
    families = importance.families.set_index("family")["mean_abs_shap"]
    for family in FAMILIES:
        total = sum(v for n, v in expected.items() if family_of[n] == family)
        assert families[family] == pytest.approx(total)
    for table in (importance.features, importance.families, importance.phases):
        assert table["share"].sum() == pytest.approx(1.0)
    phases = importance.phases.set_index("phase")["mean_abs_shap"]
    pre_sale = [
        n for n in names if n in ("acquisition_channel", "docs_and_help_views_before_conversion")
    ]
    assert phases["pre_sale"] == pytest.approx(sum(expected[n] for n in pre_sale))


def test_every_family_and_phase_is_listed_even_without_features():
    contributions = pd.DataFrame({"support_tickets_last_30d": [1.0, -1.0], "mystery": [0.5, 0.5]})
    importance = compute_global_importance(contributions, TINY_CATALOG)
    assert set(FAMILIES) | {"unknown"} == set(importance.families["family"])
    assert {"pre_sale", "post_sale", "unknown"} == set(importance.phases["phase"])
    assert importance.features.set_index("feature").loc["mystery", "family"] == "unknown"


def test_sample_is_seeded_and_comes_from_the_latest_cutoff(feature_frame):
    sample = select_explain_sample(feature_frame, 60, seed=0)
    assert len(sample) == 60
    assert (sample["cutoff"] == feature_frame["cutoff"].max()).all()
    pd.testing.assert_frame_equal(sample, select_explain_sample(feature_frame, 60, seed=0))
    assert len(select_explain_sample(feature_frame, 10_000, seed=0)) == 400
    with pytest.raises(EmptyPopulationError):
        select_explain_sample(feature_frame.head(0), 60, seed=0)


def test_run_explain_writes_tables_plots_and_summary(tiny_model, feature_frame, tmp_path):
    tiny_model.save(tmp_path / "model")
    feature_frame.to_parquet(tmp_path / "features.parquet")
    params = Params.model_validate({"explain": {"sample_rows": 80, "dependence_features": 2}})
    summary = run_explain(
        params, tmp_path / "features.parquet", tmp_path / "model", tmp_path / "out"
    )

    out = tmp_path / "out"
    importance = pd.read_csv(out / "global_importance.csv")
    assert list(importance.columns) == [
        "feature",
        "family",
        "phase",
        "reason_eligible",
        "mean_abs_shap",
        "share",
    ]
    assert set(importance["feature"]) == set(tiny_model.feature_names)
    assert list(pd.read_csv(out / "family_importance.csv").columns) == [
        "family",
        "mean_abs_shap",
        "share",
    ]
    assert set(pd.read_csv(out / "phase_importance.csv")["phase"]) == {"pre_sale", "post_sale"}
    top_two = list(importance["feature"].head(2))
    expected_plots = {
        "shap_beeswarm.png",
        "importance_features.png",
        "importance_families.png",
        "importance_phases.png",
        *(f"dependence_{name}.png" for name in top_two),
    }
    assert set(summary["plots"]) == expected_plots
    for name in expected_plots:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    written = json.loads((out / "explain.json").read_text())
    assert written["rows_explained"] == 80 and written["mlflow_run_id"] is None
    assert written["cutoff"].startswith("2025-04-01")
    assert sum(written["phase_share"].values()) == pytest.approx(1.0)


def test_the_same_run_draws_the_same_pictures_and_leaves_numpys_random_state(
    tiny_model, feature_frame, tmp_path
):
    tiny_model.save(tmp_path / "model")
    feature_frame.to_parquet(tmp_path / "features.parquet")
    params = Params.model_validate({"explain": {"sample_rows": 80, "dependence_features": 1}})
    np.random.seed(5)
    expected_next = np.random.get_state()[1].copy()
    for out in ("first", "second"):
        run_explain(params, tmp_path / "features.parquet", tmp_path / "model", tmp_path / out)
    np.testing.assert_array_equal(np.random.get_state()[1], expected_next)
    pictures = sorted(p.name for p in (tmp_path / "first").glob("*.png"))
    assert "shap_beeswarm.png" in pictures
    for name in pictures:
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes()


def test_unreadable_registry_file_does_not_fail_the_stage(tiny_model, feature_frame, tmp_path):
    tiny_model.save(tmp_path / "model")
    (tmp_path / "model" / "registry.json").write_text("[not, an, object")
    feature_frame.to_parquet(tmp_path / "features.parquet")
    params = Params.model_validate({"explain": {"sample_rows": 50, "dependence_features": 0}})
    summary = run_explain(params, tmp_path / "features.parquet", tmp_path / "model", tmp_path / "o")
    assert summary["mlflow_run_id"] is None


def test_plots_are_logged_to_the_training_run(tiny_model, feature_frame, tmp_path_factory):
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("explain-mlflow")
    tiny_model.save(root / "model")
    feature_frame.to_parquet(root / "features.parquet")
    with fresh_store(root, tmp_path_factory.getbasetemp()) as uri, quiet_mlflow():
        client, experiment_id = connect_tracking()
        run_id = client.create_run(experiment_id).info.run_id
        (root / "model" / "registry.json").write_text(json.dumps({"run_id": run_id}))
        params = Params.model_validate({"explain": {"sample_rows": 50, "dependence_features": 1}})
        summary = run_explain(params, root / "features.parquet", root / "model", root / "out")
        logged = MlflowClient(uri).list_artifacts(run_id, "explain")
    assert summary["mlflow_run_id"] == run_id
    assert {artifact.path.split("/")[-1] for artifact in logged} == set(summary["plots"])


def test_registry_file_without_a_store_is_skipped(tiny_model, feature_frame, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'absent.db'}")
    tiny_model.save(tmp_path / "model")
    (tmp_path / "model" / "registry.json").write_text(json.dumps({"run_id": "abc"}))
    feature_frame.to_parquet(tmp_path / "features.parquet")
    params = Params.model_validate({"explain": {"sample_rows": 50, "dependence_features": 0}})
    summary = run_explain(params, tmp_path / "features.parquet", tmp_path / "model", tmp_path / "o")
    assert summary["mlflow_run_id"] is None
    assert not (tmp_path / "absent.db").exists()


def test_plot_text_is_escaped_so_mathtext_never_runs():
    assert escape_plot_text(r"$\notacommand{x}$") == r"\$\notacommand{x}\$"
    assert escape_plot_text("plain") == "plain"
    assert escape_plot_text(3) == "3"


def test_a_category_value_that_looks_like_mathtext_is_drawn_literally(feature_frame, tmp_path):
    hostile = r"$\notacommand{x}$"  # unescaped, matplotlib's mathtext parser raises on it
    frame = feature_frame.assign(plan=feature_frame["plan"].replace("pro", hostile))
    model = fit_tiny_model(frame)
    assert hostile in model.categorical_levels["plan"]
    model.save(tmp_path / "model")
    frame.to_parquet(tmp_path / "features.parquet")
    params = Params.model_validate({"explain": {"sample_rows": 120, "dependence_features": 7}})
    summary = run_explain(params, tmp_path / "features.parquet", tmp_path / "model", tmp_path / "o")
    assert "dependence_plan.png" in summary["plots"]
    assert (tmp_path / "o" / "dependence_plan.png").read_bytes()[:8] == PNG_MAGIC
