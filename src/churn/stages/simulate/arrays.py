"""Vectorised helpers of the simulator: calendar arithmetic on epoch seconds, draws, collectors.

Times inside the simulator are int64 seconds since the epoch (UTC); the tables turn them into
timestamps only at assembly (:mod:`churn.stages.simulate.tables`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churn.domain.billing_calendar import SECONDS_PER_DAY

# --- time ---------------------------------------------------------------------------------
_DAY = SECONDS_PER_DAY
_MONTH_DAYS = 30.44
_NAT = np.iinfo(np.int64).min  # missing timestamp (seconds) in output arrays: becomes NaT
_NEVER = -(2**40)  # "has not happened" in state arrays: far past, safe to subtract from


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _month_number(seconds: np.ndarray | int) -> np.ndarray:
    """Calendar months since 1970-01 of UTC timestamps given in seconds."""
    days = np.asarray(seconds) // _DAY
    return days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)


def _categorical(
    rng: np.random.Generator, shares: np.ndarray, rows: np.ndarray | None = None, size: int = 0
) -> np.ndarray:
    """Draw category codes from ``shares`` (one row of shares per group when 2-D).

    Args:
        rng: Random generator.
        shares: Probabilities, shape ``(K,)`` or ``(G, K)``; rows sum to 1.
        rows: Group of each draw (required when ``shares`` is 2-D).
        size: Number of draws when ``shares`` is 1-D.

    Returns:
        Codes in ``[0, K)`` as int64.
    """
    cumulative = np.cumsum(shares, axis=-1)
    cumulative[..., -1] = 1.0  # guard against rounding: every draw lands in a category
    if shares.ndim == 1:
        return np.searchsorted(cumulative, rng.random(size), side="right").astype(np.int64)
    assert rows is not None
    draws = rng.random(len(rows))
    return (draws[:, None] >= cumulative[rows]).sum(axis=1).astype(np.int64)


def _events_in_spans(
    rng: np.random.Generator, rate: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson(``rate``) events per span, placed uniformly in ``[lo, hi)`` (seconds).

    Returns:
        The index of each event's span and the event times.
    """
    counts = rng.poisson(rate)
    span = np.repeat(np.arange(len(rate)), counts)
    return span, lo[span] + (rng.random(len(span)) * (hi - lo)[span]).astype(np.int64)


def _any_by(customers: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    """Per customer (length ``n``): whether any row with ``mask`` belongs to it."""
    out = np.zeros(n, dtype=bool)
    out[customers[mask]] = True
    return out


class _Rows:
    """Collects equally long column arrays chunk by chunk (one chunk per month)."""

    def __init__(self, *columns: str) -> None:
        self._chunks: dict[str, list[np.ndarray]] = {c: [] for c in columns}

    def add(self, **arrays: np.ndarray) -> None:
        for name, chunks in self._chunks.items():
            chunks.append(arrays[name])

    def add_from(self, arrays: Callable[[], dict[str, np.ndarray]]) -> None:
        """Add the arrays ``arrays()`` returns (now: a collector has no thread)."""
        self.add(**arrays())

    def concat(self) -> dict[str, np.ndarray]:
        """Concatenate and release the chunks."""
        return {name: np.concatenate(self.pop(name)) for name in list(self._chunks)}

    def pop(self, name: str) -> list[np.ndarray]:
        """Hand over (and forget) the chunks of one column."""
        return self._chunks.pop(name)


def _ids(prefix: str, count: int, width: int) -> np.ndarray:
    """Zero-padded identifiers ``<prefix>0000042``."""
    return np.char.add(prefix, np.char.zfill(np.arange(count).astype(str), width))


def _labels(vocabulary: tuple[str, ...] | np.ndarray, codes: np.ndarray) -> pd.Series:
    """Category codes as a pandas ``str`` column; negative codes are missing.

    Picked from an Arrow dictionary by code: building the column from a NumPy array of the
    names instead converts every name to Arrow one by one (about 0.4 us a row, 4 s of a
    400k-customer run for the retention truth's plays, 2026-12-05).
    """
    dictionary = pa.array(list(vocabulary), type=pa.large_string())
    codes = np.asarray(codes)
    return pc.take(dictionary, pa.array(codes, mask=codes < 0)).to_pandas()
