"""The survival head end to end on a third-party-shaped export, and its saved files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from support.own_files import make_own_files

from churn.config import parse_params
from churn.errors import ModelError
from churn.features.build import build_features
from churn.labels.build import build_labels
from churn.model import matrix as matrix_module
from churn.model import survival
from churn.model.artifact import prepare_features
from churn.model.fit import build_lgb_params
from churn.model.hazard import PERIOD_FEATURES, find_next_decision_dates
from churn.model.horizon_evaluation import attach_churn_times, split_for_horizons
from churn.model.pooling import POOLED_LEVEL
from churn.model.survival import (
    SURVIVAL_META_FILE,
    SurvivalHead,
    build_person_period_matrix,
    fit_survival_head,
    has_survival_head,
    sample_person_periods,
)
from churn.model.verification import write_manifest
from churn.stages.ingest import validate_tables

PARAMS = parse_params(
    {
        "data": {"source": "files"},
        "ingest": {
            "as_of": "2025-12-31",
            "data_end": "2025-12-31",
            "tables": {
                "customers": {
                    "file": "accounts.csv",
                    "columns": {"customer_id": "AccountNo", "converted_at": "SignupDate"},
                },
                "subscriptions": {
                    "file": "contracts.csv",
                    "columns": {
                        "subscription_id": "ContractNo",
                        "customer_id": "AccountNo",
                        "plan": "Product",
                        "billing_period": "Term",
                        "mrr": "MonthlyFee",
                        "started_at": "StartDate",
                        "ended_at": "PaidThrough",
                    },
                },
                "usage_events": {
                    "file": "logins.csv",
                    "columns": {
                        "customer_id": "AccountNo",
                        "occurred_at": "EventTime",
                        "event_type": "Action",
                    },
                },
            },
        },
        "label": {"min_history_days": 120},
        "train": {"n_estimators": 60, "min_child_samples": 20, "num_threads": 1},
    }
)


@pytest.fixture(scope="module")
def export_frame() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features + churn times of the example export, billing periods as month counts."""
    files = make_own_files(n_accounts=500, seed=11)
    contracts = files["contracts.csv"]
    # Month counts as the billing system writes them (12 / 1), read without a mapping.
    files["contracts.csv"] = contracts.assign(Term=contracts["Term"].map({"Y": 12, "M": 1}))
    raw = {
        "customers": files["accounts.csv"],
        "subscriptions": files["contracts.csv"],
        "usage_events": files["logins.csv"],
    }
    as_of = pd.Timestamp("2025-12-31", tz="UTC")
    tables = validate_tables(raw, PARAMS.ingest, as_of).valid
    labels = build_labels(tables, PARAMS.label, end=pd.Timestamp("2025-12-31 23:59", tz="UTC"))
    result = build_features(tables, labels, PARAMS.features)
    return attach_churn_times(result.frame, labels), result.catalog


@pytest.fixture(scope="module")
def fitted(export_frame) -> tuple[SurvivalHead, pd.DataFrame]:
    frame, catalog = export_frame
    split = split_for_horizons(frame, PARAMS)
    train, validation, test = (frame.iloc[r] for r in (split.train, split.validation, split.test))
    names = [n for n in catalog["name"] if train[n].nunique(dropna=False) > 1]
    categorical = [n for n in names if catalog.set_index("name").loc[n, "kind"] == "categorical"]
    head = fit_survival_head(
        train,
        validation,
        names,
        categorical,
        PARAMS.train,
        PARAMS.label,
        build_lgb_params(PARAMS.train),
        validation_start=split.validation_cutoffs[0],
        test_start=split.test_cutoffs[0],
    )
    return head, test


def test_export_has_integer_ids_and_annual_month_counts(export_frame) -> None:
    frame, _ = export_frame
    assert frame["customer_id"].str.fullmatch(r"\d+").all()
    assert set(frame["billing_period"].dropna()) == {"monthly", "annual"}


def test_head_scores_monotone_horizons_with_zero_exposure(fitted) -> None:
    head, test = fitted
    probabilities = head.predict_horizons(test)
    assert probabilities.shape == (len(test), 3)
    assert (np.diff(probabilities, axis=1) >= 0).all()
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    renews_late = (test["billing_period"] == "annual").to_numpy() & (
        test["days_to_renewal"].to_numpy() >= 90
    )
    assert renews_late.any()
    assert (probabilities[renews_late] == 0).all()
    assert (probabilities[~renews_late, 2] > 0).all()
    dates = find_next_decision_dates(test)
    assert dates.notna().all() and (dates >= test["cutoff"]).all()


