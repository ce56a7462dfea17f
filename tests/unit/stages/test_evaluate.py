"""Tests for the evaluate stage's runner: it reads only the rows it scores, and its metrics are
those of the cores run on the whole features file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.kernels import record_compile_starts
from support.survival_frames import make_survival_frame, survival_catalog
from support.tiny import TINY_CATALOG, make_feature_frame

from churn.config import Params, parse_params
from churn.domain.catalog import KEY_COLUMNS
from churn.domain.families import FAMILIES
from churn.model.artifact import ChurnModel, write_manifest
from churn.model.backtest import run_rolling_backtest
from churn.model.baseline import load_baseline, save_baseline
from churn.model.evaluation import evaluate_models
from churn.model.fit import train_churn_models
from churn.model.horizon_evaluation import (
    attach_churn_times,
    compare_model_forms,
    evaluate_horizons,
    fit_head_for_model,
    plan_model_forms,
)
from churn.model.metrics import make_jsonable
from churn.model.split import split_by_time
from churn.model.survival import CHURN_TIME_COLUMNS, SurvivalHead
from churn.stages.evaluate import run_evaluate
from churn.stages.evaluation_rows import read_evaluation_rows
from churn.stages.fit_workers import (
    list_model_form_columns,
)
from churn.stages.train import BASELINE_FILE


def survival_params(num_threads: int = 1) -> Params:
    return parse_params(
        {
            "label": {"horizon_days": 60, "grace_days": 0},
            "train": {"n_estimators": 40, "min_child_samples": 20, "num_threads": num_threads},
            "evaluate": {"backtest_cutoffs": 2},
        }
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Features and labels files shaped like an export's (integer ids, labels in another row
    order, the latest cutoff not labeled yet) and a model folder with a survival head."""
    frame = make_survival_frame(n_customers=300, n_cutoffs=9, seed=4)
    frame["customer_id"] = frame["customer_id"].astype("int64")
    latest = frame["cutoff"] == frame["cutoff"].max()
    frame.loc[latest, "label"] = pd.NA
    frame.loc[latest, "days_to_churn"] = np.nan
    frame.loc[latest, "observed_days"] = 10
    folder = tmp_path_factory.mktemp("evaluate")
    features_path, labels_path = folder / "features.parquet", folder / "labels.parquet"
    features = frame.drop(columns=list(CHURN_TIME_COLUMNS))
    features.to_parquet(features_path)
    labels = frame[["customer_id", "cutoff", "label", *CHURN_TIME_COLUMNS]]
    labels.sample(frac=1.0, random_state=1).to_parquet(labels_path)

    params, catalog = survival_params(), survival_catalog()
    result = train_churn_models(features, catalog, params)
    head = fit_head_for_model(frame, result.split, result.model, params)
    assert head is not None
    model_dir = folder / "model"
    result.model.save(model_dir)
    save_baseline(result.baseline, model_dir / BASELINE_FILE)
    head.save(model_dir)
    write_manifest(model_dir)
    return features_path, labels_path, model_dir


