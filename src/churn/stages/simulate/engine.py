"""The month loop of the simulator, :func:`simulate`, and the stage runner :func:`run_simulate`.

``simulate(cfg)`` returns every contract table plus the ground truth that produced them, so
each later stage can be checked against what really happened; ``run_simulate`` writes both.

The simulator is split by concept; this module only orders the steps:

* :mod:`~churn.stages.simulate.world`: vocabularies, segments, channels, plans, prices and
  the customers (conversions, attributes, latent traits, pre-sale journey, onboarding).
* :mod:`~churn.stages.simulate.hazard`: the monthly churn hazard and its family terms (the
  truth).
* :mod:`~churn.stages.simulate.behaviour`: usage, support, billing, touches and NPS per month.
* :mod:`~churn.stages.simulate.tables`: the raw contract tables and the truth tables.
* :mod:`~churn.stages.simulate.mess`: the deliberate messiness of exported data.
* :mod:`~churn.stages.simulate.arrays`: vectorised helpers shared by the above.

The business draws share one random stream and the mess draws another, both consumed in a
fixed order, so the same config always gives identical frames.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from churn.background import OrderedJobs
from churn.config import DataSource, SimulateConfig
from churn.domain.billing_calendar import add_months
from churn.domain.contract import CONTRACT
from churn.domain.families import FAMILIES
from churn.io import atomic_directory, write_parquet
from churn.layout import table_file_name
from churn.stages.simulate import behaviour, hazard, shifts
from churn.stages.simulate.arrays import _DAY, _MONTH_DAYS, _month_number, _Rows
from churn.stages.simulate.retention import RetentionTeam, retention_truth_frame
from churn.stages.simulate.sinks import FrameSink, MemorySink, MonthlyTable, ParquetSink
from churn.stages.simulate.tables import (
    Outputs,
    SimulationResult,
    assemble,
    customer_months_frame,
    monthly_churn_rate,
    usage_frame,
)
from churn.stages.simulate.world import World

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sinks:
    """Where the outputs that grow with customers x months go (:mod:`.sinks`).

    Attributes:
        usage_events: The raw ``usage_events`` table.
        customer_months: The ``customer_months`` truth.
        retention_truth: The ``retention_truth`` (nothing is written when the team is off).
    """

    usage_events: FrameSink
    customer_months: FrameSink
    retention_truth: FrameSink


def _run(w: World, on_month: Callable[[int, int], None] | None, sinks: Sinks
         ) -> SimulationResult:
    """Draw the customers, simulate every month and assemble the tables and the truth.

    Returns:
        Every table and truth frame except the three that went to ``sinks``.
    """
    w.draw_customers()
    shifts.shift_channels(w)
    presale = w.draw_presale()
    w.acquisition_static = hazard.acquisition_static(w)
    w.draw_onboarding()
    # Month t's usage rows are sorted, and its retention truth projected, on one job thread
    # while month t + 1 is drawn (NumPy sorts and arithmetic, mostly outside the interpreter
    # lock); their frames are built on this thread. A month ahead at most, so memory holds two
    # months of those arrays; nothing drawn at random moves, so the tables are the same.
    with OrderedJobs(depth=2, name="churn-simulate-rows") as row_jobs:
        out = Outputs(
            usage=MonthlyTable(partial(usage_frame, w), sinks.usage_events, row_jobs),
            touches=_Rows("customer", "time", "type"),
            nps=_Rows("customer", "time", "value"),
            tickets=[],
            truth=MonthlyTable(partial(customer_months_frame, w), sinks.customer_months),
        )
        team = None
        if w.cfg.retention_actions:
            team = RetentionTeam(w, MonthlyTable(partial(retention_truth_frame, w),
                                                 sinks.retention_truth, row_jobs))
        for t in range(w.months):
            _simulate_month(w, t, out, team)
            if on_month is not None:
                on_month(t + 1, w.months)
        out.usage.flush()  # the last month's rows
        if team is not None:
            team.truth.flush()
    result = assemble(w, presale, out)
    if team is not None:
        result.tables["retention_actions"] = team.actions_table()
    return result


def _simulate_month(w: World, t: int, out: Outputs, team: RetentionTeam | None) -> None:
    """Month ``t``: hazard and churn of the actives, then everyone's behaviour."""
    now, next_start = w.month_start(t), w.month_start(t + 1)
    shifts.raise_prices(w, t)
    act = np.flatnonzero(w.alive & (w.converted < now))
    new = np.flatnonzero((w.converted >= now) & (w.converted < next_start))

    # The hazard, from what is visible at the month start and the latent state.
    months_in = _month_number(now) - w.conversion_month[act]
    billing_date = add_months(w.converted[act], months_in)
    renewal = ~w.annual[act] | (months_in % 12 == 0)
    obs = hazard.observe(w, t, act, renewal)
    hazard.update_disengagement(w, t, act, obs)
    depth = w.depth[act]
    base = hazard.base_logit(w, act)
    retention = np.zeros(len(act))
    if team is not None:  # this month's contacts; lowers the hazard of those under a play
        retention = team.act(t, act, base, obs, renewal)
    total, probability = hazard.churn_probability(base + retention, obs, renewal)
    churned = w.rng.random(len(act)) < probability
    out.truth.add(customer=act.astype(np.int32), month=np.full(len(act), t, np.int16),
                  base=base, retention=retention, **{f: obs[f] for f in FAMILIES},
                  exposure=obs["exposure"], total=total, hazard=probability,
                  renewal=renewal, disengaged=depth >= 0, churned=churned,
                  end_if_churned=billing_date, converted=w.converted[act],
                  annual=w.annual[act])

    # Behaviour of everyone who is a customer for part of the month: the actives (churners
    # until their billing date) and this month's conversions (from their conversion). Both
    # index lists are sorted and every new customer converted after every active one, so
    # ``who`` is sorted too.
    who = np.concatenate([act, new])
    lo = np.concatenate([np.full(len(act), now), w.converted[new]])
    hi = np.concatenate([np.where(churned, billing_date, next_start),
                         np.full(len(new), next_start)])
    month = behaviour.Month(
        who=who,
        lo=lo,
        hi=hi,
        depth=w.depth[who],
        share=(hi - lo) / (next_start - now),
        onboarding=(now - w.converted[who]) < 2 * _MONTH_DAYS * _DAY,
        billing_shock=np.concatenate([obs["billing_shock"], np.zeros(len(new), bool)]),
        support=np.concatenate([obs["support"], np.zeros(len(new))]),
    )
    behaviour.draw_usage(w, t, month, out.usage)
    month_tickets = shifts.slow_support(w, t, behaviour.draw_tickets(w, month))
    out.tickets.append(month_tickets)
    behaviour.remember_tickets(w, t, month_tickets)
    behaviour.draw_touches(w, month, out.touches)
    behaviour.draw_nps(w, month, out.nps)

    staying = ~churned
    behaviour.draw_changes(w, act[staying], billing_date[staying], months_in[staying],
                           renewal[staying], obs["usage_trend"][staying],
                           obs["billing_shock"][staying])
    w.alive[act[churned]] = False
    w.ended[act[churned]] = billing_date[churned]


