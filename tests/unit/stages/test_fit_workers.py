"""Tests for the evaluate stage's fits in worker processes (spawned, one LightGBM thread each)."""

from __future__ import annotations

import logging
from concurrent.futures import Future

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from support.survival_frames import make_survival_frame, survival_catalog
from support.tiny import TINY_CATALOG, make_feature_frame

from churn.config import Params, parse_params
from churn.domain.catalog import KEY_COLUMNS
from churn.errors import ModelError
from churn.io import decode_frame, encode_frame
from churn.model.backtest import refit_backtest_cutoff, select_backtest_cutoffs
from churn.model.horizon_evaluation import (
    attach_churn_times,
    compare_model_forms,
    plan_model_forms,
)
from churn.model.survival import CHURN_TIME_COLUMNS
from churn.stages.evaluate import ModelFormComparison, finish_model_form_comparison
from churn.stages.fit_memory import (
    WORKER_BASE_BYTES,
    WORKER_FRAME_FACTOR,
    estimate_refit_bytes,
    estimate_worker_bytes,
)
from churn.stages.fit_workers import (
    MODEL_FORM_ROWS_FILE,
    collect_model_forms,
    describe_plan_rows,
    fit_model_form_in_worker,
    list_model_form_columns,
    log_fit_completion,
    open_fit_pool,
    read_backtest_frame,
    refit_backtest,
    refit_backtest_from_file,
    refit_side_by_side,
    submit_model_form_fits,
    use_one_thread,
    write_model_form_rows,
)


def tiny_params(num_threads: int = 1, min_positives: int = 20) -> Params:
    return parse_params(
        {
            "label": {"horizon_days": 20, "grace_days": 5},
            "train": {
                "min_child_samples": 20,
                "n_estimators": 60,
                "num_threads": num_threads,
                "min_positives": min_positives,
            },
            "evaluate": {"backtest_cutoffs": 3},
        }
    )


@pytest.fixture(scope="module")
def features_file(tmp_path_factory):
    features = make_feature_frame(n_customers=400, n_cutoffs=6, seed=9)
    # Integer ids, as a third-party export would have them.
    features["customer_id"] = features["customer_id"].str.extract(r"(\d+)")[0].astype("int64")
    path = tmp_path_factory.mktemp("features") / "features.parquet"
    features.to_parquet(path)
    return features, path


def test_every_fit_worker_runs_one_thread():
    four = tiny_params(num_threads=4)
    assert use_one_thread(four).train.num_threads == 1
    assert use_one_thread(four).train.model_copy(update={"num_threads": 4}) == four.train


def test_catalog_crosses_as_arrow_bytes_unchanged():
    decoded = decode_frame(encode_frame(TINY_CATALOG))
    pd.testing.assert_frame_equal(decoded, TINY_CATALOG.reset_index(drop=True))