def test_the_stage_reads_the_test_rows_and_the_comparisons_only(exported):
    """Keys of every row; the features of the test rows, and apart those of the comparison's
    cutoffs, as each of the comparison's workers reads them."""
    features_path, labels_path, model_dir = exported
    params = survival_params()
    catalog = ChurnModel.load(model_dir).catalog
    whole = pd.read_parquet(features_path)

    rows = read_evaluation_rows(features_path, labels_path, catalog, params)

    pd.testing.assert_frame_equal(rows.keys, whole[list(KEY_COLUMNS)])
    # The test rows, indexed by file position.
    np.testing.assert_array_equal(rows.frame.index.to_numpy(), rows.split.test)
    pd.testing.assert_frame_equal(rows.frame, whole.iloc[rows.split.test])
    assert set(rows.frame["cutoff"]) == set(rows.split.test_cutoffs)
    # The comparison's frame: the rows of the plan's cutoffs (a strict subset), the model's
    # columns and the schedule's, and their churn times (labels in another order).
    assert rows.comparison is not None
    plan = plan_model_forms(rows.comparison, catalog, params)
    cutoffs = plan.split.used_cutoffs()
    assert len(cutoffs) < whole["cutoff"].nunique()
    assert set(rows.comparison["cutoff"]) == set(cutoffs)
    columns = list_model_form_columns(list(whole.columns), catalog)
    labels = pd.read_parquet(labels_path).set_index(["customer_id", "cutoff"])
    naive = whole.loc[whole["cutoff"].isin(cutoffs), columns].reset_index(drop=True)
    keys = pd.MultiIndex.from_frame(naive[["customer_id", "cutoff"]])
    for column in CHURN_TIME_COLUMNS:
        naive[column] = labels[column].reindex(keys).array
    pd.testing.assert_frame_equal(rows.comparison, naive)
    # Without labels, no comparison.
    alone = read_evaluation_rows(features_path, None, catalog, params)
    assert alone.comparison is None and alone.churn_times is None
    pd.testing.assert_frame_equal(alone.frame, rows.frame)


def naive_metrics(features_path: Path, labels_path: Path, model_dir: Path, params: Params) -> dict:
    """The metrics of the cores on the whole files, in this process (the reference)."""
    whole = pd.read_parquet(features_path)
    model = ChurnModel.load(model_dir)
    baseline = load_baseline(model_dir / BASELINE_FILE)
    evaluation = evaluate_models(whole, model, baseline, params)
    timed = attach_churn_times(whole, pd.read_parquet(labels_path))
    head = evaluate_horizons(timed, SurvivalHead.load(model_dir), params)
    columns = list_model_form_columns(list(whole.columns), model.catalog)
    compared = compare_model_forms(timed[[*columns, *CHURN_TIME_COLUMNS]], model.catalog, params)
    backtest, _ = run_rolling_backtest(
        whole[[*KEY_COLUMNS, *model.feature_names]], model.catalog, params, fitted=(model, baseline)
    )
    return make_jsonable(
        {
            "test": evaluation.metrics["test"],
            "baseline": evaluation.metrics["baseline"],
            "backtest": backtest,
            "head": head,
            "comparison": compared,
        }
    )


def run_stage(
    exported: tuple[Path, Path, Path],
    params: Params,
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    workers: bool | str,
    truth_dir: Path | None = None,
) -> dict:
    """Run the evaluate stage on the exported files: in its own process (``False``: no memory
    available for workers), in worker processes with the backtest's refits beside the
    metrics (``True``: memory to spare) or after them (``"after_metrics"``)."""
    import churn.stages.evaluate as evaluate_stage

    features_path, labels_path, model_dir = exported
    if not workers:
        monkeypatch.setattr(evaluate_stage, "read_available_memory", lambda: 0)
    else:
        monkeypatch.setattr(evaluate_stage, "read_available_memory", lambda: 2**42)
    if workers == "after_metrics":
        monkeypatch.setattr(evaluate_stage, "can_refit_beside_metrics", lambda *args: False)
    return run_evaluate(
        params,
        features_path,
        model_dir,
        truth_dir,
        folder / "metrics.json",
        folder / "plots",
        labels_path,
    )


@pytest.mark.parametrize(
    "workers",
    [False, True, "after_metrics"],
    ids=["in_process", "workers_beside_metrics", "workers_after_metrics"],
)
def test_the_stage_gives_the_metrics_of_the_cores_on_the_whole_file(
    exported, tmp_path, monkeypatch, workers
):
    """Reading only some rows changes no number: in the stage's process (one thread, no room
    for workers) and with two worker processes, against the cores on the whole file."""

    features_path, labels_path, model_dir = exported
    metrics = run_stage(exported, survival_params(num_threads=2), tmp_path, monkeypatch, workers)
    expected = naive_metrics(features_path, labels_path, model_dir, survival_params())
    refitted = [entry for entry in metrics["backtest"] if "roc_auc" in entry]
    assert len(metrics["backtest"]) == 2 and len(refitted) == 2
    assert metrics["backtest"] == expected["backtest"]
    assert metrics["test"] == expected["test"]
    assert metrics["baseline"] == expected["baseline"]
    assert metrics["horizons"]["test"] == expected["head"]
    assert metrics["horizons"]["comparison_note"] is None
    assert metrics["horizons"]["comparison"] == expected["comparison"]
    predictions = pd.read_parquet(tmp_path / "plots" / "test_predictions.parquet")
    assert len(predictions) == metrics["split"]["n_test"] > 0


