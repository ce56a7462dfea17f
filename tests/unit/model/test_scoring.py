"""Tests for churn.score: probabilities, exact contributions, reasons, risk shares, ranking."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from support.tiny import fit_tiny_model, make_feature_frame

from churn.domain.families import FAMILIES
from churn.errors import ModelError
from churn.model import reasons as reasons_module
from churn.model.reasons import build_feature_specs, format_value, top_positive_reasons
from churn.model.scoring import (
    finalize_scores,
    rank_risk_deciles,
    score_frame,
    score_population,
)
from churn.tracking.loading import load_model

REASONS = 3


@pytest.fixture
def scores(tiny_model, feature_frame) -> pd.DataFrame:
    return score_frame(tiny_model, feature_frame, REASONS)


def test_columns_follow_the_documented_schema(scores, feature_frame):
    expected = ["customer_id", "cutoff", "churn_probability", "mrr", "expected_revenue_at_risk"]
    for i in range(1, REASONS + 1):
        expected += [f"reason_{i}_{part}" for part in ("feature", "value", "contribution", "text")]
    expected += [f"risk_share_{f}" for f in FAMILIES] + [
        "risk_share_pre_sale",
        "risk_share_post_sale",
    ]
    assert list(scores.columns) == expected
    assert scores.index.equals(feature_frame.index)
    assert scores["customer_id"].tolist() == feature_frame["customer_id"].tolist()
    assert scores["cutoff"].dtype == "datetime64[us, UTC]"


def test_probability_is_the_calibrated_model_output(scores, tiny_model, feature_frame):
    np.testing.assert_array_equal(
        scores["churn_probability"], tiny_model.predict_proba(feature_frame)
    )


def test_revenue_at_risk_is_probability_times_annual_mrr(scores, feature_frame):
    np.testing.assert_allclose(scores["mrr"], feature_frame["mrr_at_cutoff"])
    np.testing.assert_allclose(
        scores["expected_revenue_at_risk"], scores["churn_probability"] * 12 * scores["mrr"]
    )


def test_mrr_comes_from_the_feature_then_an_mrr_column_then_is_missing(tiny_model, feature_frame):
    rows = feature_frame.head(20).assign(mrr=5.0)
    scored = score_frame(tiny_model, rows, 1)
    np.testing.assert_array_equal(scored["mrr"], rows["mrr_at_cutoff"])  # the feature wins
    # The tiny model needs mrr_at_cutoff as a feature, so the fallbacks are checked directly.
    from churn.model.scoring import read_mrr

    assert (read_mrr(rows.drop(columns=["mrr_at_cutoff"])) == 5.0).all()
    assert np.isnan(read_mrr(rows.drop(columns=["mrr_at_cutoff", "mrr"]))).all()


# shap 0.51 announces its LightGBM output format on every call, and its import touches
# matplotlib colormap setters that are pending deprecation: neither concerns this comparison.
@pytest.mark.filterwarnings(
    "ignore:LightGBM binary classifier with TreeExplainer shap values output has changed"
    ":UserWarning"
)
@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:shap")
def test_contributions_add_up_and_equal_shap_tree_explainer(tiny_model, feature_frame):
    import shap

    contributions, base = tiny_model.contributions(feature_frame)
    np.testing.assert_allclose(
        contributions.sum(axis=1) + base, tiny_model.predict_raw(feature_frame), rtol=0, atol=1e-9
    )
    explainer = shap.TreeExplainer(tiny_model.booster)
    reference = explainer.shap_values(tiny_model.prepare(feature_frame))
    assert np.abs(np.asarray(reference) - contributions).max() < 1e-9
    assert np.abs(explainer.expected_value - base).max() < 1e-9


def test_reordered_columns_give_identical_scores_and_reasons(tiny_model, feature_frame, scores):
    shuffled = feature_frame[list(reversed(feature_frame.columns))]
    pd.testing.assert_frame_equal(score_frame(tiny_model, shuffled, REASONS), scores)


def test_batches_give_the_same_result_as_one_pass(tiny_model, feature_frame, scores):
    pd.testing.assert_frame_equal(
        score_frame(tiny_model, feature_frame, REASONS, batch_rows=137), scores
    )


def _count_rows(monkeypatch, cls: type, method: str) -> list[int]:
    """Patch ``cls.method`` (called with a matrix) to record the rows of each call."""
    calls: list[int] = []
    original = getattr(cls, method)

    def counting(self, X):
        calls.append(len(X))
        return original(self, X)

    monkeypatch.setattr(cls, method, counting)
    return calls


def test_every_batch_of_a_large_population_is_predicted_by_the_kernel(
    monkeypatch, tiny_model, feature_frame, scores
):
    # Each 137-row batch is below the prediction kernel's threshold, the population is not:
    # the kernel answers every batch (its tables are built), and the scores do not change.
    from churn.model import treeshap

    booster = tiny_model.booster
    monkeypatch.setattr(
        treeshap.dispatch, "PREDICT_KERNEL_MIN_ROW_TREES", len(feature_frame) * booster.num_trees()
    )
    treeshap.dispatch._CACHE.pop(booster, None)
    calls = _count_rows(monkeypatch, treeshap.FastTreeShap, "predict_raw")
    batched = score_frame(tiny_model, feature_frame, REASONS, batch_rows=137)
    pd.testing.assert_frame_equal(batched, scores)
    assert sum(calls) == len(feature_frame) and max(calls) == 137


def test_without_texts_only_the_reasons_value_and_text_are_left_empty(
    tiny_model, feature_frame, scores
):
    plain = score_population(tiny_model, feature_frame, REASONS, texts=False)
    bare = plain.scores
    assert list(bare.columns) == list(scores.columns)
    worded = [c for c in scores.columns if c.endswith(("_value", "_text"))]
    assert len(worded) == 2 * REASONS
    pd.testing.assert_frame_equal(bare.drop(columns=worded), scores.drop(columns=worded))
    assert bare[worded].isna().all().all()
    assert scores[worded].notna().any().all()  # the reasons do have words with texts
    full = score_population(tiny_model, feature_frame, REASONS)
    pd.testing.assert_frame_equal(plain.contributions, full.contributions)


def test_unseen_category_is_scored_as_missing(tiny_model, feature_frame):
    rows = feature_frame.head(200)
    unseen = score_frame(tiny_model, rows.assign(acquisition_channel="tiktok"), REASONS)
    missing = score_frame(tiny_model, rows.assign(acquisition_channel=pd.NA), REASONS)
    same = [c for c in unseen.columns if not c.endswith(("_value", "_text"))]
    pd.testing.assert_frame_equal(unseen[same], missing[same])
    texts = pd.concat(
        [
            unseen.loc[unseen[f"reason_{i}_feature"] == "acquisition_channel", f"reason_{i}_text"]
            for i in range(1, REASONS + 1)
        ]
    )
    assert len(texts) and texts.str.endswith("not seen in training (scored as missing)").all()


def test_missing_required_column_is_a_model_error_naming_it(tiny_model, feature_frame):
    with pytest.raises(ModelError, match="active_days_last_30d"):
        score_frame(tiny_model, feature_frame.drop(columns=["active_days_last_30d"]), REASONS)
    with pytest.raises(ModelError, match="active_days_last_30d"):
        score_frame(tiny_model, feature_frame.drop(columns=["active_days_last_30d"]).head(0))


def test_reasons_are_the_top_positive_contributions(tiny_model, feature_frame, scores):
    contributions, _ = tiny_model.contributions(feature_frame)
    names = tiny_model.feature_names
    specs = build_feature_specs(
        tiny_model.catalog, tiny_model.feature_names, tiny_model.categorical_levels
    )
    typical = {
        name: format_value(tiny_model.typical_values[name], specs[name]) for name in names
    }
    suppressed = 0
    for row in range(len(feature_frame)):  # naive reference, one row at a time
        order = []
        for j in np.argsort(-contributions[row], kind="stable"):
            shown = format_value(feature_frame[names[j]].iloc[row], specs[names[j]])
            if contributions[row, j] > 0 and shown == typical[names[j]]:
                suppressed += 1  # the typical value is never a reason
            elif contributions[row, j] > 0:
                order.append(j)
        for i in range(REASONS):
            feature = scores[f"reason_{i + 1}_feature"].iloc[row]
            value = scores[f"reason_{i + 1}_contribution"].iloc[row]
            if i < len(order):
                assert feature == names[order[i]]
                assert value == contributions[row, order[i]]
            else:
                assert pd.isna(feature) and np.isnan(value)
                assert pd.isna(scores[f"reason_{i + 1}_text"].iloc[row])
    assert suppressed > 0  # the rule was exercised


def test_reason_value_and_text_describe_the_raw_value(scores, feature_frame):
    cited = scores["reason_1_feature"] == "support_tickets_last_30d"
    assert cited.any()
    raw = feature_frame.loc[cited, "support_tickets_last_30d"].astype(int).astype(str)
    assert (scores.loc[cited, "reason_1_value"] == raw).all()
    expected = raw + " support tickets opened in the last 30 days; a typical customer has 1"
    assert (scores.loc[cited, "reason_1_text"] == expected).all()


def test_top_positive_reasons_with_fewer_positives_than_asked():
    contributions = np.array([[0.5, -1.0, 0.2], [-0.1, -0.2, -0.3], [0.0, 0.3, 0.3]])
    index, value = top_positive_reasons(contributions, 5)
    assert index.shape == (3, 3)
    np.testing.assert_array_equal(index[0, :2], [0, 2])
    assert np.isnan(value[0, 2]) and np.isnan(value[1]).all()
    np.testing.assert_array_equal(index[2, :2], [1, 2])  # ties keep feature order
    assert np.isnan(value[2, 2])  # a zero contribution is not a reason


def _naive_top_positive(contributions, k, allowed):
    """Reference: per row, a stable sort of the allowed contributions, largest first."""
    n, p = contributions.shape
    mask = np.broadcast_to(allowed, (n, p))
    filled = []
    for row in range(n):
        ranked = sorted((j for j in range(p) if mask[row, j]),
                        key=lambda j: (-contributions[row, j], j))
        filled.append([(j, contributions[row, j]) for j in ranked[:k]
                       if contributions[row, j] > 0])
    return filled


@pytest.mark.parametrize("block_rows", [1, 3, 4096])
@pytest.mark.parametrize("allowed_shape", [None, "features", "rows"])
def test_top_positive_reasons_in_blocks_match_a_sort_per_row(monkeypatch, block_rows,
                                                            allowed_shape):
    monkeypatch.setattr(reasons_module, "TOP_REASON_BLOCK_ROWS", block_rows)
    rng = np.random.default_rng(block_rows)
    # Few distinct values, zeros and -inf: ties everywhere; column-major float32 input too.
    contributions = rng.choice([-np.inf, -0.5, 0.0, 0.25, 0.5, 1.0], size=(23, 9))
    allowed = {None: None, "features": np.arange(9) != 4,
               "rows": rng.random((23, 9)) < 0.8}[allowed_shape]
    reference = _naive_top_positive(contributions, 4,
                                    np.ones(9, bool) if allowed is None else allowed)
    for data in (contributions, np.asfortranarray(contributions).astype(np.float32)):
        index, value = top_positive_reasons(data, 4, allowed)
        assert index.shape == value.shape == (23, 4)
        got = [[(int(j), v) for j, v in zip(index[r], value[r], strict=True) if np.isfinite(v)]
               for r in range(23)]
        assert got == reference
        # Only positive contributions are filled, and a filled slot never follows an empty one.
        filled = np.isfinite(value)
        assert (value[filled] > 0).all() and (filled[:, :-1] >= filled[:, 1:]).all()
    assert any(len(row) == 4 for row in reference) and any(len(row) < 4 for row in reference)


def test_risk_shares_sum_to_one_and_match_a_naive_reference(tiny_model, feature_frame, scores):
    families = scores[[f"risk_share_{f}" for f in FAMILIES]].sum(axis=1)
    phases = scores[["risk_share_pre_sale", "risk_share_post_sale"]].sum(axis=1)
    contributions, _ = tiny_model.contributions(feature_frame)
    positive = np.clip(contributions, 0, None)
    any_positive = positive.sum(axis=1) > 0
    np.testing.assert_allclose(families[any_positive], 1.0, atol=1e-12)
    np.testing.assert_allclose(phases[any_positive], 1.0, atol=1e-12)
    assert (families[~any_positive] == 0).all()
    support = [j for j, n in enumerate(tiny_model.feature_names) if n.startswith("support_")]
    expected = positive[any_positive][:, support].sum(axis=1) / positive[any_positive].sum(axis=1)
    np.testing.assert_allclose(scores["risk_share_support"][any_positive], expected)


def test_profile_family_gets_its_own_share(tiny_model, feature_frame):
    catalog = tiny_model.catalog.copy()
    catalog.loc[catalog["name"] == "plan", "family"] = "profile"
    model = dataclasses.replace(tiny_model, catalog=catalog)
    scores = score_frame(model, feature_frame.head(50), REASONS)
    assert "risk_share_profile" in scores.columns
    shares = scores[[f"risk_share_{f}" for f in (*FAMILIES, "profile")]].sum(axis=1)
    np.testing.assert_allclose(shares[shares > 0], 1.0)


def test_more_support_tickets_do_not_lower_the_average_score(tiny_model, feature_frame):
    # Averaged over customers: a tree model is only monotone per customer if trained with
    # monotone constraints (a decision for training), so the population mean is checked here.
    base = score_frame(tiny_model, feature_frame, 0)["churn_probability"]
    for extra in (1, 2, 4):
        bumped = feature_frame.assign(
            support_tickets_last_30d=feature_frame["support_tickets_last_30d"] + extra
        )
        assert score_frame(tiny_model, bumped, 0)["churn_probability"].mean() >= base.mean()


def test_empty_frame_gives_an_empty_frame_with_the_schema(tiny_model, feature_frame, scores):
    empty = score_frame(tiny_model, feature_frame.head(0), REASONS)
    assert list(empty.columns) == list(scores.columns) and empty.empty


def test_pluggable_kernel_is_used_and_checked(tiny_model, feature_frame):
    calls = []

    def kernel(frame):
        calls.append(len(frame))
        return tiny_model.contributions(frame)

    score_frame(tiny_model, feature_frame, REASONS, batch_rows=1000, contributions_fn=kernel)
    assert calls == [1000, 600]

    def wrong(frame):
        contributions, base = tiny_model.contributions(frame)
        return contributions * 1.5, base

    with pytest.raises(ModelError, match="do not add up"):
        score_frame(tiny_model, feature_frame, REASONS, contributions_fn=wrong)


@pytest.mark.slow  # compiles the numba kernel (~10 s)
def test_fast_treeshap_kernel_gives_the_same_scores(
    tiny_model, feature_frame, scores, monkeypatch
):
    treeshap = pytest.importorskip("churn.model.treeshap")
    # The kernel even for tiny calls.
    monkeypatch.setattr(treeshap.dispatch, "KERNEL_MIN_ROW_TREES", 0)
    assert treeshap.choose_backend(tiny_model.booster, len(feature_frame)) == "numba"
    fast = score_frame(
        tiny_model,
        feature_frame,
        REASONS,
        contributions_fn=lambda frame: treeshap.compute_contributions(
            tiny_model.booster, tiny_model.prepare(frame)
        ),
    )
    pd.testing.assert_frame_equal(fast, scores, check_exact=False, rtol=0, atol=1e-9)


def test_kept_contributions_are_every_feature_per_customer(tiny_model, feature_frame):
    result = score_population(tiny_model, feature_frame.head(30), REASONS)
    contributions, base = tiny_model.contributions(feature_frame.head(30))
    kept = result.contributions
    assert list(kept.columns) == ["customer_id", "cutoff", "base_value", *tiny_model.feature_names]
    np.testing.assert_allclose(kept[list(tiny_model.feature_names)], contributions, rtol=1e-6)
    np.testing.assert_array_equal(kept["base_value"], base)


def test_risk_deciles_match_a_naive_rank_with_customer_id_ties():
    scores = pd.DataFrame(
        {
            "customer_id": [f"c{i:02d}" for i in range(25)][::-1],
            "churn_probability": np.repeat([0.9, 0.5, 0.1, 0.05, 0.01], 5),
        }
    )
    ranked = sorted(
        range(25), key=lambda i: (-scores["churn_probability"][i], scores["customer_id"][i])
    )
    expected = np.empty(25, dtype=int)
    for rank, i in enumerate(ranked):
        expected[i] = rank * 10 // 25 + 1
    np.testing.assert_array_equal(rank_risk_deciles(scores), expected)
    assert rank_risk_deciles(scores).min() == 1 and rank_risk_deciles(scores).max() == 10


def test_finalize_sorts_by_revenue_at_risk_with_missing_last(scores):
    scores = scores.head(100).copy()
    scores.loc[scores.index[:3], "expected_revenue_at_risk"] = np.nan
    final = finalize_scores(scores)
    revenue = final["expected_revenue_at_risk"]
    assert revenue.iloc[:-3].is_monotonic_decreasing and revenue.iloc[-3:].isna().all()
    assert final.columns.get_loc("risk_decile") == final.columns.get_loc("mrr") + 2


def test_load_model_from_a_directory_and_clear_errors(tiny_model, feature_frame, tmp_path):
    tiny_model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    np.testing.assert_array_equal(
        loaded.predict_proba(feature_frame), tiny_model.predict_proba(feature_frame)
    )
    with pytest.raises(ModelError, match="--model models/churn"):
        load_model(tmp_path / "nowhere")


def test_registry_uri_without_a_store_fails_without_creating_one(tmp_path, monkeypatch):
    store = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    with pytest.raises(ModelError, match="--model models/churn"):
        load_model("models:/churn@champion")
    assert not store.exists()


def test_another_model_gets_another_score(feature_frame):
    # Guards the fixtures: scores depend on the model, so equality tests above are meaningful.
    other = fit_tiny_model(make_feature_frame(seed=1), seed=1)
    first = score_frame(fit_tiny_model(feature_frame), feature_frame.head(50), 1)
    assert not np.allclose(
        score_frame(other, feature_frame.head(50), 1)["churn_probability"],
        first["churn_probability"],
    )


@pytest.mark.parametrize("kernel_threshold", [None, "population"])
def test_part_of_a_population_scores_as_in_the_whole_population(
    monkeypatch, tiny_model, feature_frame, kernel_threshold
):
    # With population_rows, the rows of a part get the numbers the whole population's scoring
    # gives them, to the bit, even where the part alone would take the other backend.
    from churn.model import treeshap

    booster = tiny_model.booster
    if kernel_threshold == "population":  # the population is explained by the kernel
        monkeypatch.setattr(treeshap.dispatch, "KERNEL_MIN_ROW_TREES",
                            len(feature_frame) * booster.num_trees())
    walked = _count_rows(monkeypatch, treeshap.FastTreeShap, "shap_values_and_raw")
    whole = score_population(tiny_model, feature_frame, REASONS, texts=False)
    positions = np.sort(np.random.default_rng(5).choice(len(feature_frame), 40, replace=False))
    part = score_population(tiny_model, feature_frame.iloc[positions], REASONS, texts=False,
                            population_rows=len(feature_frame))
    pd.testing.assert_frame_equal(part.scores, whole.scores.iloc[positions])
    pd.testing.assert_frame_equal(part.contributions,
                                  whole.contributions.iloc[positions].reset_index(drop=True))
    kernel = [len(feature_frame), 40] if kernel_threshold == "population" else []
    assert walked == kernel
    score_population(tiny_model, feature_frame.iloc[positions], REASONS, texts=False)
    assert walked == kernel  # alone, the part is below the threshold: pred_contrib's
