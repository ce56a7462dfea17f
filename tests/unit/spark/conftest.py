"""Fixtures of the Spark tests: one real local PySpark session (``local[2]``) for the run."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def spark():
    """One local session shared by every Spark test module (starting one takes seconds)."""
    pytest.importorskip("pyspark")  # the optional churn[spark] extra
    from churn.spark.session import build_spark_session

    session = build_spark_session("local[2]", app_name="churn-tests")
    yield session
    session.stop()
