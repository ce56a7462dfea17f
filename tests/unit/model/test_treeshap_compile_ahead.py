"""Tests for compiling churn.model.treeshap's kernels ahead of their first call: the types
compiled must be the ones the calls pass (else the call compiles again), only the kernels a
call of that size would use are compiled, and a failure is left to the call."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from support.small_boosters import draw_labels as _label
from support.small_boosters import train_small_booster as _train

from churn.model import treeshap
from churn.model.treeshap import FastTreeShap, kernel


@pytest.fixture
def fresh_kernels(monkeypatch):
    """Kernels built anew for the test: their compiled signatures are the test's alone."""
    monkeypatch.setattr(kernel, "_KERNELS", {})


def _booster(rows: int = 400, rounds: int = 20):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(rows, 4))
    X[:, 3] = rng.integers(0, 6, size=rows)
    X[rng.random(rows) < 0.1, 1] = np.nan
    booster = _train(X, _label(rng, X[:, 0] - (X[:, 3] % 2)), rounds=rounds, categorical=[3])
    return booster, X


def _signatures(name: str) -> list:
    built = kernel._KERNELS.get(name)
    return [] if built is None else list(built.signatures)


def test_compiled_ahead_kernels_serve_the_calls_without_compiling_again(fresh_kernels):
    booster, X = _booster()
    explainer = FastTreeShap(booster)
    explainer.compile_kernels()
    compiled = {name: _signatures(name) for name in ("treeshap", "predict")}
    assert [len(s) for s in compiled.values()] == [1, 1]
    # float64 rows, float32 rows (converted) and a strided view: the same compiled types.
    for matrix in (X, X.astype(np.float32), X[::2]):
        contributions = explainer.shap_values(matrix)
        raw = explainer.predict_raw(matrix)
        np.testing.assert_allclose(
            contributions, booster.predict(matrix, pred_contrib=True), rtol=0, atol=1e-9
        )
        np.testing.assert_array_equal(raw, booster.predict(matrix, raw_score=True))
    assert {name: _signatures(name) for name in compiled} == compiled


def test_start_compiling_compiles_what_a_call_of_that_size_uses(fresh_kernels, monkeypatch):
    booster, X = _booster()
    trees = booster.num_trees()
    monkeypatch.setattr(treeshap.dispatch, "KERNEL_MIN_ROW_TREES", 100 * trees)
    monkeypatch.setattr(treeshap.dispatch, "PREDICT_KERNEL_MIN_ROW_TREES", 300 * trees)
    assert treeshap.start_compiling(booster, 99) is None  # below both: nothing to compile
    assert _signatures("treeshap") == _signatures("predict") == []

    # Raw scores of 200 rows stay LightGBM's, and no contributions are asked for.
    assert treeshap.start_compiling(booster, 200, contributions=False) is None

    treeshap.start_compiling(booster, 200).join()
    assert (len(_signatures("treeshap")), len(_signatures("predict"))) == (1, 0)
    # Raw scores that all come with their contributions need no prediction kernel.
    treeshap.start_compiling(booster, 300, raw_scores=False).join()
    assert (len(_signatures("treeshap")), len(_signatures("predict"))) == (1, 0)

    treeshap.start_compiling(booster, 300, contributions=False).join()
    assert (len(_signatures("treeshap")), len(_signatures("predict"))) == (1, 1)
    # The explainer built on the thread is the cached one the calls use.
    assert treeshap.explainer_for(booster).backend == "numba"
    contributions, _ = treeshap.compute_contributions(booster, X[:300])
    np.testing.assert_allclose(
        contributions, booster.predict(X[:300], pred_contrib=True)[:, :-1], rtol=0, atol=1e-9
    )
    assert (len(_signatures("treeshap")), len(_signatures("predict"))) == (1, 1)


def test_a_failure_to_compile_ahead_is_logged_and_left_to_the_call(
    fresh_kernels, monkeypatch, caplog
):
    booster, X = _booster()
    monkeypatch.setattr(treeshap.dispatch, "KERNEL_MIN_ROW_TREES", 1)

    def refuse(self, **_):
        raise RuntimeError("no compiler today")

    monkeypatch.setattr(FastTreeShap, "compile_kernels", refuse)
    with caplog.at_level(logging.WARNING, logger="churn.model.treeshap"):
        treeshap.start_compiling(booster, 10).join()
    assert "compiling the TreeSHAP kernels ahead failed" in caplog.text
    assert "no compiler today" in caplog.text
    assert _signatures("treeshap") == []
    # The call compiles the kernel itself and gives the same numbers.
    contributions, _ = treeshap.compute_contributions(booster, X[:50])
    np.testing.assert_allclose(
        contributions, booster.predict(X[:50], pred_contrib=True)[:, :-1], rtol=0, atol=1e-9
    )
    assert len(_signatures("treeshap")) == 1
