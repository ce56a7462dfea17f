"""Where the month loop's big outputs go: kept in memory, or streamed to Parquet month by month.

Three outputs grow with customers x months: the ``usage_events`` table (about 170 rows per
customer over 24 months), the ``customer_months`` truth and the ``retention_truth`` (five rows per
active customer and month). Holding them whole until the end of the loop made the simulator's
peak memory grow with customers x months (500k customers peaked at 8.4 GB). Each of them is
*row-wise* in the month: its rows for month ``t`` depend only on that month's draws, and the
table is month 0's rows, then month 1's, and so on. So each month's arrays are turned into that
month's rows at once (:class:`MonthlyTable`) and handed to a sink:

* :class:`MemorySink` keeps the frames and concatenates them (``simulate()``, the tests);
* :class:`ParquetSink` appends them to a Parquet file as row groups (``run_simulate``), so only
  one month is ever held.

Both give the same rows in the same order with the same dtypes, and the file has the schema
``DataFrame.to_parquet`` would write for the whole table (``tests/unit/stages/
test_simulate_sinks.py`` checks both).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from churn.background import BackgroundParquetWriter, OrderedJobs
from churn.io import frame_to_arrow

#: Turns one month's column arrays into that month's rows of an output table.
FrameBuilder = Callable[[dict[str, np.ndarray]], pd.DataFrame]


class FrameSink(Protocol):
    """Receives an output table month by month."""

    rows: int

    def write(self, frame: pd.DataFrame) -> None:
        """Take the next month's rows."""


class MemorySink:
    """Keeps every month's frame; :meth:`frame` is the whole table."""

    def __init__(self) -> None:
        self.rows = 0
        self._frames: list[pd.DataFrame] = []

    def write(self, frame: pd.DataFrame) -> None:
        """Keep the next month's rows."""
        self._frames.append(frame)
        self.rows += len(frame)

    @property
    def empty(self) -> bool:
        """Whether no month was written at all (the output does not exist)."""
        return not self._frames

    def frame(self) -> pd.DataFrame:
        """The months' rows in order, as one frame with a fresh index (and forget them)."""
        frames, self._frames = self._frames, []
        return pd.concat(frames, ignore_index=True)


class ParquetSink:
    """Appends every month's frame to one Parquet file (one or more row groups per month).

    The schema, pandas metadata included, is the first frame's as ``DataFrame.to_parquet``
    (``index=False``) writes it; later frames are converted to exactly that schema, so a month
    whose column would come out with another type is an error rather than a silent cast. No file
    is created when nothing is written. The file is not atomic by itself: write it into a
    staging folder (:func:`churn.io.atomic_directory`).

    Args:
        path: The Parquet file to create.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows = 0
        self._writer: BackgroundParquetWriter | None = None

    def write(self, frame: pd.DataFrame) -> None:
        """Append the next month's rows.

        Raises:
            ValueError: If a column's Arrow type differs from the first month's.
        """
        table = frame_to_arrow(frame)
        if self._writer is None:
            # Same compression as DataFrame.to_parquet's default. The months are encoded on a
            # writer thread while the next month is simulated (a third of the CPU at 100k).
            self._writer = BackgroundParquetWriter(self.path, table.schema, depth=1,
                                                   compression="snappy")
        else:
            schema = self._writer.schema
            if not table.schema.equals(schema, check_metadata=False):
                raise ValueError(
                    f"{self.path.name}: this month's columns {table.schema.types} differ from "
                    f"the first month's {schema.types} ({schema.names})"
                )
            # The pandas metadata of the first month describes the whole file.
            table = table.replace_schema_metadata(schema.metadata)
        self._writer.write_table(table)
        self.rows += len(frame)

    @property
    def empty(self) -> bool:
        """Whether no month was written at all (no file exists)."""
        return self._writer is None

    def close(self) -> None:
        """Finish the file (its footer); safe to call more than once."""
        if self._writer is not None and self._writer.is_open:
            self._writer.close()


class MonthlyTable:
    """One output table filled month by month, with the ``add(**arrays)`` of a row collector.

    Args:
        build: Turns one month's arrays into that month's rows.
        sink: Where the rows go.
        jobs: Where :meth:`add_from` runs (one thread, months in order); ``None``: at once.
    """

    def __init__(
        self, build: FrameBuilder, sink: FrameSink, jobs: OrderedJobs | None = None
    ) -> None:
        self._build = build
        self.sink = sink
        self._jobs = jobs
        self._pending: Future[dict[str, np.ndarray]] | None = None

    def add(self, **arrays: np.ndarray) -> None:
        """Turn one month's column arrays into rows and hand them to the sink."""
        self.flush()
        self.sink.write(self._build(arrays))

    def add_from(self, arrays: Callable[[], dict[str, np.ndarray]]) -> None:
        """:meth:`add` the arrays ``arrays()`` returns, computed on the table's job thread.

        ``arrays`` runs on the job thread (when the table has one) while the month loop goes
        on, so it must draw nothing at random, read nothing the loop changes later, and stay
        NumPy (see :class:`~churn.background.OrderedJobs`). Its arrays become rows on the
        caller's thread, at the next :meth:`add_from`, :meth:`add` or :meth:`flush`: months
        reach the sink in the order they were added, so the table is the same either way.
        """
        if self._jobs is None:
            self.add(**arrays())
            return
        self.flush()
        self._pending = self._jobs.submit(arrays)

    def flush(self) -> None:
        """Hand the rows of the month still computed on the job thread to the sink (waiting).

        Raises:
            Exception: What computing that month's arrays raised.
        """
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.sink.write(self._build(pending.result()))
