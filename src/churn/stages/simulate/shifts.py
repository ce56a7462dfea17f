"""Shifts the simulator can inject from a given month (``simulate.shifts``), to test monitoring.

Each shift is a change of the world the model did not see in training:

* ``price_increase``: at the start of month ``from_month`` every active customer on ``plan``
  pays ``size`` more (a ``price_increase`` subscription change, so the billing shock reaches
  the hazard as a real price increase does);
* ``support_outage``: from month ``from_month`` every ticket takes ``resolution_days_factor``
  times longer to resolve (the CSAT rating moves with the resolution; slow tickets reach the
  hazard's support term);
* ``new_channel``: a share ``size`` of the customers converting from month ``from_month`` on
  arrive through ``channel`` (an acquisition-mix shift).

No shift draws from the business random stream, so the default (no shifts) gives exactly the
tables it gave before this module existed; ``new_channel`` uses its own stream derived from
the seed.
"""

from __future__ import annotations

import numpy as np

from churn.config import ConfigError, ShiftConfig
from churn.stages.simulate.arrays import _DAY
from churn.stages.simulate.world import _CHANGE, _CHANNEL, PLANS, World


def check_shifts(shifts: tuple[ShiftConfig, ...], months: int) -> None:
    """Raise :class:`ConfigError` naming a shift whose plan, channel or month does not exist."""
    for i, shift in enumerate(shifts):
        where = f"simulate.shifts[{i}] ({shift.kind})"
        if shift.from_month >= months:
            raise ConfigError(f"{where}: from_month {shift.from_month} >= simulate.months")
        if shift.kind == "price_increase" and shift.plan not in PLANS:
            raise ConfigError(f"{where}: plan must be one of {list(PLANS)}, got {shift.plan!r}")
        if shift.kind == "new_channel" and shift.channel not in _CHANNEL:
            raise ConfigError(
                f"{where}: channel must be one of {list(_CHANNEL)}, got {shift.channel!r}"
            )


def shift_channels(w: World) -> None:
    """Move ``size`` of the conversions from ``from_month`` on to the shift's channel."""
    for number, shift in enumerate(w.cfg.shifts):
        if shift.kind != "new_channel":
            continue
        rng = np.random.default_rng([w.cfg.seed, 7919, number])  # not the business stream
        later = w.converted >= w.month_start(shift.from_month)
        moved = later & (rng.random(w.n) < shift.size)
        w.channel[moved] = _CHANNEL[shift.channel]


def raise_prices(w: World, t: int) -> None:
    """Apply the ``price_increase`` shifts that start at month ``t``."""
    now = w.month_start(t)
    for shift in w.cfg.shifts:
        if shift.kind != "price_increase" or shift.from_month != t:
            continue
        on_plan = w.plan == PLANS.index(shift.plan)
        members = np.flatnonzero(w.alive & (w.converted < now) & on_plan)
        before = w.mrr[members].copy()
        w.list_mrr[members] *= 1 + shift.size
        discount = np.where(w.discounted[members], 1 - w.discount_rate[members], 1.0)
        w.mrr[members] = np.round(w.list_mrr[members] * discount, 2)
        w.changes.add(customer=members, time=np.full(len(members), now),
                      type=np.full(len(members), _CHANGE["price_increase"]), before=before,
                      after=w.mrr[members])
        w.last_price_increase[members] = now
        w.last_price_increase_pct[members] = w.mrr[members] / np.maximum(before, 0.01) - 1


def slow_support(w: World, t: int, tickets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Return this month's tickets with resolution stretched by active ``support_outage`` shifts."""
    factor = np.prod([s.resolution_days_factor for s in w.cfg.shifts
                      if s.kind == "support_outage" and s.from_month <= t])
    if factor == 1.0:
        return tickets
    duration = tickets["resolved"] - tickets["first_response"]
    resolved = tickets["first_response"] + (duration * factor).astype(np.int64)
    moved = resolved - tickets["resolved"]
    rated = tickets["csat"] >= 0
    # Slower resolution, lower satisfaction: one point per doubling, as in the CSAT model's log.
    penalty = np.rint(0.45 * np.log1p(moved / _DAY)).astype(np.int64)
    return {
        **tickets,
        "resolved": resolved,
        "csat_time": np.where(rated, tickets["csat_time"] + moved, tickets["csat_time"]),
        "csat": np.where(rated, np.clip(tickets["csat"] - penalty, 1, 5), tickets["csat"]),
    }
