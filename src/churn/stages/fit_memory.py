"""How many fit workers the evaluate stage can afford: each worker's memory, from the rows it reads.

The evaluate stage's fits run side by side in worker processes
(:mod:`churn.stages.fit_workers`), each holding its own rows. Before starting them the stage
estimates what one worker needs (:func:`estimate_worker_bytes`, :func:`estimate_refit_bytes`:
from the file's keys alone, nothing read in full) and asks the kernel what is free
(:func:`read_available_memory`); :func:`count_fit_workers` then runs as many workers as fit,
or the fits one after another in the stage's own process.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churn.config import Params
from churn.domain.catalog import CUTOFF
from churn.errors import ModelError

if TYPE_CHECKING:
    from churn.model.split import Split

logger = logging.getLogger(__name__)


#: Resident memory of a fit worker before it reads its rows (Python, pandas, pyarrow, LightGBM
#: and scikit-learn imported): about 0.3 GB measured on 2026-12-03, rounded up.
WORKER_BASE_BYTES = 400 * 2**20

#: A worker's peak over the float64 size of the rows and columns it reads: the frame itself,
#: the fit's slices, matrices and LightGBM's bins. At 100k customers (2026-12-03) the stage's
#: processes together peaked 2.73 GB above its own largest process, about 1.37 GB per worker,
#: for at most 0.77M rows x about 110 columns (0.68 GB as float64): about 1.5x the frame over
#: the base; 2 leaves room for data wider or less regular than the simulator's.
WORKER_FRAME_FACTOR = 2.0


def estimate_worker_bytes(rows: int, columns: int, *more: tuple[int, int]) -> int:
    """Return the memory one fit worker is expected to need for ``rows`` x ``columns``
    (and each further ``(rows, columns)`` it reads and holds beside them)."""
    cells = rows * columns + sum(extra_rows * extra_columns for extra_rows, extra_columns in more)
    return int(WORKER_BASE_BYTES + WORKER_FRAME_FACTOR * cells * 8)


def estimate_refit_bytes(
    keys: pd.DataFrame,
    params: Params,
    splits: Mapping[pd.Timestamp, Split | None],
    columns: int,
    thin_columns: int,
) -> int:
    """Return the memory the largest backtest refit is expected to need in a worker
    (:func:`refit_backtest_from_file`), from the file's keys alone.

    A refit holds ``thin_columns`` (keys and categorical features) of every row up to its
    cutoff and all ``columns`` of the rows it fits and scores: every churned training row, the
    sampled share of the others (:func:`churn.model.sampling.choose_negative_rate`),
    validation and test, counted on its split of the keys. A cutoff whose split fails needs
    nothing (the refit reports it skipped).

    Args:
        keys: Every row's ``customer_id``, ``cutoff`` and ``label``, in file order.
        params: All parameters, as the refits use them.
        splits: The backtest's cutoffs and their splits of ``keys``
            (:func:`churn.model.backtest.split_backtest_cutoffs`; ``None``: the split failed).
        columns: Columns a refit reads of the rows it fits and scores.
        thin_columns: Columns it reads of every row up to its cutoff.
    """
    from churn.model.backtest import build_backtest_config
    from churn.model.sampling import choose_negative_rate
    from churn.model.split import label_array, take_rows

    cfg = build_backtest_config(params)
    times = pd.DatetimeIndex(keys[CUTOFF])
    largest = 0
    for cutoff, split in splits.items():
        if split is None:
            continue
        try:
            labels = label_array(take_rows(keys, split.train))
            positives = int(labels.sum())
            rate = choose_negative_rate(positives, len(labels) - positives, cfg)
        except ModelError:
            continue
        full = positives + rate * (len(labels) - positives) + len(split.validation)
        full += len(split.test)
        thin = int(np.sum(times <= cutoff))
        largest = max(largest, estimate_worker_bytes(thin, thin_columns, (int(full), columns)))
    return largest


def read_available_memory(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Return the memory the kernel says new processes can use (``MemAvailable``), in bytes.

    ``None`` where there is no ``/proc/meminfo`` (not Linux) or no such line: the worker
    count is then not limited by memory.
    """
    try:
        text = meminfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024  # reported in kB
    return None


