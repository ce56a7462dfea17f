"""Tests for :mod:`churn.spark.shards`: shard routing and per-shard execution on Spark."""

from __future__ import annotations

import pandas as pd
import pytest
from support.synthetic import CUTOFFS, all_keys, make_tables

pytest.importorskip("pyspark")  # the optional churn[spark] extra

pytestmark = pytest.mark.spark


def test_shards_are_a_fixed_function_of_the_customer_id(spark):
    from churn.spark.shards import shard_of

    ids = ["c00000", "c00001", "c00002", "c00003", "C00000042", "ü-kunde"]
    frame = spark.createDataFrame([(i,) for i in ids], "customer_id string")
    got = frame.select(
        shard_of("customer_id", 8).alias("s8"), shard_of("customer_id", 3).alias("s3")
    )
    # pmod(xxhash64(id, seed 42), n): pinned, so a shard never moves between runs or versions.
    assert [(r.s8, r.s3) for r in got.collect()] == [(1, 2), (6, 0), (4, 1), (4, 0), (0, 1), (5, 2)]


@pytest.mark.parametrize("shards", [1, 3, 8])
def test_each_shard_gets_its_own_partition(spark, shards):
    from pyspark.sql import functions as sf

    from churn.spark.shards import shard_routing

    labels = shard_routing(spark, shards)
    frame = spark.createDataFrame(
        [(k, label) for k, label in enumerate(labels)], "k int, label int"
    )
    placed = frame.repartition(shards, "label").select("k", sf.spark_partition_id().alias("p"))
    assert sorted((r.k, r.p) for r in placed.collect()) == [(k, k) for k in range(shards)]


def test_map_shards_equals_one_local_call_in_population_order(spark):
    from churn.spark.shards import collect_rows, map_shards

    # Defined here, not at module level: Spark workers cannot import a test module, and a
    # nested function is shipped by value.
    def _toy(tables: dict[str, pd.DataFrame], population: pd.DataFrame) -> pd.DataFrame:
        """A per-customer function: events before the cutoff, and the customer's channel."""
        keys = population[["customer_id", "cutoff"]].drop_duplicates()
        merged = keys.merge(tables["usage_events"], on="customer_id", how="left")
        merged["events"] = (merged["occurred_at"] < merged["cutoff"]).astype("float64")
        counts = merged.groupby(["customer_id", "cutoff"], as_index=False)["events"].sum()
        out = population[["customer_id", "cutoff", "label"]].merge(
            counts, on=["customer_id", "cutoff"], how="left"
        )
        channels = tables["customers"].set_index("customer_id")["acquisition_channel"]
        out["channel"] = out["customer_id"].map(channels).astype("str")
        return out

    tables = make_tables(1, n_customers=40)
    inputs = {name: tables[name] for name in ("customers", "usage_events")}
    # Shuffled, with a duplicated row and a customer unknown to every table.
    population = all_keys(tables).sample(frac=1.0, random_state=3)
    population = pd.concat([population, population.head(2)], ignore_index=True)
    population.loc[len(population)] = ["nobody", CUTOFFS[0], pd.NA]
    want = _toy(inputs, population.reset_index(drop=True))
    dtypes = want.dtypes.to_dict()
    # More shards than some tables have customers: empty shards and empty tables per shard.
    rows = map_shards(spark, inputs, population, _toy, dtypes, shards=7)
    pd.testing.assert_frame_equal(collect_rows(rows, dtypes), want)


def test_map_shards_refuses_an_output_that_breaks_the_schema(spark):
    from churn.spark.shards import collect_rows, map_shards

    tables = make_tables(2, n_customers=10)
    population = all_keys(tables)

    def wrong(frames: dict[str, pd.DataFrame], pop: pd.DataFrame) -> pd.DataFrame:
        return pop.assign(extra=1.0)

    dtypes = {"customer_id": "str", "cutoff": "datetime64[us, UTC]", "label": "Int8"}
    rows = map_shards(spark, {"customers": tables["customers"]}, population, wrong, dtypes, 2)
    with pytest.raises(Exception, match="output columns differ"):
        collect_rows(rows, dtypes)
