"""Benchmark: the DuckDB features core vs its floor and vs plain pandas, on the same data.

Not part of the test suite. Usage::

    python benchmarks/bench_features.py --customers 100000 [--cutoffs 3] [--skip-pandas]

It generates synthetic validated tables directly (a quick vectorised generator: volume, not
realism), writes them to a temporary directory as Parquet, then runs three jobs, each in a fresh
subprocess so that its CPU time and peak resident memory are its own:

* ``core``: what the features stage does for these files: compute every feature with
  :func:`churn.features.build.write_features` (DuckDB scans the Parquet files; only
  ``customers`` and the population are read into pandas) and stream the features Parquet.
* ``floor``: the least any features run must do: one DuckDB scan of each of the same Parquet
  files (every table the features read), computing per customer the number of rows in each
  window ``[T - w, T)`` of each cutoff ``T`` of the population (windows 7, 30, 90 days; by the
  table's time column: ``occurred_at``, ``responded_at``, ``opened_at``, ``effective_at``,
  ``started_at``, ``converted_at``), i.e. one hash aggregation by customer per table. It
  writes nothing and joins nothing onto the population.
* ``pandas``: the naive per-cutoff pandas reference of the test suite
  (``tests/support/reference.py``), which the tests check against the DuckDB core on random
  data, so both compute the same features (reading the tables included, writing not).

Printed per job: CPU (user + sys of the subprocess and its children, from ``RUSAGE_CHILDREN``,
interpreter start-up and imports included) and the CPU of the measured section alone, wall
time, peak RSS of the subprocess; then the ratios core/floor and pandas/core (of the section
CPU, which leaves out the same start-up cost from all three).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
END = np.datetime64("2025-01-01T00:00:00", "us")
HISTORY_DAYS = 365
EVENT_TYPES = ("login", "core_action", "report_export", "integration_call", "seat_invite", "other")


def _text(values: np.ndarray) -> pd.Series:
    return pd.Series(values, dtype="str")


def _pick(codes: np.ndarray, options: np.ndarray | list[str]) -> pd.Series:
    """Strings by position (through a categorical: no per-row Python objects at 1M customers)."""
    return pd.Series(pd.Categorical.from_codes(codes, list(options))).astype("str")


def _choice(rng: np.random.Generator, options: tuple[str, ...] | list[str], size: int) -> pd.Series:
    return _pick(rng.integers(0, len(options), size), options)


def _utc(values: np.ndarray) -> pd.Series:
    return pd.Series(values.astype("datetime64[us]")).dt.tz_localize("UTC")


def _random_times(rng: np.random.Generator, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    low_us = low.astype("datetime64[us]").astype("int64")
    span = np.maximum(high.astype("datetime64[us]").astype("int64") - low_us, 1)
    return (low_us + (rng.random(len(low_us)) * span).astype("int64")).astype("datetime64[us]")


def generate(
    n: int, seed: int = 0, usage_per_customer: float = 100
) -> Iterator[tuple[str, pd.DataFrame]]:
    """Yield validated-style tables for ``n`` customers over one year.

    Per customer on average: ``usage_per_customer`` usage events, 10 post-sale touches, 5
    pre-sale touches, 3 tickets and 2 NPS responses. Tables come one by one (usage last) so
    the caller can write and free them: at a million customers memory is the limit.
    """
    rng = np.random.default_rng(seed)
    ids = np.char.add("C", np.char.zfill(np.arange(n).astype(str), 8)).astype(object)
    start = END - np.timedelta64(HISTORY_DAYS, "D")
    converted = _random_times(rng, np.full(n, start), np.full(n, END - np.timedelta64(120, "D")))
    customers = pd.DataFrame(
        {
            "customer_id": _text(ids),
            "lead_created_at": _utc(converted - rng.integers(0, 60, n).astype("timedelta64[D]")),
            "converted_at": _utc(converted),
            "acquisition_channel": _choice(rng, ["paid_search", "referral", "partner"], n),
            "campaign": _choice(rng, ["spring", "summer", "fall"], n),
            "segment": _choice(rng, ["smb", "mid_market", "enterprise"], n),
            "country": _choice(rng, ["US", "DE", "FR", "GB"], n),
            "trial_days": pd.array(rng.choice([0, 14, 30], n), dtype="Int64"),
        }
    )
    # One subscription each, a third ended, a fifth of the ended ones renewed by a second row.
    ended = rng.random(n) < 0.33
    end = converted + rng.integers(30, 330, n).astype("timedelta64[D]")
    renew = ended & (rng.random(n) < 0.2)
    first = pd.DataFrame(
        {
            "subscription_id": _text(np.char.add(ids.astype(str), "-1").astype(object)),
            "customer_id": _text(ids),
            "plan": _choice(rng, ["starter", "pro", "business"], n),
            "billing_period": _pick((rng.random(n) < 0.3).astype(int), ["monthly", "annual"]),
            "mrr": rng.integers(1, 50, n) * 10.0,
            "started_at": _utc(converted),
            "ended_at": _utc(np.where(ended, end, np.datetime64("NaT"))),
        }
    )
    second = first[renew].assign(
        subscription_id=lambda f: f["subscription_id"].str.replace("-1", "-2"),
        started_at=lambda f: f["ended_at"] + pd.Timedelta(days=5),
        ended_at=pd.NaT,
    )
    subscriptions = pd.concat([first, second], ignore_index=True)
    subscriptions["ended_at"] = subscriptions["ended_at"].astype("datetime64[us, UTC]")

    def events(per_customer: float, low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.repeat(np.arange(n), rng.poisson(per_customer, n))
        return idx, _random_times(rng, low[idx], np.full(len(idx), END))

    idx = np.repeat(np.arange(len(subscriptions)), rng.poisson(0.5, len(subscriptions)))
    changes = pd.DataFrame(
        {
            "subscription_id": _text(subscriptions["subscription_id"].to_numpy()[idx]),
            "customer_id": _text(subscriptions["customer_id"].to_numpy()[idx]),
            "effective_at": _utc(
                _random_times(
                    rng,
                    subscriptions["started_at"].dt.tz_localize(None).to_numpy()[idx],
                    np.full(len(idx), END),
                )
            ),
            "change_type": _choice(
                rng,
                ["upgrade", "downgrade", "discount_start", "discount_end", "price_increase"],
                len(idx),
            ),
            "mrr_before": rng.integers(1, 50, len(idx)) * 10.0,
            "mrr_after": rng.integers(1, 50, len(idx)) * 10.0,
        }
    )
    idx, at = events(10, converted)
    postsale = pd.DataFrame(
        {
            "customer_id": _pick(idx, ids),
            "occurred_at": _utc(at),
            "touchpoint_type": _choice(
                rng,
                [
                    "onboarding_email_open",
                    "onboarding_step_completed",
                    "help_center_view",
                    "community_post",
                    "webinar",
                ],
                len(idx),
            ),
        }
    )
    idx = np.repeat(np.arange(n), rng.poisson(5, n))
    presale = pd.DataFrame(
        {
            "customer_id": _pick(idx, ids),
            "occurred_at": _utc(
                _random_times(rng, converted[idx] - np.timedelta64(60, "D"), converted[idx])
            ),
            "touchpoint_type": _choice(
                rng,
                ["ad_click", "email_open", "webinar", "demo", "docs_view", "help_center_view"],
                len(idx),
            ),
        }
    )
    idx, at = events(2, converted)
    nps = pd.DataFrame(
        {
            "customer_id": _pick(idx, ids),
            "responded_at": _utc(at),
            "score": pd.array(rng.integers(0, 11, len(idx)), dtype="Int64"),
        }
    )
    idx, at = events(3, converted)
    m = len(idx)
    hours = lambda scale: (rng.exponential(scale, m) * 3600e6).astype("timedelta64[us]")  # noqa: E731
    resolved = np.where(rng.random(m) < 0.1, np.datetime64("NaT"), at + hours(48))
    csat_at = np.where(rng.random(m) < 0.5, np.datetime64("NaT"), resolved + hours(24))
    tickets = pd.DataFrame(
        {
            "ticket_id": _text(np.char.add("T", np.arange(m).astype(str)).astype(object)),
            "customer_id": _pick(idx, ids),
            "opened_at": _utc(at),
            "first_response_at": _utc(
                np.where(rng.random(m) < 0.05, np.datetime64("NaT"), at + hours(6))
            ),
            "resolved_at": _utc(resolved),
            "channel": _choice(rng, ["email", "chat", "phone"], m),
            "category": _choice(rng, ["billing", "technical", "how_to", "bug", "account"], m),
            "priority": _choice(rng, ["low", "normal", "high", "urgent"], m),
            "reopened": pd.array(rng.random(m) < 0.1, dtype="boolean"),
            "csat_score": pd.array(
                np.where(np.isnat(csat_at), None, rng.integers(1, 6, m)), dtype="Int64"
            ),
            "csat_received_at": _utc(csat_at),
        }
    )
    yield from {
        "customers": customers,
        "subscriptions": subscriptions,
        "subscription_changes": changes,
        "postsale_touchpoints": postsale,
        "presale_touchpoints": presale,
        "nps_responses": nps,
        "support_tickets": tickets,
    }.items()
    del postsale, presale, nps, tickets
    # The big table last, so the others can be written and freed first.
    trial_start = converted - np.timedelta64(30, "D")
    idx, at = events(usage_per_customer, trial_start)
    usage = pd.DataFrame(
        {
            "customer_id": _pick(idx, ids),
            "occurred_at": _utc(at),
            "event_type": _choice(rng, EVENT_TYPES, len(idx)),
            "quantity": np.where(
                rng.random(len(idx)) < 0.1, np.nan, rng.integers(1, 4, len(idx)) * 1.0
            ),
        }
    )
    yield "usage_events", usage


def population(tables: dict[str, pd.DataFrame], cutoffs: int) -> pd.DataFrame:
    """Customers active at each of the last ``cutoffs`` month starts (the label population)."""
    from churn import LabelConfig, active_population

    months = pd.date_range(
        end=pd.Timestamp(END.astype("datetime64[s]").item(), tz="UTC"),
        periods=cutoffs + 1,
        freq="MS",
    )[:-1]
    return pd.concat(
        [active_population(tables, t, LabelConfig()) for t in months], ignore_index=True
    )[["customer_id", "cutoff", "label"]]


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (DuckDB's workers included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mib() -> float:
    """Peak resident memory of this process since it started (``VmHWM``).

    Not ``ru_maxrss``: Linux carries it across ``execve``, so a subprocess forked from a
    parent holding the generated tables would report the parent's size.
    """
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RssSampler:
    """Track the highest resident memory while a block runs (sampled from /proc every 20 ms).

    ``ru_maxrss`` alone is dominated by reading the tables; sampling isolates the computation,
    including DuckDB's own allocations, which tracemalloc cannot see.
    """

    def __init__(self) -> None:
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def current_mib() -> float:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mib = max(self.peak_mib, self.current_mib())
            self._stop.wait(0.02)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mib = max(self.peak_mib, self.current_mib())


TIME_COLUMNS = {
    "customers": "converted_at",
    "subscriptions": "started_at",
    "subscription_changes": "effective_at",
    "presale_touchpoints": "occurred_at",
    "postsale_touchpoints": "occurred_at",
    "nps_responses": "responded_at",
    "support_tickets": "opened_at",
    "usage_events": "occurred_at",
}
WINDOWS = (7, 30, 90)


def floor_sql(path: Path, time_column: str, cutoffs: list[pd.Timestamp]) -> str:
    """SQL of the floor for one table: rows per customer in each window of each cutoff."""
    counts = []
    for i, cutoff in enumerate(cutoffs):
        for w in WINDOWS:
            start = cutoff - pd.Timedelta(days=w)
            # Literals computed here: no time-zone arithmetic in DuckDB.
            counts.append(
                f"count(*) FILTER (WHERE {time_column} >= '{start.isoformat()}'::TIMESTAMPTZ "
                f"AND {time_column} < '{cutoff.isoformat()}'::TIMESTAMPTZ) AS n_{i}_{w}"
            )
    # Summing every count keeps the optimizer from dropping unused aggregates.
    total = " + ".join(f"n_{i}_{w}" for i in range(len(cutoffs)) for w in WINDOWS)
    return (
        f"SELECT count(*), sum({total}) FROM (SELECT customer_id, {', '.join(counts)} "
        f"FROM read_parquet('{path}') GROUP BY customer_id)"
    )


def run_floor(data_dir: Path, cfg: object) -> int:
    """Run the floor (see the module docstring); return the number of per-customer rows."""
    import duckdb

    cutoffs = sorted(
        pd.to_datetime(pd.read_parquet(data_dir / "population.parquet")["cutoff"], utc=True)
        .unique()
        .tolist()
    )
    con = duckdb.connect(
        config={"threads": cfg.duckdb_threads, "memory_limit": cfg.duckdb_memory_limit}
    )
    con.execute("SET TimeZone = 'UTC'")
    rows = 0
    for name, column in TIME_COLUMNS.items():
        query = floor_sql(data_dir / f"{name}.parquet", column, cutoffs)
        rows += con.execute(query).fetchall()[0][0]
    con.close()
    return rows


def run_core(data_dir: Path, out_path: Path, cfg: object) -> int:
    """Do the features stage's work on these files; return the number of feature columns.

    As ``churn features`` does with the local engine: DuckDB scans the Parquet files (only
    ``customers`` is read into pandas) and the features are streamed to ``out_path``.
    """
    from churn.domain.contract import CONTRACT
    from churn.features.build import write_features

    paths = {name: data_dir / f"{name}.parquet" for name in CONTRACT}
    tables = {name: path for name, path in paths.items() if path.exists()}
    keys = pd.read_parquet(data_dir / "population.parquet")
    return len(write_features(tables, keys, cfg, out_path).catalog)


def run_pandas(data_dir: Path, cfg: object) -> int:
    """Read the tables and compute every family with the naive reference; return columns."""
    sys.path.insert(0, str(ROOT / "tests"))
    from support import reference

    tables = {
        p.stem: pd.read_parquet(p) for p in data_dir.glob("*.parquet") if p.stem != "population"
    }
    keys = pd.read_parquet(data_dir / "population.parquet")
    parts = [fn(tables, keys, cfg) for fn in reference.FAMILIES.values()]
    return sum(p.shape[1] for p in parts)


def run_job(job: str, data_dir: Path, memory_limit: str) -> dict:
    """Run one job (in this process) and report its section's time and memory."""
    from churn import FeaturesConfig

    cfg = FeaturesConfig(duckdb_memory_limit=memory_limit)
    before = RssSampler.current_mib()
    with tempfile.TemporaryDirectory(prefix="bench_out_") as out_dir, RssSampler() as sampler:
        cpu_started = _cpu_seconds()
        started = time.perf_counter()
        if job == "core":
            result = run_core(data_dir, Path(out_dir) / "features.parquet", cfg)
        elif job == "floor":
            result = run_floor(data_dir, cfg)
        else:
            result = run_pandas(data_dir, cfg)
        seconds = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu_started
    return {
        "job": job,
        "section_seconds": round(seconds, 2),
        "section_cpu_seconds": round(cpu, 2),
        "result": int(result),
        "rss_before_mib": round(before),
        "peak_rss_during_mib": round(sampler.peak_mib),
        "process_peak_rss_mib": round(_peak_rss_mib()),
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    """Generate data, run the jobs in subprocesses, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--cutoffs", type=int, default=3, help="monthly cutoffs (population size)")
    parser.add_argument(
        "--usage-events", type=float, default=100, help="usage events per customer (mean)"
    )
    parser.add_argument("--skip-pandas", action="store_true", help="time the core and floor only")
    parser.add_argument("--duckdb-memory", default="4GB", help="features.duckdb_memory_limit")
    parser.add_argument(
        "--data-dir", type=Path, help="keep the generated tables here (reused when present)"
    )
    parser.add_argument("--run", choices=["core", "floor", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_job(args.run, args.data, args.duckdb_memory)))
        return

    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp:
        data_dir = args.data_dir or Path(tmp)
        if not (data_dir / "population.parquet").exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            sizes, kept = {}, {}
            for name, frame in generate(args.customers, usage_per_customer=args.usage_events):
                frame.to_parquet(data_dir / f"{name}.parquet", index=False)
                sizes[name] = len(frame)
                if name in ("customers", "subscriptions", "subscription_changes"):
                    kept[name] = frame
                del frame
            keys = population(kept, args.cutoffs)
            keys.to_parquet(data_dir / "population.parquet", index=False)
            del kept
            print(
                f"generated in {time.perf_counter() - started:.1f}s: {sizes}; "
                f"population {len(keys):,} rows"
            )
        results = {}
        for job in ["floor", "core"] + ([] if args.skip_pandas else ["pandas"]):
            cpu_before = _children_cpu()
            started = time.perf_counter()
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--run",
                    job,
                    "--data",
                    str(data_dir),
                    "--duckdb-memory",
                    args.duckdb_memory,
                ],
                check=True,
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result["process_cpu_seconds"] = round(_children_cpu() - cpu_before, 2)
            result["process_seconds"] = round(time.perf_counter() - started, 2)
            results[job] = result
            print(json.dumps(result))
        cpu = {job: r["section_cpu_seconds"] for job, r in results.items()}
        print(f"core/floor: CPU {cpu['core'] / cpu['floor']:.2f}x")
        if "pandas" in results:
            print(f"pandas/core: CPU {cpu['pandas'] / cpu['core']:.2f}x")


if __name__ == "__main__":
    main()
