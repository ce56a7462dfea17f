"""The raw text of a table, rendered only for the rows that need it.

Quarantine files and report examples show cells exactly as read (as :func:`to_text` renders
them). Rendering every cell of a large table costs far more than validating it (17M
timestamps: about a minute), while only the few rows that break a rule are ever shown, so
:class:`RawText` renders a column's text for given rows on demand.

Text is rendered per cell, except for datetimes: pandas chooses one format for a whole
datetime column (date only when every value is at midnight; as many fractional digits as
the finest value needs), so the text of a few rows alone could differ from the same rows
rendered with their column. Each column's *witnesses*, the first value at each finer
resolution than whole days and seconds, are rendered along with the requested rows: the
format pandas then picks is the one it picks for the whole column.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from churn.validation.coerce import is_arrow_text, to_text

_UNITS_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
_SECONDS_PER_DAY = 86_400


def _is_datetime(values: pd.Series) -> bool:
    return isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(
        values.dtype
    )


def find_format_witnesses(values: pd.Series) -> np.ndarray:
    """Positions of the values that decide how pandas formats a datetime column as text.

    pandas renders a datetime column as dates when every value is at midnight (and the column
    is naive), else with the fractional digits of its finest value (none, milli-, micro- or
    nanoseconds). The first value off midnight and the first value not a whole number of
    seconds, milliseconds and microseconds: together they make pandas choose the same format
    as for the whole column.

    Args:
        values: A datetime column (naive or aware).

    Returns:
        Sorted, unique row positions (at most four).
    """
    array = values.array
    stamps = np.asarray(array.asi8)
    present = ~np.asarray(values.isna())
    per_second = _UNITS_PER_SECOND[array.unit]
    finer = []
    modulus = 1000
    while modulus <= per_second:  # one per sub-second resolution finer than the unit allows
        finer.append(modulus)
        modulus *= 1000
    moduli = [per_second * _SECONDS_PER_DAY, *reversed(finer)]  # coarsest first
    # Each modulus divides the one before it (a day, a second, a millisecond): a value off
    # the finer one is off the coarser one too, so the search for the finer one starts at the
    # coarser one's hit, and ends with it when there is none (whole seconds need no search
    # for milliseconds: two full scans of every batch less in ingest).
    found: list[int] = []
    start: int | None = 0
    for modulus in moduli:
        start = _first_off(stamps, present, modulus, start)
        if start is None:
            break
        found.append(start)
    return np.unique(np.asarray(found, dtype=np.int64))


def _first_off(stamps: np.ndarray, present: np.ndarray, modulus: int, start: int = 0) -> int | None:
    """The first present position from ``start`` on whose value is not a multiple of
    ``modulus``, or ``None``.

    Searched in growing blocks: the first value off midnight is nearly always among the first
    rows, and scanning 17M values three times for it cost about a second.
    """
    block = 4096
    while start < len(stamps):
        stop = start + block
        hits = np.flatnonzero(present[start:stop] & (stamps[start:stop] % modulus != 0))
        if len(hits):
            return start + int(hits[0])
        start, block = stop, block * 4
    return None


def collect_format_witnesses(
    found: Mapping[str, pd.Series], frame: pd.DataFrame
) -> dict[str, pd.Series]:
    """Add the witnesses of a further batch to those of the batches before it.

    The witnesses of a whole column are, per resolution, its first value at it; those of
    the batches in order, kept while no earlier batch had one, are the same values. Keeping
    every earlier witness and adding the batch's own gives a superset that decides the same
    format (at most four values per batch, and only new resolutions are kept).

    Args:
        found: Datetime column -> witness values of the batches so far.
        frame: The next batch (a default ``RangeIndex``).

    Returns:
        Column -> witness values of the batches so far and ``frame``.
    """
    out = dict(found)
    for name in frame.columns:
        values = frame[name]
        if not _is_datetime(values):
            continue
        new = values.iloc[find_format_witnesses(values)]
        if name in out:
            # Only resolutions not seen before matter; the format depends on the finest.
            combined = pd.concat([out[name], new])
            new = combined.iloc[find_format_witnesses(combined.reset_index(drop=True))]
        out[name] = new.reset_index(drop=True)
    return out


def take_rows(values: pd.Series, positions: np.ndarray) -> pd.Series:
    """``values.iloc[positions]``, without concatenating an Arrow text column's chunks first.

    Arrow's ``take`` on a chunked column concatenates every chunk before picking rows: 80 ms
    per call on 17M ids, paid again for each example cell of the report. Here each chunk gives
    its own rows and only those are put together (same values, dtype and index).

    Args:
        values: Any column.
        positions: Row positions (any order, repeats allowed).

    Returns:
        The rows at ``positions``, indexed by their labels in ``values``.
    """
    positions = np.asarray(positions, dtype=np.int64)
    arrow_text = is_arrow_text(values)
    # Many rows: one concatenation is cheaper than the gather below.
    if not arrow_text or not 0 < len(positions) <= len(values) // 64:
        return values.iloc[positions]
    chunked = pa.array(values.array)  # the column's own Arrow data (__arrow_array__)
    if not isinstance(chunked, pa.ChunkedArray) or chunked.num_chunks <= 1:
        return values.iloc[positions]
    positions = np.where(positions < 0, positions + len(values), positions)
    bounds = np.cumsum([0] + [len(chunk) for chunk in chunked.chunks])
    chunk_of = np.searchsorted(bounds, positions, side="right") - 1
    grouped = np.argsort(chunk_of, kind="stable")  # rows of chunk 0 first, then chunk 1...
    in_order, chunks_in_order = positions[grouped], chunk_of[grouped]
    starts = np.searchsorted(chunks_in_order, np.arange(len(bounds)))
    parts = [
        chunked.chunk(k).take(pa.array(in_order[starts[k] : starts[k + 1]] - bounds[k]))
        for k in range(chunked.num_chunks)
        if starts[k + 1] > starts[k]
    ]
    gathered = pa.concat_arrays(parts).take(pa.array(np.argsort(grouped)))
    taken = gathered.to_pandas().astype(values.dtype).set_axis(values.index[positions])
    return taken.rename(values.name)


def keep_rows(frame: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    """``frame.loc[keep].reset_index(drop=True)``, filtering Arrow text chunk by chunk.

    pandas picks the kept rows by position, and Arrow's ``take`` first concatenates all
    chunks of a text column; Arrow's ``filter`` works per chunk.

    Args:
        frame: Any table.
        keep: One boolean per row.

    Returns:
        The kept rows with a default ``RangeIndex``.
    """
    keep = np.asarray(keep, dtype=bool)
    mask = pa.array(keep)
    columns = {}
    for i in range(frame.shape[1]):
        values = frame.iloc[:, i]
        if is_arrow_text(values):
            kept = pa.array(values.array).filter(mask).to_pandas().astype(values.dtype)
        else:
            kept = pd.Series(values.array[keep])
        columns[i] = kept.reset_index(drop=True)
    out = pd.DataFrame(columns, index=pd.RangeIndex(int(keep.sum())))
    return out.set_axis(frame.columns, axis=1)


class RawText:
    """The cells of a raw table as text, rendered on demand for given rows.

    Args:
        frame: The table as read, with a default ``RangeIndex`` (positions are rows).
        witnesses: Datetime column -> the values that decide its text format, when ``frame``
            is a batch of a larger table (:func:`find_format_witnesses` of the whole
            column, see :func:`collect_format_witnesses`); by default they are found in
            ``frame``.
    """

    def __init__(
        self, frame: pd.DataFrame, witnesses: Mapping[str, pd.Series] | None = None
    ) -> None:
        self._frame = frame
        self._witnesses: dict[str, np.ndarray] = {}
        self._given = dict(witnesses or {})

    def column(self, name: str, positions: np.ndarray) -> pd.Series:
        """The text of column ``name`` at row ``positions``, as :func:`to_text` of the column.

        Args:
            name: A column of the raw table.
            positions: Row positions (any order, repeats allowed).

        Returns:
            A ``str`` column indexed by ``positions``.
        """
        values = self._frame[name]
        positions = np.asarray(positions, dtype=np.int64)
        if isinstance(values.dtype, pd.PeriodDtype) or pd.api.types.is_timedelta64_dtype(
            values.dtype
        ):
            # Column-wide formats too, but never seen in exports: render all (slow, exact).
            return to_text(values).iloc[positions]
        if not _is_datetime(values):
            return to_text(take_rows(values, positions))
        if name in self._given:
            rendered = to_text(pd.concat([take_rows(values, positions), self._given[name]]))
            return rendered.iloc[: len(positions)]
        if name not in self._witnesses:
            self._witnesses[name] = find_format_witnesses(values)
        witnesses = self._witnesses[name]
        rendered = to_text(take_rows(values, np.concatenate([positions, witnesses])))
        return rendered.iloc[: len(positions)]

    def cell(self, name: str, position: int) -> str | float:
        """The text of one cell (``nan`` where the value is missing)."""
        return self.column(name, np.asarray([position])).iloc[0]

    def rows(self, positions: np.ndarray) -> pd.DataFrame:
        """Every column of the table at row ``positions``, as text, indexed by position."""
        positions = np.asarray(positions, dtype=np.int64)
        return pd.DataFrame(
            {c: self.column(c, positions) for c in self._frame.columns},
            index=pd.Index(positions),
        )
