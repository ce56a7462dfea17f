"""PSI, Jensen-Shannon, missing rate and unseen share against naive references."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from churn.monitoring.drift import (
    SHARE_FLOOR,
    build_reference,
    compute_drift_table,
    compute_js_distance,
    compute_psi,
    count_numeric_bins,
    summarize_reference,
)


def naive_psi(reference: list, current: list, edges: list[float]) -> float:
    """PSI by hand: count each value's bin with a loop, floor, renormalise, sum."""

    def shares(values: list) -> list[float]:
        counts = [0.0] * (len(edges) + 1)
        for v in values:
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            i = 0
            while i < len(edges) and v > edges[i]:
                i += 1
            counts[i] += 1
        total = sum(counts)
        floored = [max(c / total, SHARE_FLOOR) for c in counts]
        return [f / sum(floored) for f in floored]

    e, a = shares(reference), shares(current)
    return sum((ai - ei) * math.log(ai / ei) for ei, ai in zip(e, a, strict=True))


@pytest.mark.parametrize("seed", range(8))
def test_numeric_psi_matches_naive_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    reference = rng.normal(0, 1, 300).round(1)
    current = rng.normal(rng.uniform(-1, 1), rng.uniform(0.5, 2), 200).round(1)
    current[rng.random(200) < 0.1] = np.nan
    bins = int(rng.integers(2, 12))
    drift_reference = build_reference(pd.DataFrame({"x": reference}), {"x": "numeric"}, bins)
    edges = drift_reference.features["x"].edges
    # Edges are the reference's quantiles, so the reference fills every bin near equally.
    assert len(edges) <= bins - 1
    psi = compute_drift_table(drift_reference, pd.DataFrame({"x": current})).loc[0, "psi"]
    assert psi == pytest.approx(naive_psi(list(reference), list(current), list(edges)), rel=1e-9)
    assert summarize_reference(pd.Series(reference), "x", "numeric", bins).edges == edges


def test_identical_distributions_have_zero_psi_and_js() -> None:
    shares = np.array([0.2, 0.3, 0.5])
    assert compute_psi(shares, shares) == pytest.approx(0.0)
    assert compute_js_distance(shares, shares) == pytest.approx(0.0)


def test_js_distance_of_disjoint_distributions_is_one() -> None:
    assert compute_js_distance(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)


def test_numeric_bins_are_right_closed() -> None:
    counts = count_numeric_bins(np.array([0.0, 1.0, 1.5, 2.0, 9.0, np.nan]), (1.0, 2.0))
    assert counts.tolist() == [2.0, 2.0, 1.0]


def test_categorical_drift_counts_unseen_levels_and_missing_rate() -> None:
    reference = pd.DataFrame({"plan": ["a"] * 50 + ["b"] * 50})
    current = pd.DataFrame({"plan": ["a"] * 40 + ["c"] * 40 + [None] * 20})
    table = compute_drift_table(build_reference(reference, {"plan": "categorical"}, 10), current)
    row = table.iloc[0]
    assert row["unseen_share"] == pytest.approx(0.5)  # 40 of the 80 present values
    assert row["missing_rate_reference"] == 0.0
    assert row["missing_rate_change"] == pytest.approx(0.2)
    # Naive PSI: reference shares (a .5, b .5, unseen 0), current (a .5, b 0, unseen .5).
    e = np.maximum([0.5, 0.5, 0.0], SHARE_FLOOR)
    a = np.maximum([0.5, 0.0, 0.5], SHARE_FLOOR)
    e, a = e / e.sum(), a / a.sum()
    assert row["psi"] == pytest.approx(float(np.sum((a - e) * np.log(a / e))))


def test_integer_coded_categories_compare_by_text() -> None:
    reference = pd.DataFrame({"region": pd.Series([1, 2, 2, 3], dtype="Int64")})
    current = pd.DataFrame({"region": pd.Series(["1", "2", "2", "3"])})
    row = compute_drift_table(build_reference(reference, {"region": "categorical"}, 5), current)
    assert row.loc[0, "psi"] == pytest.approx(0.0)
    assert row.loc[0, "unseen_share"] == 0.0


def test_a_column_absent_from_the_current_frame_is_all_missing() -> None:
    reference = build_reference(pd.DataFrame({"x": [1.0, 2.0, 3.0]}), {"x": "numeric"}, 2)
    row = compute_drift_table(reference, pd.DataFrame({"y": [1.0]})).iloc[0]
    assert row["missing_rate_current"] == 1.0
    assert math.isnan(row["psi"])


def test_shift_raises_psi_monotonically() -> None:
    rng = np.random.default_rng(0)
    base = pd.DataFrame({"x": rng.normal(0, 1, 5000)})
    reference = build_reference(base, {"x": "numeric"}, 10)
    shifted = [pd.DataFrame({"x": rng.normal(shift, 1, 5000)}) for shift in (0, 0.25, 0.5, 1)]
    psis = [compute_drift_table(reference, frame).loc[0, "psi"] for frame in shifted]
    assert psis == sorted(psis)
    assert psis[0] < 0.02 < 0.25 < psis[-1]


def test_reference_of_missing_column_names_it() -> None:
    with pytest.raises(KeyError, match="plan"):
        build_reference(pd.DataFrame({"x": [1.0]}), {"plan": "categorical"}, 5)


@pytest.mark.parametrize("dtype", ["str", "object", "category", "Int64"])
def test_categorical_levels_and_counts_match_a_count_by_text(dtype: str) -> None:
    """Random levels with missing values, in every dtype a category column arrives in; an
    object column mixing 1 and 1.0 keeps their texts apart. Naive reference: each value's text
    counted in a loop."""
    from churn.monitoring.drift import count_categorical_bins

    rng = np.random.default_rng(5)
    if dtype == "Int64":
        raw = [None if rng.random() < 0.1 else int(rng.integers(0, 6)) for _ in range(400)]
    else:
        raw = [None if rng.random() < 0.1 else f"level_{rng.integers(0, 6)}" for _ in range(400)]
    if dtype == "object":
        raw[:4] = [1, 1.0, 1, 1.0]
    values = pd.Series(raw, dtype=dtype)
    texts = [str(v) for v in raw if v is not None]
    reference = summarize_reference(values, "plan", "categorical", 10)
    assert reference.levels == tuple(sorted(set(texts)))
    if dtype == "object":
        assert {"1", "1.0"} <= set(reference.levels)
    assert list(reference.shares) == pytest.approx(
        [texts.count(level) / len(texts) for level in reference.levels])
    # Another sample against those levels: present values per level, then the unseen ones.
    known = reference.levels[: len(reference.levels) // 2]
    counts = count_categorical_bins(values, known)
    assert list(counts) == [texts.count(level) for level in known] + [
        sum(t not in known for t in texts)]
