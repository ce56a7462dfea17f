"""Benchmark: the local engine (DuckDB in process) vs the Spark engine in local mode.

Not part of the test suite. Usage::

    python benchmarks/bench_spark.py --customers 100000 [--cutoffs 3] [--shards 8]
        [--master local[2]] [--data-dir DIR] [--skip-score] [--skip-check]

Data: the synthetic validated tables of ``bench_features.py`` (same generator, same sizes:
about 100 usage events, 10 post-sale and 5 pre-sale touches, 3 tickets and 2 NPS responses per
customer), written as Parquet, and the active population at the last ``--cutoffs`` month starts.

Each timed task runs in a fresh interpreter (so memory and warm-up are its own), on the same
inputs:

* features, local: read the Parquet files with pandas, then
  :func:`churn.features.build.build_features` (what ``churn features`` does);
* features, Spark: :func:`churn.spark.features.build_features_spark` from the Parquet paths,
  collected to pandas with the local dtypes (what ``run_features_spark(layout="file")`` does): a
  first (cold) run, then a second run on the warm session; session start-up is reported apart;
* scoring (unless ``--skip-score``), the last cutoff: ``finalize_scores(score_frame(...))``
  locally vs :func:`churn.spark.scoring.score_spark` from a features Parquet file, cold then warm,
  with a small LightGBM model (100 trees, depth 5) trained here on the features (synthetic label).

Unless ``--skip-check``, the outputs are compared column by column: the Spark results must
equal the local ones (same rows and order, numbers within 1e-9).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_features import generate, population  # the sibling benchmark's data


def timed(func, *args, **kwargs):
    """Return ``(result, wall seconds)``."""
    started = time.perf_counter()
    result = func(*args, **kwargs)
    return result, time.perf_counter() - started


def write_data(data_dir: Path, customers: int, cutoffs: int, usage_events: float) -> None:
    """Generate the tables and the population once into ``data_dir`` (reused when present)."""
    if (data_dir / "population.parquet").exists():
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    sizes, kept = {}, {}
    for name, frame in generate(customers, usage_per_customer=usage_events):
        frame.to_parquet(data_dir / f"{name}.parquet", index=False)
        sizes[name] = len(frame)
        if name in ("customers", "subscriptions", "subscription_changes"):
            kept[name] = frame
        del frame
    keys = population(kept, cutoffs)
    keys.to_parquet(data_dir / "population.parquet", index=False)
    print(
        f"generated in {time.perf_counter() - started:.0f}s: "
        + ", ".join(f"{k} {v:,}" for k, v in sizes.items())
        + f"; population {len(keys):,} rows"
    )


def table_paths(data_dir: Path) -> dict[str, Path]:
    """Table name -> Parquet path (everything but the population)."""
    return {p.stem: p for p in sorted(data_dir.glob("*.parquet")) if p.stem != "population"}


def features_local(data_dir: Path, cfg) -> pd.DataFrame:
    """What ``churn features`` does with the local engine: pandas reads, DuckDB computes."""
    from churn import build_features

    tables = {name: pd.read_parquet(path) for name, path in table_paths(data_dir).items()}
    keys = pd.read_parquet(data_dir / "population.parquet")
    return build_features(tables, keys, cfg).frame


def features_spark(spark, data_dir: Path, cfg) -> pd.DataFrame:
    """The Spark engine from the Parquet paths, collected with the local dtypes."""
    from churn.spark.features import build_features_spark

    paths = {name: str(path) for name, path in table_paths(data_dir).items()}
    return build_features_spark(spark, paths, str(data_dir / "population.parquet"), cfg).frame


def train_model(features: pd.DataFrame, catalog: pd.DataFrame, out: Path) -> None:
    """Fit a small LightGBM ChurnModel on the features (synthetic label) and save it."""
    import lightgbm as lgb

    from churn import ChurnModel
    from churn.model.artifact import Calibrator, learn_categorical_levels, prepare_features

    rng = np.random.default_rng(0)
    names = list(catalog["name"])
    categorical = list(catalog.loc[catalog["kind"] == "categorical", "name"])
    numeric = features[[n for n in names if n not in categorical]].to_numpy(dtype=float)
    signal = np.nan_to_num((numeric - np.nanmean(numeric, 0)) / (np.nanstd(numeric, 0) + 1e-9))
    weights = rng.normal(0, 0.3, signal.shape[1]) * (rng.random(signal.shape[1]) < 0.2)
    label = (rng.random(len(features)) < 1 / (1 + np.exp(2.5 - signal @ weights))).astype(int)
    levels = learn_categorical_levels(features, categorical)
    matrix = prepare_features(features, tuple(names), levels)
    dataset = lgb.Dataset(
        matrix, label, feature_name=names, categorical_feature=[names.index(c) for c in categorical]
    )
    params = {"objective": "binary", "num_leaves": 15, "max_depth": 5, "learning_rate": 0.1}
    booster = lgb.train({**params, "verbose": -1, "seed": 7}, dataset, num_boost_round=100)
    model = ChurnModel(
        booster=booster,
        feature_names=tuple(names),
        categorical_levels=levels,
        calibrator=Calibrator.fit(booster.predict(matrix, raw_score=True), label, "isotonic"),
        catalog=catalog,
        typical_values={
            n: features[n].mode().iloc[0] if n in categorical else float(features[n].median())
            for n in names
        },
    )
    model.save(out)


def compare_files(got_path: Path, want_path: Path) -> str:
    """Compare two Parquet files column by column (bounded memory); 'equal' or the difference."""
    got_schema, want_schema = pq.read_schema(got_path), pq.read_schema(want_path)
    if got_schema.names != want_schema.names:
        return f"DIFFERENT columns: {got_schema.names[:5]}... vs {want_schema.names[:5]}..."
    for name in want_schema.names:
        left = pd.read_parquet(got_path, columns=[name])[name]
        right = pd.read_parquet(want_path, columns=[name])[name]
        if len(left) != len(right) or left.dtype != right.dtype:
            return f"DIFFERENT in {name}: {len(left)} {left.dtype} vs {len(right)} {right.dtype}"
        if right.dtype == "float64":
            same_nan = bool((left.isna() == right.isna()).all())
            gap = float(np.nanmax(np.abs(left.to_numpy() - right.to_numpy()), initial=0.0))
            if not same_nan or gap > 1e-9:
                return f"DIFFERENT in {name}: max gap {gap:.3g}, same NaN {same_nan}"
        elif not left.equals(right):
            return f"DIFFERENT in {name}"
    return "equal"


def run_child(task: str, data_dir: Path, work: Path, args: argparse.Namespace) -> dict:
    """Run one timed task in this process (called in a fresh subprocess) and return timings."""
    from churn import FeaturesConfig
    from churn.io import write_parquet

    cfg = FeaturesConfig()
    cfg = cfg.model_copy(update={"spark": cfg.spark.model_copy(update={"shards": args.shards})})
    if task == "features-local":
        frame, seconds = timed(features_local, data_dir, cfg)
        write_parquet(frame, work / "features_local.parquet")
        return {"seconds": seconds, "rows": len(frame), "columns": frame.shape[1]}
    if task == "score-local":
        from churn import ChurnModel, finalize_scores, score_frame

        latest = pd.read_parquet(work / "latest.parquet")
        model = ChurnModel.load(work / "model")
        scores, seconds = timed(lambda: finalize_scores(score_frame(model, latest, 3)))
        write_parquet(scores, work / "scores_local.parquet")
        return {"seconds": seconds, "rows": len(scores)}

    from churn.spark import build_spark_session, score_dtypes, score_spark, spark_to_pandas

    spark, start = timed(build_spark_session, args.master, "churn-bench")
    if task == "features-spark":
        _, cold = timed(features_spark, spark, data_dir, cfg)
        frame, warm = timed(features_spark, spark, data_dir, cfg)
        write_parquet(frame, work / "features_spark.parquet")
    else:

        def scores() -> pd.DataFrame:
            result = score_spark(spark, str(work / "latest.parquet"), work / "model", 3)
            return spark_to_pandas(result, score_dtypes(result))

        _, cold = timed(scores)
        frame, warm = timed(scores)
        write_parquet(frame, work / "scores_spark.parquet")
    spark.stop()
    return {"session_start": start, "cold": cold, "seconds": warm, "rows": len(frame)}


def child(task: str, data_dir: Path, work: Path, args: argparse.Namespace) -> dict:
    """Run ``task`` in a fresh interpreter, so each engine's memory and warm-up are its own."""
    command = [
        sys.executable,
        __file__,
        "--run",
        task,
        "--data-dir",
        str(data_dir),
        "--work",
        str(work),
        "--shards",
        str(args.shards),
        "--master",
        args.master,
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{task} failed (exit {out.returncode}):\n{out.stderr[-5000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--cutoffs", type=int, default=3, help="monthly cutoffs (population)")
    parser.add_argument("--usage-events", type=float, default=100, help="per customer (mean)")
    parser.add_argument("--shards", type=int, default=8, help="features.spark.shards")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--data-dir", type=Path, help="keep the generated data here (reused)")
    parser.add_argument("--skip-score", action="store_true")
    parser.add_argument("--skip-check", action="store_true", help="do not compare the results")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_child(args.run, args.data_dir, args.work, args)))
        return

    print(
        f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f} master={args.master} "
        f"shards={args.shards}"
    )
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench_spark_") as tmp:
        work = Path(tmp)
        data_dir = args.data_dir or work / "data"
        write_data(data_dir, args.customers, args.cutoffs, args.usage_events)

        local = child("features-local", data_dir, work, args)
        print(f"features local: {local}")
        spark = child("features-spark", data_dir, work, args)
        print(f"features spark: {spark}")
        if not args.skip_check:
            check = compare_files(work / "features_spark.parquet", work / "features_local.parquet")
            print("features spark vs local:", check)
        rows.append(("features, cold Spark run", local["seconds"], spark["cold"]))
        rows.append(("features, warm session", local["seconds"], spark["seconds"]))

        if not args.skip_score:
            from churn import FeaturesConfig, build_features

            features = pq.read_table(work / "features_local.parquet")
            latest_cutoff = pc.max(features.column("cutoff"))
            latest = features.filter(pc.equal(features.column("cutoff"), latest_cutoff))
            del features
            latest = latest.to_pandas()
            latest.to_parquet(work / "latest.parquet", index=False)
            catalog = build_features(
                {n: pd.read_parquet(p).head(0) for n, p in table_paths(data_dir).items()},
                pd.read_parquet(data_dir / "population.parquet").head(1),
                FeaturesConfig(),
            ).catalog
            _, fit = timed(train_model, latest, catalog, work / "model")
            print(f"model fitted on {len(latest):,} rows in {fit:.0f}s")
            del latest
            score_local = child("score-local", data_dir, work, args)
            print(f"scoring local: {score_local}")
            score_spark = child("score-spark", data_dir, work, args)
            print(f"scoring spark: {score_spark}")
            if not args.skip_check:
                check = compare_files(work / "scores_spark.parquet", work / "scores_local.parquet")
                print("scores spark vs local:", check)
            rows.append(
                ("scoring one cutoff, warm session", score_local["seconds"], score_spark["seconds"])
            )

    print()
    print(
        f"| work ({args.customers:,} customers) | local (DuckDB) s | Spark {args.master} s |"
        " Spark / local |"
    )
    print("|---|---:|---:|---:|")
    for work_name, local_s, spark_s in rows:
        print(f"| {work_name} | {local_s:.1f} | {spark_s:.1f} | {spark_s / local_s:.1f}x |")


if __name__ == "__main__":
    main()
