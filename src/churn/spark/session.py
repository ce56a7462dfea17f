"""The Spark session for churn jobs: UTC everywhere, Arrow on, sized for local mode.

Also the command-line arguments every spark-submit job in ``pipelines/`` shares
(:func:`add_session_arguments`, :func:`start_session`), so the jobs build their session the
same way.

PySpark is imported inside the functions: importing this module starts no JVM.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import pandas as pd

from churn.errors import ChurnError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from churn.config import Params


def _local_cores(master: str | None) -> int | None:
    """Return the worker threads of a ``local[N]`` master (``None`` for a cluster master)."""
    if master is None:
        return None
    if master == "local":
        return 1
    match = re.fullmatch(r"local\[(\*|\d+)(?:,\s*\d+)?\]", master)
    if match is None:
        return None
    return (os.cpu_count() or 1) if match.group(1) == "*" else int(match.group(1))


def _local_driver_memory() -> str:
    """A local-mode JVM heap: 40% of physical memory, between 2 and 16 GiB."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return "4g"
    return f"{min(16, max(2, int(0.4 * physical / 2**30)))}g"


def resolve_master(requested: str | None, configured: str) -> str | None:
    """Pick the Spark master for a job: explicit request, else spark-submit's, else the config.

    Under ``spark-submit`` (which exports ``PYSPARK_GATEWAY_PORT`` to the Python driver) the
    master given to spark-submit must win, so ``None`` is returned and the builder leaves it
    alone; a plain ``python`` run falls back to ``features.spark.master``.
    """
    if requested:
        return requested
    return None if "PYSPARK_GATEWAY_PORT" in os.environ else configured


def build_spark_session(
    master: str | None = "local[2]",
    app_name: str = "churn",
    conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """Create (or reuse) a Spark session set up for churn: UTC everywhere, Arrow on, quiet.

    Time zones are pinned because Spark converts timestamps to the *session* time zone when it
    hands them to Python, and Python workers format and parse times in their *process* time
    zone: both must be UTC for a cutoff to mean the same instant on every machine.

    Local masters also bind the driver to 127.0.0.1 (no network needed), use few shuffle
    partitions (the default 200 mostly schedules empty tasks on a laptop), give the single
    local JVM 40% of the memory (2-16 GiB) and lift the cap on collected results.

    Args:
        master: Spark master URL (``local[2]``, ``local[*]``, ``spark://host:7077``, ``yarn``),
            or ``None`` to keep the one ``spark-submit`` was given. Static settings (master,
            memory) are ignored if a session already runs in this process.
        app_name: Application name shown by the cluster manager.
        conf: Extra Spark settings; they override the defaults set here (except the session
            time zone, which is always UTC).

    Returns:
        The active session, with ``spark.sql.session.timeZone=UTC``.
    """
    from pyspark.sql import SparkSession

    # Workers run `python3` from PATH unless told otherwise; in a venv that is the wrong
    # interpreter (no churn, different pandas). Respect an explicit choice.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    cores = _local_cores(master)
    if cores is not None:
        # Local Python workers descend from the JVM this process starts: they inherit its
        # environment. (Executors elsewhere get TZ from spark.executorEnv.TZ below.)
        os.environ["TZ"] = "UTC"
        time.tzset()
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    settings: dict[str, str] = {
        "spark.executorEnv.TZ": "UTC",
        "spark.executorEnv.PYSPARK_PYTHON": os.environ["PYSPARK_PYTHON"],
        "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # A silent fallback to the row-by-row path would hide a type problem and be 10x slower.
        "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
        # A grouped-map UDF receives a whole group as one Arrow batch; with 32-bit offsets the
        # blobs of one shard could not exceed 2 GiB in total. 64-bit ("large") types lift that.
        "spark.sql.execution.arrow.useLargeVarTypes": "true",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # Standard Parquet timestamps (int64 microseconds, UTC-adjusted) instead of the legacy
        # INT96 that other readers load as naive nanoseconds: pandas reads Spark's output back
        # as datetime64[us, UTC], like the local engine's files.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    }
    if cores is not None:
        settings.update(
            {
                "spark.sql.shuffle.partitions": str(max(2, 2 * cores)),
                "spark.default.parallelism": str(max(2, 2 * cores)),
                "spark.driver.host": "127.0.0.1",
                "spark.driver.bindAddress": "127.0.0.1",
                # One JVM is driver and executors, and the local engine collects the whole
                # feature table through it (the 1 GiB default result cap is ~1M feature rows).
                "spark.driver.memory": _local_driver_memory(),
                "spark.driver.maxResultSize": "0",
            }
        )
    settings.update(conf or {})
    settings["spark.sql.session.timeZone"] = "UTC"

    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    # getOrCreate() hands back a running session with its static settings unchanged; the SQL
    # time zone is a runtime setting, so enforce it on a reused session too.
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.sparkContext.setLogLevel("WARN")
    return spark


def check_session_utc(spark: SparkSession) -> None:
    """Raise if the session or its Python workers do not run in UTC.

    Args:
        spark: The session to check (runs one tiny Spark job).

    Raises:
        ChurnError: If ``spark.sql.session.timeZone`` is not UTC, or a worker's local time
            differs from UTC.
    """
    zone = spark.conf.get("spark.sql.session.timeZone")
    if zone != "UTC":
        raise ChurnError(f"spark.sql.session.timeZone is {zone!r}; churn requires 'UTC'")
    offsets = worker_utc_offsets(spark)
    if any(offset != 0 for offset in offsets):
        raise ChurnError(
            f"Spark Python workers run with UTC offsets {sorted(set(offsets))} seconds; set the "
            "executor environment TZ=UTC (build_spark_session does)"
        )


def worker_utc_offsets(spark: SparkSession, tasks: int = 2) -> list[int]:
    """Return the local-time UTC offset (seconds) seen by Python workers, one per task."""

    def offset(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            yield pd.DataFrame({"offset": [time.localtime().tm_gmtoff] * len(batch)})

    frame = spark.range(tasks, numPartitions=tasks).mapInPandas(offset, "offset long")
    return [int(row.offset) for row in frame.collect()]


def add_session_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments every Spark job shares: its master and its output layout.

    ``--master`` defaults to ``None``: the master spark-submit was given, else
    ``features.spark.master`` (see :func:`resolve_master`). ``--layout`` is the runners'
    :data:`~churn.spark.storage.OutputLayout`; jobs default to ``directory`` (cluster scale).

    Args:
        parser: The job's parser; gains ``--master`` and ``--layout``.
    """
    parser.add_argument(
        "--layout",
        choices=["directory", "file"],
        default="directory",
        help="'directory': executors write a Parquet directory; 'file': one file via the driver",
    )
    parser.add_argument(
        "--master",
        default=None,
        help="Spark master; default: the one spark-submit was given (else features.spark.master)",
    )


def start_session(args: argparse.Namespace, params: Params) -> SparkSession:
    """Build the job's session from ``--master`` (:func:`add_session_arguments`) and ``params``.

    Args:
        args: Parsed arguments with ``master``.
        params: Pipeline parameters; ``features.spark.master`` is the fallback master.

    Returns:
        The session (:func:`build_spark_session`).
    """
    return build_spark_session(resolve_master(args.master, params.features.spark.master))
