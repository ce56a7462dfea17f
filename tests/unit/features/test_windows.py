"""The windowed sums of :mod:`churn.features.windows`, against a naive reference."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import duckdb
import numpy as np
import pandas as pd
import pytest

from churn.features.common import DAY_BUCKET, KEYS, build_bucket_grid, set_last_cutoff
from churn.features.windows import WindowedSums, create_windowed_sums
from churn.sql import connect

CUTOFFS = pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-15", "2024-05-01"]).astype(
    "datetime64[us]"
)
WINDOWS = (7, 30, 90)
OUTPUTS = tuple(
    (f"{column}_last_{w}d", f"b.{column}", w)
    for w in WINDOWS
    for column in ("amount", "active_days", "logins")
)


def _frames(seed: int, customers: int = 12) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random buckets of the grid (dyadic amounts: every order of summing is exact) and keys."""
    rng = np.random.default_rng(seed)
    starts = np.unique(build_bucket_grid(CUTOFFS, WINDOWS).day_bucket["bucket_start"])
    rows = []
    for customer in range(customers):
        chosen = rng.choice(starts, size=rng.integers(0, len(starts) + 1), replace=False)
        for start in chosen:
            rows.append(
                {
                    "customer_id": customer,
                    "bucket_start": start,
                    "amount": float(rng.integers(0, 64)) / 4,
                    "active_days": int(rng.integers(1, 8)),
                    # Missing where the bucket had no login (SQL sums of CASE give NULL).
                    "logins": float(rng.integers(1, 5)) if rng.random() < 0.5 else np.nan,
                }
            )
    buckets = pd.DataFrame(
        rows, columns=["customer_id", "bucket_start", "amount", "active_days", "logins"]
    ).astype({"customer_id": "int64", "bucket_start": "datetime64[us]", "active_days": "int8"})
    keys = pd.DataFrame(
        [
            (customer, cutoff)
            for customer in range(customers + 2)  # two customers without any bucket
            for cutoff in CUTOFFS
            if rng.random() < 0.8
        ],
        columns=["customer_id", "cutoff"],
    ).astype({"customer_id": "int64", "cutoff": "datetime64[us]"})
    return buckets, keys


@contextlib.contextmanager
def _session(buckets: pd.DataFrame, keys: pd.DataFrame) -> Iterator[duckdb.DuckDBPyConnection]:
    grid = build_bucket_grid(CUTOFFS, WINDOWS)
    with contextlib.closing(connect(threads=2, memory_limit="256MB")) as con:
        con.register(DAY_BUCKET, grid.day_bucket)
        con.register("_keys_frame", keys)
        con.execute(f"CREATE TEMP TABLE {KEYS} AS SELECT * FROM _keys_frame")
        con.register("_buckets_frame", buckets)
        # A prehistory row per customer, as bucketed_sql writes them: never in a window.
        con.execute(
            "CREATE TEMP TABLE buckets AS SELECT * FROM _buckets_frame UNION ALL "
            "SELECT DISTINCT customer_id, '-infinity'::TIMESTAMP, NULL, NULL, NULL "
            "FROM _buckets_frame"
        )
        set_last_cutoff(con)
        yield con


def _windowed(buckets: pd.DataFrame, keys: pd.DataFrame, **kwargs: int) -> pd.DataFrame:
    with _session(buckets, keys) as con:
        create_windowed_sums(con, "win", "buckets", OUTPUTS, **kwargs)
        return con.execute("SELECT * FROM win ORDER BY customer_id, cutoff").df()


def _naive(buckets: pd.DataFrame, keys: pd.DataFrame) -> pd.DataFrame:
    """Loop over keys and windows: the buckets starting in [T - w, T), NULL without values."""
    rows = []
    largest = max(WINDOWS)
    for customer, cutoff in keys.itertuples(index=False):
        mine = buckets[buckets["customer_id"] == customer]
        if not (
            (mine["bucket_start"] >= cutoff - pd.Timedelta(days=largest))
            & (mine["bucket_start"] < cutoff)
        ).any():
            continue
        row = {"customer_id": customer, "cutoff": cutoff}
        for name, expression, days in OUTPUTS:
            inside = mine[
                (mine["bucket_start"] >= cutoff - pd.Timedelta(days=days))
                & (mine["bucket_start"] < cutoff)
            ]
            values = inside[expression.removeprefix("b.")].dropna()
            row[name] = values.sum() if len(values) else np.nan
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["customer_id", "cutoff"], ignore_index=True)


