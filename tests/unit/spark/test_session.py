"""Tests for :mod:`churn.spark.session`: the UTC session and the jobs' shared arguments.

The session tests start a real local PySpark session and are marked ``spark``; the argument
tests and the import check need no Spark.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pyarrow as pa
import pytest

from churn.config import Params

PIPELINES = Path(__file__).resolve().parents[3] / "pipelines"


@pytest.mark.spark
def test_session_and_workers_run_in_utc(spark):
    from churn.spark.session import check_session_utc, worker_utc_offsets

    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.sql.execution.arrow.pyspark.enabled") == "true"
    assert worker_utc_offsets(spark) == [0, 0]
    check_session_utc(spark)
    assert os.environ["PYSPARK_PYTHON"]  # set (to this interpreter unless the user chose one)
    # An instant that does not exist in Central Europe (DST gap) survives the JVM round trip.
    instant = pd.Timestamp("2024-03-31 02:30:00", tz="UTC")
    frame = spark.createDataFrame(pa.table({"t": pa.array([instant], pa.timestamp("us", "UTC"))}))
    assert frame.selectExpr("cast(t as string) as s").collect()[0].s == "2024-03-31 02:30:00"
    assert frame.toArrow().column("t")[0].as_py() == instant.to_pydatetime()


@pytest.mark.spark
def test_a_session_not_in_utc_is_refused(spark):
    from churn.errors import ChurnError
    from churn.spark.session import check_session_utc

    spark.conf.set("spark.sql.session.timeZone", "Europe/Berlin")
    try:
        with pytest.raises(ChurnError, match="timeZone"):
            check_session_utc(spark)
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")


def test_module_import_starts_nothing():
    """Importing churn.spark and its modules creates no session and no JVM (no side effects)."""
    import subprocess

    modules = ", ".join(
        f"churn.spark.{name}"
        for name in ("session", "arrow", "storage", "shards", "features", "scoring")
    )
    code = f"import sys, {modules}; assert 'pyspark' not in sys.modules, 'pyspark imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def _job(name: str) -> ModuleType:
    """Load a spark-submit job from ``pipelines/`` (a script, not a package)."""
    spec = importlib.util.spec_from_file_location(f"job_{name}", PIPELINES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_session_arguments_default_to_spark_submits_master_and_a_directory():
    from churn.spark.session import add_session_arguments

    parser = argparse.ArgumentParser()
    add_session_arguments(parser)
    assert vars(parser.parse_args([])) == {"master": None, "layout": "directory"}
    given = parser.parse_args(["--master", "local[3]", "--layout", "file"])
    assert (given.master, given.layout) == ("local[3]", "file")
    with pytest.raises(SystemExit):
        parser.parse_args(["--layout", "table"])


#: Every path is a required argument of the jobs (the caller is their only home).
REQUIRED_PATHS = {
    "spark_features": [
        *("--params", "p.yaml", "--validated", "v", "--labels", "l.parquet"),
        *("--out", "f", "--catalog", "c.csv"),
    ],
    "spark_score": ["--params", "p.yaml", "--features", "f", "--model", "m", "--out", "s"],
}


@pytest.mark.parametrize("job", ["spark_features", "spark_score"])
def test_both_jobs_take_the_shared_session_arguments(job):
    paths = REQUIRED_PATHS[job]
    args = _job(job).parse_args([*paths, "--master", "local[3]", "--layout", "file"])
    assert (args.master, args.layout) == ("local[3]", "file")
    defaults = _job(job).parse_args(paths)
    assert (defaults.master, defaults.layout) == (None, "directory")


@pytest.mark.parametrize(
    ("requested", "under_spark_submit", "expected"),
    [("local[3]", False, "local[3]"), (None, False, "local[7]"), (None, True, None)],
)
def test_start_session_resolves_the_master_like_the_jobs_did(
    monkeypatch, requested, under_spark_submit, expected
):
    from churn.spark import session

    built: list[str | None] = []
    monkeypatch.setattr(session, "build_spark_session", lambda master: built.append(master))
    if under_spark_submit:
        monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "12345")
    else:
        monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    params = Params.model_validate({"features": {"spark": {"master": "local[7]"}}})
    session.start_session(argparse.Namespace(master=requested), params)
    assert built == [expected]
