"""Tests for churn.model.backtest: refits per cutoff, thin cutoffs skipped, none in entity mode.

(Reusing the exported model's fit: test_backtest_reuse.py.)
"""

from __future__ import annotations

import pandas as pd
import pytest
from support.tiny import TINY_CATALOG, make_backtest_params, make_feature_frame

from churn.config import Params
from churn.model.backtest import run_rolling_backtest


def tiny_params(**evaluate) -> Params:
    return make_backtest_params(evaluate={"backtest_cutoffs": 2, **evaluate})


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    return make_feature_frame(n_customers=500, n_cutoffs=6, seed=21)


def test_backtest_retrains_per_cutoff_and_skips_thin_ones(features):
    entries, notes = run_rolling_backtest(features, TINY_CATALOG, tiny_params(backtest_cutoffs=3))
    assert [entry["cutoff"] for entry in entries] == ["2025-04-01", "2025-05-01", "2025-06-01"]
    # 2025-04-01 leaves validation at 03-01 and train at 01-01..02-01: enough rows here.
    for entry in entries:
        assert entry["n_test"] == 500
        assert 0.5 < entry["roc_auc"] <= 1.0
        assert {"pr_auc", "brier", "log_loss", "lift_top_decile", "baseline_roc_auc"} <= set(entry)
    assert notes == []
    params = tiny_params(backtest_cutoffs=2)
    strict = params.model_copy(
        update={"train": params.train.model_copy(update={"min_positives": 10_000})}
    )
    skipped, notes = run_rolling_backtest(features, TINY_CATALOG, strict)
    assert all("train.min_positives" in entry["skipped"] for entry in skipped)
    assert notes == ["backtest: 2 of 2 cutoff(s) skipped"]


def test_backtest_is_empty_in_entity_mode():
    frame = make_feature_frame(n_customers=100, n_cutoffs=1)
    entries, notes = run_rolling_backtest(frame, TINY_CATALOG, tiny_params())
    assert entries == [] and "entity" in notes[0]