def _compare(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(got.columns) == ["customer_id", "cutoff", *(name for name, _, _ in OUTPUTS)]
    assert len(got) == len(expected) > 0
    for column in expected.columns:
        np.testing.assert_array_equal(
            got[column].to_numpy(dtype="float64" if column != "cutoff" else None),
            expected[column].to_numpy(dtype="float64" if column != "cutoff" else None),
            err_msg=column,
        )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sums_equal_a_loop_over_keys_and_windows(seed: int) -> None:
    buckets, keys = _frames(seed)
    got = _windowed(buckets, keys)
    _compare(got, _naive(buckets, keys))
    # The sums of integer values stay integers (exact), NULL stays NULL.
    assert str(got["active_days_last_7d"].dtype) in {"Int64", "int64"}
    assert got["logins_last_7d"].isna().any() and got["logins_last_90d"].notna().any()


@pytest.mark.parametrize("chunk_rows", [1, 5, 37])
def test_chunks_of_customers_give_the_same_rows(chunk_rows: int) -> None:
    buckets, keys = _frames(3, customers=30)
    whole = _windowed(buckets, keys)
    chunked = _windowed(buckets, keys, chunk_rows=chunk_rows)
    pd.testing.assert_frame_equal(chunked, whole)


def _check_renamed_ids(seed: int, rename: dict[int, object], **kwargs: int) -> None:
    """The sums with every id renamed equal the naive sums of the original ids, renamed."""
    buckets, keys = _frames(seed)
    got = _windowed(
        buckets.assign(customer_id=buckets["customer_id"].map(rename)),
        keys.assign(customer_id=keys["customer_id"].map(rename)),
        **kwargs,
    )
    expected = _naive(buckets, keys).assign(customer_id=lambda f: f["customer_id"].map(rename))
    got = got.sort_values(["customer_id", "cutoff"], ignore_index=True)
    expected = expected.sort_values(["customer_id", "cutoff"], ignore_index=True)
    assert got["customer_id"].tolist() == expected["customer_id"].tolist()
    _compare(got.assign(customer_id=0), expected.assign(customer_id=0))


def test_text_customer_ids_give_the_sums_of_their_integer_codes() -> None:
    # Spellings whose text order differs from the numbers' order.
    _check_renamed_ids(4, {i: f"cust-{(i * 7) % 13}-{i}" for i in range(20)}, chunk_rows=3)


def test_integer_ids_too_large_to_combine_with_a_day_are_coded_first() -> None:
    # Times the days they overflow 64 bits; one chunk, so the codes must sort across customers.
    _check_renamed_ids(9, {i: (i + 1) * 2**58 + i for i in range(20)})


def test_no_buckets_give_an_empty_table_with_every_column() -> None:
    buckets, keys = _frames(5)
    got = _windowed(buckets.iloc[:0], keys)
    assert got.empty
    assert list(got.columns) == ["customer_id", "cutoff", *(name for name, _, _ in OUTPUTS)]


def test_a_window_the_grid_was_not_cut_for_is_refused() -> None:
    buckets, keys = _frames(6)
    with _session(buckets, keys) as con, pytest.raises(ValueError, match=r"\[14\] days"):
        create_windowed_sums(con, "win", "buckets", [("amount_last_14d", "b.amount", 14)])


def test_the_step_creates_its_table_under_the_step_name() -> None:
    buckets, keys = _frames(7)
    with _session(buckets, keys) as con:
        WindowedSums("buckets", OUTPUTS, chunk_rows=4)(con, "step_table")
        got = con.execute("SELECT * FROM step_table ORDER BY customer_id, cutoff").df()
    _compare(got, _naive(buckets, keys))


def test_bad_arguments_are_refused() -> None:
    buckets, keys = _frames(8)
    with _session(buckets, keys) as con:
        with pytest.raises(ValueError, match="at least one output"):
            create_windowed_sums(con, "win", "buckets", [])
        with pytest.raises(ValueError, match="chunk_rows"):
            create_windowed_sums(con, "win", "buckets", OUTPUTS, chunk_rows=0)