def test_head_contributions_add_up_at_the_next_decision(fitted) -> None:
    head, test = fitted
    contributions, base = head.contributions(test.head(50))
    raw = head.booster.predict(head.next_decision_matrix(test.head(50)), raw_score=True)
    assert contributions.shape == (50, len(head.feature_names))
    np.testing.assert_allclose(contributions.sum(axis=1) + base, raw, atol=1e-6)


def test_saved_head_loads_verified_and_scores_the_same(fitted, tmp_path) -> None:
    head, test = fitted
    head.save(tmp_path)
    write_manifest(tmp_path)
    assert has_survival_head(tmp_path)
    loaded = SurvivalHead.load(tmp_path)
    np.testing.assert_allclose(loaded.predict_horizons(test), head.predict_horizons(test))
    meta = json.loads((tmp_path / SURVIVAL_META_FILE).read_text())
    meta["calibration"]["slopes"][0] = 5.0  # tampered after training
    (tmp_path / SURVIVAL_META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"survival_head\.json"):
        SurvivalHead.load(tmp_path)


def test_head_pools_rare_and_unseen_levels_like_the_classifier(export_frame) -> None:
    frame, catalog = export_frame
    split = split_for_horizons(frame, PARAMS)
    train, validation, test = (frame.iloc[r] for r in (split.train, split.validation, split.test))
    train = train.assign(plan=train["plan"].astype("object"))
    train.iloc[:3, train.columns.get_loc("plan")] = "legacy_rare"  # 3 rows: below the count
    names = [n for n in catalog["name"] if train[n].nunique(dropna=False) > 1]
    categorical = [n for n in names if catalog.set_index("name").loc[n, "kind"] == "categorical"]
    assert "plan" in categorical
    cfg = PARAMS.train.model_copy(update={"min_category_count": 10})
    head = fit_survival_head(
        train,
        validation,
        names,
        categorical,
        cfg,
        PARAMS.label,
        build_lgb_params(cfg),
        validation_start=split.validation_cutoffs[0],
        test_start=split.test_cutoffs[0],
    )
    # Naive reference: the levels on at least 10 training rows, then the pooled level.
    counts = train["plan"].dropna().astype(str).value_counts()
    kept = sorted(level for level, n in counts.items() if n >= 10)
    assert head.categorical_levels["plan"] == (*kept, POOLED_LEVEL)
    assert "legacy_rare" in set(counts.index) and "legacy_rare" not in kept
    # A rare and an unseen level are read as the pooled level, not as missing.
    column = head.feature_names.index("plan")
    pooled_code = float(head.categorical_levels["plan"].index(POOLED_LEVEL))
    rows = test.head(4).assign(plan=["legacy_rare", "never_seen_plan", POOLED_LEVEL, None])
    matrix = head.next_decision_matrix(rows)
    assert matrix[:3, column].tolist() == [pooled_code] * 3
    assert np.isnan(matrix[3, column])
    same = rows.iloc[[2, 2, 2]].assign(plan=["legacy_rare", "never_seen_plan", POOLED_LEVEL])
    probabilities = head.predict_horizons(same)
    np.testing.assert_array_equal(probabilities[0], probabilities[2])
    np.testing.assert_array_equal(probabilities[1], probabilities[2])


def _periods_of(n_rows: int, events_at: set[int]) -> pd.DataFrame:
    """Three person-periods per frame row; the last period of the rows in ``events_at`` churns."""
    row = np.repeat(np.arange(n_rows), 3)
    last = np.tile([False, False, True], n_rows)
    return pd.DataFrame({"row": row, "event": (last & np.isin(row, list(events_at))).astype(int)})