def _simulate_into(
    cfg: SimulateConfig, sinks: Sinks, on_month: Callable[[int, int], None] | None
) -> SimulationResult:
    """Simulate with the big outputs going to ``sinks`` (see :func:`simulate`)."""
    shifts.check_shifts(cfg.shifts, cfg.months)
    return _run(World(cfg), on_month, sinks)


def simulate(
    cfg: SimulateConfig, *, on_month: Callable[[int, int], None] | None = None
) -> SimulationResult:
    """Simulate the business: every contract table plus the ground truth (no disk I/O).

    Args:
        cfg: Simulator knobs (customers, months, seed, start date, mess).
        on_month: Called as ``on_month(done, total)`` after each simulated month (progress).

    Returns:
        The raw contract tables and the truth. The same ``cfg`` gives identical frames.

    Raises:
        ConfigError: If ``cfg.start_date`` is not the first day of a month or the seed is
            negative.
    """
    usage, months, retention = MemorySink(), MemorySink(), MemorySink()
    result = _simulate_into(cfg, Sinks(usage, months, retention), on_month)
    tables = {**result.tables, "usage_events": usage.frame()}
    truth = {"customer_months": months.frame(), **result.truth}
    if not retention.empty:
        truth["retention_truth"] = retention.frame()
    return SimulationResult(
        tables={name: tables[name] for name in CONTRACT if name in tables}, truth=truth
    )


