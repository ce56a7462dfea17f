"""Tests for :mod:`churn.spark.arrow`: exact pandas dtypes back from Arrow (no Spark needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa


def test_arrow_round_trip_restores_the_validated_dtypes():
    from churn.spark.arrow import arrow_to_pandas

    frame = pd.DataFrame(
        {
            "s": pd.array(["a", None], dtype="str"),
            "t": pd.Series(pd.to_datetime(["2024-01-01", None], utc=True)).astype(
                "datetime64[us, UTC]"
            ),
            "i": pd.array([1, None], dtype="Int64"),
            "b": pd.array([True, None], dtype="boolean"),
            "l": pd.array([None, 1], dtype="Int8"),
            "f": [np.nan, 1.5],
        }
    )
    # What Spark hands back: naive nanosecond timestamps, floats for nullable integers.
    table = pa.table(
        {
            "s": pa.array(["a", None]),
            "t": pa.array([pd.Timestamp("2024-01-01"), None], pa.timestamp("ns")),
            "i": pa.array([1.0, None]),
            "b": pa.array([True, None]),
            "l": pa.array([None, 1], pa.int8()),
            "f": pa.array([None, 1.5]),
        }
    )
    pd.testing.assert_frame_equal(arrow_to_pandas(table, frame.dtypes.to_dict()), frame)
