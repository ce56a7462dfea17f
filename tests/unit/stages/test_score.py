"""Tests for the score runner: cutoff, atomic writes, empty population, what changed since."""

from __future__ import annotations

import datetime as dt
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.kernels import record_compile_starts
from support.tiny import TINY_CATALOG, make_feature_frame

from churn.config import Params
from churn.errors import ChurnError, DataContractError, EmptyPopulationError
from churn.io import read_time_statistics
from churn.model.changes import compare_scores, sidecar_path
from churn.stages.score import run_score
from churn.stages.scoring_population import choose_cutoff, find_latest_time

CONVERTED_MAX = pd.Timestamp("2025-03-10 17:45", tz="UTC")


@pytest.fixture
def pipeline(monkeypatch, tmp_path, tiny_model):
    """A model directory, a validated directory, and stand-ins for the population and features.

    ``state["features"]`` is the feature frame the stand-ins serve at any cutoff; tests edit it
    to simulate the next night's data. The stand-ins keep these tests independent of the label
    and feature code (tested on their own); the real chain runs in the end-to-end test.
    """
    state = {"features": make_feature_frame(n_customers=150, n_cutoffs=1, seed=3)}

    def active_population(tables, cutoff, cfg):
        frame = state["features"]
        return pd.DataFrame(
            {
                "customer_id": frame["customer_id"].array,
                "cutoff": pd.Series(cutoff, index=frame.index).astype("datetime64[us, UTC]"),
                "label": pd.array([pd.NA] * len(frame), dtype="Int8"),
                "mrr": frame["mrr_at_cutoff"].to_numpy(),
            }
        )

    def build_features(tables, population, cfg, **options):
        # The population is made from the same frame, row for row.
        frame = state["features"].assign(cutoff=population["cutoff"].to_numpy())
        return types.SimpleNamespace(frame=frame, catalog=TINY_CATALOG.copy(), skipped={})

    monkeypatch.setattr("churn.labels.build.active_population", active_population)
    monkeypatch.setattr("churn.stages.features.build_features", build_features)
    validated = tmp_path / "validated"
    validated.mkdir()
    customers = pd.DataFrame(
        {
            "customer_id": ["c00000", "c00001"],
            "converted_at": pd.to_datetime(["2024-01-01", CONVERTED_MAX], utc=True).astype(
                "datetime64[us, UTC]"
            ),
        }
    )
    customers.to_parquet(validated / "customers.parquet")
    subscriptions = customers.rename(columns={"converted_at": "started_at"})
    subscriptions.assign(started_at=subscriptions["started_at"] - pd.Timedelta(days=30)).to_parquet(
        validated / "subscriptions.parquet"
    )
    tiny_model.save(tmp_path / "model")
    return types.SimpleNamespace(
        state=state, validated=validated, model=tmp_path / "model", out=tmp_path / "s.parquet"
    )


def _run(pipeline, params=None, previous=None):
    return run_score(
        params or Params(), pipeline.validated, str(pipeline.model), pipeline.out, previous
    )


def test_writes_ranked_scores_and_a_contributions_sidecar(pipeline, tiny_model):
    summary = _run(pipeline)
    scores = pd.read_parquet(pipeline.out)
    assert len(scores) == 150 and summary["rows"] == 150
    assert (scores["cutoff"] == pd.Timestamp("2025-03-11", tz="UTC")).all()
    assert scores["expected_revenue_at_risk"].is_monotonic_decreasing
    assert scores.columns.get_loc("risk_decile") == scores.columns.get_loc("mrr") + 2
    top = scores.loc[scores["risk_decile"] == 1, "churn_probability"].min()
    assert top >= scores.loc[scores["risk_decile"] > 1, "churn_probability"].max()
    contributions = pd.read_parquet(sidecar_path(pipeline.out, "_contributions"))
    assert set(tiny_model.feature_names) <= set(contributions.columns)
    assert summary["changes"] is None
    assert not sidecar_path(pipeline.out, "_changes").exists()


def test_the_kernels_compile_ahead_sized_by_the_customer_table(pipeline, monkeypatch):
    # Small enough thresholds that these 150 rows are explained and scored by the kernels:
    # the stage starts compiling them, sized by the customer table (2 rows here), and the
    # scores are those of a run that compiles on the first call.
    from churn.model.artifact import ChurnModel

    started = record_compile_starts(monkeypatch)
    _run(pipeline)
    ahead = pd.read_parquet(pipeline.out)
    assert [rows for rows, _ in started] == [2]
    started[0][1].join()  # a thread was started (not None) and it finished
    monkeypatch.setattr(ChurnModel, "start_compiling", lambda model, rows, **options: None)
    pipeline.out.unlink()
    _run(pipeline)
    pd.testing.assert_frame_equal(pd.read_parquet(pipeline.out), ahead)


