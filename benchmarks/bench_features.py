"""Benchmark: DuckDB feature core vs a straightforward pandas implementation of the same features.

Not part of the test suite. Usage::

    python benchmarks/bench_features.py --customers 100000 [--cutoffs 3] [--skip-pandas]

It generates synthetic validated tables directly (a quick vectorised generator: volume, not
realism), writes them to a temporary directory, then runs each engine in a fresh subprocess so
that its peak resident memory (``ru_maxrss``) is its own. The pandas baseline is the per-cutoff
reference of the test suite (``tests/reference.py``), which the tests check against the DuckDB
core on random data, so both compute the same features.
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


def run_engine(engine: str, data_dir: Path, memory_limit: str) -> dict:
    """Compute all features with one engine (in this process) and report time and memory."""
    from churn import FeaturesConfig

    tables = {
        p.stem: pd.read_parquet(p) for p in data_dir.glob("*.parquet") if p.stem != "population"
    }
    keys = pd.read_parquet(data_dir / "population.parquet")
    cfg = FeaturesConfig(duckdb_memory_limit=memory_limit)
    loaded = RssSampler.current_mib()
    with RssSampler() as sampler:
        cpu_started = _cpu_seconds()
        started = time.perf_counter()
        if engine == "duckdb":
            from churn import build_features

            frame = build_features(tables, keys, cfg).frame
            columns = frame.shape[1] - 3
        else:
            sys.path.insert(0, str(ROOT / "tests"))
            import reference

            parts = [fn(tables, keys, cfg) for fn in reference.FAMILIES.values()]
            columns = sum(p.shape[1] for p in parts)
        seconds = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu_started
    return {
        "engine": engine,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "features": int(columns),
        "rows": len(keys),
        "rss_before_mib": round(loaded),
        "peak_rss_during_mib": round(sampler.peak_mib),
        "extra_mib": round(sampler.peak_mib - loaded),
        "process_peak_rss_mib": round(_peak_rss_mib()),
    }


def main() -> None:
    """Generate data, time both engines in subprocesses, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--cutoffs", type=int, default=3, help="monthly cutoffs (population size)")
    parser.add_argument(
        "--usage-events", type=float, default=100, help="usage events per customer (mean)"
    )
    parser.add_argument("--skip-pandas", action="store_true", help="time DuckDB only")
    parser.add_argument("--duckdb-memory", default="8GB", help="features.duckdb_memory_limit")
    parser.add_argument(
        "--data-dir", type=Path, help="keep the generated tables here (reused when present)"
    )
    parser.add_argument("--run", choices=["duckdb", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_engine(args.run, args.data, args.duckdb_memory)))
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
        for engine in ["duckdb"] + ([] if args.skip_pandas else ["pandas"]):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--run",
                    engine,
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
            results[engine] = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps(results[engine]))
        if "pandas" in results:
            ratio = results["pandas"]["seconds"] / results["duckdb"]["seconds"]
            memory = results["pandas"]["extra_mib"] / max(results["duckdb"]["extra_mib"], 1)
            cpu = results["pandas"]["cpu_seconds"] / results["duckdb"]["cpu_seconds"]
            print(
                f"pandas/duckdb: wall time {ratio:.1f}x, CPU time {cpu:.1f}x, "
                f"extra memory {memory:.1f}x"
            )


if __name__ == "__main__":
    main()