def count_fit_workers(
    params: Params,
    fits: int,
    *,
    bytes_per_worker: int | None = None,
    available_bytes: int | None = None,
) -> int:
    """Return how many worker processes ``fits`` independent fits use.

    One per fit, at most ``train.num_threads`` (the cores training may use), and none (in
    process) for one fit or one thread. When each worker needs ``bytes_per_worker``
    (:func:`estimate_worker_bytes`) and only ``available_bytes`` are free
    (:func:`read_available_memory`), fewer workers run: the fits wait for each other instead
    of pushing the machine into swap or the out-of-memory killer. Room for fewer than two
    means none: the stage's own process runs the fits one after another, each on the rows a
    worker would read (one frame at a time instead of one per worker), with one LightGBM
    thread (:func:`use_one_thread`) so that the numbers are those the workers give.
    """
    workers = min(params.train.num_threads, fits)
    if workers <= 1:
        return 0
    if bytes_per_worker and available_bytes is not None:
        fitting = int(available_bytes // bytes_per_worker)
        if fitting < workers:
            fitting = fitting if fitting >= 2 else 0
            logger.warning(
                "%s instead of %d fit workers: each needs about %.1f GB and %.1f GB is "
                "available",
                f"{fitting} fit workers" if fitting else "the fits one after another in process",
                workers,
                bytes_per_worker / 2**30,
                available_bytes / 2**30,
            )
            workers = fitting
    return workers


#: The share of the available memory that the backtest's refits and the stage's own process
#: may take together for the refits to start beside the stage's in-process metrics. The rest
#: is headroom for the estimates' error and for whatever else runs on the machine. At a million
#: customers the refits start late under it; a share that let them start early (0.625,
#: 2026-12-08) did not pay there: 162.2 and 175.3 s against 167.4 and 161.7 s, alternated, and
#: more CPU (three busy processes on two cores), with the processes together 0.8 GB larger.
EARLY_REFIT_SHARE = 0.5


def read_own_memory(statm: Path = Path("/proc/self/statm")) -> int | None:
    """Return this process's resident memory in bytes (``None`` where there is no
    ``/proc/self/statm``, i.e. not Linux)."""
    import os

    try:
        resident_pages = int(statm.read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def can_refit_beside_metrics(
    workers: int,
    bytes_per_worker: int,
    own_bytes: int | None,
    available_bytes: int | None,
) -> bool:
    """Tell whether the backtest's refits may run while the stage computes its own metrics.

    Started early, the refits fill the workers' idle time between the model-form comparison's
    fits and the end of the in-process metrics (at 100k customers most of the stage's wall
    time past train's); started late, they run only once the stage has let its test rows go,
    which keeps the stage's processes together smaller (at a million customers they peaked at
    11.8 GB that way; early, the workers' 5.0-5.4 GB each would come on top of the stage's
    own 2.3-5.4 GB). Early when the workers' estimated memory plus as much again as the
    stage's process holds now (its in-process metrics peak at about twice their steady
    state) fits in :data:`EARLY_REFIT_SHARE` of the available memory; late when either
    figure is unknown. The numbers do not depend on the choice, only the time and memory.

    Args:
        workers: Fit worker processes.
        bytes_per_worker: Estimated memory of one worker (:func:`estimate_refit_bytes`).
        own_bytes: The stage's resident memory now (:func:`read_own_memory`).
        available_bytes: Memory available to new processes (:func:`read_available_memory`).
    """
    if workers < 1 or own_bytes is None or available_bytes is None:
        return False
    return workers * bytes_per_worker + own_bytes <= EARLY_REFIT_SHARE * available_bytes
