"""Background threads that overlap the pipeline's large Parquet reads and writes with its work.

The pipeline's large tables are read and written part by part (the simulator's months, ingest's
batches, the features stage's output batches). pyarrow decodes, encodes and compresses a part
without holding Python's global interpreter lock, yet with a plain ``ParquetWriter`` or batch
iterator the caller waits for it with the second core idle: at 100k customers the simulator
spent a third of its CPU (10.8 of 34 s under cProfile, 2026-12-04) in ``write_table``, and
ingest 4 of 25 s reading the usage events' batches.

* :class:`BackgroundParquetWriter` hands each table to one writer thread through a short
  queue, so the encoding of part ``n`` overlaps the computation of part ``n + 1``. The file is
  the one ``ParquetWriter`` writes: the same calls in the same order from one thread, so the
  bytes are identical (``tests/unit/test_background.py``).
* :func:`prefetch` runs an iterator on a thread ahead of its consumer: part ``n + 1`` is read
  while part ``n`` is validated. The parts and their order are the iterator's own.
* :class:`OrderedJobs` runs jobs one after another on one thread in the order they were
  handed in, the caller going on meanwhile: the simulator sorts month ``n``'s usage rows and
  projects its retention truth while it draws month ``n + 1``.

Each bounds what it holds to ``depth`` parts beside the one in hand, and an error of the
thread is raised in the caller's thread.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

_STOP = object()
"""Queue item telling the other side that nothing follows."""

T = TypeVar("T")


class _ClosedOnExit:
    """A context manager that calls ``self.close()`` on leaving the ``with`` block.

    When the block raises, ``close`` still runs (the thread stops), but an error of ``close``
    itself is dropped: the caller's own error is the one to see.
    """

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        with contextlib.suppress(Exception):
            self.close()


class BackgroundParquetWriter(_ClosedOnExit):
    """``pyarrow.parquet.ParquetWriter`` with :meth:`write_table` done on a background thread.

    A table handed over must not change afterwards: Arrow tables are immutable, but one built
    with ``pa.Table.from_pandas`` may share the numeric buffers of its frame, so the caller must
    not write into that frame in place. Use it as a context manager or call :meth:`close` in a
    ``finally``: the thread ends only when the writer is closed.

    Args:
        path: The Parquet file to create (opened at once, so a bad path fails here).
        schema: The file's schema.
        depth: Tables queued at most beside the one being written; :meth:`write_table` waits
            for room, which bounds memory to about ``depth + 1`` parts.
        **options: Passed to ``pyarrow.parquet.ParquetWriter`` (compression, dictionaries).
    """

    def __init__(self, path: str | Path, schema: pa.Schema, *, depth: int = 2,
                 **options: Any) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.path = Path(path)
        self._writer = pq.ParquetWriter(self.path, schema, **options)
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._error_raised = False
        self._closed = False
        self._thread = threading.Thread(
            target=self._drain, name=f"parquet-writer:{self.path.name}", daemon=True
        )
        self._thread.start()

    @property
    def schema(self) -> pa.Schema:
        """The file's schema (as ``ParquetWriter.schema``)."""
        return self._writer.schema

    @property
    def is_open(self) -> bool:
        """Whether tables may still be written (:meth:`close` not called yet)."""
        return not self._closed

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None:
                continue  # after an error, take the rest off the queue without writing it
            try:
                self._writer.write_table(item)  # type: ignore[arg-type]
            except BaseException as exc:  # handed to the caller's thread
                self._error = exc

    def _raise_error(self, *, once: bool) -> None:
        """Raise the writer thread's error; with ``once``, only if not raised before."""
        if self._error is None or (once and self._error_raised):
            return
        self._error_raised = True
        raise self._error

    def write_table(self, table: pa.Table) -> None:
        """Queue ``table`` to be appended (waits while ``depth`` tables are queued).

        Raises:
            ValueError: If the writer is closed.
            Exception: The error the writer thread met on an earlier table.
        """
        if self._closed:
            raise ValueError(f"{self.path.name}: the Parquet writer is closed")
        self._raise_error(once=False)
        self._queue.put(table)

    def close(self) -> None:
        """Write what is queued, finish the file and end the thread (a second call does nothing).

        Raises:
            Exception: The error the writer thread met, unless :meth:`write_table` raised it
                already (the file is then closed but incomplete: write it into a staging path).
        """
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        try:
            self._writer.close()
        finally:
            self._raise_error(once=True)


