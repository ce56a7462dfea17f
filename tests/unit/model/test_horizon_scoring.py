"""Horizon columns in the scores: the head's probabilities and the next decision date."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support.survival_frames import make_survival_frame, survival_catalog

from churn.config import parse_params
from churn.model.fit import build_lgb_params, fit_churn_model
from churn.model.horizon_scoring import (
    add_horizon_columns,
    add_horizon_columns_if_fitted,
    build_reason_model,
    score_with_head,
)
from churn.model.survival import fit_survival_head
from churn.model.verification import write_manifest

PARAMS = parse_params({"train": {"n_estimators": 40, "min_child_samples": 20, "num_threads": 1}})


@pytest.fixture(scope="module")
def head_and_rows():
    frame = make_survival_frame()
    cutoffs = sorted(frame["cutoff"].unique())
    train = frame[frame["cutoff"].isin(cutoffs[:5])]
    validation = frame[frame["cutoff"] == cutoffs[5]]
    test = frame[frame["cutoff"] == cutoffs[7]]
    names = list(survival_catalog()["name"])
    head = fit_survival_head(
        train,
        validation,
        names,
        ["billing_period"],
        PARAMS.train,
        PARAMS.label,
        build_lgb_params(PARAMS.train),
    )
    return head, test


def _scores(rows: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": rows["customer_id"],
            "cutoff": rows["cutoff"],
            "churn_probability": 0.5,
            "mrr": 10.0,
            "expected_revenue_at_risk": 60.0,
        },
        index=rows.index,
    )


def test_columns_follow_churn_probability_and_keep_it(head_and_rows) -> None:
    head, test = head_and_rows
    out = add_horizon_columns(_scores(test), test, head, 60, head_is_primary=False)
    assert list(out.columns[2:7]) == [
        "churn_probability",
        "churn_probability_30d",
        "churn_probability_60d",
        "churn_probability_90d",
        "next_decision_date",
    ]
    assert (out["churn_probability"] == 0.5).all()
    horizons = out[["churn_probability_30d", "churn_probability_60d", "churn_probability_90d"]]
    assert (np.diff(horizons.to_numpy(), axis=1) >= 0).all()
    late = (test["billing_period"] == "annual") & (test["days_to_renewal"] >= 90)
    assert late.any() and (horizons[late.to_numpy()] == 0).all().all()
    expected = test["cutoff"] + pd.to_timedelta(test["days_to_renewal"], unit="D")
    gap = (out["next_decision_date"] - expected).abs()
    assert (gap <= pd.Timedelta(milliseconds=500)).all()  # rounded to whole seconds
    # The reasons' context names the same date (docs/reasons.md).
    days = out["next_decision_date"].dt.strftime("%Y-%m-%d")
    assert (out["decision_context"] == "renews " + days).all()
    assert out.columns[-1] == "decision_context"


def test_hazard_form_makes_the_primary_horizon_churn_probability(head_and_rows) -> None:
    head, test = head_and_rows
    out = add_horizon_columns(_scores(test), test, head, 60, head_is_primary=True)
    assert (out["churn_probability"] == out["churn_probability_60d"]).all()
    np.testing.assert_allclose(out["expected_revenue_at_risk"], out["churn_probability"] * 120)


def test_discriminates_the_known_hazard(head_and_rows) -> None:
    head, test = head_and_rows
    probabilities = head.predict_horizons(test)[:, 1]
    exposed = probabilities > 0
    correlation = np.corrcoef(probabilities[exposed], test["usage_score"].to_numpy()[exposed])
    assert correlation[0, 1] > 0.6


def test_folder_without_head_leaves_scores_alone(head_and_rows, tmp_path) -> None:
    head, test = head_and_rows
    scores = _scores(test)
    assert add_horizon_columns_if_fitted(scores, test, tmp_path, PARAMS) is scores
    head.save(tmp_path)
    write_manifest(tmp_path)
    out = add_horizon_columns_if_fitted(scores, test, tmp_path, PARAMS)
    assert "churn_probability_90d" in out.columns


def test_head_reasons_never_name_period_features_and_add_up(head_and_rows) -> None:
    head, test = head_and_rows
    frame = make_survival_frame(n_customers=300, n_cutoffs=2, seed=1)
    columns = ["customer_id", "cutoff", "label", *head.customer_features]
    model = fit_churn_model(
        frame.loc[frame["cutoff"] == frame["cutoff"].min(), columns],
        frame.loc[frame["cutoff"] == frame["cutoff"].max(), columns],
        survival_catalog(),
        PARAMS.train,
    )
    result = score_with_head(model, head, test, reasons=3, batch_rows=500)
    reasons = result.scores[[f"reason_{i}_feature" for i in (1, 2, 3)]].stack().dropna()
    assert not set(reasons) & {"decision_index", "days_to_decision", "term_months"}
    assert set(reasons) <= {"usage_score", "days_to_renewal", "billing_period"}
    # usage_score drives the known hazard: it is the most frequent first reason.
    assert result.scores["reason_1_feature"].value_counts().index[0] == "usage_score"
    view = build_reason_model(model, head)
    assert list(view.catalog["name"][-3:]) == ["decision_index", "days_to_decision", "term_months"]
