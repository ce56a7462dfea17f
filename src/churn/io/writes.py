"""Writing frames, JSON and text, each through :func:`churn.io.atomic.atomic_path`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from churn.io.atomic import atomic_path

if TYPE_CHECKING:
    import pyarrow as pa


def frame_to_arrow(frame: pd.DataFrame, schema: pa.Schema | None = None) -> pa.Table:
    """``frame`` as Arrow, exactly as ``DataFrame.to_parquet(index=False)`` converts it.

    For the writers that append a table part by part (the simulator's months, ingest's batches,
    the features stage's output). pyarrow < 26 reads time-zone columns through
    ``Series.values``, which pandas 3.1 deprecates; pandas' own ``to_parquet`` silences that one
    warning around the same call (pandas GH#68426, apache/arrow#51302), and so does this. The
    values are converted correctly either way.

    Args:
        frame: The rows to convert (its index is not kept).
        schema: The Arrow schema to convert to (default: inferred, as ``to_parquet`` does).
    """
    import pyarrow as pa
    from pandas.errors import Pandas4Warning

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            r"Series\.values returning an ndarray that drops timezone information",
            Pandas4Warning,
        )
        return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def write_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    """Write ``frame`` to a Parquet file atomically (no index)."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_table(frame: pd.DataFrame, path: str | Path, fmt: str = "parquet") -> None:
    """Write ``frame`` atomically as Parquet or CSV."""
    if fmt == "csv":
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
    else:
        write_parquet(frame, path)


def write_json(payload: Any, path: str | Path) -> None:
    """Write ``payload`` as indented JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def write_text(text: str, path: str | Path) -> None:
    """Write ``text`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def encode_frame(frame: pd.DataFrame) -> bytes:
    """Return ``frame`` as Arrow IPC stream bytes: what crosses to a worker process, never a
    pickle (evaluate's fits, target's checks, ingest's worker tables)."""
    import pyarrow as pa

    table = frame_to_arrow(frame)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def decode_frame(data: bytes) -> pd.DataFrame:
    """Return the frame :func:`encode_frame` encoded."""
    import pyarrow as pa

    return pa.ipc.open_stream(data).read_all().to_pandas()