def test_csv_output_and_a_configured_cutoff(pipeline):
    pipeline.out = pipeline.out.with_suffix(".csv")
    params = Params.model_validate(
        {"score": {"output_format": "csv", "cutoff": "2025-02-01", "reasons": 2}}
    )
    _run(pipeline, params)
    scores = pd.read_csv(pipeline.out)
    assert set(scores["cutoff"]) == {"2025-02-01 00:00:00+00:00"}
    assert "reason_2_text" in scores.columns and "reason_3_text" not in scores.columns


def test_empty_population_raises_and_leaves_existing_output_untouched(pipeline):
    pipeline.out.write_bytes(b"yesterday's scores")
    pipeline.state["features"] = pipeline.state["features"].head(0)
    with pytest.raises(EmptyPopulationError, match="no customer is active"):
        _run(pipeline)
    assert pipeline.out.read_bytes() == b"yesterday's scores"
    assert not sidecar_path(pipeline.out, "_contributions").exists()
    assert sorted(p.name for p in pipeline.out.parent.iterdir()) == [
        "model",
        "s.parquet",
        "validated",
    ]  # no temporary file left behind either


def test_rescoring_the_same_path_reports_what_changed(pipeline):
    _run(pipeline)
    before = pd.read_parquet(pipeline.out)
    before_contributions = pd.read_parquet(sidecar_path(pipeline.out, "_contributions"))
    frame = pipeline.state["features"].iloc[5:].copy()  # c00000-c00004 are gone
    frame.loc[frame.index[:10], "support_tickets_last_30d"] += 5
    newcomers = make_feature_frame(n_customers=153, n_cutoffs=1, seed=4).tail(3)
    pipeline.state["features"] = pd.concat([frame, newcomers], ignore_index=True)
    summary = _run(pipeline)

    changes = pd.read_parquet(summary["changes"])
    status = changes.set_index("customer_id")["status"]
    assert set(status[status == "gone"].index) == {f"c{i:05d}" for i in range(5)}
    assert set(status[status == "new"].index) == set(newcomers["customer_id"])
    after = pd.read_parquet(pipeline.out).set_index("customer_id")["churn_probability"]
    continuing = changes[changes["status"] == "continuing"].set_index("customer_id")
    old = before.set_index("customer_id")["churn_probability"]
    np.testing.assert_allclose(
        continuing["probability_change"], after[continuing.index] - old[continuing.index]
    )
    # Naive reference for the top mover: the largest |contribution change| per customer.
    now = pd.read_parquet(sidecar_path(pipeline.out, "_contributions")).set_index("customer_id")
    features = [c for c in now.columns if c not in ("cutoff", "base_value")]
    was = before_contributions.set_index("customer_id")
    # The loop below checks only customers whose contributions moved: there must be some.
    assert any(
        (now.loc[c, features].astype(float) != was.loc[c, features]).any()
        for c in continuing.index[:40]
    )
    for customer in continuing.index[:40]:
        delta = now.loc[customer, features].astype(float) - was.loc[customer, features]
        if (delta != 0).any():
            assert continuing.loc[customer, "moved_1_feature"] == delta.abs().idxmax()
            assert continuing.loc[customer, "moved_1_delta"] == pytest.approx(
                delta[delta.abs().idxmax()]
            )
    bumped = frame["customer_id"].iloc[:10]
    assert (continuing.loc[bumped, "probability_change"] >= 0).mean() > 0.5
    # Only the bumped tickets changed value, so they are the first mover, worded like a reason.
    description = TINY_CATALOG.set_index("name").loc["support_tickets_last_30d", "description"]
    tickets = frame.set_index("customer_id")["support_tickets_last_30d"]
    named = continuing.loc[bumped].dropna(subset=["moved_1_feature"])
    assert len(named) >= 5
    assert (named["moved_1_feature"] == "support_tickets_last_30d").all()
    for customer, row in named.iterrows():
        now_value, before_value = tickets[customer], tickets[customer] - 5
        assert row["moved_1_text"] == (
            f"{description} rose from {before_value:.0f} to {now_value:.0f}"
        )
    untouched = continuing.drop(index=bumped)
    assert untouched["moved_1_feature"].isna().all()  # nothing else changed value
    assert changes["probability_change"].abs().dropna().is_monotonic_decreasing