def test_an_entity_split_reads_its_scattered_test_rows_and_scores_them_in_order(tmp_path):
    """Entity mode (one row per customer, a random split): the test rows are scattered over
    the file; the stage reads only them and gives the whole file's metrics and predictions."""
    frame = make_feature_frame(n_customers=600, n_cutoffs=1, seed=5)
    frame["customer_id"] = np.arange(7000, 7000 + len(frame), dtype="int64")  # an export's ids
    features_path = tmp_path / "features.parquet"
    frame.to_parquet(features_path)
    params = parse_params(
        {
            "ingest": {"mode": "entity"},
            "label": {"horizon_days": 20, "grace_days": 5},
            "train": {"min_child_samples": 20, "n_estimators": 60, "num_threads": 1},
        }
    )
    result = train_churn_models(frame, TINY_CATALOG, params)
    model_dir = tmp_path / "model"
    result.model.save(model_dir)
    save_baseline(result.baseline, model_dir / BASELINE_FILE)
    write_manifest(model_dir)

    rows = read_evaluation_rows(features_path, None, TINY_CATALOG, params)
    assert rows.split.mode == "entity"
    assert 0 < len(rows.frame) < len(frame)
    assert np.any(np.diff(rows.frame.index.to_numpy()) > 1)  # scattered, not one run
    pd.testing.assert_frame_equal(rows.frame, frame.iloc[rows.split.test])

    metrics = run_evaluate(
        params, features_path, model_dir, None, tmp_path / "m.json", tmp_path / "plots"
    )
    whole = evaluate_models(
        frame, ChurnModel.load(model_dir), load_baseline(model_dir / BASELINE_FILE), params
    )
    assert metrics["test"] == make_jsonable(whole.metrics["test"])
    assert metrics["backtest"] == []
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "plots" / "test_predictions.parquet"), whole.predictions
    )


@pytest.mark.parametrize("workers", [False, True], ids=["in_process", "workers"])
def test_past_the_customer_limit_the_forms_are_compared_on_a_seeded_sample(
    exported, tmp_path, monkeypatch, workers
):
    """``evaluate.model_form_max_customers``: the comparison fits and measures on the sampled
    customers' rows only (the cores on those rows of the whole file give the same numbers, in
    process and in workers), says so in its note, and the rest of the metrics are untouched."""
    from churn.model.horizon_evaluation import split_for_horizons
    from churn.model.sampling import sample_customer_ids

    features_path, labels_path, model_dir = exported
    base = survival_params(num_threads=2)
    limited = base.model_copy(
        update={"evaluate": base.evaluate.model_copy(update={"model_form_max_customers": 120})}
    )
    metrics = run_stage(exported, limited, tmp_path, monkeypatch, workers)
    # The reference: the sample drawn over the customers at the cutoffs the comparison uses.
    whole = pd.read_parquet(features_path)
    timed = attach_churn_times(whole, pd.read_parquet(labels_path))
    used = split_for_horizons(timed, base).used_cutoffs()
    at_used = whole.loc[whole["cutoff"].isin(used), "customer_id"]
    kept = sample_customer_ids(at_used, 120, base.train.seed)
    assert kept is not None and len(kept) == 120 < at_used.nunique()
    catalog = ChurnModel.load(model_dir).catalog
    columns = list_model_form_columns(list(whole.columns), catalog)
    sampled = timed[[*columns, *CHURN_TIME_COLUMNS]]
    sampled = sampled[sampled["customer_id"].isin(kept)].reset_index(drop=True)
    expected = make_jsonable(compare_model_forms(sampled, catalog, base))
    assert metrics["horizons"]["comparison"] == expected
    unsampled = naive_metrics(features_path, labels_path, model_dir, base)
    assert expected["split"]["n_test"] < unsampled["comparison"]["split"]["n_test"]
    note = metrics["horizons"]["comparison_note"]
    assert note is not None and f"120 of the {at_used.nunique()} customers" in note
    # Only the comparison changes.
    assert metrics["test"] == unsampled["test"]
    assert metrics["backtest"] == unsampled["backtest"]
    assert metrics["horizons"]["test"] == unsampled["head"]


