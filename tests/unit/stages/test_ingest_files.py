"""Ingest's Parquet reader and writer (:mod:`churn.stages.ingest.files`) give the frames
churn.io reads and writes."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq

from churn import io
from churn.stages.ingest.files import read_table_file, write_table_file


def _typed_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": pd.Series(["a", None, "c"], dtype="str"),
            "occurred_at": pd.Series(
                pd.to_datetime(["2025-01-01 10:00", None, "2025-01-03 00:00"], utc=True)
            ).astype(pd.DatetimeTZDtype(unit="us", tz="UTC")),
            "naive_at": pd.to_datetime(["2025-01-01", "2025-01-02", None]),
            "quantity": [1.5, None, 3.0],
            "score": pd.Series([1, None, 3], dtype="Int64"),
            "reopened": pd.Series([True, None, False], dtype="boolean"),
            "_row_number": pd.Series([0, 4, 9], dtype="int64"),
        }
    )


def test_written_table_reads_back_as_write_parquet_writes_it(tmp_path):
    frame = _typed_frame()

    write_table_file(frame, tmp_path / "mine.parquet")
    io.write_parquet(frame, tmp_path / "io.parquet")

    mine, theirs = pq.read_table(tmp_path / "mine.parquet"), pq.read_table(tmp_path / "io.parquet")
    assert mine.schema.equals(theirs.schema, check_metadata=True)
    assert mine.equals(theirs)
    pd.testing.assert_frame_equal(io.read_frame(tmp_path / "mine.parquet"), frame)
    assert not [p for p in tmp_path.iterdir() if p.name not in {"mine.parquet", "io.parquet"}]


def test_timestamps_are_written_without_dictionary_pages(tmp_path):
    write_table_file(_typed_frame(), tmp_path / "t.parquet")

    meta = pq.ParquetFile(tmp_path / "t.parquet").metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(7)}
    assert not any("DICTIONARY" in e for e in encodings["occurred_at"])
    assert any("DICTIONARY" in e for e in encodings["customer_id"])


def test_read_table_equals_read_frame_for_parquet_and_csv(tmp_path):
    frame = _typed_frame()
    io.write_parquet(frame, tmp_path / "t.parquet")
    frame.to_csv(tmp_path / "t.csv", index=False)

    for name in ("t.parquet", "t.csv"):
        expected = io.read_frame(tmp_path / name)
        pd.testing.assert_frame_equal(read_table_file(tmp_path / name), expected)