#: The file the simulate stage writes into each of its output folders when the simulator is off.
OFF_MARKER_FILE = "README.md"

OFF_MARKER_TEXT = """# The simulator is off

`params.yaml` says `data.source: files`: the pipeline reads your own CSV or Parquet files from
`data/raw/` and the simulate stage writes no tables and no ground truth, only this marker (so
the stage's declared outputs exist and it costs nothing). Set `data.source: simulator` to
simulate again. See docs/your-data.md.
"""


def run_simulate(
    config: SimulateConfig,
    out_dir: Path,
    truth_dir: Path,
    source: DataSource = "simulator",
) -> None:
    """Simulate, write ``<table>.parquet`` to ``out_dir`` and the truth to ``truth_dir``.

    ``usage_events``, ``customer_months`` and ``retention_truth`` are written month by month
    while the months are simulated (:mod:`~churn.stages.simulate.sinks`), the other tables after
    the loop, one at a time, so memory does not grow with customers x months. Both folders are
    staged for the whole run and each is swapped in whole at the end: a failure leaves the
    previous outputs, and switching ``data.source`` never leaves stale tables or truth of an
    earlier run behind. With ``source="files"`` nothing is simulated: each folder
    holds only the :data:`OFF_MARKER_FILE` marker (evaluate then finds no truth and reports no
    oracle metrics; ingest reads the user's folder instead).

    Args:
        config: Simulator knobs (not read when the simulator is off).
        out_dir: Directory for the raw contract tables.
        truth_dir: Directory for the ground truth (never read by training).
        source: ``data.source``: ``"simulator"`` simulates, ``"files"`` writes the markers only.
    """
    if source == "files":
        for folder in (out_dir, truth_dir):
            with atomic_directory(folder) as staging:
                (staging / OFF_MARKER_FILE).write_text(OFF_MARKER_TEXT)
        logger.info(
            "data.source is 'files': simulator off, only markers in %s and %s", out_dir, truth_dir
        )
        return
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        # Both folders are staged for the whole run: the big outputs stream into them month by
        # month, and each is swapped in whole only after everything was written.
        raw_staging = stack.enter_context(atomic_directory(out_dir))
        truth_staging = stack.enter_context(atomic_directory(truth_dir))
        sinks = Sinks(
            usage_events=ParquetSink(raw_staging / table_file_name("usage_events")),
            customer_months=ParquetSink(truth_staging / table_file_name("customer_months")),
            retention_truth=ParquetSink(truth_staging / table_file_name("retention_truth")),
        )
        streamed = (sinks.usage_events, sinks.customer_months, sinks.retention_truth)
        for sink in streamed:
            stack.callback(sink.close)  # runs before the staging folders are swapped in
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=True,
        ) as progress:
            task = progress.add_task("simulating months", total=config.months)
            result = _simulate_into(
                config, sinks, lambda done, _: progress.update(task, completed=done)
            )
        rows = {name: len(frame) for name, frame in result.tables.items()}
        rows["usage_events"] = sinks.usage_events.rows
        customers = result.truth["customers"]
        for staging, frames in ((raw_staging, result.tables), (truth_staging, result.truth)):
            for name in list(frames):  # written one by one, each released once written
                write_parquet(frames.pop(name), staging / table_file_name(name))
        for sink in streamed:
            sink.close()
        # The churn flags only (a bool per customer-month), read back from the written truth.
        months = {"customer_months": pd.read_parquet(sinks.customer_months.path,
                                                     columns=["churned"])}

    logger.info(
        "simulated and wrote %s customers over %s months from %s (seed %s, mess %s) in %.1f s",
        f"{config.customers:,}", config.months, config.start_date, config.seed, config.mess,
        time.perf_counter() - started,
    )
    for name in CONTRACT:
        if name in rows:
            logger.info("  %-22s %12s rows", name, f"{rows[name]:,}")
    logger.info(
        "churn: %s customers churned (%.1f%%), monthly churn rate %.2f%%; "
        "tables in %s, truth in %s",
        f"{customers['churned_at'].notna().sum():,}",
        100 * customers["churned_at"].notna().mean(),
        100 * monthly_churn_rate(months),
        out_dir,
        truth_dir,
    )
