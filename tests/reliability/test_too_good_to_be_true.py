"""Reliability: a model too good to be true stops training (and evaluation) as leakage.

The single-feature guard misses leakage spread over features: a 4%-noisy copy of the label
(single-feature AUC 0.96) and an XOR pair (each alone AUC ~0.5, together the label) pass it
one by one, while the model built on them ranks almost perfectly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support.tiny import TINY_CATALOG, make_feature_frame

from churn.config import parse_params
from churn.errors import ModelError
from churn.model.evaluation import evaluate_models
from churn.model.fit import train_churn_models
from churn.model.leakage import compute_single_feature_aucs
from churn.model.split import split_by_time

FAST_TRAIN = {"min_child_samples": 20, "n_estimators": 200, "num_threads": 1}
LEAKY_FEATURES = ("refund_note_flag", "ticket_hash_bit", "invoice_hash_bit")


def _params(**train):
    return parse_params(
        {"label": {"horizon_days": 20, "grace_days": 5}, "train": {**FAST_TRAIN, **train}}
    )


def _leaky_frame() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tiny frame plus a 4%-noisy label copy and an XOR pair encoding the label."""
    frame = make_feature_frame(n_customers=600, n_cutoffs=5, seed=11)
    label = frame["label"].astype(int).to_numpy()
    rng = np.random.default_rng(5)
    flipped = np.zeros(len(frame), dtype=bool)
    flipped[::25] = True  # exactly 4% of the rows, spread over both classes
    bit = rng.integers(0, 2, len(frame))
    frame = frame.assign(
        refund_note_flag=np.where(flipped, 1 - label, label).astype(float),
        ticket_hash_bit=bit.astype(float),
        invoice_hash_bit=(bit ^ label).astype(float),
    )
    extra = pd.DataFrame(
        [
            [name, "support", "post_sale", "numeric", "", name.replace("_", " ")]
            for name in LEAKY_FEATURES
        ],
        columns=TINY_CATALOG.columns,
    )
    return frame, pd.concat([TINY_CATALOG, extra], ignore_index=True)


def test_noisy_label_copy_and_xor_pair_fail_training() -> None:
    frame, catalog = _leaky_frame()
    params = _params()
    split = split_by_time(frame, params.train, params.label)
    aucs = compute_single_feature_aucs(frame.iloc[split.train], frame.iloc[split.test], catalog)
    # Neither the noisy copy nor either half of the pair passes the single-feature guard.
    assert all(aucs[name] < params.train.leakage_auc_threshold for name in LEAKY_FEATURES)
    assert aucs["refund_note_flag"] > 0.9  # ...though the copy is nearly the label

    with pytest.raises(ModelError, match="too good to be true") as raised:
        train_churn_models(frame, catalog, params)

    message = str(raised.value)
    assert "train.max_plausible_auc = 0.97" in message
    strongest = message.split("strongest features by gain: ")[1].split(". ")[0]
    assert strongest.startswith("refund_note_flag (")  # the copy carries most of the gain
    assert "ticket_hash_bit" in strongest or "invoice_hash_bit" in strongest
    assert "train.allow_high_auc" in message


def test_allow_high_auc_accepts_and_records_the_too_good_model() -> None:
    frame, catalog = _leaky_frame()

    result = train_churn_models(frame, catalog, _params(allow_high_auc=True))

    assert result.metrics["test"]["roc_auc"] > 0.97
    assert result.model.metadata["high_auc_accepted"] is True


def test_model_beating_oracle_fails_evaluate() -> None:
    frame, catalog = _leaky_frame()
    params = _params(allow_high_auc=True)
    result = train_churn_models(frame, catalog, params)
    # Simulator truth: the true churn probability of every row is that of the tiny frame's
    # generating model, which the leaky features beat by knowing the outcome.
    truth = _true_probabilities(frame)
    strict = parse_params(
        {
            "label": {"horizon_days": 20, "grace_days": 5},
            "train": FAST_TRAIN,
            "evaluate": {"backtest_cutoffs": 0},
        }
    )

    with pytest.raises(ModelError, match="beats the simulator oracle") as raised:
        evaluate_models(frame, result.model, result.baseline, strict, truth)

    message = str(raised.value)
    assert "evaluate.oracle_tolerance_se = 3 standard errors" in message
    assert any(name in message for name in LEAKY_FEATURES)
    # With the explicit override the evaluation completes and says why it let it through.
    accepted = evaluate_models(frame, result.model, result.baseline, params, truth)
    assert accepted.metrics["test"]["roc_auc_ratio_to_oracle"] > 1.0
    assert any("accepted because train.allow_high_auc" in n for n in accepted.metrics["notes"])


def _true_probabilities(frame: pd.DataFrame) -> pd.DataFrame:
    """Monthly truth rows whose hazard is the tiny frame's true label probability."""
    nps = frame["last_nps_score"].to_numpy()
    logit = (
        -2.5
        + 0.8 * frame["support_tickets_last_30d"].to_numpy()
        - 0.08 * frame["active_days_last_30d"].to_numpy()
        - 0.15 * np.nan_to_num(nps - 7)
        + 0.7 * (frame["acquisition_channel"].to_numpy() == "paid_search")
    )
    return pd.DataFrame(
        {
            "customer_id": frame["customer_id"].to_numpy(),
            "month_start": frame["cutoff"].to_numpy(),
            "churn_probability": 1.0 / (1.0 + np.exp(-logit)),
        }
    )
