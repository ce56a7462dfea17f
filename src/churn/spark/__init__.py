"""Scale-out on Apache Spark with the same code: features and scores computed by Spark workers.

Nothing here re-implements a feature or a score; Spark only moves data and runs the package's
own functions:

* **Features** (:mod:`churn.spark.features`): every customer shard runs the *same*
  :func:`churn.features.build.build_features` in a Spark worker (:mod:`churn.spark.shards`
  routes, packs and unpacks the shards), so the result equals the local engine's.
* **Scores** (:mod:`churn.spark.scoring`): the ChurnModel data files are broadcast and scored
  per Arrow batch; the risk decile is a window over the scored rows.

Underneath: :mod:`churn.spark.session` (the UTC session and the jobs' shared arguments),
:mod:`churn.spark.arrow` (exact pandas <-> Arrow <-> Spark dtypes) and
:mod:`churn.spark.storage` (table inputs, local paths and URIs, atomic Parquet directories).

PySpark is an optional dependency (``pip install churn[spark]``): it is imported inside the
functions, and importing this package starts no JVM and no session.
"""

from churn.spark.arrow import (
    arrow_to_pandas,
    coerce_dtypes,
    pandas_dtypes_of_parquet,
    pandas_to_arrow,
    spark_to_pandas,
)
from churn.spark.features import (
    SparkFeatureResult,
    build_features_spark,
    read_validated_tables,
    run_features_spark,
)
from churn.spark.scoring import run_score_spark, score_dtypes, score_spark, select_scoring_rows
from churn.spark.session import (
    add_session_arguments,
    build_spark_session,
    check_session_utc,
    resolve_master,
    start_session,
    worker_utc_offsets,
)
from churn.spark.shards import (
    PACK_CHUNK_ROWS,
    POPULATION_KEY,
    ROW_COLUMN,
    SHARD_COLUMN,
    ShardFunction,
    collect_rows,
    map_shards,
    shard_of,
    shard_routing,
    sort_rows,
)
from churn.spark.storage import OutputLayout, TableInput, path_exists, write_spark_parquet

__all__ = [
    "PACK_CHUNK_ROWS",
    "POPULATION_KEY",
    "ROW_COLUMN",
    "SHARD_COLUMN",
    "OutputLayout",
    "ShardFunction",
    "SparkFeatureResult",
    "TableInput",
    "add_session_arguments",
    "arrow_to_pandas",
    "build_features_spark",
    "build_spark_session",
    "check_session_utc",
    "coerce_dtypes",
    "collect_rows",
    "map_shards",
    "pandas_dtypes_of_parquet",
    "pandas_to_arrow",
    "path_exists",
    "read_validated_tables",
    "resolve_master",
    "run_features_spark",
    "run_score_spark",
    "score_dtypes",
    "score_spark",
    "select_scoring_rows",
    "shard_of",
    "shard_routing",
    "sort_rows",
    "spark_to_pandas",
    "start_session",
    "worker_utc_offsets",
    "write_spark_parquet",
]
