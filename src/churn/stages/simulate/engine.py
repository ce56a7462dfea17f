"""Simulator of a B2B SaaS subscription business: the project's measuring instrument.

``simulate(cfg)`` returns every contract table plus the ground truth that produced them, so
each later stage can be checked against what really happened; ``run_simulate`` writes both.

The business
    A starting base of customers (converted before ``start_date``, 35%) plus monthly cohorts
    that convert inside the window. Each customer has one subscription (starter, pro or
    business; billed monthly or annually) that ends when the customer churns. Subscriptions end
    only at a billing date, ``started_at + k months``; annual ones only at a renewal
    anniversary, ``started_at + 12k months``. Usage is emitted from the window start on,
    aggregated to one row per customer, day and event type (``quantity`` = events that day).

The hazard
    For every customer active at the start of month ``t`` (converted before it, not churned)::

        logit_total = logit_base + logit_acquisition + logit_billing + logit_usage
                      + logit_support + logit_engagement
        churn_probability = sigmoid(logit_total)   if the contract can end in month t
                          = 0                      otherwise (annual plan, no renewal in t)

    The customer churns in month ``t`` with that probability, at its billing date inside the
    month. ``logit_base`` is the intercept plus latent traits (product fit, price sensitivity)
    and a latent disengagement state. Each family term is a function of rows stamped before the
    month start only (tests recompute all five from the tables), so a point-in-time model can
    learn it:

    * ``acquisition``: channel, docs/help-center views before buying, trial, demo; fades with
      tenure.
    * ``billing``: starting plan, annual renewal month, price increase (last 3 months, by its
      size), discount ended (last 2 months), discount running, upgrade, downgrade and price
      decrease (last 3 months).
    * ``usage``: share of last month's possible days with any activity (level) and last month's
      daily volume against the two months before (trend); no term without a month of history.
    * ``support``: tickets last month, slow resolution, low or high CSAT received and reopened
      tickets (last 2 months).
    * ``engagement``: onboarding steps completed (fades with tenure), latest NPS (12 months),
      community posts and webinars (3 months), help-center views last month.

    Latent traits also drive behaviour (usage intensity, tickets, NPS, onboarding, docs
    reading), so the base is partly visible through behaviour too. Disengagement starts with a
    probability raised by visible support friction and billing shocks; it cuts usage deeper
    month after month and raises the base, so usage declines in the months before most churns.

Ground truth (``SimulationResult.truth``)
    ``customer_months``: one row per customer and month in which the customer is active at the
    month start: ``customer_id``, ``month_start``, ``churn_probability``, ``logit_<family>``,
    ``logit_base``, ``logit_total`` (their sum), ``renewal_month`` (the contract can end this
    month), ``disengaged`` and ``churned`` (the subscription ends this month).
    ``customers``: ``customer_id``, ``churned_at`` (NaT if none), the latent traits
    (:data:`LATENT_TRAITS`) and ``disengaged_at`` (first disengagement, or the window start for
    customers already disengaged then).

Mess (``cfg.mess``)
    A few missing values in nullable columns, about 0.1% exact duplicate rows in the event
    tables, support-ticket timestamps as ISO-8601 strings with mixed UTC offsets (0.2% without
    an offset: UTC wall time, matching the default ``ingest.input_timezone``). Mess draws come
    from their own random stream, so the business is the same with or without mess.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from churn.config import ConfigError, SimulateConfig
from churn.domain.contract import (
    BILLING_PERIODS,
    CONTRACT,
    POSTSALE_TOUCHPOINT_TYPES,
    PRESALE_TOUCHPOINT_TYPES,
    SUBSCRIPTION_CHANGE_TYPES,
    TICKET_PRIORITIES,
)
from churn.io import write_parquet
from churn.layout import table_file_name

logger = logging.getLogger(__name__)

FAMILIES = ("acquisition", "billing", "usage", "support", "engagement")
LATENT_TRAITS = ("product_fit", "price_sensitivity", "support_need", "usage_intensity")

# --- time ---------------------------------------------------------------------------------
_DAY = 86_400
_MONTH_DAYS = 30.44
_NAT = np.iinfo(np.int64).min  # missing timestamp (seconds) in output arrays: becomes NaT
_NEVER = -(2**40)  # "has not happened" in state arrays: far past, safe to subtract from

# --- customers ----------------------------------------------------------------------------
SEGMENTS = ("smb", "mid_market", "enterprise")
_SEGMENT_SHARES = np.array([0.6, 0.3, 0.1])
CHANNELS = (
    "organic_search",
    "paid_search",
    "paid_social",
    "referral",
    "partner",
    "outbound_sales",
    "events",
)
_CHANNEL_SHARES_BY_SEGMENT = np.array(
    [
        [0.30, 0.25, 0.18, 0.15, 0.05, 0.04, 0.03],
        [0.20, 0.18, 0.07, 0.15, 0.13, 0.17, 0.10],
        [0.08, 0.05, 0.02, 0.12, 0.20, 0.38, 0.15],
    ]
)
# Campaign stems per channel; organic search and referrals carry no campaign.
_CAMPAIGN_STEMS: dict[str, tuple[str, ...]] = {
    "paid_search": ("search_brand", "search_generic", "search_competitor"),
    "paid_social": ("social_linkedin", "social_retarget"),
    "partner": ("partner_cobrand",),
    "outbound_sales": ("outbound_abm",),
    "events": ("event_summit", "event_roadshow"),
}
COUNTRIES = ("US", "GB", "DE", "FR", "CA", "AU", "NL", "SE", "ES", "IN", "BR", "JP")
_COUNTRY_SHARES = np.array([0.40, 0.12, 0.10, 0.07, 0.06, 0.05, 0.04, 0.03, 0.03, 0.04, 0.03, 0.03])
_TRIAL_DAYS = np.array([0, 14, 30])
_TRIAL_SHARES_BY_SEGMENT = np.array([[0.2, 0.6, 0.2], [0.4, 0.4, 0.2], [0.75, 0.0, 0.25]])
# Median sales cycle (days between first touch and purchase, trial excluded) per segment.
_SALES_CYCLE_DAYS = np.array([7.0, 25.0, 60.0])
_BASE_SHARE = 0.35  # customers already paying when the window opens
_BASE_TENURE_MONTHS = 14.0  # mean tenure of the starting base (exponential, capped at 60)
_COHORT_GROWTH = 0.015  # monthly growth of new conversions

# --- plans and billing --------------------------------------------------------------------
PLANS = ("starter", "pro", "business")
_PRICE_PER_SEAT = np.array([15.0, 35.0, 65.0])  # starter, pro, business
_PLAN_SHARES_BY_SEGMENT = np.array([[0.6, 0.32, 0.08], [0.25, 0.5, 0.25], [0.05, 0.35, 0.6]])
_SEATS_MEDIAN = np.array([3.0, 25.0, 150.0])
_ANNUAL_SHARE_BY_SEGMENT = np.array([0.2, 0.45, 0.7])
_ANNUAL_PRICE_FACTOR = 0.83  # annual prepay is cheaper per month
_MONTHLY, _ANNUAL = BILLING_PERIODS.index("monthly"), BILLING_PERIODS.index("annual")

# --- event vocabularies -------------------------------------------------------------------
USAGE_EVENT_TYPES = ("login", "core_action", "report_export", "integration_call", "seat_invite")
# Per type: daily rate of "any event" at intensity 1, weekend weight, extra events per active day.
_USAGE_DAILY_RATE = np.array([0.20, 0.17, 0.04, 0.5, 0.012])
_USAGE_WEEKEND_WEIGHT = np.array([0.25, 0.25, 0.15, 0.9, 0.1])
_USAGE_EXTRA_PER_DAY = np.array([0.6, 3.0, 0.4, 15.0, 0.3])
_DISENGAGED_USAGE = np.array([0.5, 0.3, 0.15])  # usage multiplier by months disengaged

TICKET_CHANNELS = ("email", "chat", "phone")
_TICKET_CHANNEL_SHARES = np.array([0.5, 0.35, 0.15])
TICKET_CATEGORIES = ("billing", "technical", "how_to", "bug", "account")
_CATEGORY_SHARES = np.array([[0.15, 0.30, 0.30, 0.15, 0.10], [0.45, 0.20, 0.15, 0.10, 0.10]])
_CATEGORY_RESOLUTION_FACTOR = np.array([1.0, 1.5, 0.6, 3.0, 0.8])
_PRIORITY_SHARES = np.array([0.25, 0.5, 0.18, 0.07])
_FIRST_RESPONSE_MEDIAN_HOURS = np.array([8.0, 4.0, 1.5, 0.5])  # low ... urgent
_PRESALE = {name: code for code, name in enumerate(PRESALE_TOUCHPOINT_TYPES)}
_POSTSALE = {name: code for code, name in enumerate(POSTSALE_TOUCHPOINT_TYPES)}
_CHANGE = {name: code for code, name in enumerate(SUBSCRIPTION_CHANGE_TYPES)}
_CHANNEL = {name: code for code, name in enumerate(CHANNELS)}
_PAID_CHANNELS = [_CHANNEL["paid_search"], _CHANNEL["paid_social"]]
_SALES_LED_CHANNELS = [_CHANNEL["partner"], _CHANNEL["outbound_sales"], _CHANNEL["events"]]
_ENTERPRISE = SEGMENTS.index("enterprise")
_ONBOARDING_EMAIL_DAYS = np.array([0, 1, 3, 7, 14, 21])
_ONBOARDING_STEPS = 5

# --- hazard: log-odds terms ---------------------------------------------------------------
_INTERCEPT = -3.95
_FIT_COEF = -0.55  # better product fit, lower hazard
_PRICE_SENSITIVITY_COEF = 0.25
_DISENGAGED_BUMP = np.array([0.7, 1.3, 1.7])  # by months disengaged (0, 1, 2+)
_DISENGAGE_INTERCEPT = -3.4
_RECOVERY_PROBABILITY = 0.12
# acquisition
_CHANNEL_EFFECT = np.array([
    {"organic_search": -0.1, "paid_search": 0.2, "paid_social": 0.45, "referral": -0.4,
     "partner": -0.3, "outbound_sales": 0.0, "events": 0.05}[channel] for channel in CHANNELS
])
_PRESALE_READING_COEF = -0.25  # per log1p(docs + help-center views before buying)
_TRIAL_EFFECT = -0.2
_DEMO_EFFECT = -0.15
_ACQUISITION_DECAY_MONTHS = 6.0
_FADE_FLOOR = 0.4  # share of a fading effect (acquisition, onboarding) that never fades
# billing
_PLAN_EFFECT = np.array([0.2, 0.0, -0.2])  # starter, pro, business
_ANNUAL_RENEWAL_EFFECT = 1.9  # a year of churn decisions lands on the renewal month
_PRICE_INCREASE_COEF = 4.5  # per unit of relative increase, last 3 months
_DISCOUNT_ENDED_EFFECT = 0.5  # last 2 months
_DISCOUNT_ACTIVE_EFFECT = -0.15
_DOWNGRADE_EFFECT = 0.45
_UPGRADE_EFFECT = -0.3
_PRICE_DECREASE_EFFECT = -0.2
# usage
_USAGE_LEVEL_COEF = 1.6
_USAGE_LEVEL_REFERENCE = 0.35  # active-day share at which the level term is zero
_USAGE_TREND_COEF = -0.8  # per unit of log(last month's daily volume / the 2 months before)
_USAGE_TREND_SMOOTHING = 0.5  # events per day added to both rates: quiet accounts are not noise
_USAGE_TREND_BOUNDS = (-2.0, 1.0)
_USAGE_MIN_DAYS = 7  # fewer possible days last month: no usage term
# support
_TICKET_EFFECT = 0.28  # per ticket last month, up to _TICKET_CAP
_TICKET_CAP = 3
_SLOW_RESOLUTION_DAYS = 3.0
_SLOW_RESOLUTION_EFFECT = 0.35
_LOW_CSAT_EFFECT = 0.55
_HIGH_CSAT_EFFECT = -0.15
_REOPENED_EFFECT = 0.3
# engagement
_ONBOARDING_EFFECT_ZERO_STEPS = 0.45
_ONBOARDING_EFFECT_PER_STEP = -0.18
_ONBOARDING_DECAY_MONTHS = 9.0
_NPS_MEMORY_DAYS = 365
_NPS_DETRACTOR_MAX = 6  # scores 0-6 are detractors, 9-10 promoters
_NPS_PROMOTER_MIN = 9
_NPS_DETRACTOR_EFFECT = 0.45
_NPS_DETRACTOR_SLOPE = 0.06  # per point below 6
_NPS_PROMOTER_EFFECT = -0.35
_COMMUNITY_EFFECT = -0.3
_WEBINAR_EFFECT = -0.15
_HELP_SELF_SERVE_EFFECT = -0.1
_HELP_STRUGGLE_EFFECT = 0.2
_HELP_STRUGGLE_VIEWS = 4  # help-center views last month from which they signal struggle

# --- mess ---------------------------------------------------------------------------------
_DUPLICATE_SHARE = 0.001
_TIMESTAMP_OFFSETS = ("Z", "+00:00", "+01:00", "+02:00", "-05:00", "-08:00", "+05:30")
_OFFSET_MINUTES = np.array([0, 0, 60, 120, -300, -480, 330])
_NAIVE_TIMESTAMP_SHARE = 0.002


@dataclass(frozen=True)
class SimulationResult:
    """Output of :func:`simulate`.

    Attributes:
        tables: Contract table name -> raw table with exactly the contract columns.
        truth: ``customer_months`` (true monthly hazard and its log-odds terms) and
            ``customers`` (true churn date and latent traits). Never read by training.
    """

    tables: dict[str, pd.DataFrame]
    truth: dict[str, pd.DataFrame]


# ------------------------------------------------------------------------------------------
# Small vectorised helpers
# ------------------------------------------------------------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _fade(tenure_months: np.ndarray, decay_months: float) -> np.ndarray:
    """Weight of an effect that fades with tenure from 1 to ``_FADE_FLOOR``."""
    return _FADE_FLOOR + (1 - _FADE_FLOOR) * np.exp(-tenure_months / decay_months)


def _month_number(seconds: np.ndarray | int) -> np.ndarray:
    """Calendar months since 1970-01 of UTC timestamps given in seconds."""
    days = np.asarray(seconds) // _DAY
    return days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)


def add_months(seconds: np.ndarray | int, months: np.ndarray | int) -> np.ndarray:
    """Shift UTC timestamps (seconds since the epoch) by whole calendar months.

    Same rule as ``pd.DateOffset(months=k)``: the day of month is kept and clamped to the
    target month's last day; the time of day is kept.

    Args:
        seconds: Timestamps in seconds since the epoch.
        months: Months to add (may be negative), broadcast against ``seconds``.

    Returns:
        Shifted timestamps in seconds (int64).
    """
    seconds = np.asarray(seconds, dtype=np.int64)
    days = seconds // _DAY
    time_of_day = seconds - days * _DAY
    month = days.astype("datetime64[D]").astype("datetime64[M]")
    day_of_month = days - month.astype("datetime64[D]").astype(np.int64)
    target = month + np.asarray(months, dtype=np.int64).astype("timedelta64[M]")
    target_first = target.astype("datetime64[D]").astype(np.int64)
    target_next = (target + np.timedelta64(1, "M")).astype("datetime64[D]").astype(np.int64)
    day = np.minimum(day_of_month, target_next - target_first - 1)
    return (target_first + day) * _DAY + time_of_day


def _categorical(
    rng: np.random.Generator, shares: np.ndarray, rows: np.ndarray | None = None, size: int = 0
) -> np.ndarray:
    """Draw category codes from ``shares`` (one row of shares per group when 2-D).

    Args:
        rng: Random generator.
        shares: Probabilities, shape ``(K,)`` or ``(G, K)``; rows sum to 1.
        rows: Group of each draw (required when ``shares`` is 2-D).
        size: Number of draws when ``shares`` is 1-D.

    Returns:
        Codes in ``[0, K)`` as int64.
    """
    cumulative = np.cumsum(shares, axis=-1)
    cumulative[..., -1] = 1.0  # guard against rounding: every draw lands in a category
    if shares.ndim == 1:
        return np.searchsorted(cumulative, rng.random(size), side="right").astype(np.int64)
    assert rows is not None
    draws = rng.random(len(rows))
    return (draws[:, None] >= cumulative[rows]).sum(axis=1).astype(np.int64)


def _events_in_spans(
    rng: np.random.Generator, rate: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson(``rate``) events per span, placed uniformly in ``[lo, hi)`` (seconds).

    Returns:
        The index of each event's span and the event times.
    """
    counts = rng.poisson(rate)
    span = np.repeat(np.arange(len(rate)), counts)
    return span, lo[span] + (rng.random(len(span)) * (hi - lo)[span]).astype(np.int64)


