"""Test helper: the numba kernels on every call, and the stages' compile-ahead starts recorded."""

from __future__ import annotations

import threading

import pytest

from churn.model import treeshap
from churn.model.artifact import ChurnModel


def record_compile_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> list[tuple[int, threading.Thread | None]]:
    """Lower the kernels' thresholds so that every call uses them, and record each
    ``ChurnModel.start_compiling`` call as ``(rows, thread)`` (the compilation still runs)."""
    monkeypatch.setattr(treeshap.dispatch, "KERNEL_MIN_ROW_TREES", 1)
    monkeypatch.setattr(treeshap.dispatch, "PREDICT_KERNEL_MIN_ROW_TREES", 1)
    started: list[tuple[int, threading.Thread | None]] = []
    original = ChurnModel.start_compiling

    def recording(model: ChurnModel, rows: int, **options: bool) -> threading.Thread | None:
        thread = original(model, rows, **options)
        started.append((rows, thread))
        return thread

    monkeypatch.setattr(ChurnModel, "start_compiling", recording)
    return started
