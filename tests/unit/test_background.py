"""Tests for churn.background: the same file as pyarrow's writer and the same items as the
iterator, bounded queues, and the thread's errors raised in the caller."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churn.background import BackgroundParquetWriter, OrderedJobs, prefetch


def _parts(count: int = 5, rows: int = 1_000) -> list[pa.Table]:
    """Tables of one schema: text, times with a zone, integers with nulls, floats."""
    rng = np.random.default_rng(3)
    parts = []
    for part in range(count):
        seats = rng.integers(0, 9, rows)
        parts.append(
            pa.table(
                {
                    "customer_id": pa.array([f"c{part}-{i % 97}" for i in range(rows)]),
                    "event_time": pa.array(
                        rng.integers(1.7e9, 1.8e9, rows) * 10**6, pa.timestamp("us", tz="UTC")
                    ),
                    "seats": pa.array(seats, mask=rng.random(rows) < 0.1),
                    "amount": pa.array(rng.normal(size=rows)),
                }
            )
        )
    return parts


@pytest.mark.parametrize(
    "options",
    [{}, {"compression": "snappy"}, {"use_dictionary": ["customer_id"]}],
    ids=["defaults", "snappy", "dictionary-for-one-column"],
)
def test_background_file_is_byte_identical_to_pyarrows(tmp_path, options):
    parts = _parts()
    with pq.ParquetWriter(tmp_path / "plain.parquet", parts[0].schema, **options) as plain:
        for part in parts:
            plain.write_table(part)
    with BackgroundParquetWriter(tmp_path / "background.parquet", parts[0].schema, depth=1,
                                 **options) as background:
        for part in parts:
            background.write_table(part)
    assert not background.is_open
    assert (tmp_path / "background.parquet").read_bytes() == (
        tmp_path / "plain.parquet").read_bytes()
    assert pq.read_table(tmp_path / "background.parquet").equals(pa.concat_tables(parts))


def test_write_table_waits_while_the_queue_is_full(tmp_path):
    """At most ``depth`` tables wait beside the one being written: memory stays bounded."""
    parts = _parts(count=4, rows=10)
    writer = BackgroundParquetWriter(tmp_path / "t.parquet", parts[0].schema, depth=1)
    release = threading.Event()
    started = threading.Event()
    real_write = writer._writer.write_table

    def held_write(table: pa.Table) -> None:
        started.set()
        release.wait()
        real_write(table)

    writer._writer.write_table = held_write  # the writer thread now waits to be released
    writer.write_table(parts[0])  # taken by the thread, which waits in the write
    assert started.wait(10)
    writer.write_table(parts[1])  # fills the queue (depth 1)
    third = threading.Thread(target=writer.write_table, args=(parts[2],))
    third.start()
    third.join(0.3)
    assert third.is_alive()  # no room: the caller waits
    release.set()
    third.join(10)
    assert not third.is_alive()
    writer.write_table(parts[3])
    writer.close()
    assert pq.read_table(tmp_path / "t.parquet").num_rows == 40


def test_writer_thread_error_is_raised_in_the_caller_once(tmp_path):
    parts = _parts(count=2, rows=10)
    other = pa.table({"unexpected": [1, 2]})
    writer = BackgroundParquetWriter(tmp_path / "t.parquet", parts[0].schema)
    writer.write_table(parts[0])
    writer.write_table(other)  # pyarrow refuses it on the writer thread
    with pytest.raises(ValueError, match="schema"):
        writer.close()
    assert not writer._thread.is_alive()
    writer.close()  # a second close neither raises again nor hangs


def test_write_after_a_failed_write_raises_and_writes_nothing_more(tmp_path):
    parts = _parts(count=3, rows=10)
    writer = BackgroundParquetWriter(tmp_path / "t.parquet", parts[0].schema, depth=1)
    writer.write_table(pa.table({"unexpected": [1]}))
    # The thread meets the error on its own time: writes are refused from then on.
    for _ in range(200):
        if writer._error is not None:
            break
        threading.Event().wait(0.01)
    with pytest.raises(ValueError, match="schema"):
        writer.write_table(parts[0])
    with pytest.raises(ValueError, match="schema"):
        writer.write_table(parts[1])
    writer.close()  # already reported: closes quietly


def test_callers_error_is_not_masked_and_the_thread_ends(tmp_path):
    parts = _parts(count=2, rows=10)
    writer = BackgroundParquetWriter(tmp_path / "t.parquet", parts[0].schema)
    with pytest.raises(RuntimeError, match="caller failed"), writer:
        writer.write_table(pa.table({"unexpected": [1]}))  # the thread fails too
        raise RuntimeError("caller failed")
    assert not writer._thread.is_alive()


def test_closed_writer_and_bad_depth_are_refused(tmp_path):
    parts = _parts(count=1, rows=10)
    writer = BackgroundParquetWriter(tmp_path / "t.parquet", parts[0].schema)
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write_table(parts[0])
    with pytest.raises(ValueError, match="depth"):
        BackgroundParquetWriter(tmp_path / "u.parquet", parts[0].schema, depth=0)


def test_prefetch_yields_the_iterators_items_in_order():
    assert list(prefetch(iter(range(100)))) == list(range(100))
    assert list(prefetch(iter([]))) == []
    batches = [pa.table({"a": [i, i + 1]}) for i in range(5)]
    assert [t.equals(b) for t, b in zip(prefetch(iter(batches), depth=3), batches,
                                        strict=True)] == [True] * 5


def test_prefetch_reads_at_most_depth_items_ahead():
    produced = []

    def items():
        for i in range(10):
            produced.append(i)
            yield i

    stream = prefetch(items(), depth=2)
    assert next(stream) == 0
    for _ in range(50):  # give the thread time to run ahead as far as it may
        threading.Event().wait(0.01)
    # Item 0 is in hand, two wait in the queue, and the thread holds the one it cannot put.
    assert len(produced) <= 4
    assert list(stream) == list(range(1, 10))


def test_prefetch_raises_the_iterators_error_where_it_happened():
    def items():
        yield 1
        yield 2
        raise OSError("disk gone")

    seen = []
    with pytest.raises(OSError, match="disk gone"):
        for item in prefetch(items()):
            seen.append(item)
    assert seen == [1, 2]


def test_prefetch_closes_the_iterator_when_the_consumer_stops_early():
    closed = threading.Event()

    def items():
        try:
            yield from range(1_000)
        finally:
            closed.set()

    stream = prefetch(items())
    assert next(stream) == 0
    stream.close()  # what a break or an error in the consumer's loop does
    assert closed.is_set()
    with pytest.raises(ValueError, match="depth"):
        next(prefetch(iter([1]), depth=0))


def test_ordered_jobs_run_one_at_a_time_in_the_order_given():
    done: list[int] = []
    running = []

    def job(number: int):
        def run() -> None:
            running.append(number)
            assert len(running) == 1  # never two at once
            threading.Event().wait(0.002 * (number % 3))  # uneven lengths
            done.append(number)
            running.remove(number)

        return run

    with OrderedJobs(depth=3) as jobs:
        for number in range(20):
            jobs.submit(job(number))
    assert done == list(range(20))


def test_ordered_jobs_hold_at_most_depth_jobs_out():
    release = threading.Event()
    started = []
    jobs = OrderedJobs(depth=2)
    jobs.submit(lambda: (started.append(0), release.wait(5)))
    jobs.submit(lambda: started.append(1))
    waiting = threading.Thread(target=jobs.submit, args=(lambda: started.append(2),))
    waiting.start()
    waiting.join(0.2)
    # Two jobs are out (one running, blocked; one queued): the third submit waits for room.
    assert waiting.is_alive()
    assert started == [0]
    release.set()
    waiting.join(5)
    jobs.close()
    assert started == [0, 1, 2]


def test_ordered_jobs_raise_a_jobs_error_in_the_caller_and_run_nothing_after_it():
    ran = []

    def failing() -> None:
        raise OSError("disk gone")

    jobs = OrderedJobs(depth=1)
    jobs.submit(lambda: ran.append("first"))
    jobs.submit(failing)
    with pytest.raises(OSError, match="disk gone"):
        jobs.submit(lambda: ran.append("after"))  # waits for room, meets the error
    with pytest.raises(RuntimeError, match="earlier job failed"):
        jobs.submit(lambda: ran.append("later"))
    jobs.close()
    jobs.close()  # safe to repeat
    assert ran == ["first"]


def test_ordered_jobs_error_surfaces_at_wait_and_the_callers_own_error_is_not_masked():
    def failing() -> None:
        raise ValueError("bad month")

    jobs = OrderedJobs(depth=2)
    jobs.submit(failing)
    with pytest.raises(ValueError, match="bad month"):
        jobs.wait()

    with pytest.raises(KeyError, match="callers"), OrderedJobs() as other:
        other.submit(failing)
        raise KeyError("callers")
    with pytest.raises(ValueError, match="depth"):
        OrderedJobs(depth=0)