def _any_by(customers: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    """Per customer (length ``n``): whether any row with ``mask`` belongs to it."""
    out = np.zeros(n, dtype=bool)
    out[customers[mask]] = True
    return out


class _Rows:
    """Collects equally long column arrays chunk by chunk (one chunk per month)."""

    def __init__(self, *columns: str) -> None:
        self._chunks: dict[str, list[np.ndarray]] = {c: [] for c in columns}

    def add(self, **arrays: np.ndarray) -> None:
        for name, chunks in self._chunks.items():
            chunks.append(arrays[name])

    def concat(self) -> dict[str, np.ndarray]:
        """Concatenate and release the chunks."""
        return {name: np.concatenate(self.pop(name)) for name in list(self._chunks)}

    def pop(self, name: str) -> list[np.ndarray]:
        """Hand over (and forget) the chunks of one column."""
        return self._chunks.pop(name)


# ------------------------------------------------------------------------------------------
# The engine
# ------------------------------------------------------------------------------------------


class _Engine:
    """Mutable state of one simulation run; :func:`simulate` is its only user."""

    def __init__(self, cfg: SimulateConfig) -> None:
        start = pd.Timestamp(cfg.start_date)
        if start.day != 1:
            raise ConfigError(
                f"simulate.start_date must be the first day of a month, got {cfg.start_date}"
            )
        if cfg.seed < 0:
            raise ConfigError(f"simulate.seed must not be negative, got {cfg.seed}")
        self.cfg = cfg
        business_seed, mess_seed = np.random.SeedSequence(cfg.seed).spawn(2)
        self.rng = np.random.default_rng(business_seed)
        self.mess_rng = np.random.default_rng(mess_seed)
        self.n = cfg.customers
        self.months = cfg.months
        start_s = int(start.tz_localize("UTC").timestamp())
        # Month boundaries from 3 months before the window (look-backs) to the window end.
        self._bounds = add_months(np.full(cfg.months + 4, start_s), np.arange(-3, cfg.months + 1))
        self.window_start = self.month_start(0)
        self.window_end = self.month_start(cfg.months)
        self.id_width = max(7, len(str(self.n - 1)))
        self.customer_ids = pa.array(_ids("C", self.n, self.id_width), type=pa.large_string())
        self.usage_event_types = pa.array(USAGE_EVENT_TYPES, type=pa.large_string())

    def month_start(self, t: int | np.ndarray) -> int | np.ndarray:
        """Start of month ``t`` of the window in seconds (``t`` from -3 to ``months``)."""
        return self._bounds[np.asarray(t) + 3]

    def customer_id(self, codes: np.ndarray) -> pd.Series:
        """Customer indices as customer ids (a pandas ``str`` column)."""
        return pc.take(self.customer_ids, pa.array(codes)).to_pandas()

    # --- customers, pre-sale, onboarding ---------------------------------------------------

    def draw_customers(self) -> None:
        """Draw conversions, static attributes, latent traits and the initial state."""
        rng, n = self.rng, self.n
        n_base = round(n * _BASE_SHARE)
        base_tenure_months = np.minimum(rng.exponential(_BASE_TENURE_MONTHS, n_base), 60.0)
        base_converted = self.window_start - (
            (base_tenure_months * _MONTH_DAYS * _DAY).astype(np.int64)
            + rng.integers(1, _DAY, n_base)
        )
        cohort_weights = (1 + _COHORT_GROWTH) ** np.arange(self.months)
        cohort = _categorical(rng, cohort_weights / cohort_weights.sum(), size=n - n_base)
        cohort_start = self.month_start(cohort)
        cohort_length = self.month_start(cohort + 1) - cohort_start
        new_converted = cohort_start + (rng.random(n - n_base) * cohort_length).astype(np.int64)
        # Customer ids follow the conversion order, like a CRM's sequence.
        self.converted = np.sort(np.concatenate([base_converted, new_converted]))

        self.segment = _categorical(rng, _SEGMENT_SHARES, size=n)
        self.channel = _categorical(rng, _CHANNEL_SHARES_BY_SEGMENT, self.segment)
        self.country = _categorical(rng, _COUNTRY_SHARES, size=n)
        self.trial_days = _TRIAL_DAYS[_categorical(rng, _TRIAL_SHARES_BY_SEGMENT, self.segment)]
        cycle_days = _SALES_CYCLE_DAYS[self.segment] * rng.lognormal(0.0, 0.7, n) + self.trial_days
        self.lead_created = self.converted - (cycle_days * _DAY).astype(np.int64) - 3600
        # One campaign stem among the channel's, as an index into the flat list of stems.
        self.campaign_stems = np.array([s for c in CHANNELS for s in _CAMPAIGN_STEMS.get(c, ())])
        stems_per_channel = np.array([len(_CAMPAIGN_STEMS.get(c, ())) for c in CHANNELS])
        first_stem = np.cumsum(stems_per_channel) - stems_per_channel
        stems = stems_per_channel[self.channel]
        pick = (rng.random(n) * stems).astype(np.int64)
        self.campaign_stem = np.where(stems > 0, first_stem[self.channel] + pick, -1)

        # Latent traits (truth only), independent of the observable attributes by design.
        self.fit = rng.normal(0.0, 1.0, n)
        self.price_sensitivity = rng.normal(0.0, 1.0, n)
        self.support_need = rng.normal(0.0, 1.0, n)

        self.start_plan = _categorical(rng, _PLAN_SHARES_BY_SEGMENT, self.segment)
        self.annual = rng.random(n) < _ANNUAL_SHARE_BY_SEGMENT[self.segment]
        self.seats = np.ceil(_SEATS_MEDIAN[self.segment] * rng.lognormal(0.0, 0.6, n))
        price = _PRICE_PER_SEAT[self.start_plan] * np.where(self.annual, _ANNUAL_PRICE_FACTOR, 1)
        self.start_mrr = np.round(self.seats * price, 2)
        self.intensity = np.exp(
            0.45 * self.fit + 0.12 * np.log(self.seats) + rng.normal(0.0, 0.35, n) - 0.25
        )
        self.has_integration = rng.random(n) < _sigmoid(
            -1.4 + 0.5 * self.fit + 0.8 * (self.segment == _ENTERPRISE)
        )

        # Introductory discounts for monthly plans, more often via paid and sales channels.
        paid = np.isin(self.channel, _PAID_CHANNELS)
        outbound = self.channel == _CHANNEL["outbound_sales"]
        discount_odds = -2.2 + 0.9 * paid + 0.6 * outbound + 0.5 * self.price_sensitivity
        self.has_discount = ~self.annual & (rng.random(n) < _sigmoid(discount_odds))
        self.discount_rate = rng.choice([0.15, 0.2, 0.25, 0.3], n)
        self.discount_months = rng.choice([3, 6, 12], n, p=[0.4, 0.4, 0.2])
        self.conversion_month = _month_number(self.converted)

        # Running state.
        self.alive = np.ones(n, dtype=bool)
        self.ended = np.full(n, _NAT)
        self.plan = self.start_plan.copy()
        self.list_mrr = self.start_mrr.copy()
        discounted_mrr = np.round(self.start_mrr * (1 - self.discount_rate), 2)
        self.mrr = np.where(self.has_discount, discounted_mrr, self.start_mrr)
        self.discounted = self.has_discount.copy()
        self.discount_end = np.where(
            self.has_discount, add_months(self.converted, self.discount_months), _NEVER
        )
        self.last_price_increase = np.full(n, _NEVER)
        self.last_price_increase_pct = np.zeros(n)
        self.last_price_decrease = np.full(n, _NEVER)
        self.last_discount_end = np.full(n, _NEVER)
        self.last_upgrade = np.full(n, _NEVER)
        self.last_downgrade = np.full(n, _NEVER)
        # Disengagement: -1 engaged, else months since onset. A few of the base start in it.
        self.depth = np.full(n, -1)
        already = (self.converted < self.window_start) & (rng.random(n) < 0.06)
        self.depth[already] = rng.integers(0, 2, already.sum())
        self.disengaged_at = np.where(already, self.window_start, _NAT)
        # Usage history, most recent month first: quantity, possible days, active days.
        self.usage_quantity = np.zeros((3, n))
        self.usage_days = np.zeros((3, n))
        self.usage_active_days = np.zeros(n)
        self.community_posts = np.zeros((3, n))
        self.webinars = np.zeros((3, n))
        self.help_views = np.zeros(n)
        self.nps_score = np.full(n, -1)
        self.nps_time = np.full(n, _NEVER)
        # Tickets the support term can still see: opened or rated in the last two months.
        self.recent_tickets: dict[str, np.ndarray] | None = None

        self.changes = _Rows("customer", "time", "type", "before", "after")
        starts = np.flatnonzero(self.has_discount)
        self.changes.add(
            customer=starts,
            time=self.converted[starts],
            type=np.full(len(starts), _CHANGE["discount_start"]),
            before=self.start_mrr[starts],
            after=self.mrr[starts],
        )
        # Discounts of the starting base that ran out before the window opened.
        ended = np.flatnonzero(self.discounted & (self.discount_end < self.window_start))
        self._end_discounts(ended, self.discount_end[ended])

    def draw_presale(self) -> dict[str, np.ndarray]:
        """Pre-sale touches between lead creation and conversion; sets the acquisition base."""
        rng, n = self.rng, self.n
        paid = np.isin(self.channel, _PAID_CHANNELS)
        sales_led = np.isin(self.channel, _SALES_LED_CHANNELS)
        outbound = self.channel == _CHANNEL["outbound_sales"]
        expected = np.empty((n, len(PRESALE_TOUCHPOINT_TYPES)))
        expected[:, _PRESALE["ad_click"]] = np.where(paid, 2.2, 0.3)
        expected[:, _PRESALE["email_open"]] = np.where(outbound, 4.0, 1.8)
        expected[:, _PRESALE["webinar"]] = np.where(self.channel == _CHANNEL["events"], 1.0, 0.15)
        expected[:, _PRESALE["demo"]] = np.array([0.15, 0.6, 1.2])[self.segment] + 0.5 * sales_led
        expected[:, _PRESALE["sales_call"]] = np.array([0.2, 1.0, 2.5])[self.segment] * np.where(
            outbound, 1.5, 1.0
        )
        expected[:, _PRESALE["pricing_page_view"]] = 1.5
        # Diligent buyers read the after-sales docs first; they tend to be the ones who fit.
        expected[:, _PRESALE["docs_view"]] = np.exp(
            -0.4 + 0.6 * self.fit + 0.3 * (self.trial_days > 0)
        )
        expected[:, _PRESALE["help_center_view"]] = 0.4 * np.exp(0.4 * self.fit)
        counts = rng.poisson(expected)
        silent = counts.sum(axis=1) == 0  # every lead has at least its first touch
        counts[silent, _PRESALE["ad_click"]] = paid[silent]
        counts[silent, _PRESALE["email_open"]] = ~paid[silent]

        reading = counts[:, _PRESALE["docs_view"]] + counts[:, _PRESALE["help_center_view"]]
        self.acquisition_static = (
            _CHANNEL_EFFECT[self.channel]
            + _PRESALE_READING_COEF * np.log1p(reading)
            + _TRIAL_EFFECT * (self.trial_days > 0)
            + _DEMO_EFFECT * (counts[:, _PRESALE["demo"]] > 0)
        )

        per_customer = counts.sum(axis=1)
        customer = np.repeat(np.arange(n), per_customer)
        kind = np.repeat(np.tile(np.arange(counts.shape[1]), n), counts.ravel())
        lead = self.lead_created[customer]
        time = lead + (rng.random(len(customer)) * (self.converted[customer] - lead)).astype(
            np.int64
        )
        time[np.cumsum(per_customer) - per_customer] = self.lead_created  # the first touch
        return {"customer": customer, "time": time, "type": kind}

    def draw_onboarding(self) -> None:
        """Onboarding e-mail opens and completed steps, timed from each conversion."""
        rng, n = self.rng, self.n
        send = self.converted[:, None] + _ONBOARDING_EMAIL_DAYS[None, :] * _DAY + 1800
        opened = rng.random(send.shape) < _sigmoid(0.2 + 0.5 * self.fit)[:, None]
        delay = (rng.exponential(6.0, send.shape) * 3600).astype(np.int64)
        self.email_opens = np.where(opened, send + delay, _NAT)
        step_odds = 1.3 + 0.9 * self.fit + 0.3 * (self.trial_days > 0)
        success = rng.random((n, _ONBOARDING_STEPS)) < _sigmoid(step_odds)[:, None]
        done = np.cumprod(success, axis=1).astype(bool)  # steps are completed in order
        gaps = ((0.5 + rng.exponential(4.0, (n, _ONBOARDING_STEPS))) * _DAY).astype(np.int64)
        self.step_times = np.where(done, self.converted[:, None] + np.cumsum(gaps, axis=1), _NAT)

    # --- the hazard ------------------------------------------------------------------------

    def observe(self, t: int, act: np.ndarray, renewal: np.ndarray) -> dict[str, np.ndarray]:
        """Family log-odds terms for ``act`` from what is visible before month ``t`` starts.

        Args:
            t: Month of the window.
            act: Customers active at the month start.
            renewal: Whether each contract can end this month.

        Returns:
            The five family terms plus helpers (``billing_shock``, ``usage_trend``).
        """
        n = self.n
        now = self.month_start(t)
        one_ago, two_ago, three_ago = (self.month_start(t - k) for k in (1, 2, 3))
        tenure = (now - self.converted[act]) / (_MONTH_DAYS * _DAY)

        acquisition = self.acquisition_static[act] * _fade(tenure, _ACQUISITION_DECAY_MONTHS)

        increase_recent = self.last_price_increase[act] >= three_ago
        discount_ended = self.last_discount_end[act] >= two_ago
        billing = (
            _PLAN_EFFECT[self.start_plan[act]]
            + _ANNUAL_RENEWAL_EFFECT * (self.annual[act] & renewal)
            + _PRICE_INCREASE_COEF * self.last_price_increase_pct[act] * increase_recent
            + _DISCOUNT_ENDED_EFFECT * discount_ended
            + _DISCOUNT_ACTIVE_EFFECT * self.discounted[act]
            + _DOWNGRADE_EFFECT * (self.last_downgrade[act] >= three_ago)
            + _UPGRADE_EFFECT * (self.last_upgrade[act] >= three_ago)
            + _PRICE_DECREASE_EFFECT * (self.last_price_decrease[act] >= three_ago)
        )

        days = self.usage_days[:, act]
        quantity = self.usage_quantity[:, act]
        enough = days[0] >= _USAGE_MIN_DAYS
        share = np.divide(self.usage_active_days[act], days[0], out=np.zeros(len(act)),
                          where=enough)
        level = np.where(enough, _USAGE_LEVEL_COEF * (_USAGE_LEVEL_REFERENCE - share), 0.0)
        reference_days = days[1] + days[2]
        has_reference = enough & (reference_days >= 2 * _USAGE_MIN_DAYS)
        last_rate = np.divide(quantity[0], days[0], out=np.zeros(len(act)), where=enough)
        reference_rate = np.divide(quantity[1] + quantity[2], reference_days,
                                   out=np.zeros(len(act)), where=has_reference)
        ratio = (last_rate + _USAGE_TREND_SMOOTHING) / (reference_rate + _USAGE_TREND_SMOOTHING)
        trend = np.where(has_reference, np.log(ratio), 0.0)
        usage = level + _USAGE_TREND_COEF * np.clip(trend, *_USAGE_TREND_BOUNDS)

        support = np.zeros(len(act))
        if self.recent_tickets is not None:
            tk = self.recent_tickets
            who, opened, resolved = tk["customer"], tk["opened"], tk["resolved"]
            last_month = opened >= one_ago
            in_window = opened >= two_ago
            known_resolved = resolved < now
            slow = in_window & np.where(
                known_resolved,
                resolved - opened > _SLOW_RESOLUTION_DAYS * _DAY,
                now - opened > _SLOW_RESOLUTION_DAYS * _DAY,
            )
            csat_known = (tk["csat_time"] >= two_ago) & (tk["csat_time"] < now)
            low = _any_by(who, csat_known & (tk["csat"] >= 1) & (tk["csat"] <= 2), n)[act]
            high = _any_by(who, csat_known & (tk["csat"] >= 4), n)[act]
            reopened = _any_by(who, in_window & known_resolved & tk["reopened"], n)[act]
            tickets = np.bincount(who[last_month], minlength=n)[act]
            support = (
                _TICKET_EFFECT * np.minimum(tickets, _TICKET_CAP)
                + _SLOW_RESOLUTION_EFFECT * _any_by(who, slow, n)[act]
                + _LOW_CSAT_EFFECT * low
                + _HIGH_CSAT_EFFECT * (high & ~low)
                + _REOPENED_EFFECT * reopened
            )

        step_times = self.step_times[act]
        steps = ((step_times != _NAT) & (step_times < now)).sum(axis=1)
        score = self.nps_score[act]
        nps_known = (score >= 0) & (self.nps_time[act] >= now - _NPS_MEMORY_DAYS * _DAY)
        help_views = self.help_views[act]
        engagement = (
            (_ONBOARDING_EFFECT_ZERO_STEPS + _ONBOARDING_EFFECT_PER_STEP * steps)
            * _fade(tenure, _ONBOARDING_DECAY_MONTHS)
            + nps_known * np.where(score <= _NPS_DETRACTOR_MAX,
                                   _NPS_DETRACTOR_EFFECT
                                   + _NPS_DETRACTOR_SLOPE * (_NPS_DETRACTOR_MAX - score), 0.0)
            + nps_known * np.where(score >= _NPS_PROMOTER_MIN, _NPS_PROMOTER_EFFECT, 0.0)
            + _COMMUNITY_EFFECT * (self.community_posts[:, act].sum(axis=0) > 0)
            + _WEBINAR_EFFECT * (self.webinars[:, act].sum(axis=0) > 0)
            + _HELP_SELF_SERVE_EFFECT * ((help_views >= 1) & (help_views < _HELP_STRUGGLE_VIEWS))
            + _HELP_STRUGGLE_EFFECT * (help_views >= _HELP_STRUGGLE_VIEWS)
        )
        return {
            "acquisition": acquisition,
            "billing": billing,
            "usage": usage,
            "support": support,
            "engagement": engagement,
            "billing_shock": increase_recent | discount_ended,
            "usage_trend": trend,
        }

    def update_disengagement(self, t: int, act: np.ndarray, obs: dict[str, np.ndarray]) -> None:
        """Move the latent disengagement state of ``act`` one month on."""
        rng = self.rng
        depth = self.depth[act]
        engaged = depth < 0
        onset_odds = (
            _DISENGAGE_INTERCEPT
            - 0.6 * self.fit[act]
            + 0.25 * self.price_sensitivity[act]
            + 0.8 * np.maximum(obs["support"], 0.0)
            + (0.6 + 0.4 * self.price_sensitivity[act]) * obs["billing_shock"]
        )
        draw = rng.random(len(act))
        onset = engaged & (draw < _sigmoid(onset_odds))
        recover = ~engaged & (draw < _RECOVERY_PROBABILITY)
        depth = np.where(engaged, np.where(onset, 0, -1), np.where(recover, -1, depth + 1))
        self.depth[act] = depth
        first = act[onset & (self.disengaged_at[act] == _NAT)]
        self.disengaged_at[first] = self.month_start(t)

    # --- behaviour within a month ----------------------------------------------------------

    def draw_usage(self, t: int, month: _Month, rows: _Rows) -> None:
        """Daily usage aggregates (one row per customer, day and event type) for month ``t``.

        Usage is possible on whole days strictly after the conversion day and strictly before
        the churn day, so every row is after ``converted_at`` and before ``ended_at``.
        """
        rng, who, lo, hi = self.rng, month.who, month.lo, month.hi
        first_day_s = self.month_start(t)
        n_days = (self.month_start(t + 1) - first_day_s) // _DAY
        first = np.maximum(0, -((first_day_s - lo) // _DAY))  # first whole day from lo on
        last = np.where(hi < self.month_start(t + 1), (hi - first_day_s) // _DAY, n_days)
        day = np.arange(n_days)
        open_days = (day[None, :] >= first[:, None]) & (day[None, :] < last[:, None])
        weekday = (first_day_s // _DAY + day + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
        weekend = weekday >= 5
        months_in = (first_day_s - self.converted[who]) / (_MONTH_DAYS * _DAY)
        depth = np.clip(month.depth, 0, 2)
        intensity = self.intensity[who] * np.where(month.disengaged, _DISENGAGED_USAGE[depth], 1)
        active_any = np.zeros((len(who), n_days), dtype=bool)
        quantity_total = np.zeros(len(who))
        chunk: dict[str, list[np.ndarray]] = {"customer": [], "time": [], "type": [], "qty": []}
        for kind in range(len(USAGE_EVENT_TYPES)):
            rate = _USAGE_DAILY_RATE[kind] * intensity
            if USAGE_EVENT_TYPES[kind] == "integration_call":
                rate = rate * self.has_integration[who]
            elif USAGE_EVENT_TYPES[kind] == "seat_invite":
                rate = rate * np.where(months_in < 3, 3.0, 1.0)
            day_weight = np.where(weekend, _USAGE_WEEKEND_WEIGHT[kind], 1.0)
            chance = -np.expm1(-(rate[:, None] * day_weight[None, :])).astype(np.float32)
            hit = (rng.random(chance.shape, dtype=np.float32) < chance) & open_days
            active_any |= hit
            row, day_of = np.nonzero(hit)
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
        order = np.lexsort((data["type"], data["customer"], data["time"]))
        if self.cfg.mess:  # exact duplicates, kept next to their original
            order = np.repeat(order, 1 + (self.mess_rng.random(len(order)) < _DUPLICATE_SHARE))
        # Strings now rather than at assembly: the integer chunks would double peak memory.
        rows.add(
            customer=pc.take(self.customer_ids, pa.array(data["customer"][order])),
            time=data["time"][order] * 1_000_000,  # microseconds, the output resolution
            type=pc.take(self.usage_event_types, pa.array(data["type"][order])),
            qty=data["qty"][order],
        )

        possible = np.maximum(last - first, 0)
        self.usage_quantity = np.roll(self.usage_quantity, 1, axis=0)
        self.usage_days = np.roll(self.usage_days, 1, axis=0)
        self.usage_quantity[0] = 0.0
        self.usage_days[0] = 0.0
        self.usage_quantity[0, who] = quantity_total
        self.usage_days[0, who] = possible
        self.usage_active_days[:] = 0.0
        self.usage_active_days[who] = active_any.sum(axis=1)

    def draw_tickets(self, month: _Month) -> dict[str, np.ndarray]:
        """Support tickets opened this month, with their life cycle and CSAT."""
        rng, who = self.rng, month.who
        rate = month.share * np.exp(
            -2.1 + 0.6 * self.support_need[who] + 0.15 * np.log(self.seats[who])
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
            + 0.35 * self.fit[customer]
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

    def draw_changes(self, act: np.ndarray, billing_date: np.ndarray, months_in: np.ndarray,
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
        rng = self.rng
        n_act = len(act)
        disengaged = self.depth[act] >= 0
        discount_due = self.discounted[act] & (self.discount_end[act] == billing_date)
        pre_renewal = self.annual[act] & ((months_in + 1) % 12 == 0)
        increase_chance = np.where(
            self.annual[act], 0.3 * pre_renewal, 0.012 * (months_in >= 6)
        )
        decrease_chance = 0.003 * (self.price_sensitivity[act] > 0.5)
        upgrade_chance = _sigmoid(
            -4.4 + 0.6 * self.fit[act] + 0.5 * np.clip(usage_trend, -1, 1)
            - 1.5 * disengaged
        )
        downgrade_chance = _sigmoid(
            -5.0 + 0.5 * self.price_sensitivity[act] + 1.3 * disengaged
            + 0.5 * billing_shock
        ) * (~self.annual[act] | renewal)  # annual contracts shrink only at renewal
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
        self._end_discounts(act[due], billing_date[due])

        pct = rng.uniform(0.06, 0.15, n_act)
        cut = rng.uniform(0.1, 0.2, n_act)
        seat_growth = rng.uniform(1.15, 1.5, n_act)
        seat_cut = rng.uniform(0.6, 0.85, n_act)
        plan = self.plan[act]
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
        before = self.mrr[members]
        self.list_mrr[members] *= factor[priced]
        self.plan[members] = new_plan[priced]
        discount = np.where(self.discounted[members], 1 - self.discount_rate[members], 1.0)
        self.mrr[members] = np.round(self.list_mrr[members] * discount, 2)
        when = billing_date[priced]
        self.changes.add(customer=members, time=when, type=kind[priced], before=before,
                         after=self.mrr[members])
        for change, last in (
            ("price_increase", self.last_price_increase),
            ("price_decrease", self.last_price_decrease),
            ("upgrade", self.last_upgrade),
            ("downgrade", self.last_downgrade),
        ):
            mine = kind[priced] == _CHANGE[change]
            last[members[mine]] = when[mine]
        increased = kind[priced] == _CHANGE["price_increase"]
        # The relative increase as the tables show it (MRR is rounded to cents).
        self.last_price_increase_pct[members[increased]] = (
            self.mrr[members[increased]] / before[increased] - 1
        )

    def draw_touches(self, month: _Month, rows: _Rows) -> None:
        """Post-sale help-center views, community posts and webinars of the month."""
        who = month.who
        quiet = np.where(month.disengaged, 0.4, 1.0)
        monthly_rate = {
            "help_center_view": np.exp(-1.3 + 0.5 * self.support_need[who])
            * np.where(month.onboarding, 1.8, 1.0),
            "community_post": np.exp(-3.2 + 0.8 * self.fit[who]),
            "webinar": 0.05 * np.exp(0.4 * self.fit[who]),
        }
        for kind, rate in monthly_rate.items():
            position, time = _events_in_spans(self.rng, month.share * rate * quiet, month.lo,
                                              month.hi)
            customer = who[position]
            rows.add(customer=customer, time=time, type=np.full(len(customer), _POSTSALE[kind]))
            counts = np.bincount(customer, minlength=self.n)
            if kind == "help_center_view":
                self.help_views = counts
            else:
                history = self.community_posts if kind == "community_post" else self.webinars
                history[:] = np.roll(history, 1, axis=0)
                history[0] = counts

    def draw_nps(self, month: _Month, rows: _Rows) -> None:
        """NPS responses of customers past onboarding; remembers each one's latest score."""
        rng = self.rng
        surveyed = ~month.onboarding
        position, responded = _events_in_spans(rng, 0.06 * surveyed * month.share, month.lo,
                                               month.hi)
        respondent = month.who[position]
        depth = month.depth[position]
        score_mean = (
            7.4
            + 1.2 * self.fit[respondent]
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
        self.nps_score[respondent[latest]] = score[latest]
        self.nps_time[respondent[latest]] = responded[latest]

    def _remember_tickets(self, t: int, month_tickets: dict[str, np.ndarray]) -> None:
        """Keep the tickets next month's support term can see (opened or rated since t-1)."""
        store = month_tickets
        if self.recent_tickets is not None:
            store = {k: np.concatenate([self.recent_tickets[k], v])
                     for k, v in month_tickets.items()}
        since = self.month_start(t - 1)
        keep = (store["opened"] >= since) | (store["csat_time"] >= since)
        self.recent_tickets = {k: v[keep] for k, v in store.items()}

    def _end_discounts(self, customers: np.ndarray, when: np.ndarray) -> None:
        before = self.mrr[customers]
        self.discounted[customers] = False
        self.mrr[customers] = np.round(self.list_mrr[customers], 2)
        self.last_discount_end[customers] = when
        self.changes.add(customer=customers, time=when,
                         type=np.full(len(customers), _CHANGE["discount_end"]),
                         before=before, after=self.mrr[customers])

    # --- the month loop --------------------------------------------------------------------

    def run(self, on_month: Callable[[int, int], None] | None) -> SimulationResult:
        """Simulate every month and assemble the tables and the truth."""
        self.draw_customers()
        presale = self.draw_presale()
        self.draw_onboarding()
        out = _Outputs(
            usage=_Rows("customer", "time", "type", "qty"),
            touches=_Rows("customer", "time", "type"),
            nps=_Rows("customer", "time", "value"),
            tickets=[],
            truth=_Rows("customer", "month", "base", *FAMILIES, "total", "hazard", "renewal",
                        "disengaged", "churned"),
        )
        for t in range(self.months):
            self.simulate_month(t, out)
            if on_month is not None:
                on_month(t + 1, self.months)
        return _assemble(self, presale, out)

    def simulate_month(self, t: int, out: _Outputs) -> None:
        """Month ``t``: hazard and churn of the actives, then everyone's behaviour."""
        now, next_start = self.month_start(t), self.month_start(t + 1)
        act = np.flatnonzero(self.alive & (self.converted < now))
        new = np.flatnonzero((self.converted >= now) & (self.converted < next_start))

        # The hazard, from what is visible at the month start and the latent state.
        months_in = _month_number(now) - self.conversion_month[act]
        billing_date = add_months(self.converted[act], months_in)
        renewal = ~self.annual[act] | (months_in % 12 == 0)
        obs = self.observe(t, act, renewal)
        self.update_disengagement(t, act, obs)
        depth = self.depth[act]
        base = (
            _INTERCEPT
            + _FIT_COEF * self.fit[act]
            + _PRICE_SENSITIVITY_COEF * self.price_sensitivity[act]
            + np.where(depth >= 0, _DISENGAGED_BUMP[np.clip(depth, 0, 2)], 0.0)
        )
        total = base
        for family in FAMILIES:
            total = total + obs[family]
        hazard = np.where(renewal, _sigmoid(total), 0.0)
        churned = self.rng.random(len(act)) < hazard
        out.truth.add(customer=act.astype(np.int32), month=np.full(len(act), t, np.int16),
                      base=base, **{f: obs[f] for f in FAMILIES}, total=total, hazard=hazard,
                      renewal=renewal, disengaged=depth >= 0, churned=churned)

        # Behaviour of everyone who is a customer for part of the month: the actives (churners
        # until their billing date) and this month's conversions (from their conversion). Both
        # index lists are sorted and every new customer converted after every active one, so
        # ``who`` is sorted too.
        who = np.concatenate([act, new])
        lo = np.concatenate([np.full(len(act), now), self.converted[new]])
        hi = np.concatenate([np.where(churned, billing_date, next_start),
                             np.full(len(new), next_start)])
        month = _Month(
            who=who,
            lo=lo,
            hi=hi,
            depth=self.depth[who],
            share=(hi - lo) / (next_start - now),
            onboarding=(now - self.converted[who]) < 2 * _MONTH_DAYS * _DAY,
            billing_shock=np.concatenate([obs["billing_shock"], np.zeros(len(new), bool)]),
            support=np.concatenate([obs["support"], np.zeros(len(new))]),
        )
        self.draw_usage(t, month, out.usage)
        month_tickets = self.draw_tickets(month)
        out.tickets.append(month_tickets)
        self._remember_tickets(t, month_tickets)
        self.draw_touches(month, out.touches)
        self.draw_nps(month, out.nps)

        staying = ~churned
        self.draw_changes(act[staying], billing_date[staying], months_in[staying],
                          renewal[staying], obs["usage_trend"][staying],
                          obs["billing_shock"][staying])
        self.alive[act[churned]] = False
        self.ended[act[churned]] = billing_date[churned]


@dataclass
class _Outputs:
    """Rows collected over the month loop, one collector per output."""

    usage: _Rows
    touches: _Rows
    nps: _Rows
    tickets: list[dict[str, np.ndarray]]
    truth: _Rows


@dataclass
class _Month:
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


# ------------------------------------------------------------------------------------------
# Assembly: arrays -> contract tables
# ------------------------------------------------------------------------------------------


def _utc(seconds: np.ndarray) -> pd.Series:
    """Seconds since the epoch (``_NAT`` for missing) as ``datetime64[us, UTC]``."""
    values = np.asarray(seconds, dtype=np.int64).astype("datetime64[s]")
    return pd.Series(values, dtype="datetime64[us, UTC]")


def _labels(vocabulary: tuple[str, ...] | np.ndarray, codes: np.ndarray) -> pd.Series:
    """Category codes as a pandas ``str`` column; negative codes are missing."""
    dictionary = pa.array(list(vocabulary), type=pa.large_string())
    codes = np.asarray(codes)
    return pc.take(dictionary, pa.array(codes, mask=codes < 0)).to_pandas()


def _concat_chunks(chunks: list[np.ndarray]) -> np.ndarray:
    """Concatenate and release ``chunks``."""
    out = np.concatenate(chunks)
    chunks.clear()
    return out


def _ids(prefix: str, count: int, width: int) -> np.ndarray:
    """Zero-padded identifiers ``<prefix>0000042``."""
    return np.char.add(prefix, np.char.zfill(np.arange(count).astype(str), width))


def _iso_strings(seconds: np.ndarray, offset: np.ndarray, naive: np.ndarray) -> pd.Series:
    """ISO-8601 strings of UTC instants written in the local time of ``offset`` (codes).

    Naive rows are written in UTC wall time without an offset.
    """
    missing = seconds == _NAT
    minutes = np.where(naive, 0, _OFFSET_MINUTES[offset])
    local = np.where(missing, _NAT, seconds + minutes * 60).astype("datetime64[s]")
    suffix = np.where(naive, "", np.array(_TIMESTAMP_OFFSETS)[offset])
    text = np.char.add(np.datetime_as_string(local, unit="s"), suffix).astype(object)
    text[missing] = None
    return pd.Series(text, dtype="str")


def _duplicated(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """``frame`` with about ``_DUPLICATE_SHARE`` of its rows repeated next to the original."""
    copies = 1 + (rng.random(len(frame)) < _DUPLICATE_SHARE)
    return frame.iloc[np.repeat(np.arange(len(frame)), copies)].reset_index(drop=True)


def _blanked(series: pd.Series, rng: np.random.Generator, share: float) -> pd.Series:
    """``series`` with about ``share`` of its values set missing."""
    return series.mask(rng.random(len(series)) < share)


def _frame(table: str, columns: dict[str, pd.Series | np.ndarray]) -> pd.DataFrame:
    """A contract table: columns in contract order, ``int`` columns as nullable ``Int64``."""
    spec = CONTRACT[table]
    return pd.DataFrame({
        c.name: pd.Series(columns[c.name], dtype="Int64") if c.kind == "int" else columns[c.name]
        for c in spec.columns
    }).reset_index(drop=True)


def _event_table(e: _Engine, table: str, rows: dict[str, np.ndarray],
                 vocabulary: tuple[str, ...] = ()) -> pd.DataFrame:
    """An event table (customer, time, optional type and value) sorted by time and customer.

    Args:
        e: The engine (for customer ids).
        table: Contract table name; its second column is the event time and its third, if
            any, takes ``rows["type"]`` (codes into ``vocabulary``) or ``rows["value"]``.
        rows: ``customer`` and ``time`` arrays, plus ``type`` or ``value``.
        vocabulary: Labels of the ``type`` codes.

    Returns:
        The contract table.
    """
    _, time_column, third = CONTRACT[table].column_names
    keys = [rows["customer"], rows["time"]]
    if "type" in rows:
        keys.insert(0, rows["type"])
    order = np.lexsort(keys)
    third_values = (_labels(vocabulary, rows["type"][order]) if "type" in rows
                    else rows["value"][order])
    return _frame(table, {
        "customer_id": e.customer_id(rows["customer"][order]),
        time_column: _utc(rows["time"][order]),
        third: third_values,
    })


def _assemble(e: _Engine, presale: dict[str, np.ndarray], out: _Outputs) -> SimulationResult:
    """Turn the engine's arrays into contract tables and truth frames."""
    tables = {
        "customers": _customers_table(e),
        "presale_touchpoints": _event_table(e, "presale_touchpoints", presale,
                                            PRESALE_TOUCHPOINT_TYPES),
        **_subscription_tables(e),
        "usage_events": _usage_table(out.usage),
        "postsale_touchpoints": _event_table(e, "postsale_touchpoints", _postsale_rows(e, out),
                                             POSTSALE_TOUCHPOINT_TYPES),
        "nps_responses": _event_table(e, "nps_responses", out.nps.concat()),
        "support_tickets": _support_tickets(e, out.tickets),
    }
    if e.cfg.mess:  # usage rows were duplicated month by month already
        for name in ("presale_touchpoints", "postsale_touchpoints", "nps_responses",
                     "support_tickets"):
            tables[name] = _duplicated(tables[name], e.mess_rng)
    return SimulationResult(
        tables={name: tables[name] for name in CONTRACT}, truth=_truth_tables(e, out.truth)
    )


def _customers_table(e: _Engine) -> pd.DataFrame:
    """The CRM table; campaigns are named after their stem and the lead's quarter."""
    lead_month = _month_number(e.lead_created)
    quarter = np.char.add(np.char.add((1970 + lead_month // 12).astype(str), "q"),
                          ((lead_month % 12) // 3 + 1).astype(str))
    stem = e.campaign_stems[np.maximum(e.campaign_stem, 0)]
    campaign = np.char.add(np.char.add(stem, "_"), quarter).astype(object)
    campaign[e.campaign_stem < 0] = None  # organic search and referrals carry no campaign
    customers = _frame("customers", {
        "customer_id": e.customer_id(np.arange(e.n)),
        "lead_created_at": _utc(e.lead_created),
        "converted_at": _utc(e.converted),
        "acquisition_channel": _labels(CHANNELS, e.channel),
        "campaign": pd.Series(campaign, dtype="str"),
        "segment": _labels(SEGMENTS, e.segment),
        "country": _labels(COUNTRIES, e.country),
        "trial_days": e.trial_days,
    })
    if e.cfg.mess:
        for column, share in (("lead_created_at", 0.01), ("acquisition_channel", 0.005),
                              ("campaign", 0.03), ("segment", 0.005), ("country", 0.02),
                              ("trial_days", 0.01)):
            customers[column] = _blanked(customers[column], e.mess_rng, share)
    return customers


def _subscription_tables(e: _Engine) -> dict[str, pd.DataFrame]:
    """``subscriptions`` (one per customer) and ``subscription_changes``."""
    subscription_ids = pa.array(_ids("S", e.n, e.id_width), type=pa.large_string())
    subscriptions = _frame("subscriptions", {
        "subscription_id": subscription_ids.to_pandas(),
        "customer_id": e.customer_id(np.arange(e.n)),
        "plan": _labels(PLANS, e.start_plan),
        "billing_period": _labels(BILLING_PERIODS, np.where(e.annual, _ANNUAL, _MONTHLY)),
        "mrr": e.start_mrr,
        "started_at": _utc(e.converted),
        "ended_at": _utc(e.ended),
    })
    changes = e.changes.concat()
    order = np.lexsort((changes["type"], changes["customer"], changes["time"]))
    customer = changes["customer"][order]
    subscription_changes = _frame("subscription_changes", {
        "subscription_id": pc.take(subscription_ids, pa.array(customer)).to_pandas(),
        "customer_id": e.customer_id(customer),
        "effective_at": _utc(changes["time"][order]),
        "change_type": _labels(SUBSCRIPTION_CHANGE_TYPES, changes["type"][order]),
        "mrr_before": changes["before"][order],
        "mrr_after": changes["after"][order],
    })
    return {"subscriptions": subscriptions, "subscription_changes": subscription_changes}


def _usage_table(usage: _Rows) -> pd.DataFrame:
    """Usage rows, already sorted (and duplicated) month by month with strings built."""
    return _frame("usage_events", {
        "customer_id": pa.chunked_array(usage.pop("customer"), pa.large_string()).to_pandas(),
        "occurred_at": pd.Series(_concat_chunks(usage.pop("time")).view("datetime64[us]"),
                                 dtype="datetime64[us, UTC]"),
        "event_type": pa.chunked_array(usage.pop("type"), pa.large_string()).to_pandas(),
        "quantity": _concat_chunks(usage.pop("qty")),
    })


def _postsale_rows(e: _Engine, out: _Outputs) -> dict[str, np.ndarray]:
    """Monthly post-sale touches plus onboarding ones (timed at conversion) before the end."""
    end = np.where(e.ended == _NAT, e.window_end, e.ended)
    parts = [out.touches.concat()]
    for kind, times in (("onboarding_email_open", e.email_opens),
                        ("onboarding_step_completed", e.step_times)):
        keep = (times != _NAT) & (times < end[:, None])
        customer = np.nonzero(keep)[0]
        parts.append({"customer": customer, "time": times[keep],
                      "type": np.full(len(customer), _POSTSALE[kind])})
    return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}


def _truth_tables(e: _Engine, truth: _Rows) -> dict[str, pd.DataFrame]:
    """``customer_months`` (hazard and its terms) and ``customers`` (churn date, traits)."""
    rows = truth.concat()
    month_starts = e.month_start(np.arange(e.months))
    customer_months = pd.DataFrame({
        "customer_id": e.customer_id(rows["customer"]),
        "month_start": _utc(month_starts[rows["month"]]),
        "churn_probability": rows["hazard"],
        **{f"logit_{family}": rows[family] for family in FAMILIES},
        "logit_base": rows["base"],
        "logit_total": rows["total"],
        "renewal_month": rows["renewal"],
        "disengaged": rows["disengaged"],
        "churned": rows["churned"],
    })
    customers = pd.DataFrame({
        "customer_id": e.customer_id(np.arange(e.n)),
        "churned_at": _utc(e.ended),
        "product_fit": e.fit,
        "price_sensitivity": e.price_sensitivity,
        "support_need": e.support_need,
        "usage_intensity": e.intensity,
        "disengaged_at": _utc(e.disengaged_at),
    })
    return {"customer_months": customer_months, "customers": customers}


def _support_tickets(e: _Engine, months: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    """The support_tickets table as seen at the window end (later times not yet known)."""
    tk = {k: np.concatenate([m[k] for m in months]) for k in months[0]}
    order = np.lexsort((tk["customer"], tk["opened"]))
    tk = {k: v[order] for k, v in tk.items()}
    for column in ("first_response", "resolved", "csat_time"):
        tk[column] = np.where(tk[column] < e.window_end, tk[column], _NAT)
    unresolved = tk["resolved"] == _NAT
    tk["reopened"] = tk["reopened"] & ~unresolved
    rated = tk["csat_time"] != _NAT
    times = {"opened_at": tk["opened"], "first_response_at": tk["first_response"],
             "resolved_at": tk["resolved"], "csat_received_at": tk["csat_time"]}
    if e.cfg.mess:
        # One offset per row, as if each row came from a system in its own time zone.
        rng = e.mess_rng
        offset = rng.integers(0, len(_TIMESTAMP_OFFSETS), len(order))
        naive = rng.random(len(order)) < _NAIVE_TIMESTAMP_SHARE
        stamps = {name: _iso_strings(value, offset, naive) for name, value in times.items()}
    else:
        stamps = {name: _utc(value) for name, value in times.items()}
    frame = _frame("support_tickets", {
        "ticket_id": _ids("T", len(order), max(8, len(str(len(order))))),
        "customer_id": e.customer_id(tk["customer"]),
        **stamps,
        "channel": _labels(TICKET_CHANNELS, tk["channel"]),
        "category": _labels(TICKET_CATEGORIES, tk["category"]),
        "priority": _labels(TICKET_PRIORITIES, tk["priority"]),
        "reopened": pd.Series(tk["reopened"], dtype="boolean"),
        "csat_score": pd.arrays.IntegerArray(np.where(rated, tk["csat"], 0), ~rated),
    })
    if e.cfg.mess:
        rng = e.mess_rng
        for column, share in (("channel", 0.02), ("category", 0.01), ("priority", 0.005),
                              ("reopened", 0.005)):
            frame[column] = _blanked(frame[column], rng, share)
    return frame


# ------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------


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
    return _Engine(cfg).run(on_month)


def monthly_churn_rate(truth: dict[str, pd.DataFrame]) -> float:
    """Churned customer-months over customer-months active at the month start."""
    months = truth["customer_months"]
    return float(months["churned"].mean()) if len(months) else 0.0


def run_simulate(config: SimulateConfig, out_dir: Path, truth_dir: Path) -> None:
    """Simulate, write ``<table>.parquet`` to ``out_dir`` and the truth to ``truth_dir``.

    Args:
        config: Simulator knobs.
        out_dir: Directory for the raw contract tables.
        truth_dir: Directory for the ground truth (never read by training).
    """
    started = time.perf_counter()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
    ) as progress:
        task = progress.add_task("simulating months", total=config.months)
        result = simulate(config, on_month=lambda done, _: progress.update(task, completed=done))
    for name, frame in result.tables.items():
        write_parquet(frame, Path(out_dir) / table_file_name(name))
    for name, frame in result.truth.items():
        write_parquet(frame, Path(truth_dir) / table_file_name(name))

    customers = result.truth["customers"]
    logger.info(
        "simulated and wrote %s customers over %s months from %s (seed %s, mess %s) in %.1f s",
        f"{config.customers:,}", config.months, config.start_date, config.seed, config.mess,
        time.perf_counter() - started,
    )
    for name, frame in result.tables.items():
        logger.info("  %-22s %12s rows", name, f"{len(frame):,}")
    logger.info(
        "churn: %s customers churned (%.1f%%), monthly churn rate %.2f%%; "
        "tables in %s, truth in %s",
        f"{customers['churned_at'].notna().sum():,}",
        100 * customers["churned_at"].notna().mean(),
        100 * monthly_churn_rate(result.truth),
        out_dir,
        truth_dir,
    )
