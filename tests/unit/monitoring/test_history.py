"""History entries: keys, one row per customer, a repeated entry kept once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.monitoring.history import (
    build_history_scores,
    entry_stem,
    find_entry_rows,
    stack_history,
    summarize_score_distribution,
)


def scores(cutoff: str, probabilities: list[float]) -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": list(range(len(probabilities))),
        "cutoff": pd.Timestamp(cutoff, tz="UTC"),
        "churn_probability": probabilities,
    })


def test_entry_stem_is_the_key() -> None:
    cutoff = pd.Timestamp("2025-03-01", tz="UTC")
    assert entry_stem(cutoff, "4") == "cutoff=2025-03-01__model=4"
    assert entry_stem(cutoff, "a/b c") == "cutoff=2025-03-01__model=a-b-c"


def test_history_scores_hold_text_ids_and_one_cutoff() -> None:
    frame = build_history_scores(scores("2025-03-01", [0.1, 0.2]), "4", "scored")
    assert frame["customer_id"].tolist() == ["0", "1"]
    assert set(frame["model_version"]) == {"4"} and set(frame["source"]) == {"scored"}
    two = pd.concat([scores("2025-03-01", [0.1]), scores("2025-04-01", [0.2])])
    with pytest.raises(ValueError, match="one cutoff"):
        build_history_scores(two, "4", "scored")


def test_stacking_a_rerun_keeps_the_latest_entry_once() -> None:
    first = build_history_scores(scores("2025-03-01", [0.1, 0.2]), "4", "scored")
    rerun = build_history_scores(scores("2025-03-01", [0.3, 0.4]), "4", "scored")
    other_model = build_history_scores(scores("2025-03-01", [0.5, 0.6]), "5", "scored")
    stacked = stack_history([first, rerun, other_model])
    assert len(stacked) == 4
    assert stacked.loc[stacked["model_version"] == "4", "churn_probability"].tolist() == [0.3, 0.4]


def test_score_distribution_quantiles() -> None:
    summary = summarize_score_distribution(pd.Series(range(101), dtype=float).to_numpy() / 100)
    assert summary["q50"] == pytest.approx(0.5) and summary["q90"] == pytest.approx(0.9)
    assert summary["mean"] == pytest.approx(0.5)


def test_stacking_onto_an_empty_history_keeps_timestamps() -> None:
    entry = build_history_scores(scores("2025-03-01", [0.1]), "4", "backfilled")
    stacked = stack_history([stack_history([]), entry])
    assert str(stacked["cutoff"].dtype) == "datetime64[us, UTC]"
    assert len(stack_history([])) == 0


def test_find_entry_rows_matches_a_row_by_row_key_with_zones_and_integer_versions():
    cutoffs = pd.to_datetime(["2025-03-01", "2025-03-01", "2025-04-01", "2025-04-01", None,
                              "2025-03-01"], utc=True)
    history = pd.DataFrame({"cutoff": cutoffs, "model_version": [1, 2, 1, 1, 1, "2"]})
    keys = {("2025-03-01", "2"), ("2025-04-01", "1"), ("2025-05-01", "1")}
    naive = [
        pd.notna(c) and (f"{c:%Y-%m-%d}", str(v)) in keys
        for c, v in zip(history["cutoff"], history["model_version"], strict=True)
    ]
    np.testing.assert_array_equal(find_entry_rows(history, keys), naive)
    assert find_entry_rows(history, keys).tolist() == [False, True, True, True, False, True]
    assert not find_entry_rows(history.iloc[:0], keys).size
