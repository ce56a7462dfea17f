"""Tests for negative downsampling of the training rows (train and the backtest refits)."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import pytest
from support.tiny import TINY_CATALOG, make_backtest_params, make_feature_frame

from churn.config import Params
from churn.domain.catalog import KEY_COLUMNS
from churn.errors import ModelError
from churn.model.backtest import (
    is_backtest_fit,
    refit_backtest_cutoff,
    run_rolling_backtest,
    select_backtest_cutoffs,
    split_backtest_cutoff,
)
from churn.model.baseline import fit_baseline, fit_sample_baseline, predict_baseline
from churn.model.fit import fit_churn_model, train_churn_models
from churn.model.sampling import (
    choose_negative_rate,
    hash_row_keys,
    sample_training_negatives,
    sample_training_rows,
)
from churn.model.split import split_by_time
from churn.stages.fit_workers import refit_side_by_side


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    return make_feature_frame(n_customers=400, n_cutoffs=6, seed=5)


def slices(frame: pd.DataFrame, params: Params) -> list[pd.DataFrame]:
    split = split_by_time(frame, params.train, params.label)
    return [frame.iloc[rows] for rows in (split.train, split.validation, split.test)]


def count_by_cutoff(frame: pd.DataFrame, label: int) -> dict[pd.Timestamp, int]:
    """Naive reference: rows with ``label`` per cutoff, by a plain loop."""
    counts: dict[pd.Timestamp, int] = {}
    for cutoff, value in zip(frame["cutoff"], frame["label"], strict=True):
        counts[cutoff] = counts.get(cutoff, 0) + int(value == label)
    return counts


@pytest.mark.parametrize("rate", [0.5, 0.25, 0.1])
def test_sampling_keeps_every_churner_and_the_rate_of_retained_rows_per_cutoff(features, rate):
    train = features[features["label"].notna()]
    sample = sample_training_negatives(train, rate, seed=7)
    kept = sample.rows
    assert count_by_cutoff(kept, 1) == count_by_cutoff(train, 1)
    before, after = count_by_cutoff(train, 0), count_by_cutoff(kept, 0)
    assert set(after) == set(before)  # every cutoff stays represented
    for cutoff, total in before.items():
        assert after[cutoff] == max(1, round(rate * total))
        assert abs(after[cutoff] / total - rate) <= 1.0 / total
    # Kept rows are original rows, in their original order.
    assert kept.index.is_monotonic_increasing
    pd.testing.assert_frame_equal(kept, train.loc[kept.index])


def test_kept_retained_rows_weigh_the_inverse_of_their_cutoffs_inclusion_rate(features):
    train = features[features["label"].notna()]
    rate = 0.25
    sample = sample_training_negatives(train, rate, seed=7)
    weights = pd.Series(sample.weights, index=sample.rows.index)
    churned = sample.rows["label"] == 1
    assert (weights[churned] == 1.0).all()
    assert weights[~churned].to_numpy() == pytest.approx(1 / rate, rel=0.05)
    # The weights of a cutoff's kept retained rows add up to all its retained rows.
    before = count_by_cutoff(train, 0)
    for cutoff, total in before.items():
        at = (sample.rows["cutoff"] == cutoff) & ~churned
        assert weights[at].sum() == pytest.approx(total)


def test_sampling_is_deterministic_with_the_seed_and_blind_to_row_order(features):
    train = features[features["label"].notna()]
    first = sample_training_negatives(train, 0.3, seed=7)
    again = sample_training_negatives(train, 0.3, seed=7)
    pd.testing.assert_frame_equal(first.rows, again.rows)
    np.testing.assert_array_equal(first.weights, again.weights)
    shuffled = sample_training_negatives(train.sample(frac=1.0, random_state=1), 0.3, seed=7)
    assert set(shuffled.rows.index) == set(first.rows.index)
    other_seed = sample_training_negatives(train, 0.3, seed=8)
    assert set(other_seed.rows.index) != set(first.rows.index)


def test_integer_ids_of_a_third_party_export_draw_the_same_rows_as_their_text(features):
    train = features[features["label"].notna()].rename(columns={"mrr_at_cutoff": "mrr"})
    numbered = train.assign(
        customer_id=train["customer_id"].str.extract(r"(\d+)")[0].astype("int64")
    )
    as_text = numbered.assign(customer_id=numbered["customer_id"].astype(str))
    kept_numbered = sample_training_negatives(numbered, 0.5, seed=3).rows.index
    kept_text = sample_training_negatives(as_text, 0.5, seed=3).rows.index
    assert list(kept_numbered) == list(kept_text)


def test_a_cutoff_seen_by_fewer_cutoffs_draws_the_same_rows(features):
    train = features[features["label"].notna()]
    cutoffs = sorted(train["cutoff"].unique())
    earlier = train[train["cutoff"] < cutoffs[-1]]
    whole = sample_training_negatives(train, 0.4, seed=7).rows.index
    part = sample_training_negatives(earlier, 0.4, seed=7).rows.index
    assert set(part) == set(whole) & set(earlier.index)


def test_rate_one_leaves_the_training_set_and_the_model_unchanged(features):
    train = features[features["label"].notna()]
    sample = sample_training_negatives(train, 1.0, seed=7)
    assert sample.rows is train
    assert sample.weights is None
    params = make_backtest_params()
    train, validation, _ = slices(features, params)
    default = fit_churn_model(train, validation, TINY_CATALOG, params.train)
    explicit = fit_churn_model(
        train, validation, TINY_CATALOG, make_backtest_params(negative_sample_rate=1.0).train
    )
    sampled = fit_churn_model(
        train, validation, TINY_CATALOG, make_backtest_params(negative_sample_rate=0.5).train
    )
    assert default.booster.model_to_string() == explicit.booster.model_to_string()
    assert default.metadata["n_train_fitted"] == default.metadata["n_train"] == len(train)
    # The check can fail: a sampled fit is another model.
    assert sampled.booster.model_to_string() != default.booster.model_to_string()
    assert sampled.metadata["n_train_fitted"] < len(train)
    assert sampled.metadata["n_train"] == len(train)
    assert sampled.metadata["negative_sampling"]["negative_sample_rate"] == 0.5


def test_a_bad_rate_is_refused():
    frame = pd.DataFrame({"customer_id": ["a"], "cutoff": [pd.Timestamp("2024-01-31")], "label": 0})
    with pytest.raises(ModelError, match="rate"):
        sample_training_negatives(frame, 0.0, seed=1)
    with pytest.raises(ValueError, match="negative_sample_rate"):
        make_backtest_params(negative_sample_rate=1.5)


def test_the_row_budget_derives_the_rate_and_never_drops_churners():
    assert choose_negative_rate(100, 900, make_backtest_params().train) == 1.0
    budget = make_backtest_params(max_training_rows=550).train
    assert choose_negative_rate(100, 900, budget) == pytest.approx(0.5)
    assert choose_negative_rate(100, 400, budget) == 1.0  # fits: nothing sampled
    lower = make_backtest_params(max_training_rows=550, negative_sample_rate=0.2).train
    assert choose_negative_rate(100, 900, lower) == pytest.approx(0.2)


def test_churners_past_the_budget_are_all_kept_with_as_many_retained_rows(caplog):
    budget = make_backtest_params(max_training_rows=550).train
    with caplog.at_level(logging.WARNING, logger="churn.model.sampling"):
        rate = choose_negative_rate(600, 900, budget)
    # 600 churned rows and 600 of the 900 retained ones: one for one, nothing dropped.
    assert rate == pytest.approx(600 / 900)
    assert "max_training_rows = 550 cannot hold the 600 churned" in caplog.text
    assert "600 retained rows" in caplog.text
    # Never above the configured rate.
    lower = make_backtest_params(max_training_rows=550, negative_sample_rate=0.2).train
    assert choose_negative_rate(600, 900, lower) == pytest.approx(0.2)
    # Exactly at the budget counts as past it (no room for a retained row).
    assert choose_negative_rate(550, 900, budget) == pytest.approx(550 / 900)


def test_a_fit_under_a_row_budget_stays_near_it(features):
    params = make_backtest_params()
    train, validation, _ = slices(features, params)
    budget = len(train) // 2
    model = fit_churn_model(
        train, validation, TINY_CATALOG, make_backtest_params(max_training_rows=budget).train
    )
    cutoffs = train["cutoff"].nunique()
    # Rounding per cutoff moves the count by at most one row per cutoff.
    assert abs(model.metadata["n_train_fitted"] - budget) <= cutoffs
    assert model.metadata["negative_sample_rate_applied"] < 1.0


def test_the_backtest_reuses_a_sampled_model_only_with_the_same_sampling(features):
    params = make_backtest_params(negative_sample_rate=0.5)
    trained = train_churn_models(features, TINY_CATALOG, params)
    last = select_backtest_cutoffs(features, params)[0][-1]
    split = split_backtest_cutoff(features, params, last)[0]
    assert is_backtest_fit(trained.model, split, params)
    for other in (make_backtest_params(), make_backtest_params(negative_sample_rate=0.25)):
        assert not is_backtest_fit(trained.model, split, other)
    # The refit at the trained split is the model train built: same trees, same entry.
    refit = refit_backtest_cutoff(features, TINY_CATALOG, params, last)
    reused, _ = run_rolling_backtest(
        features,
        TINY_CATALOG,
        params,
        fitted=(trained.model, trained.baseline),
        refit=lambda cutoffs: [
            refit_backtest_cutoff(features, TINY_CATALOG, params, c) for c in cutoffs
        ],
    )
    assert reused[-1] == refit


def test_refits_in_worker_processes_sample_like_the_serial_ones(features, tmp_path):
    path = tmp_path / "features.parquet"
    features.to_parquet(path)
    params = make_backtest_params(negative_sample_rate=0.3, num_threads=2)
    serial_params = make_backtest_params(negative_sample_rate=0.3, num_threads=1)
    unsampled = make_backtest_params(num_threads=1)
    cutoffs = select_backtest_cutoffs(features, params)[0][-2:]
    serial = [refit_backtest_cutoff(features, TINY_CATALOG, serial_params, c) for c in cutoffs]
    plain = [refit_backtest_cutoff(features, TINY_CATALOG, unsampled, c) for c in cutoffs]
    columns = [*KEY_COLUMNS, *TINY_CATALOG["name"]]
    parallel = refit_side_by_side(path, columns, TINY_CATALOG, params, cutoffs, workers=2)
    assert parallel == serial
    assert parallel != plain


def test_weighting_keeps_the_raw_scores_on_the_scale_of_the_full_data(features):
    """Unweighted, a quarter of the retained rows would inflate the raw odds about 4x; the
    1/r weights keep the uncalibrated probabilities near the churn rate of the full data."""
    params = make_backtest_params()
    train, validation, _ = slices(features, params)
    sampled = fit_churn_model(
        train, validation, TINY_CATALOG, make_backtest_params(negative_sample_rate=0.25).train
    )
    raw = 1.0 / (1.0 + np.exp(-sampled.predict_raw(validation)))
    churn_rate = train["label"].mean()
    unweighted_rate = churn_rate / (churn_rate + 0.25 * (1 - churn_rate))
    assert abs(raw.mean() - churn_rate) < abs(raw.mean() - unweighted_rate) / 3


def test_the_baseline_is_fitted_on_the_classifiers_weighted_sample(features):
    params = make_backtest_params(negative_sample_rate=0.25)
    result = train_churn_models(features, TINY_CATALOG, params)
    train = features.iloc[result.split.train]
    test = features.iloc[result.split.test]
    sample = sample_training_rows(train, params.train)
    assert len(sample.rows) < len(train)
    catalog = result.model.catalog
    expected = fit_baseline(
        sample.rows, catalog, seed=params.train.seed, sample_weight=sample.weights
    )
    np.testing.assert_allclose(
        predict_baseline(result.baseline, test), predict_baseline(expected, test)
    )
    # Guard: the unsampled fit gives other probabilities, so the comparison above can fail.
    unsampled = fit_baseline(train, catalog, seed=params.train.seed)
    assert not np.allclose(predict_baseline(unsampled, test), predict_baseline(expected, test))


def test_a_fit_given_only_the_keys_and_categoricals_of_training_rows_is_the_same_model(features):
    """With the sample drawn, the fit reads of the other training rows only their keys,
    labels and categorical levels: the thin frame gives the same trees, levels, typical values
    and facts; without later validation rows to take typical values from, it is refused."""
    params = make_backtest_params(negative_sample_rate=0.3)
    train, validation, _ = slices(features, params)
    sample = sample_training_rows(train, params.train)
    thin = train[[*KEY_COLUMNS, "acquisition_channel", "plan"]]
    whole = fit_churn_model(train, validation, TINY_CATALOG, params.train, sample=sample)
    lean = fit_churn_model(thin, validation, TINY_CATALOG, params.train, sample=sample)
    assert lean.booster.model_to_string() == whole.booster.model_to_string()
    assert lean.categorical_levels == whole.categorical_levels
    assert lean.typical_values == whole.typical_values
    assert lean.metadata == whole.metadata
    assert lean.feature_names == whole.feature_names
    with pytest.raises(ModelError, match="later than the training rows"):
        fit_churn_model(thin, train, TINY_CATALOG, params.train, sample=sample)


def _naive_capped_baseline(sample, catalog, seed: int, max_rows: int):
    """The capped baseline by hand: the sample's rows with the smallest key hashes copied
    out, their weights rescaled to the sample's total by a plain sum."""
    rows = sample.rows
    hashes = hash_row_keys(rows, f"baseline-{seed}")
    kept = sorted(sorted(range(len(rows)), key=lambda i: (int(hashes[i]), i))[:max_rows])
    weights = [1.0] * sample.size if sample.weights is None else list(sample.weights)
    share = [weights[i] for i in kept]
    scale = sum(weights) / sum(share)
    return fit_baseline(rows.iloc[kept], catalog, seed=seed, sample_weight=np.array(share) * scale)