def test_worker_reads_only_rows_up_to_its_cutoff_in_order(features_file):
    features, path = features_file
    cutoff = sorted(features["cutoff"].unique())[3]
    columns = [*KEY_COLUMNS, "mrr_at_cutoff"]
    expected = features.loc[features["cutoff"] <= cutoff, columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(read_backtest_frame(path, columns, cutoff), expected)


def test_a_refit_from_the_file_reads_in_full_only_the_rows_it_fits_and_scores(
    features_file, monkeypatch
):
    """Every row up to the cutoff is read with its keys and categorical features only; every
    column only for the sampled training rows, validation and test; the entry is the refit's
    on the whole frame (integer ids, categorical features)."""
    import churn.stages.fit_workers as fit_workers
    from churn.model.backtest import (
        build_backtest_config,
        split_backtest_cutoff,
        split_backtest_cutoffs,
    )
    from churn.model.sampling import sample_training_rows

    features, path = features_file
    base = tiny_params()
    params = base.model_copy(
        update={"train": base.train.model_copy(update={"negative_sample_rate": 0.3})}
    )
    reads: list[tuple[int, list[str]]] = []
    original = fit_workers.read_frame_positions

    def recording(where, positions, columns=None):
        reads.append((len(positions), list(columns)))
        return original(where, positions, columns)

    monkeypatch.setattr(fit_workers, "read_frame_positions", recording)
    cutoffs, _ = select_backtest_cutoffs(features, params)
    estimates = []
    for cutoff in cutoffs:
        reads.clear()
        entry = refit_backtest_from_file(
            path, list(features.columns), TINY_CATALOG, params, cutoff
        )
        assert "roc_auc" in entry
        assert entry == refit_backtest_cutoff(features, TINY_CATALOG, params, cutoff)
        # The naive count of what the refit uses: sampled training rows, validation, test.
        _, (train, validation, test), _ = split_backtest_cutoff(features, params, cutoff)
        sampled = sample_training_rows(train, build_backtest_config(params))
        (thin_rows, thin_columns), (wide_rows, wide_columns) = reads
        assert thin_rows == int((features["cutoff"] <= cutoff).sum())
        assert thin_columns == [*KEY_COLUMNS, "acquisition_channel", "plan"]
        assert wide_columns == list(features.columns)
        assert wide_rows == len(sampled.rows) + len(validation) + len(test) < thin_rows
        # The worker memory estimate counts the same reads from the keys alone (the sample's
        # per-cutoff rounding aside: at most a row per training cutoff).
        keys = features[list(KEY_COLUMNS)]
        splits = split_backtest_cutoffs(keys, params, [cutoff])
        estimate = estimate_refit_bytes(
            keys, params, splits, len(wide_columns), len(thin_columns)
        )
        exact = estimate_worker_bytes(
            thin_rows, len(thin_columns), (wide_rows, len(wide_columns))
        )
        slack = WORKER_FRAME_FACTOR * 8 * len(wide_columns) * train["cutoff"].nunique()
        assert abs(estimate - exact) <= slack
        estimates.append(estimate)
    splits = split_backtest_cutoffs(keys, params, cutoffs)
    both = estimate_refit_bytes(keys, params, splits, len(wide_columns), len(thin_columns))
    assert both == max(estimates) > WORKER_BASE_BYTES


def test_side_by_side_refits_equal_the_serial_ones(features_file):
    features, path = features_file
    params = tiny_params(num_threads=2)
    serial_params = tiny_params(num_threads=1)  # what each worker uses
    cutoffs, _ = select_backtest_cutoffs(features, params)
    serial = [refit_backtest_cutoff(features, TINY_CATALOG, serial_params, c) for c in cutoffs]
    parallel = refit_side_by_side(
        path, list(features.columns), TINY_CATALOG, params, cutoffs, workers=2
    )
    assert [entry["cutoff"] for entry in parallel] == [f"{c:%Y-%m-%d}" for c in cutoffs]
    assert parallel == serial
    assert all("roc_auc" in entry for entry in parallel)


def test_a_thin_cutoff_comes_back_skipped_from_a_worker(features_file):
    features, path = features_file
    params = tiny_params(num_threads=2, min_positives=10_000)
    cutoffs, _ = select_backtest_cutoffs(features, params)
    entries = refit_side_by_side(
        path, list(features.columns), TINY_CATALOG, params, cutoffs[:2], workers=2
    )
    assert all("train.min_positives" in entry["skipped"] for entry in entries)


SURVIVAL_PARAMS = {
    "label": {"horizon_days": 60, "grace_days": 0},
    "train": {"n_estimators": 40, "min_child_samples": 20},
    "evaluate": {"backtest_cutoffs": 2},
}


def survival_params(num_threads: int) -> Params:
    train = {**SURVIVAL_PARAMS["train"], "num_threads": num_threads}
    return parse_params({**SURVIVAL_PARAMS, "train": train})


@pytest.fixture(scope="module")
def survival_files(tmp_path_factory):
    """A features file (integer ids, as an export has them) and a labels file with churn times."""
    frame = make_survival_frame(n_customers=300, n_cutoffs=8, seed=4)
    frame["customer_id"] = frame["customer_id"].astype("int64")
    folder = tmp_path_factory.mktemp("survival")
    features_path, labels_path = folder / "features.parquet", folder / "labels.parquet"
    frame.drop(columns=list(CHURN_TIME_COLUMNS)).to_parquet(features_path)
    # The labels in another row order: rows are matched by key, not by position.
    labels = frame[["customer_id", "cutoff", "label", *CHURN_TIME_COLUMNS]]
    labels.sample(frac=1.0, random_state=1).to_parquet(labels_path)
    return features_path, labels_path


def test_model_form_columns_keep_the_schedule_outside_the_catalog():
    catalog = survival_catalog()
    only_usage = catalog[catalog["name"] == "usage_score"]
    columns = ["customer_id", "cutoff", "label", "usage_score", "days_to_renewal", "other"]
    assert list_model_form_columns([*columns, "billing_period"], only_usage) == [
        "customer_id",
        "cutoff",
        "label",
        "usage_score",
        "days_to_renewal",
        "billing_period",
    ]


def read_comparison_frame(features_path, labels_path, catalog) -> pd.DataFrame:
    """The comparison's rows as the stage holds them: the model-form columns of every row of
    the features file, with the churn times of the labels (in another order) attached."""
    columns = list_model_form_columns(pq.read_schema(features_path).names, catalog)
    return attach_churn_times(pd.read_parquet(features_path)[columns], pd.read_parquet(labels_path))


def test_the_comparison_rows_reach_the_workers_unchanged(tmp_path):
    """Integer and text ids, zoned cutoffs, missing labels and churn times, every float: the
    file the workers read decodes to the stage's frame, and it is Arrow, not a pickle."""
    frame = make_survival_frame(n_customers=40, n_cutoffs=4, seed=3)
    frame.loc[frame.index[:5], "label"] = np.nan
    for ids in (frame["customer_id"].astype("int64"), "c" + frame["customer_id"].astype(str)):
        path = write_model_form_rows(frame.assign(customer_id=ids), tmp_path)
        assert path == tmp_path / MODEL_FORM_ROWS_FILE
        # An Arrow IPC stream (its continuation marker first), not a pickle (b"\x80").
        assert path.read_bytes()[:4] == b"\xff\xff\xff\xff"
        decoded = decode_frame(path.read_bytes())
        pd.testing.assert_frame_equal(decoded, frame.assign(customer_id=ids))
    assert frame["cutoff"].dt.tz is not None and frame[list(CHURN_TIME_COLUMNS)].isna().any().any()


def test_fit_workers_run_every_native_thread_pool_on_one_thread():
    """Each worker limits OpenMP and OpenBLAS to one thread: the workers share the cores."""
    from threadpoolctl import threadpool_info

    with open_fit_pool(1) as pool:
        pools = pool.submit(threadpool_info).result()
    apis = {entry["user_api"] for entry in pools}
    assert apis == {"openmp", "blas"}  # LightGBM's and sklearn's OpenMP, both OpenBLAS copies
    assert [entry["num_threads"] for entry in pools] == [1] * len(pools)
    assert len(pools) >= 3


def test_refits_without_workers_run_on_one_native_thread_like_a_worker(features_file, monkeypatch):
    """Without a pool the refits run here, under the workers' limits, which are lifted after."""
    from threadpoolctl import threadpool_info

    import churn.stages.fit_workers as fit_workers

    features, path = features_file
    params = tiny_params()
    cutoffs, _ = select_backtest_cutoffs(features, params)
    seen: list[list[int]] = []
    original = fit_workers.refit_backtest_from_file

    def recording(*args):
        seen.append([entry["num_threads"] for entry in threadpool_info()])
        return original(*args)

    monkeypatch.setattr(fit_workers, "refit_backtest_from_file", recording)
    before = [entry["num_threads"] for entry in threadpool_info()]
    entries = refit_backtest(None, path, list(features.columns), TINY_CATALOG, params, cutoffs[:1])
    assert "roc_auc" in entries[0]
    (inside,) = seen
    assert inside == [1] * len(inside) and len(inside) >= 3
    assert [entry["num_threads"] for entry in threadpool_info()] == before


def test_model_form_fits_side_by_side_equal_the_serial_comparison(survival_files, tmp_path):
    features_path, labels_path = survival_files
    catalog = survival_catalog()
    frame = read_comparison_frame(features_path, labels_path, catalog)
    serial = compare_model_forms(frame, catalog, survival_params(num_threads=1))

    params = survival_params(num_threads=2)
    plan = plan_model_forms(frame, catalog, params)
    rows_path = write_model_form_rows(frame, tmp_path)
    with open_fit_pool(2) as pool:
        futures = submit_model_form_fits(pool, rows_path, catalog, params, plan)
        assert list(futures) == ["hazard", "30", "60", "90"]  # the longest fit first
        parallel = collect_model_forms(frame, plan, params, futures)
    # Forcing one thread per worker gives the serial one-thread fits exactly.
    assert parallel["hazard"] == serial["hazard"]
    assert parallel["classifier"] == serial["classifier"]
    assert parallel["head"] == serial["head"]
    assert parallel == serial
    assert parallel["hazard"]["60"]["roc_auc"] > 0.7


def test_a_model_error_in_a_worker_becomes_the_comparison_note(survival_files, tmp_path):
    """Without the renewal schedule the head cannot be fitted: its worker's ModelError comes
    back to the parent, and the stage reports the comparison as not made."""
    features_path, labels_path = survival_files
    catalog = survival_catalog()
    catalog = catalog[catalog["name"] != "days_to_renewal"]
    params = survival_params(num_threads=2)
    frame = read_comparison_frame(features_path, labels_path, catalog)
    frame = frame.drop(columns=["days_to_renewal"])
    plan = plan_model_forms(frame, catalog, params)
    rows_path = write_model_form_rows(frame, tmp_path)
    with open_fit_pool(2) as pool:
        futures = submit_model_form_fits(pool, rows_path, catalog, params, plan)
        with pytest.raises(ModelError, match="days_to_renewal"):
            collect_model_forms(frame, plan, params, futures)
        comparison = ModelFormComparison(frame, plan, futures)
        compared, note = finish_model_form_comparison(comparison, catalog, params, None)
    assert compared is None
    assert note is not None and "days_to_renewal" in note


@pytest.fixture(scope="module")
def planned(survival_files):
    """The comparison as the stage plans it from the survival files, one thread."""
    features_path, labels_path = survival_files
    catalog = survival_catalog()
    params = survival_params(num_threads=1)
    frame = read_comparison_frame(features_path, labels_path, catalog)
    return catalog, params, frame, plan_model_forms(frame, catalog, params)


def test_the_split_of_the_plan_cutoffs_rows_alone_is_the_same_split(planned):
    """The stage reads only the rows of the comparison's cutoffs
    (:func:`churn.stages.evaluation_rows.read_evaluation_rows`): they leave out the unlabeled
    and purged ones (a strict subset here), and the split of just their rows has the same
    rows, in the same order, per slice."""
    catalog, params, frame, plan = planned
    cutoffs = plan.split.used_cutoffs()
    assert len(cutoffs) < frame["cutoff"].nunique()
    subset = frame[frame["cutoff"].isin(cutoffs)].reset_index(drop=True)
    assert len(subset) < len(frame)
    replanned = plan_model_forms(subset, catalog, params)
    assert describe_plan_rows(replanned) == describe_plan_rows(plan)
    assert replanned.names == plan.names
    for full, partial in zip(plan.split.slices(frame), replanned.split.slices(subset), strict=True):
        pd.testing.assert_frame_equal(
            full.reset_index(drop=True), partial.reset_index(drop=True)
        )


def test_a_worker_whose_rows_differ_from_the_stage_plan_refuses_to_fit(planned, tmp_path):
    catalog, params, frame, plan = planned
    rows = describe_plan_rows(plan)
    task = {
        "rows_path": str(write_model_form_rows(frame, tmp_path)),
        "catalog": encode_frame(catalog),
        "params": params.model_dump(mode="json"),
        "form": "30",
        "rows": {**rows, "test": rows["test"] + 1},
    }
    with pytest.raises(ModelError, match="rows per slice"):
        fit_model_form_in_worker(task)
    task["rows"] = rows
    result = fit_model_form_in_worker(task)
    assert result["shape"][0] > 0


def test_log_fit_completion_says_which_fit_ended_how_and_when(caplog):
    done, failed, cancelled = Future(), Future(), Future()
    assert log_fit_completion(done, "model form hazard") is done
    log_fit_completion(failed, "backtest refit 2025-08-01")
    log_fit_completion(cancelled, "model form 90")
    with caplog.at_level(logging.DEBUG, logger="churn.stages.fit_workers"):
        done.set_result({})
        failed.set_exception(ModelError("no positives"))
        assert cancelled.cancel()
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 3
    assert messages[0].startswith("model form hazard done ")
    assert messages[1].startswith("backtest refit 2025-08-01 failed ")
    assert messages[2].startswith("model form 90 cancelled ")
    assert all(message.endswith(" s after submission") for message in messages)


def test_the_comparison_without_workers_runs_on_one_native_thread(planned, monkeypatch):
    """Without workers the stage fits the comparison itself, under the workers' limits."""
    from threadpoolctl import threadpool_info

    import churn.stages.evaluate as evaluate_stage

    catalog, params, frame, plan = planned
    seen: list[list[int]] = []

    def recording(*args):
        seen.append([entry["num_threads"] for entry in threadpool_info()])
        return {"compared": True}

    monkeypatch.setattr(evaluate_stage, "compare_model_forms", recording)
    before = [entry["num_threads"] for entry in threadpool_info()]
    comparison = ModelFormComparison(frame, plan, None)
    compared, _ = finish_model_form_comparison(comparison, catalog, params, None)
    assert compared == {"compared": True}
    (inside,) = seen
    assert inside == [1] * len(inside) and len(inside) >= 3
    assert [entry["num_threads"] for entry in threadpool_info()] == before
