"""spark-submit entry point: score a features Parquet with the MLflow model on Spark.

Thin on purpose: argument parsing, the session, and one call to
:func:`churn.spark.scoring.run_score_spark`, which applies the registered model (its verified
ChurnModel data files, never a pickle, scored by the same
:func:`churn.model.scoring.score_frame` as ``churn score``) per Arrow batch on the executors and
ranks the whole population into risk deciles. Every path is a required
argument: the caller is the only home of paths, as ``dvc.yaml`` is for the CLI.

Example::

    spark-submit --master yarn --py-files churn.zip pipelines/spark_score.py \\
        --params params.yaml --features s3a://bucket/features \\
        --model models:/churn@champion --out s3a://bucket/scores

``MLFLOW_TRACKING_URI`` (default ``sqlite:///mlflow.db``) resolves ``models:/`` URIs on the
driver; the model is then broadcast to the executors, which need no MLflow server.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from churn import load_params
from churn.spark.scoring import run_score_spark
from churn.spark.session import add_session_arguments, start_session


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Paths are required, like the CLI's: the caller (a scheduler, dvc.yaml) is their only home.
    parser.add_argument("--params", type=Path, required=True, help="parameter file")
    parser.add_argument("--features", required=True, help="features Parquet")
    parser.add_argument(
        "--model", required=True, help="MLflow URI (models:/churn@champion) or model directory"
    )
    parser.add_argument("--out", required=True, help="scores output")
    add_session_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the job."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    params = load_params(args.params)
    spark = start_session(args, params)
    summary = run_score_spark(
        params, args.features, args.model, args.out, spark=spark, layout=args.layout
    )
    logging.info("done: %s", summary)


if __name__ == "__main__":
    main()