@pytest.mark.parametrize("rate", [1.0, 0.5])
def test_the_baseline_fits_a_reweighted_share_of_a_sample_past_its_cap(features, rate):
    params = make_backtest_params(negative_sample_rate=rate)
    train, _, test = slices(features, params)
    sample = sample_training_rows(train, params.train)
    seed = params.train.seed
    cap = sample.size // 2
    capped = fit_sample_baseline(sample, TINY_CATALOG, seed, max_rows=cap)
    expected = _naive_capped_baseline(sample, TINY_CATALOG, seed, cap)
    np.testing.assert_allclose(
        predict_baseline(capped, test), predict_baseline(expected, test), rtol=1e-9
    )
    whole = fit_sample_baseline(sample, TINY_CATALOG, seed)
    assert not np.allclose(predict_baseline(capped, test), predict_baseline(whole, test))
    # The share is blind to the rows' order: shuffled, the same rows are drawn and fitted.
    shuffled = train.sample(frac=1.0, random_state=1)
    reordered = sample_training_rows(shuffled, params.train)
    again = fit_sample_baseline(reordered, TINY_CATALOG, seed, max_rows=cap)
    np.testing.assert_allclose(
        predict_baseline(again, test), predict_baseline(capped, test), rtol=1e-9
    )
    # A cap the sample does not reach changes nothing, to the last bit.
    for unreached in (sample.size, sample.size + 1):
        same = fit_sample_baseline(sample, TINY_CATALOG, seed, max_rows=unreached)
        assert same.coefficients == whole.coefficients and same.intercept == whole.intercept