def make_truth(customer_ids: np.ndarray, first_month: str, months: int, seed: int) -> pd.DataFrame:
    """A simulator-shaped ``customer_months`` truth: every customer in every month, hazards,
    family terms, churn ends inside the month and one churn month for a third of them; one
    month after another, as the simulator writes it."""
    rng = np.random.default_rng(seed)
    starts = pd.date_range(first_month, periods=months, freq="MS", tz="UTC")
    n = len(customer_ids)
    churn_month = np.where(rng.random(n) < 1 / 3, rng.integers(0, months, n), -1)
    anchor = pd.Timestamp("2022-06-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 28, n), "D")
    parts = []
    for m, start in enumerate(starts):
        logits = {f"logit_{f}": rng.normal(0, 0.5, n) for f in FAMILIES}
        total = -3.0 + sum(logits.values())
        parts.append(
            pd.DataFrame(
                {
                    "customer_id": customer_ids,
                    "month_start": start,
                    "churn_probability": 1 / (1 + np.exp(-total)),
                    **logits,
                    "logit_total": total,
                    "churned": churn_month == m,
                    "end_if_churned": start + pd.to_timedelta(anchor.day - 1, "D"),
                    "billing_anchor": anchor,
                    "annual_contract": rng.random(n) < 0.25,
                }
            )
        )
    truth = pd.concat(parts, ignore_index=True)
    for column in ("month_start", "end_if_churned", "billing_anchor"):
        truth[column] = truth[column].astype("datetime64[us, UTC]")
    return truth


@pytest.mark.parametrize("workers", [False, True], ids=["in_process", "workers"])
def test_the_stage_reads_the_truth_from_the_month_before_its_earliest_measured_cutoff(
    exported, tmp_path, monkeypatch, workers
):
    """The oracle, the reason agreement and the comparison's oracle are those of the cores
    given the whole truth, while the stage reads only the months from the one before the
    earliest test cutoff (its own or the comparison's) on."""
    import churn.stages.evaluate as evaluate_stage

    features_path, labels_path, model_dir = exported
    whole = pd.read_parquet(features_path)
    truth = make_truth(whole["customer_id"].unique(), "2023-07-01", 18, seed=3)
    truth_dir = tmp_path / "truth"
    truth_dir.mkdir()
    truth.to_parquet(
        truth_dir / evaluate_stage.TRUTH_FILE, row_group_size=whole["customer_id"].nunique()
    )
    read = []
    read_truth_months = evaluate_stage.read_truth_months

    def spy(path, earliest):
        frame = read_truth_months(path, earliest)
        read.append((earliest, frame))
        return frame

    monkeypatch.setattr(evaluate_stage, "read_truth_months", spy)

    def truth_params(num_threads: int = 1) -> Params:
        # The made-up truth is no oracle of these labels: its guard would stop the run.
        params = survival_params(num_threads)
        train = params.train.model_copy(update={"allow_high_auc": True})
        return params.model_copy(update={"train": train})

    params = truth_params(num_threads=2)
    metrics = run_stage(exported, params, tmp_path, monkeypatch, workers, truth_dir)

    model = ChurnModel.load(model_dir)
    expected = evaluate_models(
        whole, model, load_baseline(model_dir / BASELINE_FILE), truth_params(), truth
    ).metrics
    timed = attach_churn_times(whole, pd.read_parquet(labels_path))
    head = evaluate_horizons(timed, SurvivalHead.load(model_dir), truth_params(), truth)
    columns = list_model_form_columns(list(whole.columns), model.catalog)
    compared = compare_model_forms(
        timed[[*columns, *CHURN_TIME_COLUMNS]],
        model.catalog,
        truth_params(),
        truth,
    )
    assert "oracle_roc_auc" in metrics["test"] and metrics["explanations"]["rows"] > 0
    assert metrics["test"] == make_jsonable(expected["test"])
    assert metrics["explanations"] == make_jsonable(expected["explanations"])
    assert metrics["horizons"]["test"] == make_jsonable(head)
    assert metrics["horizons"]["comparison"] == make_jsonable(compared)
    assert "oracle_roc_auc" in str(metrics["horizons"]["comparison"])
    # The stage hands the label horizon's oracle to the head's evaluation (the equality above
    # says it is the same): a known oracle is what that horizon uses, and only that horizon.
    n_test = len(split_by_time(whole, params.train, params.label).test)
    bent = evaluate_horizons(
        timed,
        SurvivalHead.load(model_dir),
        truth_params(),
        truth,
        known_oracle={60: np.linspace(0.0, 1.0, n_test)},
    )
    assert bent["60"]["oracle_roc_auc"] != head["60"]["oracle_roc_auc"]
    assert bent["30"] == head["30"]
    with pytest.raises(ValueError, match="known oracle"):
        evaluate_horizons(
            timed, SurvivalHead.load(model_dir), truth_params(), truth, known_oracle={60: [0.5]}
        )
    # What was read: the months from the one before the earliest measured cutoff on.
    ((earliest, frame),) = read
    split = split_by_time(whole, params.train, params.label)
    test_cutoffs = set(whole["cutoff"].iloc[split.test])
    assert earliest <= min(test_cutoffs)
    assert set(frame["month_start"]) == {
        m for m in truth["month_start"] if m >= earliest - pd.DateOffset(months=1)
    }
    assert 0 < len(frame) < len(truth)


def test_the_earliest_measured_cutoff_is_the_earliest_test_row_of_either_split(exported):
    """The model's test rows and the comparison's (its plan's test positions, not its
    training rows) count; without a planned comparison the model's alone."""
    from churn.stages.evaluate import ModelFormComparison, find_earliest_truth_cutoff

    features_path, labels_path, model_dir = exported
    params = survival_params()
    catalog = ChurnModel.load(model_dir).catalog
    rows = read_evaluation_rows(features_path, labels_path, catalog, params)
    assert rows.comparison is not None
    plan = plan_model_forms(rows.comparison, catalog, params)
    own = rows.frame["cutoff"].min()
    assert find_earliest_truth_cutoff(rows, ModelFormComparison(rows.comparison, plan, None)) == own
    # A comparison whose test rows come a month earlier (its split purges a longer horizon).
    earlier = rows.comparison.assign(cutoff=rows.comparison["cutoff"] - pd.DateOffset(months=1))
    compared = earlier["cutoff"].iloc[plan.split.test].min()
    assert compared < own and earlier["cutoff"].min() < compared
    assert find_earliest_truth_cutoff(rows, ModelFormComparison(earlier, plan, None)) == compared
    assert find_earliest_truth_cutoff(rows, None) == own
    unplanned = ModelFormComparison(None, None, None, "not compared")
    assert find_earliest_truth_cutoff(rows, unplanned) == own


def test_a_truth_without_month_starts_or_without_measured_rows_is_read_whole(tmp_path):
    from churn.stages.evaluate import read_truth_months

    truth = make_truth(np.array([1, 2, 3]), "2024-01-01", 4, seed=1)
    path = tmp_path / "truth.parquet"
    truth.to_parquet(path)
    pd.testing.assert_frame_equal(read_truth_months(path, None), truth)
    since_march = read_truth_months(path, pd.Timestamp("2024-04-01"))  # naive: read as UTC
    assert sorted(since_march["month_start"].dt.month.unique()) == [3, 4]
    hazards_only = truth.drop(columns="month_start")
    hazards_only.to_parquet(path)
    pd.testing.assert_frame_equal(
        read_truth_months(path, pd.Timestamp("2024-04-01", tz="UTC")), hazards_only
    )


def _owner(values: np.ndarray) -> np.ndarray:
    """The array that owns the memory ``values`` views (the last array of its base chain)."""
    while isinstance(values.base, np.ndarray):
        values = values.base
    return values


@pytest.mark.parametrize("workers", [False, "after_metrics"], ids=["in_process", "workers"])
def test_the_test_rows_are_let_go_before_the_backtest_refits_run(
    exported, tmp_path, monkeypatch, workers
):
    """The stage's test rows serve the metrics and the exported model's backtest cutoff only;
    no array of theirs is still alive when the refits start (the stage then hands the freed
    pages back: measured at 1M customers, not here) unless memory lets the refits run beside
    the metrics (the next test)."""
    import gc
    import weakref

    import churn.stages.evaluate as evaluate_stage
    import churn.stages.evaluation_rows as evaluation_rows

    read_rows = evaluation_rows.read_file_rows
    alive: list[weakref.ref] = []
    seen_at_refit: list[bool] = []

    def read(path, positions, columns=None):
        frame = read_rows(path, positions, columns)
        if columns is None:  # the test rows (the comparison's rows name their columns)
            alive.append(weakref.ref(_owner(frame["usage_score"].to_numpy())))
        return frame

    def when_refitting(original):
        def spy(*args, **kwargs):
            gc.collect()
            seen_at_refit.extend(ref() is not None for ref in alive)
            return original(*args, **kwargs)

        return spy

    monkeypatch.setattr(evaluation_rows, "read_file_rows", read)
    refit = evaluate_stage.refit_backtest
    monkeypatch.setattr(evaluate_stage, "refit_backtest", when_refitting(refit))
    metrics = run_stage(exported, survival_params(num_threads=2), tmp_path, monkeypatch, workers)
    assert len(alive) == 1 and seen_at_refit == [False] * len(seen_at_refit)
    assert len(seen_at_refit) >= 1
    assert len([entry for entry in metrics["backtest"] if "roc_auc" in entry]) == 2


def test_with_memory_to_spare_the_refits_start_before_the_metrics(exported, tmp_path, monkeypatch):
    """With room for the workers beside the stage's own process, the backtest's refits are
    submitted before the in-process metrics and the stage writes what it writes with the
    refits after them."""
    import churn.stages.evaluate as evaluate_stage

    events: list[str] = []

    def spy(name, original):
        def record(*args, **kwargs):
            events.append(name)
            return original(*args, **kwargs)

        return record

    for name in ("submit_backtest_refits", "refit_backtest", "evaluate_models"):
        monkeypatch.setattr(evaluate_stage, name, spy(name, getattr(evaluate_stage, name)))
    params = survival_params(num_threads=2)
    (tmp_path / "beside").mkdir()
    (tmp_path / "after").mkdir()
    beside = run_stage(exported, params, tmp_path / "beside", monkeypatch, True)
    assert events == ["submit_backtest_refits", "evaluate_models"]
    events.clear()
    after = run_stage(exported, params, tmp_path / "after", monkeypatch, "after_metrics")
    assert events == ["evaluate_models", "refit_backtest"]
    assert beside == after


def test_the_kernels_compile_ahead_sized_by_the_test_rows(exported, tmp_path, monkeypatch):
    """With thresholds low enough that the test rows are scored and explained by the kernels,
    the stage starts compiling them once, sized by its test rows, and its numbers are those of
    a run that compiles at the first call."""
    started = record_compile_starts(monkeypatch)
    ahead = run_stage(exported, survival_params(), tmp_path / "ahead", monkeypatch, False)
    assert [rows for rows, _ in started] == [ahead["split"]["n_test"]]
    started[0][1].join()  # a thread was started (not None) and it finished
    monkeypatch.setattr(ChurnModel, "start_compiling", lambda model, rows, **options: None)
    later = run_stage(exported, survival_params(), tmp_path / "later", monkeypatch, False)
    assert later == ahead
