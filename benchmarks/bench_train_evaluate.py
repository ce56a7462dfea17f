"""Benchmark: where ``churn train`` and ``churn evaluate`` spend their time, by phase.

Not part of the test suite. Usage::

    python benchmarks/bench_train_evaluate.py --features data/features/features.parquet \\
        --catalog reports/feature_catalog.csv --truth data/simulated/truth \\
        --labels data/labels/labels.parquet [--params params.yaml]

``--labels`` (as ``dvc.yaml`` passes it) adds the survival head to train and the model-form
comparison to evaluate; without it both stages run as in entity mode.

Runs the real train and evaluate runners on an existing features file in a scratch folder
with its own SQLite MLflow store, and wraps their main phases (reading, the LightGBM fit, the
baseline, MLflow logging, the backtest) to report each phase's wall time and CPU time. CPU
time (this process's threads plus finished worker processes) is the figure to compare on a
shared machine: wall time grows with the load, CPU time much less. The ratios of the issue:
train / LightGBM fit alone (goal <= 1.5) and evaluate / train (goal <= 1). Each phase's peak
resident memory (this process only, sampled every 20 ms from ``/proc/self/statm``; worker
processes are not included) shows which phase sets the stage's peak.

With ``--sweep-rates 1,0.5,0.25,0.1`` it instead runs only the train core
(:func:`churn.model.fit.train_churn_models`, no MLflow) once per negative sampling rate (and per
``--seeds``) and prints the test ROC AUC, PR AUC, ECE, top-decile lift and the LightGBM fit's CPU
seconds of each: the measurement ``train.negative_sample_rate`` was chosen from.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from churn.stages.fit_memory import read_own_memory

ROOT = Path(__file__).resolve().parents[1]

#: (module, attribute, phase name) wrapped for timing; a phase's figures include its callees.
PHASES = (
    ("churn.io", "read_frame", "read features"),
    ("churn.stages.train", "read_training_rows", "train: read the split's rows"),
    ("churn.model.fit", "fit_and_score_validation", "classifier fit (LightGBM, calibration)"),
    ("churn.model.fit", "train_churn_models", "train core (split, guards, fit, metrics)"),
    ("lightgbm", "train", "LightGBM fit"),
    ("churn.model.baseline", "fit_baseline", "baseline fit"),
    ("churn.model.fit", "compute_single_feature_aucs", "single-feature AUCs"),
    ("churn.stages.train", "fit_head", "survival head (churn times, fit)"),
    ("churn.model.horizon_evaluation", "attach_churn_times", "attach churn times"),
    ("churn.tracking.runs", "log_training_run", "MLflow: log, register, gate"),
    ("churn.tracking.runs", "log_datasets", "MLflow: dataset inputs"),
    ("churn.tracking.runs", "build_model_signature", "MLflow: signature"),
    ("mlflow.pyfunc", "log_model", "MLflow: log and register the model"),
    ("churn.tracking.runs", "gate_model_version", "MLflow: gate"),
    ("mlflow", "log_artifacts", "MLflow: run artifacts"),
    ("mlflow.models.utils", "_validate_serving_input", "MLflow: input example served"),
    ("churn.stages.train", "download_champion_export", "MLflow: champion export download"),
    ("churn.stages.train", "write_calibration_plot", "calibration plot"),
    ("churn.stages.evaluate", "read_evaluation_rows", "evaluate: read keys, test, comparison"),
    ("churn.stages.evaluate", "evaluate_models", "evaluate core (test metrics)"),
    ("churn.stages.evaluate", "start_model_form_comparison", "evaluate: model forms, set-up"),
    ("churn.stages.evaluate", "measure_head_on_test", "evaluate: survival head on test"),
    ("churn.stages.evaluate", "score_exported_cutoffs", "backtest: exported model's cutoffs"),
    ("churn.stages.evaluate", "refit_backtest", "backtest: refits (workers or here)"),
    ("churn.stages.evaluate", "collect_backtest_refits", "backtest: refits beside the metrics"),
    ("churn.stages.fit_workers", "refit_backtest_from_file", "backtest refit in process"),
    ("churn.stages.evaluate", "finish_model_form_comparison", "evaluate: model forms, results"),
    ("churn.tracking.runs", "connect_training_run", "evaluate: MLflow import and store"),
    ("churn.tracking.runs", "log_run_metrics", "evaluate: MLflow metrics"),
)


def cpu_seconds() -> float:
    """CPU seconds of this process (all threads) and of its finished child processes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class RssSampler:
    """Samples this process's resident memory every ``interval`` seconds in a daemon thread.

    Linux only (``/proc/self/statm``); elsewhere it records nothing.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> int | None:
        return read_own_memory()  # the stages' own reading of /proc/self/statm

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self._read()
            if rss is not None:
                self.samples.append((time.perf_counter(), rss))
            self._stop.wait(self.interval)

    def start(self) -> RssSampler:
        """Start sampling; returns ``self``."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join()

    def current(self) -> int:
        """Return the resident bytes now (0 where they cannot be read)."""
        return self._read() or 0

    def peak(self, start: float, stop: float) -> int:
        """Return the highest resident bytes sampled between ``start`` and ``stop``, and now
        (called as a phase ends, so its last moment counts even between two samples)."""
        window = [rss for at, rss in list(self.samples) if start <= at <= stop]
        return max([self._read() or 0, *window])


