"""The rolling backtest's refits side by side: one worker process per refit, one thread each.

LightGBM on two threads gains little over one (about 1.24x on the 2-core machine, and less
under load), while the backtest's refits are independent: running them in separate processes
with one LightGBM thread each uses the cores for the whole fit, not only for the parts that
parallelise well.

What crosses the process boundary is plain data, never a fitted model: each task names the
features Parquet file (which every worker reads itself, only the columns the model uses and
only the rows up to its cutoff), the catalog as Arrow IPC bytes, the parameters as JSON and
the cutoff as text; each result is the backtest entry, a dict of numbers and text. Workers are
started with ``spawn`` (no fork of a parent holding big frames, DuckDB or MLflow state).
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from churn.config import Params, parse_params
from churn.domain.catalog import CUTOFF
from churn.model.evaluation import refit_backtest_cutoff

logger = logging.getLogger(__name__)


def count_backtest_workers(params: Params, refits: int) -> int:
    """Return how many worker processes the backtest uses: one per refit, at most
    ``train.num_threads`` (the cores training may use), and none (in process) for one refit."""
    workers = min(params.train.num_threads, refits)
    return workers if workers > 1 else 0


def encode_frame(frame: pd.DataFrame) -> bytes:
    """Return ``frame`` as Arrow IPC stream bytes (what a worker task carries, not a pickle)."""
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def decode_frame(data: bytes) -> pd.DataFrame:
    """Return the frame :func:`encode_frame` encoded."""
    import pyarrow as pa

    return pa.ipc.open_stream(data).read_all().to_pandas()


def read_backtest_frame(
    path: str | Path, columns: Sequence[str], cutoff: pd.Timestamp
) -> pd.DataFrame:
    """Read the features a refit as of ``cutoff`` needs: ``columns``, rows up to ``cutoff``.

    The backtest split ignores rows after its cutoff, so leaving them unread changes nothing
    but the memory a worker needs; the kept rows keep their order (LightGBM's result depends
    on it).
    """
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=list(columns), filters=[(CUTOFF, "<=", cutoff)])
    return table.to_pandas().reset_index(drop=True)


def refit_in_worker(task: dict[str, Any]) -> dict[str, Any]:
    """Worker entry point: read the task's features, refit as of its cutoff, return the entry."""
    params = parse_params(task["params"], source="backtest task")
    # One thread per process: the processes, not LightGBM's threads, share the cores.
    params = params.model_copy(update={"train": params.train.model_copy(update={"num_threads": 1})})
    cutoff = pd.Timestamp(task["cutoff"])
    features = read_backtest_frame(task["features_path"], task["columns"], cutoff)
    return refit_backtest_cutoff(features, decode_frame(task["catalog"]), params, cutoff)


def refit_side_by_side(
    features_path: Path,
    columns: Sequence[str],
    catalog: pd.DataFrame,
    params: Params,
    cutoffs: Sequence[pd.Timestamp],
    workers: int,
) -> list[dict[str, Any]]:
    """Refit the backtest at each cutoff in ``workers`` spawned processes; entries in order.

    Args:
        features_path: The features Parquet file (the cached features: nothing is recomputed).
        columns: Key columns and the model's features, read by each worker.
        catalog: The model's feature catalog.
        params: All parameters (as the serial backtest would use them).
        cutoffs: The cutoffs to refit.
        workers: Worker processes (at least 1).

    Returns:
        One backtest entry per cutoff, in the order of ``cutoffs``.
    """
    catalog_bytes = encode_frame(catalog)
    params_json = params.model_dump(mode="json")
    tasks = [
        {
            "features_path": str(features_path),
            "columns": list(columns),
            "catalog": catalog_bytes,
            "params": params_json,
            "cutoff": cutoff.isoformat(),
        }
        for cutoff in cutoffs
    ]
    logger.info("backtest: %d refit(s) in %d worker process(es)", len(tasks), workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(pool.map(refit_in_worker, tasks))
