"""Behaviour within a month: usage, support tickets, billing changes, touches and NPS.

Each ``draw_*`` function emits one month's events of everyone who is a customer during part
of the month (:class:`Month`) and updates the short history in :class:`World` that the
hazard (:mod:`churn.stages.simulate.hazard`) looks back on next month. All draws come from
``w.rng`` in the order the engine calls them, so that order is part of the output.

Usage is emitted from the window start on, aggregated to one row per customer, day and event
type (``quantity`` = events that day).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from churn.stages.simulate.arrays import (
    _DAY,
    _MONTH_DAYS,
    _NAT,
    _categorical,
    _events_in_spans,
    _Rows,
    _sigmoid,
)
from churn.stages.simulate.hazard import _SLOW_RESOLUTION_DAYS
from churn.stages.simulate.mess import draw_duplicates, repeat_duplicates
from churn.stages.simulate.sinks import MonthlyTable
from churn.stages.simulate.world import (
    _CHANGE,
    _POSTSALE,
    _PRICE_PER_SEAT,
    PLANS,
    USAGE_EVENT_TYPES,
    World,
)

# Per usage type: daily rate of "any event" at intensity 1, weekend weight, extra events per
# active day.
_USAGE_DAILY_RATE = np.array([0.20, 0.17, 0.04, 0.5, 0.012])
_USAGE_WEEKEND_WEIGHT = np.array([0.25, 0.25, 0.15, 0.9, 0.1])
_USAGE_EXTRA_PER_DAY = np.array([0.6, 3.0, 0.4, 15.0, 0.3])
_DISENGAGED_USAGE = np.array([0.5, 0.3, 0.15])  # usage multiplier by months disengaged
# Tickets: shares by code of world.TICKET_CHANNELS, TICKET_CATEGORIES and TICKET_PRIORITIES.
_TICKET_CHANNEL_SHARES = np.array([0.5, 0.35, 0.15])
_CATEGORY_SHARES = np.array([[0.15, 0.30, 0.30, 0.15, 0.10], [0.45, 0.20, 0.15, 0.10, 0.10]])
_CATEGORY_RESOLUTION_FACTOR = np.array([1.0, 1.5, 0.6, 3.0, 0.8])
_PRIORITY_SHARES = np.array([0.25, 0.5, 0.18, 0.07])
_FIRST_RESPONSE_MEDIAN_HOURS = np.array([8.0, 4.0, 1.5, 0.5])  # low ... urgent


@dataclass
class Month:
    """Everyone who is a customer during part of one month, with what drives behaviour.

    Attributes:
        who: Customer indices (sorted).
        lo: Start of each one's time as a customer in the month (seconds).
        hi: End (exclusive): the next month start, or the churn date.
        depth: Months disengaged (-1: engaged).
        share: Share of the month spent as a customer.
        onboarding: Converted less than two months before the month start.
        billing_shock: A price increase (3 months) or discount end (2 months) is visible.
        support: The support log-odds term at the month start (0 for new customers).
    """

    who: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    depth: np.ndarray
    share: np.ndarray
    onboarding: np.ndarray
    billing_shock: np.ndarray
    support: np.ndarray

    @property
    def disengaged(self) -> np.ndarray:
        """Whether each customer is disengaged this month."""
        return self.depth >= 0


def compute_daily_chance(
    rate: np.ndarray, weekend: np.ndarray, weekend_weight: float
) -> np.ndarray:
    """Return each customer's chance of at least one event on each day of the month.

    The chance is ``1 - exp(-rate * day weight)`` as float32, the day weight being
    ``weekend_weight`` on weekend days and 1 on the others. A month has only those two
    weights, so the exponential is taken once per customer and weight and spread over the
    days: the same products and the same float64 ``expm1`` per element as the whole
    (customers, days) matrix, so the same float32 values, at a seventh of the work (the
    simulator's draws, and so its output, stay as they were; tests compare with the matrix).

    Args:
        rate: Each customer's daily event rate on a weekday.
        weekend: Per day of the month, whether it is a Saturday or Sunday.
        weekend_weight: The rate's multiplier on weekend days.

    Returns:
        A float32 (customers, days) matrix.
    """
    on_weekday = (-np.expm1(-(rate * 1.0))).astype(np.float32)
    on_weekend = (-np.expm1(-(rate * weekend_weight))).astype(np.float32)
    return np.where(weekend[None, :], on_weekend[:, None], on_weekday[:, None])


def order_usage_rows(
    seconds: np.ndarray, customer: np.ndarray, kind: np.ndarray, customers: int, kinds: int
) -> np.ndarray:
    """Return the order of a month's usage rows by time, then customer, then event type.

    The three are packed into one ``int64`` key and sorted once (day by day:
    :func:`_argsort_by_day`), instead of ``np.lexsort((kind, customer, seconds))`` (three
    sorting passes): over the 24 months of a 100k-customer run (17M rows) 2.3 s of CPU against
    3.9 s, this function's checks included (2026-12-05). A customer has at most one row per
    day and type, each stamped inside its day, so no two rows share a key and any sort, stable
    or not, gives lexsort's order (the tests compare the two).

    Args:
        seconds: Seconds since the month's start (non-negative).
        customer: Customer indices, in ``[0, customers)``.
        kind: Event type codes, in ``[0, kinds)``.
        customers: The number of customers.
        kinds: The number of event types.

    Returns:
        The row positions in that order.

    Raises:
        ValueError: If a value is outside its range or two rows share a key (the packed key
            would then not order the rows as lexsort does).
    """
    seconds = np.asarray(seconds, dtype=np.int64)
    customer = np.asarray(customer, dtype=np.int64)
    kind = np.asarray(kind, dtype=np.int64)
    if len(seconds) == 0:
        return np.zeros(0, dtype=np.intp)
    if (seconds.min() < 0 or customer.min() < 0 or customer.max() >= customers
            or kind.min() < 0 or kind.max() >= kinds
            or int(seconds.max()) >= np.iinfo(np.int64).max // (customers * kinds)):
        raise ValueError("usage rows out of the packed key's ranges")
    key = (seconds * customers + customer) * kinds + kind
    order = _argsort_by_day(key, seconds, customer * kinds + kind, customers * kinds)
    ordered = key[order]
    if (ordered[1:] == ordered[:-1]).any():
        raise ValueError("two usage rows share a time, customer and event type")
    return order


def _argsort_by_day(key: np.ndarray, seconds: np.ndarray, rest: np.ndarray, width: int
                    ) -> np.ndarray:
    """``np.argsort(key)`` for ``key = seconds * width + rest`` (``0 <= rest < width``).

    The rows are put in day order by a radix sort of their day, and each day's rows sorted by
    their key within the day packed with their position there into one integer, which
    ``np.sort`` orders (SIMD) several times faster than ``np.argsort`` orders the keys: 0.44-0.50
    s against 0.80-0.86 s for a month of a million customers' usage (7M rows, 2026-12-06). Equal
    keys keep their positions' order, which the caller refuses anyway. When a day's key and
    position do not fit in 63 bits together (or the days in a 16-bit integer), plain
    ``np.argsort``.
    """
    if len(key) == 0:
        return np.zeros(0, dtype=np.intp)
    day = seconds // _DAY
    if day.max() >= 2**15:
        return np.argsort(key)
    counts = np.bincount(day)
    position_bits = int(counts.max()).bit_length()
    if (_DAY * width - 1).bit_length() + position_bits > 63:
        return np.argsort(key)
    within = (seconds - day * _DAY) * width + rest  # the key less its day's start
    by_day = np.argsort(day.astype(np.int16), kind="stable")  # radix sort
    bounds = np.concatenate([[0], np.cumsum(counts)])
    mask = (1 << position_bits) - 1
    order = np.empty(len(key), dtype=np.intp)
    for start, stop in itertools.pairwise(bounds):
        rows = by_day[start:stop]
        packed = np.sort((within[rows] << position_bits) | np.arange(stop - start))
        order[start:stop] = rows[packed & mask]
    return order


def draw_usage(w: World, t: int, month: Month, rows: _Rows | MonthlyTable) -> None:
    """Daily usage aggregates (one row per customer, day and event type) for month ``t``.

    Usage is possible on whole days strictly after the conversion day and strictly before
    the churn day, so every row is after ``converted_at`` and before ``ended_at``. The month's
    rows are handed to ``rows`` sorted by time, customer and type (with the mess duplicates
    next to their original), as ``customer`` and ``type`` codes, ``time`` in microseconds and
    ``qty``.
    """
    rng, who, lo, hi = w.rng, month.who, month.lo, month.hi
    first_day_s = w.month_start(t)
    n_days = (w.month_start(t + 1) - first_day_s) // _DAY
    first = np.maximum(0, -((first_day_s - lo) // _DAY))  # first whole day from lo on
    last = np.where(hi < w.month_start(t + 1), (hi - first_day_s) // _DAY, n_days)
    day = np.arange(n_days)
    open_days = (day[None, :] >= first[:, None]) & (day[None, :] < last[:, None])
    weekday = (first_day_s // _DAY + day + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
    weekend = weekday >= 5
    months_in = (first_day_s - w.converted[who]) / (_MONTH_DAYS * _DAY)
    depth = np.clip(month.depth, 0, 2)
    intensity = w.intensity[who] * np.where(month.disengaged, _DISENGAGED_USAGE[depth], 1)
    active_any = np.zeros((len(who), n_days), dtype=bool)
    quantity_total = np.zeros(len(who))
    chunk: dict[str, list[np.ndarray]] = {"customer": [], "time": [], "type": [], "qty": []}
    for kind in range(len(USAGE_EVENT_TYPES)):
        rate = _USAGE_DAILY_RATE[kind] * intensity
        if USAGE_EVENT_TYPES[kind] == "integration_call":
            rate = rate * w.has_integration[who]
        elif USAGE_EVENT_TYPES[kind] == "seat_invite":
            rate = rate * np.where(months_in < 3, 3.0, 1.0)
        chance = compute_daily_chance(rate, weekend, _USAGE_WEEKEND_WEIGHT[kind])
        hit = (rng.random(chance.shape, dtype=np.float32) < chance) & open_days
        active_any |= hit
        row, day_of = np.divmod(np.flatnonzero(hit), n_days)  # np.nonzero's order, faster
        qty = 1.0 + rng.poisson(_USAGE_EXTRA_PER_DAY[kind] * intensity[row])
        quantity_total += np.bincount(row, weights=qty, minlength=len(who))
        # Stamp each daily aggregate with its first event, in working hours.
        chunk["time"].append(
            first_day_s + day_of * _DAY + rng.integers(6 * 3600, 20 * 3600, len(row))
        )
        chunk["customer"].append(who[row].astype(np.int32))
        chunk["type"].append(np.full(len(row), kind, dtype=np.int8))
        chunk["qty"].append(qty)
    data = {k: np.concatenate(v) for k, v in chunk.items()}
    # Exact duplicates, kept next to their original: drawn here, in the mess stream's order;
    # which rows they repeat is known once the rows are sorted.
    duplicates = draw_duplicates(len(data["time"]), w.mess_rng) if w.cfg.mess else None

    def sorted_rows() -> dict[str, np.ndarray]:
        # No draw and nothing the month loop changes later: the table may run this while the
        # next month is simulated (MonthlyTable.add_from); the rows are the same.
        order = order_usage_rows(data["time"] - first_day_s, data["customer"], data["type"],
                                 w.n, len(USAGE_EVENT_TYPES))
        if duplicates is not None:
            order = repeat_duplicates(order, duplicates)
        return {
            "customer": data["customer"][order],
            "time": data["time"][order] * 1_000_000,  # microseconds, the output resolution
            "type": data["type"][order],
            "qty": data["qty"][order],
        }

    rows.add_from(sorted_rows)

    possible = np.maximum(last - first, 0)
    w.usage_quantity = np.roll(w.usage_quantity, 1, axis=0)
    w.usage_days = np.roll(w.usage_days, 1, axis=0)
    w.usage_quantity[0] = 0.0
    w.usage_days[0] = 0.0
    w.usage_quantity[0, who] = quantity_total
    w.usage_days[0, who] = possible
    w.usage_active_days[:] = 0.0
    w.usage_active_days[who] = active_any.sum(axis=1)


def draw_tickets(w: World, month: Month) -> dict[str, np.ndarray]:
    """Support tickets opened this month, with their life cycle and CSAT."""
    rng, who = w.rng, month.who
    rate = month.share * np.exp(
        -2.1 + 0.6 * w.support_need[who] + 0.15 * np.log(w.seats[who])
        + 0.6 * month.onboarding + 0.3 * month.disengaged + 0.8 * month.billing_shock
    )
    position, opened = _events_in_spans(rng, rate, month.lo, month.hi)
    customer = who[position]
    k = len(customer)
    # Billing shocks bring billing questions.
    category = _categorical(rng, _CATEGORY_SHARES, month.billing_shock[position].astype(int))
    priority = _categorical(rng, _PRIORITY_SHARES, size=k)
    channel = _categorical(rng, _TICKET_CHANNEL_SHARES, size=k)
    response_hours = _FIRST_RESPONSE_MEDIAN_HOURS[priority] * rng.lognormal(0.0, 1.0, k)
    first_response = opened + (response_hours * 3600).astype(np.int64) + 60
    resolution_days = (
        0.8 * _CATEGORY_RESOLUTION_FACTOR[category] * rng.lognormal(0.0, 1.1, k)
    )
    reopened = rng.random(k) < 0.05 + 0.1 * (resolution_days > _SLOW_RESOLUTION_DAYS)
    resolution_days += reopened * rng.lognormal(0.0, 0.8, k)
    resolved = first_response + (resolution_days * _DAY).astype(np.int64)
    answers = rng.random(k) < 0.35
    csat_mean = (
        4.4
        - 0.45 * np.log1p(resolution_days)
        - 1.1 * reopened
        + 0.35 * w.fit[customer]
    )
    csat = np.where(answers, np.clip(np.rint(csat_mean + rng.normal(0.0, 0.8, k)), 1, 5), -1)
    # Ratings arrive after the resolution: mostly within a day or two, a tail much later.
    late = rng.random(k) < 0.15
    delay_days = rng.exponential(1.0, k) + late * rng.uniform(3.0, 20.0, k)
    csat_time = np.where(answers, resolved + 600 + (delay_days * _DAY).astype(np.int64), _NAT)
    return {
        "customer": customer,
        "opened": opened,
        "first_response": first_response,
        "resolved": resolved,
        "channel": channel,
        "category": category,
        "priority": priority,
        "reopened": reopened,
        "csat": csat.astype(np.int64),
        "csat_time": csat_time,
    }


def draw_changes(w: World, act: np.ndarray, billing_date: np.ndarray, months_in: np.ndarray,
                 renewal: np.ndarray, usage_trend: np.ndarray,
                 billing_shock: np.ndarray) -> None:
    """Subscription changes of customers staying this month, at their billing date.

    At most one change per customer and month, so ``mrr_before``/``mrr_after`` chain.

    Args:
        act: Customers active at the month start who do not churn this month.
        billing_date: Their billing date in the month (``started_at + months_in``).
        months_in: Months since their subscription started.
        renewal: Whether their contract renews this month.
        usage_trend: Their visible usage trend (log ratio), which drives upgrades.
        billing_shock: Whether a recent price increase or discount end is visible.
    """
    rng = w.rng
    n_act = len(act)
    disengaged = w.depth[act] >= 0
    discount_due = w.discounted[act] & (w.discount_end[act] == billing_date)
    pre_renewal = w.annual[act] & ((months_in + 1) % 12 == 0)
    increase_chance = np.where(
        w.annual[act], 0.3 * pre_renewal, 0.012 * (months_in >= 6)
    )
    decrease_chance = 0.003 * (w.price_sensitivity[act] > 0.5)
    upgrade_chance = _sigmoid(
        -4.4 + 0.6 * w.fit[act] + 0.5 * np.clip(usage_trend, -1, 1)
        - 1.5 * disengaged
    )
    downgrade_chance = _sigmoid(
        -5.0 + 0.5 * w.price_sensitivity[act] + 1.3 * disengaged
        + 0.5 * billing_shock
    ) * (~w.annual[act] | renewal)  # annual contracts shrink only at renewal
    draw = rng.random(n_act)
    edges = np.cumsum(
        [increase_chance, decrease_chance, upgrade_chance, downgrade_chance], axis=0
    )
    kind = np.where(draw < edges[0], _CHANGE["price_increase"], -1)
    kind = np.where((kind < 0) & (draw < edges[1]), _CHANGE["price_decrease"], kind)
    kind = np.where((kind < 0) & (draw < edges[2]), _CHANGE["upgrade"], kind)
    kind = np.where((kind < 0) & (draw < edges[3]), _CHANGE["downgrade"], kind)
    kind = np.where(discount_due, _CHANGE["discount_end"], kind)

    due = kind == _CHANGE["discount_end"]
    w.end_discounts(act[due], billing_date[due])

    pct = rng.uniform(0.06, 0.15, n_act)
    cut = rng.uniform(0.1, 0.2, n_act)
    seat_growth = rng.uniform(1.15, 1.5, n_act)
    seat_cut = rng.uniform(0.6, 0.85, n_act)
    plan = w.plan[act]
    up = kind == _CHANGE["upgrade"]
    down = kind == _CHANGE["downgrade"]
    new_plan = np.clip(plan + up - down, 0, len(PLANS) - 1)
    # A change of plan rescales the price per seat; at the plan limits seats change instead.
    factor = np.ones(n_act)
    factor = np.where(kind == _CHANGE["price_increase"], 1 + pct, factor)
    factor = np.where(kind == _CHANGE["price_decrease"], 1 - cut, factor)
    factor = np.where(up, np.where(new_plan > plan, _PRICE_PER_SEAT[new_plan]
                                   / _PRICE_PER_SEAT[plan], seat_growth), factor)
    factor = np.where(down, np.where(new_plan < plan, _PRICE_PER_SEAT[new_plan]
                                     / _PRICE_PER_SEAT[plan], seat_cut), factor)
    priced = (kind >= 0) & ~due
    members = act[priced]
    before = w.mrr[members]
    w.list_mrr[members] *= factor[priced]
    w.plan[members] = new_plan[priced]
    discount = np.where(w.discounted[members], 1 - w.discount_rate[members], 1.0)
    w.mrr[members] = np.round(w.list_mrr[members] * discount, 2)
    when = billing_date[priced]
    w.changes.add(customer=members, time=when, type=kind[priced], before=before,
                     after=w.mrr[members])
    for change, last in (
        ("price_increase", w.last_price_increase),
        ("price_decrease", w.last_price_decrease),
        ("upgrade", w.last_upgrade),
        ("downgrade", w.last_downgrade),
    ):
        mine = kind[priced] == _CHANGE[change]
        last[members[mine]] = when[mine]
    increased = kind[priced] == _CHANGE["price_increase"]
    # The relative increase as the tables show it (MRR is rounded to cents).
    w.last_price_increase_pct[members[increased]] = (
        w.mrr[members[increased]] / before[increased] - 1
    )


def draw_touches(w: World, month: Month, rows: _Rows) -> None:
    """Post-sale help-center views, community posts and webinars of the month."""
    who = month.who
    quiet = np.where(month.disengaged, 0.4, 1.0)
    monthly_rate = {
        "help_center_view": np.exp(-1.3 + 0.5 * w.support_need[who])
        * np.where(month.onboarding, 1.8, 1.0),
        "community_post": np.exp(-3.2 + 0.8 * w.fit[who]),
        "webinar": 0.05 * np.exp(0.4 * w.fit[who]),
    }
    for kind, rate in monthly_rate.items():
        position, time = _events_in_spans(w.rng, month.share * rate * quiet, month.lo,
                                          month.hi)
        customer = who[position]
        rows.add(customer=customer, time=time, type=np.full(len(customer), _POSTSALE[kind]))
        counts = np.bincount(customer, minlength=w.n)
        if kind == "help_center_view":
            w.help_views = counts
        else:
            history = w.community_posts if kind == "community_post" else w.webinars
            history[:] = np.roll(history, 1, axis=0)
            history[0] = counts


def draw_nps(w: World, month: Month, rows: _Rows) -> None:
    """NPS responses of customers past onboarding; remembers each one's latest score."""
    rng = w.rng
    surveyed = ~month.onboarding
    position, responded = _events_in_spans(rng, 0.06 * surveyed * month.share, month.lo,
                                           month.hi)
    respondent = month.who[position]
    depth = month.depth[position]
    score_mean = (
        7.4
        + 1.2 * w.fit[respondent]
        - np.where(depth >= 0, 1.0 + 0.7 * np.clip(depth, 0, 2), 0.0)
        - 1.2 * (month.support[position] > 0.3)
        - 0.8 * month.billing_shock[position]
    )
    noise = rng.normal(0.0, 1.5, len(respondent))
    score = np.clip(np.rint(score_mean + noise), 0, 10).astype(np.int64)
    rows.add(customer=respondent, time=responded, value=score)
    # Events are unordered within the month: keep each respondent's latest.
    order = np.lexsort((responded, respondent))
    ordered = respondent[order]
    latest = order[np.append(ordered[1:] != ordered[:-1], True)] if len(order) else order
    w.nps_score[respondent[latest]] = score[latest]
    w.nps_time[respondent[latest]] = responded[latest]


def remember_tickets(w: World, t: int, month_tickets: dict[str, np.ndarray]) -> None:
    """Keep the tickets next month's support term can see (opened or rated since t-1)."""
    store = month_tickets
    if w.recent_tickets is not None:
        store = {k: np.concatenate([w.recent_tickets[k], v])
                 for k, v in month_tickets.items()}
    since = w.month_start(t - 1)
    keep = (store["opened"] >= since) | (store["csat_time"] >= since)
    w.recent_tickets = {k: v[keep] for k, v in store.items()}