class PhaseClock:
    """Accumulates wall and CPU seconds per phase around wrapped functions, and each phase's
    peak resident memory when given an :class:`RssSampler`."""

    def __init__(self, sampler: RssSampler | None = None) -> None:
        self.totals: dict[str, list[float]] = {}
        self.calls: dict[str, int] = {}
        self.peaks: dict[str, int] = {}
        self.growth: dict[str, int] = {}
        self.sampler = sampler

    def _rss_now(self) -> int:
        return 0 if self.sampler is None else self.sampler.current()

    def _record_peak(self, phase: str, start: float, rss_at_start: int) -> None:
        if self.sampler is not None:
            peak = self.sampler.peak(start, time.perf_counter())
            self.peaks[phase] = max(self.peaks.get(phase, 0), peak)
            # What the phase itself added on top of what was resident when it began.
            self.growth[phase] = max(self.growth.get(phase, 0), peak - rss_at_start)

    def wrap(self, function: Callable[..., Any], phase: str) -> Callable[..., Any]:
        """Return ``function`` timed under ``phase`` (re-entrant calls counted once)."""
        depth = {"n": 0}

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if depth["n"]:
                return function(*args, **kwargs)
            depth["n"] += 1
            self.calls[phase] = self.calls.get(phase, 0) + 1
            wall, cpu, rss = time.perf_counter(), cpu_seconds(), self._rss_now()
            try:
                return function(*args, **kwargs)
            finally:
                depth["n"] -= 1
                totals = self.totals.setdefault(phase, [0.0, 0.0])
                totals[0] += time.perf_counter() - wall
                totals[1] += cpu_seconds() - cpu
                self._record_peak(phase, wall, rss)

        return timed

    @contextlib.contextmanager
    def measure(self, phase: str) -> Iterator[None]:
        """Time a block under ``phase``."""
        wall, cpu, rss = time.perf_counter(), cpu_seconds(), self._rss_now()
        yield
        self.totals[phase] = [time.perf_counter() - wall, cpu_seconds() - cpu]
        self._record_peak(phase, wall, rss)


def install_wrappers(clock: PhaseClock) -> None:
    """Wrap every phase function where the runners look it up."""
    for module_name, attribute, phase in PHASES:
        module = importlib.import_module(module_name)
        setattr(module, attribute, clock.wrap(getattr(module, attribute), phase))


