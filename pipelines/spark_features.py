"""spark-submit entry point: ``churn features`` on a Spark cluster (or local mode).

Thin on purpose: argument parsing, the session, and one call to
:func:`churn.spark.features.run_features_spark`. The features are computed by the same
:func:`churn.features.build.build_features` as the local engine, one customer shard per task.

Example (cluster; ship churn to the executors as a wheel or zip)::

    spark-submit --master yarn --py-files churn.zip pipelines/spark_features.py \\
        --params params.yaml --validated s3a://bucket/validated \\
        --labels s3a://bucket/labels/labels.parquet --out s3a://bucket/features \\
        --catalog reports/feature_catalog.csv --shards 400

Local mode: ``python pipelines/spark_features.py --master local[2] ...``. Every path is a
required argument: the caller is the only home of paths, as ``dvc.yaml`` is for the CLI.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from churn import load_params
from churn.spark.features import run_features_spark
from churn.spark.session import add_session_arguments, start_session


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Paths are required, like the CLI's: the caller (a scheduler, dvc.yaml) is their only home.
    parser.add_argument("--params", type=Path, required=True, help="parameter file")
    parser.add_argument("--validated", required=True, help="validated tables dir/URI")
    parser.add_argument("--labels", required=True, help="labels Parquet")
    parser.add_argument("--out", required=True, help="features output")
    parser.add_argument("--catalog", type=Path, required=True, help="feature catalog CSV")
    add_session_arguments(parser)
    parser.add_argument("--shards", type=int, default=None, help="override features.spark.shards")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the job."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    # The override goes through the loader, so it meets the same rules as params.yaml.
    params = load_params(args.params, {"features.spark.shards": args.shards})
    spark = start_session(args, params)
    summary = run_features_spark(
        params,
        args.validated,
        args.labels,
        args.out,
        args.catalog,
        spark=spark,
        layout=args.layout,
    )
    logging.info("done: %s", summary)


if __name__ == "__main__":
    main()
