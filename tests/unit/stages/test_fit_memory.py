"""Tests for churn.stages.fit_memory: how many fit workers the memory allows."""

from __future__ import annotations

from churn.config import Params, parse_params
from churn.stages.fit_memory import (
    WORKER_BASE_BYTES,
    can_refit_beside_metrics,
    count_fit_workers,
    estimate_worker_bytes,
    read_available_memory,
    read_own_memory,
)


def threads(num_threads: int) -> Params:
    return parse_params({"train": {"num_threads": num_threads}})


def test_workers_follow_train_threads_and_refits():
    assert count_fit_workers(threads(2), 3) == 2
    assert count_fit_workers(threads(4), 2) == 2
    assert count_fit_workers(threads(1), 3) == 0
    assert count_fit_workers(threads(2), 1) == 0


def test_workers_fit_in_the_memory_available():
    gb = 2**30
    four = threads(4)
    assert count_fit_workers(four, 6, bytes_per_worker=gb, available_bytes=10 * gb) == 4
    assert count_fit_workers(four, 6, bytes_per_worker=gb, available_bytes=3 * gb + 1) == 3
    # Room for one worker is none: the stage's process fits on the rows it holds.
    assert count_fit_workers(four, 6, bytes_per_worker=gb, available_bytes=gb) == 0
    assert count_fit_workers(four, 6, bytes_per_worker=gb, available_bytes=0) == 0
    assert count_fit_workers(four, 6, bytes_per_worker=gb, available_bytes=None) == 4
    # 1M rows x 100 columns: the frame (0.8 GB as float64) twice, over the base.
    assert estimate_worker_bytes(1_000_000, 100) == WORKER_BASE_BYTES + 1_600_000_000


def test_available_memory_is_the_kernels_memavailable(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:   1234567 kB\n")
    assert read_available_memory(meminfo) == 1234567 * 1024
    meminfo.write_text("MemTotal:       24000000 kB\n")
    assert read_available_memory(meminfo) is None
    assert read_available_memory(tmp_path / "absent") is None


def test_refits_run_beside_the_metrics_only_with_room_for_both():
    gb = 2**30
    # Two workers of 3 GB and the stage's 2 GB held again: 8 GB against half the available.
    assert can_refit_beside_metrics(2, 3 * gb, 2 * gb, 16 * gb)
    assert not can_refit_beside_metrics(2, 3 * gb, 2 * gb, 16 * gb - 1)
    assert not can_refit_beside_metrics(2, 3 * gb, 2 * gb + 1, 16 * gb)
    # Unknown memory, or no workers: after the metrics.
    assert not can_refit_beside_metrics(2, 3 * gb, None, 16 * gb)
    assert not can_refit_beside_metrics(2, 3 * gb, 2 * gb, None)
    assert not can_refit_beside_metrics(0, 3 * gb, 2 * gb, 16 * gb)


def test_own_memory_is_the_resident_pages(tmp_path):
    import os

    statm = tmp_path / "statm"
    statm.write_text("90000 1000 300 10 0 800 0\n")
    assert read_own_memory(statm) == 1000 * os.sysconf("SC_PAGE_SIZE")
    assert read_own_memory(tmp_path / "missing") is None
    statm.write_text("garbage\n")
    assert read_own_memory(statm) is None