def run(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """Run train then evaluate in ``scratch`` and return the phase table and ratios."""
    import yaml

    from churn.config import parse_params

    raw = yaml.safe_load(Path(args.params).read_text()) or {}
    raw.setdefault("train", {})["create_tracking_store"] = True
    if args.num_threads is not None:
        raw["train"]["num_threads"] = args.num_threads
    params = parse_params(raw)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{scratch / 'mlflow.db'}"
    clock = PhaseClock(RssSampler().start())
    labels = Path(args.labels) if args.labels else None
    install_wrappers(clock)
    from churn.stages.evaluate import run_evaluate
    from churn.stages.train import run_train
    from churn.tracking.store import connect_tracking, quiet_mlflow

    with quiet_mlflow():
        connect_tracking()  # create the store outside the timings: a one-off per project
    if args.train_only:
        # A first model, so the timed run below is gated against a champion (the usual case).
        run_train(
            params,
            Path(args.features),
            scratch / "models" / "churn",
            scratch / "reports" / "train.json",
            Path(args.catalog),
            challenger_dir=scratch / "models" / "challenger",
            model_record_path=scratch / "reports" / "model.json",
            labels_path=labels,
        )
        clock.totals.clear()
        clock.calls.clear()
        clock.peaks.clear()
        clock.growth.clear()
    with clock.measure("train (stage)"):
        run_train(
            params,
            Path(args.features),
            scratch / "models" / "churn",
            scratch / "reports" / "train.json",
            Path(args.catalog),
            challenger_dir=scratch / "models" / "challenger",
            model_record_path=scratch / "reports" / "model.json",
            labels_path=labels,
        )
    # In-process backtest refits (one worker or none) also call LightGBM: keep train's own.
    fit_cpu = clock.totals["LightGBM fit"][1]
    if args.train_only:
        return {
            "phases": clock.totals,
            "calls": clock.calls,
            "peak_rss": clock.peaks,
            "rss_growth": clock.growth,
            "train_cpu_over_fit_cpu": clock.totals["train (stage)"][1] / fit_cpu,
        }
    with clock.measure("evaluate (stage)"):
        run_evaluate(
            params,
            Path(args.features),
            scratch / "models" / "churn",
            Path(args.truth) if args.truth else None,
            scratch / "reports" / "metrics.json",
            scratch / "reports" / "plots",
            labels_path=labels,
        )
    metrics = json.loads((scratch / "reports" / "metrics.json").read_text())
    totals = clock.totals
    return {
        "phases": totals,
        "calls": clock.calls,
        "peak_rss": clock.peaks,
        "rss_growth": clock.growth,
        "train_cpu_over_fit_cpu": totals["train (stage)"][1] / fit_cpu,
        "evaluate_cpu_over_train_cpu": totals["evaluate (stage)"][1] / totals["train (stage)"][1],
        "evaluate_wall_over_train_wall": totals["evaluate (stage)"][0] / totals["train (stage)"][0],
        "test_roc_auc": metrics["test"]["roc_auc"],
        "metrics": metrics,  # the whole metrics.json, to compare two versions' results
        "backtest": [
            {k: entry.get(k) for k in ("cutoff", "roc_auc", "pr_auc", "skipped")}
            for entry in metrics["backtest"]
        ],
    }


def sweep_negative_rates(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Fit the model once per (seed, rate); return test metrics and the fit's CPU.

    The split and the dead-feature drop are done once, as :func:`train_churn_models` does them;
    each fit is :func:`fit_churn_model` (what train and the backtest refits call), so the
    parts that do not depend on the rate (single-feature AUCs, the baseline) are not repeated.
    """
    import lightgbm
    import yaml

    from churn.config import parse_params
    from churn.domain.catalog import read_catalog, select_feature_catalog
    from churn.io import read_frame
    from churn.model import fit
    from churn.model.metrics import TOP_DECILE, compute_ece, compute_lift, summarize_predictions
    from churn.model.split import label_array, split_by_time

    clock = PhaseClock()
    lightgbm.train = clock.wrap(lightgbm.train, "LightGBM fit")
    raw = yaml.safe_load(Path(args.params).read_text()) or {}
    if args.num_threads is not None:
        raw.setdefault("train", {})["num_threads"] = args.num_threads
    features = read_frame(Path(args.features))
    params = parse_params(raw)
    split = split_by_time(features, params.train, params.label, mode=params.ingest.mode)
    train, validation, test = (
        features.iloc[rows] for rows in (split.train, split.validation, split.test)
    )
    del features
    catalog = select_feature_catalog(train, read_catalog(Path(args.catalog)))
    dead = list(fit.find_dead_features(train, list(catalog["name"])))
    train, validation, test = (part.drop(columns=dead) for part in (train, validation, test))
    catalog = catalog[~catalog["name"].isin(dead)].reset_index(drop=True)
    labels = label_array(test)
    rows = []
    for seed in [int(value) for value in args.seeds.split(",")]:
        for rate in [float(value) for value in args.sweep_rates.split(",")]:
            raw["train"] = {**raw.get("train", {}), "seed": seed, "negative_sample_rate": rate}
            cfg = parse_params(raw).train
            clock.totals.pop("LightGBM fit", None)
            wall, cpu = time.perf_counter(), cpu_seconds()
            model = fit.fit_churn_model(train, validation, catalog, cfg)
            model_wall, model_cpu = time.perf_counter() - wall, cpu_seconds() - cpu
            scores = model.predict_proba(test)
            summary = summarize_predictions(labels, scores)
            rows.append(
                {
                    "seed": seed,
                    "rate": rate,
                    "train_rows": model.metadata["n_train"],
                    "fitted_rows": model.metadata["n_train_fitted"],
                    "best_iteration": model.metadata["best_iteration"],
                    "roc_auc": summary["roc_auc"],
                    "pr_auc": summary["pr_auc"],
                    "ece": compute_ece(labels, scores, params.evaluate.calibration_bins),
                    "lift_top_decile": compute_lift(labels, scores, TOP_DECILE),
                    "fit_wall": clock.totals["LightGBM fit"][0],
                    "fit_cpu": clock.totals["LightGBM fit"][1],
                    "model_wall": model_wall,
                    "model_cpu": model_cpu,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def print_sweep(rows: list[dict[str, Any]]) -> None:
    """Print the sweep as a Markdown table."""
    print("| seed | r | fitted rows | trees | ROC AUC | PR AUC | ECE | lift@10% | fit CPU s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['seed']} | {row['rate']:g} | {row['fitted_rows']:,} of {row['train_rows']:,} "
            f"| {row['best_iteration']} | {row['roc_auc']:.4f} | {row['pr_auc']:.4f} "
            f"| {row['ece']:.4f} | {row['lift_top_decile']:.2f} | {row['fit_cpu']:.1f} |"
        )


def main() -> None:
    """Parse arguments, run the benchmark in a scratch folder, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", required=True)
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--truth", default=None)
    parser.add_argument("--labels", default=None, help="labels Parquet (survival head)")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--num-threads", type=int, default=None, help="override train.num_threads")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument(
        "--train-only", action="store_true", help="run train twice (first model, then gated)"
    )
    parser.add_argument(
        "--sweep-rates", default=None, help="e.g. 1,0.5,0.25,0.1: sweep negative_sample_rate"
    )
    parser.add_argument("--seeds", default="7", help="train.seed values of the sweep, e.g. 7,8")
    args = parser.parse_args()
    if args.sweep_rates:
        rows = sweep_negative_rates(args)
        load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {load}")
        print_sweep(rows)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
        return
    scratch = Path(tempfile.mkdtemp(prefix="bench_train_evaluate_"))
    try:
        result = run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {load}")
    print(
        f"{'phase':<44} {'calls':>5} {'wall s':>8} {'CPU s':>8} {'peak RSS MB':>12} {'added MB':>9}"
    )
    for phase, (wall, cpu) in result["phases"].items():
        calls = result["calls"].get(phase, 1)
        peak = result["peak_rss"].get(phase, 0) / 2**20
        added = result["rss_growth"].get(phase, 0) / 2**20
        print(f"{phase:<44} {calls:>5} {wall:8.1f} {cpu:8.1f} {peak:12,.0f} {added:9,.0f}")
    if args.train_only:
        print(f"train CPU / LightGBM fit CPU: {result['train_cpu_over_fit_cpu']:.2f}")
        return
    print(f"train CPU / LightGBM fit CPU: {result['train_cpu_over_fit_cpu']:.2f} (goal <= 1.5)")
    print(f"evaluate CPU / train CPU: {result['evaluate_cpu_over_train_cpu']:.2f}")
    print(f"evaluate wall / train wall: {result['evaluate_wall_over_train_wall']:.2f} (goal <= 1)")
    print(f"test ROC AUC {result['test_roc_auc']:.4f}; backtest {result['backtest']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
