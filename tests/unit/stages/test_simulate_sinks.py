"""Tests for the simulator's streamed outputs: month by month to Parquet, same as in memory.

``run_simulate`` streams ``usage_events``, the ``customer_months`` truth and the
``retention_truth`` into Parquet a month at a time; ``simulate()`` keeps them in memory. The
written files must hold exactly the in-memory frames (values, order, dtypes) with the schema
``DataFrame.to_parquet`` would give the whole frame.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from churn.config import SimulateConfig
from churn.io import frame_to_arrow
from churn.stages.simulate import run_simulate, simulate
from churn.stages.simulate.sinks import MemorySink, MonthlyTable, ParquetSink

STREAMED = {"raw": ("usage_events",), "truth": ("customer_months", "retention_truth")}


def _month(offset: int, rows: int) -> pd.DataFrame:
    """A frame with the column kinds the simulator writes, ``rows`` long."""
    ids = pd.Series([f"C{offset + i:07d}" for i in range(rows)], dtype="str")
    return pd.DataFrame({
        "customer_id": ids,
        "at": pd.Series(np.arange(rows, dtype=np.int64) + offset, dtype="datetime64[us]")
        .dt.tz_localize("UTC"),
        "count": pd.Series(np.arange(rows) * 2, dtype="Int64"),
        "value": np.linspace(0.0, 1.0, rows),
        "flag": np.arange(rows) % 2 == 0,
    })


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[object, dict[str, object]]:
    """One streamed run and the in-memory result of the same config."""
    root = tmp_path_factory.mktemp("streamed")
    cfg = SimulateConfig(customers=400, months=7, seed=9)
    run_simulate(cfg, out_dir=root / "raw", truth_dir=root / "truth")
    return root, simulate(cfg)


def test_parquet_sink_writes_the_concatenated_months_with_the_whole_frame_schema(tmp_path):
    months = [_month(0, 5), _month(100, 0), _month(200, 3)]
    sink = ParquetSink(tmp_path / "streamed.parquet")
    for frame in months:
        sink.write(frame)
    sink.close()
    sink.close()  # idempotent
    whole = pd.concat(months, ignore_index=True)
    whole.to_parquet(tmp_path / "whole.parquet", index=False)

    streamed = pq.read_table(tmp_path / "streamed.parquet")
    reference = pq.read_table(tmp_path / "whole.parquet")
    assert streamed.schema.equals(reference.schema, check_metadata=True)
    assert sink.rows == len(whole) == 8
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "streamed.parquet"), whole)


def test_parquet_sink_refuses_a_month_of_another_type(tmp_path):
    sink = ParquetSink(tmp_path / "streamed.parquet")
    sink.write(_month(0, 2))
    odd = _month(10, 2).assign(value=["a", "b"])
    with pytest.raises(ValueError, match="differ from the first month"):
        sink.write(odd)
    sink.close()


def test_parquet_sink_writes_no_file_without_rows_written(tmp_path):
    sink = ParquetSink(tmp_path / "never.parquet")
    sink.close()
    assert sink.empty
    assert not (tmp_path / "never.parquet").exists()


def test_monthly_table_turns_arrays_from_its_job_thread_into_rows_in_month_order():
    from churn.background import OrderedJobs

    sink = MemorySink()
    built_on = []

    def build(arrays):
        built_on.append(threading.current_thread().name)
        return pd.DataFrame({"x": arrays["x"] * 10})

    with OrderedJobs(depth=2, name="rows") as jobs:
        table = MonthlyTable(build, sink, jobs)
        table.add_from(lambda: {"x": np.array([1, 2])})
        table.add_from(lambda: {"x": np.array([], dtype=np.int64)})
        assert sink.rows == 2  # the first month reached the sink when the second came
        table.add(x=np.array([3]))  # a month added directly waits for the ones before it
        table.add_from(lambda: {"x": np.array([4])})
        table.flush()
        table.flush()  # nothing left: nothing happens
    pd.testing.assert_frame_equal(sink.frame(), pd.DataFrame({"x": [10, 20, 30, 40]}))
    # Rows are built on the caller's thread (pandas never runs on the job thread).
    assert set(built_on) == {threading.current_thread().name}

    def broken_month() -> dict[str, np.ndarray]:
        raise ZeroDivisionError("a month's arrays failed")

    failing_jobs = OrderedJobs(name="failing")
    failing = MonthlyTable(build, MemorySink(), failing_jobs)
    failing.add_from(broken_month)
    with pytest.raises(ZeroDivisionError, match="arrays failed"):
        failing.flush()  # raised on the caller's thread
    with pytest.raises(ZeroDivisionError):
        failing_jobs.close()  # the pool saw it too; its thread stops either way


def test_memory_sink_and_monthly_table_keep_the_months_in_order():
    sink = MemorySink()
    table = MonthlyTable(lambda arrays: pd.DataFrame({"x": arrays["x"] * 10}), sink)
    assert sink.empty
    table.add(x=np.array([1, 2]))
    table.add(x=np.array([], dtype=np.int64))
    table.add(x=np.array([3]))
    assert sink.rows == 3
    pd.testing.assert_frame_equal(sink.frame(), pd.DataFrame({"x": [10, 20, 30]}))


@pytest.mark.parametrize(("folder", "name"), [(f, n) for f, names in STREAMED.items()
                                              for n in names])
def test_streamed_outputs_equal_the_in_memory_frames(written, folder, name):
    root, expected = written
    frames = expected.tables if folder == "raw" else expected.truth
    path = root / folder / f"{name}.parquet"
    streamed = pd.read_parquet(path)
    pd.testing.assert_frame_equal(streamed, frames[name])
    # The schema is the one DataFrame.to_parquet gives the whole frame.
    reference = frame_to_arrow(frames[name]).schema
    assert pq.read_schema(path).equals(reference, check_metadata=True)
    # Streamed a month at a time: more than one row group for a multi-month table.
    assert pq.ParquetFile(path).metadata.num_row_groups > 1


def test_every_other_written_table_equals_the_in_memory_frame(written):
    root, expected = written
    for folder, frames in (("raw", expected.tables), ("truth", expected.truth)):
        assert sorted(p.stem for p in (root / folder).glob("*.parquet")) == sorted(frames)
        for name, frame in frames.items():
            pd.testing.assert_frame_equal(pd.read_parquet(root / folder / f"{name}.parquet"),
                                          frame, obj=f"{folder}/{name}")


def test_without_the_retention_team_no_retention_truth_is_written(tmp_path):
    cfg = SimulateConfig(customers=120, months=3, seed=2, retention_actions=False)
    run_simulate(cfg, out_dir=tmp_path / "raw", truth_dir=tmp_path / "truth")
    assert not (tmp_path / "truth" / "retention_truth.parquet").exists()
    assert not (tmp_path / "raw" / "retention_actions.parquet").exists()
    assert (tmp_path / "truth" / "customer_months.parquet").exists()


def test_a_failure_mid_run_leaves_the_previous_outputs_and_no_staging(tmp_path, monkeypatch):
    cfg = SimulateConfig(customers=120, months=4, seed=2)
    run_simulate(cfg, out_dir=tmp_path / "raw", truth_dir=tmp_path / "truth")
    before = pd.read_parquet(tmp_path / "raw" / "usage_events.parquet")

    from churn.stages.simulate import behaviour

    calls = {"n": 0}
    real = behaviour.draw_nps

    def failing_in_month_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed mid-run")
        return real(*args, **kwargs)

    monkeypatch.setattr(behaviour, "draw_nps", failing_in_month_three)
    with pytest.raises(RuntimeError, match="killed mid-run"):
        run_simulate(cfg.model_copy(update={"seed": 3}), out_dir=tmp_path / "raw",
                     truth_dir=tmp_path / "truth")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "raw" / "usage_events.parquet"),
                                  before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "truth"]


class _RunAtOnce:
    """An OrderedJobs that runs each job when it is submitted, on the caller's thread."""

    def __init__(self, **_: object) -> None:
        self.jobs = 0

    def submit(self, job) -> Future:
        self.jobs += 1
        future: Future = Future()
        future.set_result(job())
        return future

    def __enter__(self) -> _RunAtOnce:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def test_rows_built_on_the_job_thread_equal_rows_built_at_once(monkeypatch):
    """The usage rows are sorted, and the retention truth projected, on a thread while the
    next month is drawn; plans and prices change later in the same month, so a job reading
    them late, or a draw moved onto the thread, would change the tables."""
    from churn.stages.simulate import engine

    cfg = SimulateConfig(customers=600, months=8, seed=4)
    threaded = simulate(cfg)
    at_once = _RunAtOnce()
    monkeypatch.setattr(engine, "OrderedJobs", lambda **kwargs: at_once)
    inline = simulate(cfg)

    assert at_once.jobs == 2 * cfg.months  # usage and retention truth, every month
    for kind in ("tables", "truth"):
        expected, got = getattr(inline, kind), getattr(threaded, kind)
        assert sorted(got) == sorted(expected)
        for name in expected:
            pd.testing.assert_frame_equal(got[name], expected[name], obj=f"{kind}/{name}")