def test_sampled_person_periods_keep_every_event_and_whole_rows() -> None:
    cutoffs = pd.to_datetime(["2024-01-01"] * 40 + ["2024-02-01"] * 40, utc=True)
    frame = pd.DataFrame({"customer_id": np.tile(np.arange(40), 2), "cutoff": cutoffs})
    events = {0, 5, 45}
    rows = _periods_of(len(frame), events)
    cfg = parse_params({"train": {"negative_sample_rate": 0.25}}).train
    kept, weights = sample_person_periods(frame, rows, cfg)
    per_row = kept.assign(weight=weights).groupby("row")
    assert (per_row.size() == 3).all()  # a kept customer row keeps its whole sequence
    assert (per_row["weight"].nunique() == 1).all()
    assert set(kept.loc[kept["event"] == 1, "row"]) == events
    row_weight = per_row["weight"].first()
    negatives = row_weight.drop(index=list(events))
    cutoff_of = frame["cutoff"].iloc[negatives.index].to_numpy()
    # Naive reference per cutoff: round(0.25 * n) retained rows, weighing n / k each.
    for cutoff, n in ((cutoffs[0], 38), (cutoffs[-1], 39)):
        mine = negatives[cutoff_of == cutoff]
        assert len(mine) == round(0.25 * n)
        assert mine.sum() == pytest.approx(n)
    assert (row_weight.loc[list(events)] == 1.0).all()
    unsampled = parse_params({}).train
    same, none = sample_person_periods(frame, rows, unsampled)
    assert same is rows and none is None


def test_head_fitted_on_a_sample_keeps_every_event(export_frame, fitted) -> None:
    frame, _ = export_frame
    full, _ = fitted
    split = split_for_horizons(frame, PARAMS)
    train, validation = (frame.iloc[r] for r in (split.train, split.validation))
    names = list(full.customer_features)
    cfg = PARAMS.train.model_copy(update={"negative_sample_rate": 0.5})
    head = fit_survival_head(
        train,
        validation,
        names,
        list(full.categorical_levels),
        cfg,
        PARAMS.label,
        build_lgb_params(cfg),
        validation_start=split.validation_cutoffs[0],
        test_start=split.test_cutoffs[0],
    )
    assert head.metadata["train_events"] == full.metadata["train_events"]
    assert head.metadata["train_person_periods"] < full.metadata["train_person_periods"]
    probabilities = head.predict_horizons(frame.iloc[split.test])
    assert (np.diff(probabilities, axis=1) >= -1e-12).all()


def test_head_is_the_fit_of_each_slices_own_person_periods(export_frame, fitted) -> None:
    """Naive reference of the fit: each slice's person-periods expanded and encoded on their
    own, the validation rows' schedule encoded again for calibration. The head reuses the
    validation encoding; its booster and calibration must be the reference's to the bit."""
    import lightgbm as lgb

    from churn.model.hazard import build_decision_schedule, expand_person_periods
    from churn.model.horizons import HorizonCalibration
    from churn.model.survival import censor_before, horizon_labels

    frame, _ = export_frame
    head, _ = fitted
    split = split_for_horizons(frame, PARAMS)
    train, validation = (frame.iloc[r] for r in (split.train, split.validation))
    names, levels = head.customer_features, head.categorical_levels
    longest = max(PARAMS.label.horizons_days)
    matrices, events = [], []
    for part, next_start in (
        (train, split.validation_cutoffs[0]),
        (validation, split.test_cutoffs[0]),
    ):
        rows, _ = expand_person_periods(
            build_decision_schedule(part, longest),
            part["days_to_churn"].to_numpy("float64"),
            censor_before(part, next_start, PARAMS.label.grace_days),
        )
        matrices.append(build_person_period_matrix(part, names, levels, rows))
        events.append(rows["event"].to_numpy())
    all_names = list(head.feature_names)
    train_set = lgb.Dataset(
        matrices[0],
        events[0],
        feature_name=all_names,
        categorical_feature=[all_names.index(name) for name in levels],
    )
    booster = lgb.train(
        dict(build_lgb_params(PARAMS.train)),
        train_set,
        num_boost_round=PARAMS.train.n_estimators,
        valid_sets=[lgb.Dataset(matrices[1], events[1], reference=train_set)],
        callbacks=[lgb.early_stopping(PARAMS.train.early_stopping_rounds, verbose=False)],
    )
    assert booster.model_to_string() == head.booster.model_to_string()
    assert (
        head.metadata["validation_person_periods"]
        == len(events[1])
        < len(build_decision_schedule(validation, longest))
    )  # censoring left some of the schedule out: the reuse picked a subset
    raw = survival.SurvivalHead(booster, names, levels, head.calibration).predict_raw_horizons(
        validation
    )
    labels = horizon_labels(
        validation, head.horizons, validation["observed_days"].astype("float64")
    )
    expected = HorizonCalibration.fit(raw, labels, head.horizons)
    assert expected.to_dict() == head.calibration.to_dict()