class _Failure:
    """Queue item carrying the producer thread's error to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterator[T], *, depth: int = 1, name: str = "prefetch") -> Iterator[T]:
    """Yield what ``items`` yields, computing up to ``depth`` items ahead on a thread.

    Worth it when producing an item mostly runs outside Python's interpreter lock (reading and
    decoding Parquet). ``items`` runs entirely on the thread, so it must not share mutable
    state with the consumer's work; it is closed there when exhausted, on an error, or when the
    consumer stops early (``break`` or an error in the consumer closes this generator, which
    stops the thread before returning).

    Args:
        items: The iterator (a generator of batches, typically).
        depth: Items computed ahead at most (memory: about ``depth + 1`` items).
        name: The thread's name (shown in debuggers and thread dumps).

    Raises:
        ValueError: If ``depth`` is below 1.
        Exception: What ``items`` raised, at the point the consumer reaches it.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    handoff: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        """Put ``item`` when there is room; ``False`` once the consumer has gone."""
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(_STOP)
        except BaseException as exc:  # handed to the consumer's thread
            offer(_Failure(exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = handoff.get()
            if item is _STOP:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


class OrderedJobs(_ClosedOnExit):
    """Runs jobs on one thread, one after another in the order given, while the caller goes on.

    Worth it for work that mostly runs outside Python's interpreter lock (NumPy sorts and
    arithmetic on large arrays) and depends on nothing the caller changes afterwards. A job
    should stay away from pandas conversions and anything else that enters
    ``warnings.catch_warnings``: before Python 3.14 that context swaps the process's one list
    of warning filters, so two threads in it at once can restore each other's filters wrongly
    (a deprecation silenced on one thread then turns into an error under ``-W error``).

    At most ``depth`` jobs wait or run beside the caller: :meth:`submit` first waits for the
    oldest one when that many are out, which bounds memory to ``depth`` jobs' inputs and
    results. An error of a job is raised in the caller's thread by the job's future, or by the
    next :meth:`submit`, :meth:`wait` or :meth:`close`; the jobs after it do not run.

    Args:
        depth: Jobs out at most (submitted and not yet waited for).
        name: The thread's name (shown in debuggers and thread dumps).

    Raises:
        ValueError: If ``depth`` is below 1.
    """

    def __init__(self, *, depth: int = 1, name: str = "ordered-jobs") -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._depth = depth
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._out: list[Future[Any]] = []
        self._failed = False

    def submit(self, job: Callable[[], T]) -> Future[T]:
        """Run ``job`` after the jobs submitted before it (first waiting for room).

        Returns:
            The job's future: its result, or its error, once it has run.

        Raises:
            RuntimeError: If an earlier job failed (its error was raised already).
            Exception: What the oldest job raised, when waiting for room meets it.
        """
        while len(self._out) >= self._depth:
            self._wait_oldest()
        if self._failed:
            raise RuntimeError("an earlier job failed: no more jobs run")
        future = self._executor.submit(job)
        self._out.append(future)
        return future

    def wait(self) -> None:
        """Wait until every submitted job has run; raise the first error among them."""
        while self._out:
            self._wait_oldest()

    def close(self) -> None:
        """Wait for the jobs (raising the first error) and stop the thread; safe to repeat.

        After an error elsewhere, call it in a ``finally``: the thread stops either way.
        """
        try:
            self.wait()
        finally:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def _wait_oldest(self) -> None:
        oldest = self._out.pop(0)
        try:
            oldest.result()
        except BaseException:
            self._failed = True
            for later in self._out:  # they would run on a state the failed job left behind
                later.cancel()
            self._out.clear()
            raise