def test_the_backtest_reuses_the_baseline_only_when_it_fits_the_same_rows(features):
    params = make_backtest_params(negative_sample_rate=0.5)
    trained = train_churn_models(features, TINY_CATALOG, params)
    fitted = trained.model.metadata["n_train_fitted"]
    assert trained.model.metadata["baseline_max_rows"] == params.train.baseline_max_rows
    last = select_backtest_cutoffs(features, params)[0][-1]
    split = split_backtest_cutoff(features, params, last)[0]

    def with_cap(cap):
        return make_backtest_params(negative_sample_rate=0.5, baseline_max_rows=cap)

    # Caps at or above the sample's size fit it all, like the trained baseline (default cap).
    assert fitted < params.train.baseline_max_rows
    for cap in (None, fitted, 10 * fitted):
        assert is_backtest_fit(trained.model, split, with_cap(cap)), cap
    assert not is_backtest_fit(trained.model, split, with_cap(fitted - 1))
    # A model saved before the cap existed fitted its baseline on the whole sample.
    older = trained.model.metadata.copy()
    del older["baseline_max_rows"]
    model = dataclasses.replace(trained.model, metadata=older)
    assert is_backtest_fit(model, split, params)
    assert not is_backtest_fit(model, split, with_cap(fitted - 1))
    # Trained under a cap that bit, it is the refit only under the same cap.
    capped = train_churn_models(features, TINY_CATALOG, with_cap(fitted // 2))
    assert is_backtest_fit(capped.model, split, with_cap(fitted // 2))
    assert not is_backtest_fit(capped.model, split, with_cap(fitted // 2 + 1))
    assert not is_backtest_fit(capped.model, split, params)
    refit = refit_backtest_cutoff(features, TINY_CATALOG, with_cap(fitted // 2), last)
    reused, _ = run_rolling_backtest(
        features,
        TINY_CATALOG,
        with_cap(fitted // 2),
        fitted=(capped.model, capped.baseline),
    )
    assert reused[-1] == refit


def test_a_baseline_cap_below_a_hundred_rows_is_refused():
    with pytest.raises(ValueError, match="baseline_max_rows"):
        make_backtest_params(baseline_max_rows=99)
    assert make_backtest_params(baseline_max_rows=None).train.baseline_max_rows is None


def _naive_row_hashes(rows: pd.DataFrame, salt: str) -> np.ndarray:
    """Naive reference: every row's id and cutoff day written out as text (a missing id stays
    missing), then hashed."""
    import hashlib

    key = hashlib.blake2b(salt.encode(), digest_size=8).hexdigest()
    texts = pd.DataFrame(
        {
            "customer_id": np.array(
                [np.nan if pd.isna(value) else str(value) for value in rows["customer_id"]],
                dtype=object,
            ),
            "cutoff": np.array(
                [pd.Timestamp(value).strftime("%Y-%m-%d") for value in rows["cutoff"]],
                dtype=object,
            ),
        }
    )
    return pd.util.hash_pandas_object(texts, index=False, hash_key=key).to_numpy()


@pytest.mark.parametrize(
    "ids",
    [
        pd.Series(["C7", "C1", "C7", "C3", "C1", "C9"], dtype="str"),
        pd.Series([7, 1, 7, 3, 1, 9], dtype="int64"),
        pd.Series([7, 1, 7, 3, 1, 9], dtype="Int32"),
        # An integer and its text are one id: they share a category and a hash.
        pd.Series([7, "7", 1, "1", 3, 9], dtype=object),
        pd.Series(["C7", None, "C7", "C3", None, "C9"], dtype=object),
        # Equal values with two texts are two ids, as their texts are: "1" and "1.0".
        pd.Series([1, 1.0, "1", 3, 1.0, 9], dtype=object),
        pd.Series([0.0, -0.0, 2.5, 0.0, -0.0, 9.0], dtype="float64"),
    ],
    ids=["text", "int64", "nullable-int", "mixed", "missing", "int-and-float", "signed-zero"],
)
def test_row_hashes_equal_hashing_each_rows_text(ids):
    cutoffs = pd.to_datetime(
        ["2024-01-01", "2024-01-01", "2024-02-01", "2024-02-01", "2024-03-01", "2024-03-01"],
        utc=True,
    )
    rows = pd.DataFrame({"customer_id": ids, "cutoff": cutoffs})
    hashes = hash_row_keys(rows, "7")
    np.testing.assert_array_equal(hashes, _naive_row_hashes(rows, "7"))
    assert not np.array_equal(hashes, hash_row_keys(rows, "8"))
    # The same row hashes alike whatever the other rows are.
    np.testing.assert_array_equal(hash_row_keys(rows.iloc[[5, 0]], "7"), hashes[[5, 0]])


def test_an_integer_id_hashes_like_its_text():
    cutoff = pd.to_datetime(["2024-01-01", "2024-02-01"], utc=True)
    as_int = pd.DataFrame({"customer_id": [12, 12], "cutoff": cutoff})
    as_text = pd.DataFrame({"customer_id": pd.Series(["12", "12"], dtype="str"), "cutoff": cutoff})
    np.testing.assert_array_equal(hash_row_keys(as_int, "s"), hash_row_keys(as_text, "s"))


@pytest.mark.parametrize("distinct_keys", [5, 1_000_000])
def test_rows_are_ordered_by_group_then_key_as_lexsort_orders_them(distinct_keys):
    """Naive reference: Python's stable sort on (group, key); many repeated keys exercise the
    ties, which keep the given order."""
    from churn.model.sampling import order_by_group_then_key

    rng = np.random.default_rng(distinct_keys)
    n = 5_000
    rows = rng.permutation(n) + 100
    groups = rng.integers(0, 7, n)
    keys = rng.integers(0, distinct_keys, n).astype(np.uint64)
    expected = [rows[i] for i in sorted(range(n), key=lambda i: (groups[i], keys[i]))]
    got = order_by_group_then_key(rows, groups, keys)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, rows[np.lexsort((keys, groups))])
    assert len(order_by_group_then_key(rows[:0], groups[:0], keys[:0])) == 0