def test_explicit_previous_file_missing_means_no_changes(pipeline, tmp_path):
    summary = _run(pipeline, previous=tmp_path / "absent.parquet")
    assert summary["changes"] is None and summary["previous"] is None


def test_a_stale_sidecar_is_not_used_to_explain_changes(pipeline, tmp_path):
    _run(pipeline)
    sidecar = sidecar_path(pipeline.out, "_contributions")
    pd.read_parquet(sidecar).head(10).to_parquet(sidecar)  # from some other run
    changes = pd.read_parquet(_run(pipeline)["changes"])
    assert changes["moved_1_feature"].isna().all()
    np.testing.assert_allclose(changes["probability_change"], 0.0, atol=1e-12)


def test_duplicate_customers_are_refused(pipeline):
    frame = pipeline.state["features"]
    pipeline.state["features"] = pd.concat([frame, frame.head(2)], ignore_index=True)
    with pytest.raises(DataContractError, match="appear twice"):
        _run(pipeline)
    assert not pipeline.out.exists()


def test_no_validated_tables_is_a_clear_error(pipeline, tmp_path):
    pipeline.validated = tmp_path / "empty"
    pipeline.validated.mkdir()
    with pytest.raises(DataContractError, match="churn ingest"):
        _run(pipeline)


def test_spark_engine_without_the_spark_module_is_a_clear_error(pipeline, monkeypatch):
    # None in sys.modules: importing churn.spark.features raises ImportError.
    monkeypatch.setitem(sys.modules, "churn.spark.features", None)
    params = Params.model_validate({"features": {"engine": "spark"}})
    with pytest.raises(ChurnError, match=r"features\.engine is 'spark'"):
        _run(pipeline, params)


def test_cutoff_is_the_day_after_the_latest_known_event():
    tables = {
        "customers": pd.DataFrame({"converted_at": pd.to_datetime(["2025-01-01"], utc=True)}),
        "support_tickets": pd.DataFrame(
            {"opened_at": pd.to_datetime(["2025-02-03 23:59:59"], utc=True)}
        ),
    }
    assert choose_cutoff(tables, None) == pd.Timestamp("2025-02-04", tz="UTC")
    assert choose_cutoff(tables, dt.date(2025, 1, 15)) == pd.Timestamp("2025-01-15", tz="UTC")
    with pytest.raises(DataContractError, match="--cutoff"):
        choose_cutoff({"customers": pd.DataFrame({"converted_at": pd.NaT}, index=[0])}, None)


@pytest.mark.parametrize(
    "stamps",
    [
        pd.to_datetime(["2025-02-03 23:59:59", None, "2024-12-01 00:00:00"]),  # naive: read as UTC
        pd.to_datetime(["2025-02-03 18:59:59", "2024-12-01 00:00:00"]).tz_localize(
            "America/New_York"
        ),
    ],
)
def test_the_latest_time_of_a_parquet_file_equals_the_frames(tmp_path, stamps):
    frame = pd.DataFrame({"customer_id": [str(i) for i in range(len(stamps))], "opened_at": stamps})
    frame.to_parquet(tmp_path / "t.parquet")
    expected = pd.Timestamp("2025-02-03 23:59:59", tz="UTC")
    assert find_latest_time(frame, "opened_at") == expected
    assert find_latest_time(tmp_path / "t.parquet", "opened_at") == expected
    for table in (frame, tmp_path / "t.parquet"):
        assert find_latest_time(table, "closed_at") is None  # no such column
    no_times = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us, UTC]")
    frame.assign(opened_at=no_times).to_parquet(tmp_path / "empty.parquet")
    assert find_latest_time(tmp_path / "empty.parquet", "opened_at") is None
    tables = {"support_tickets": tmp_path / "t.parquet"}
    assert choose_cutoff(tables, None) == pd.Timestamp("2025-02-04", tz="UTC")
    # The row groups' statistics (up to two rows a group) and a scan (no statistics) agree.
    frame.to_parquet(tmp_path / "groups.parquet", row_group_size=2)
    frame.to_parquet(tmp_path / "plain.parquet", write_statistics=False)
    assert read_time_statistics(tmp_path / "groups.parquet", "opened_at") is not None
    assert read_time_statistics(tmp_path / "plain.parquet", "opened_at") is None
    assert find_latest_time(tmp_path / "groups.parquet", "opened_at") == expected
    assert find_latest_time(tmp_path / "plain.parquet", "opened_at") == expected