def test_person_period_matrix_equals_encoding_every_row_then_indexing(monkeypatch) -> None:
    rng = np.random.default_rng(5)
    n = 40
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(n) + 7000,  # integer ids, as third-party exports have
            "tickets_last_30d": rng.integers(0, 5, n).astype("float64"),
            "days_since_last_login": np.where(rng.random(n) < 0.2, np.nan, rng.random(n) * 90),
            "plan_code": pd.Series(rng.choice(["10", "20", "30", None], n), dtype="object"),
        },
        index=np.arange(n) * 3 + 11,  # a non-default index: positions, not labels, are used
    )
    names = ("tickets_last_30d", "days_since_last_login", "plan_code")
    levels = {"plan_code": ("10", "20")}
    # Unsorted, repeated rows, most rows without a period (a sampled training slice).
    rows = rng.choice(np.arange(0, n, 3), 25)
    schedule = pd.DataFrame(
        {
            "row": rows,
            "decision_index": rng.integers(0, 3, len(rows)),
            "days_to_decision": rng.random(len(rows)) * 365.123456789,
            "term_months": rng.choice([1, 12], len(rows)),
        }
    )

    def encode_all_then_index(schedule: pd.DataFrame) -> np.ndarray:
        customer = prepare_features(frame, names, levels)[schedule["row"].to_numpy()]
        period = schedule[list(PERIOD_FEATURES)].to_numpy(dtype="float64")
        return np.hstack([customer, period]).astype("float32")

    monkeypatch.setattr(matrix_module, "CHUNK_ROWS", 7)  # several chunks, one partial
    monkeypatch.setattr(matrix_module, "BLOCK_ROWS", 3)
    matrix = build_person_period_matrix(frame, names, levels, schedule)
    assert matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, encode_all_then_index(schedule))
    every_row = schedule.assign(row=rng.permutation(n)[: len(rows)] % n)
    every_row = pd.concat([every_row, schedule.assign(row=np.arange(len(rows)))])
    every_row = pd.concat(
        [
            every_row,
            pd.DataFrame({"row": np.arange(n)}).assign(
                decision_index=0, days_to_decision=1.5, term_months=1
            ),
        ]
    )
    np.testing.assert_array_equal(
        build_person_period_matrix(frame, names, levels, every_row),
        encode_all_then_index(every_row),
    )
    empty = schedule.iloc[:0]
    assert build_person_period_matrix(frame, names, levels, empty).shape == (0, 6)


@pytest.mark.parametrize("kernel", [False, True], ids=["lightgbm", "numba_kernel"])
def test_hazards_are_lightgbms_probabilities_bit_for_bit(fitted, monkeypatch, kernel) -> None:
    """The head's hazards, from LightGBM's predict on small calls or the numba kernel on large
    ones, equal ``booster.predict`` to the last bit (the logistic step as LightGBM's)."""
    from churn.model import treeshap
    from churn.model.hazard import build_decision_schedule

    head, test = fitted
    threshold = 0 if kernel else 10**18
    monkeypatch.setattr(treeshap.dispatch, "PREDICT_KERNEL_MIN_ROW_TREES", threshold)
    schedule = build_decision_schedule(test, max(head.horizons))
    matrix = build_person_period_matrix(
        test, head.customer_features, head.categorical_levels, schedule
    )
    assert treeshap.choose_backend(head.booster, len(matrix), threshold) == (
        "numba" if kernel else "lightgbm"
    )
    expected = head.booster.predict(matrix)
    assert np.array_equal(survival.predict_hazards(head.booster, matrix), expected)
    # The check above sees the last bit: hazards that went through float32 (or NumPy's
    # logistic step, on machines whose exp differs from LightGBM's in the last bit; not on
    # every machine, so not asserted) would fail it.
    assert not np.array_equal(expected.astype(np.float32).astype(np.float64), expected)
    assert survival.predict_hazards(head.booster, matrix[:0]).shape == (0,)