def write_simulated_validated_tables(params: Params, folder: Path) -> dict[str, pd.DataFrame]:
    """Simulate ``params.simulate``, validate it like ingest and write each table to ``folder``."""
    from churn.stages.ingest import validate_tables
    from churn.stages.simulate.engine import simulate

    valid = validate_tables(
        simulate(params.simulate).tables, params.ingest, pd.Timestamp("2100-01-01", tz="UTC")
    ).valid
    folder.mkdir()
    for name, frame in valid.items():
        frame.to_parquet(folder / f"{name}.parquet")
    return valid


@pytest.mark.slow  # simulates a small business with its mess: a few seconds
def test_scoring_from_the_files_gives_the_features_scoring_from_frames_gave(tmp_path):
    """Event tables stay Parquet paths (DuckDB scans them): same cutoff, types and features."""
    from churn.features.families.usage import usage_event_types_of_model
    from churn.io import read_tables
    from churn.stages.features import prepare_tables
    from churn.stages.score import build_scoring_features, read_scoring_tables

    params = Params.model_validate(
        {"simulate": {"customers": 300, "months": 9}, "label": {"min_history_days": 60}}
    )
    validated = tmp_path / "validated"
    valid = write_simulated_validated_tables(params, validated)
    frames = prepare_tables(params, read_tables(validated, list(valid)))
    files = prepare_tables(params, read_scoring_tables(params, validated))
    assert isinstance(files["usage_events"], Path)
    assert all(isinstance(files[n], pd.DataFrame) for n in ("customers", "subscriptions"))
    names = ["usage_login_events_last_30d", "usage_export_events_last_30d", "days_since_last_login"]
    assert usage_event_types_of_model(names, files["usage_events"]) == usage_event_types_of_model(
        names, frames["usage_events"]
    )
    cutoff = choose_cutoff(frames, None)
    assert choose_cutoff(files, None) == cutoff
    pinned = params.model_copy(update={"features": params.features.model_copy(
        update={"usage_event_types": usage_event_types_of_model(names, frames["usage_events"])})})
    from_files = build_scoring_features(files, cutoff, pinned)
    pd.testing.assert_frame_equal(from_files, build_scoring_features(frames, cutoff, pinned))


def test_compare_scores_with_text_read_from_csv():
    now = pd.DataFrame(
        {"customer_id": ["a", "b"], "cutoff": ["2025-02-01"] * 2, "churn_probability": [0.5, 0.2]}
    )
    before = now.assign(churn_probability=["0.1", "0.3"]).astype(str)  # as read from CSV
    changes = compare_scores(now, before)
    assert list(changes["customer_id"]) == ["a", "b"]  # |0.4| before |0.1|
    np.testing.assert_allclose(changes["probability_change"], [0.4, -0.1])
    assert changes["moved_1_feature"].isna().all()


@pytest.mark.slow  # simulates, labels, computes features and trains: ~20 s
def test_scores_the_real_population_with_the_real_feature_code(tmp_path):
    from churn.features.build import build_features
    from churn.labels.build import active_population, build_labels
    from churn.model.fit import fit_churn_model

    params = Params.model_validate(
        {
            "simulate": {"customers": 400, "months": 9, "mess": False},
            "label": {"min_history_days": 60},  # several labeled cutoffs in 9 months
            "train": {"n_estimators": 30, "min_child_samples": 20, "early_stopping_rounds": 5},
        }
    )
    validated = tmp_path / "validated"
    tables = write_simulated_validated_tables(params, validated)
    result = build_features(tables, build_labels(tables, params.label), params.features)
    labeled = result.frame[result.frame["label"].notna()]
    last = labeled["cutoff"].max()
    model = fit_churn_model(
        labeled[labeled["cutoff"] < last],
        labeled[labeled["cutoff"] == last],
        result.catalog,
        params.train,
    )
    model.save(tmp_path / "model")

    summary = run_score(params, validated, str(tmp_path / "model"), tmp_path / "scores.parquet")
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    cutoff = pd.Timestamp(summary["cutoff"])
    population = active_population(tables, cutoff, params.label)
    assert sorted(scores["customer_id"]) == sorted(population["customer_id"])
    assert scores["churn_probability"].between(0, 1).all()
    assert scores["reason_1_text"].notna().mean() > 0.9
    shares = scores.filter(like="risk_share_").drop(
        columns=["risk_share_pre_sale", "risk_share_post_sale"]
    )
    np.testing.assert_allclose(shares.sum(axis=1)[shares.sum(axis=1) > 0], 1.0)
    np.testing.assert_allclose(
        scores["mrr"].to_numpy(),
        population.set_index("customer_id").loc[scores["customer_id"], "mrr"].to_numpy(),
    )
