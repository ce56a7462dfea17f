"""The simulated world: vocabularies, segments, channels, plans, prices and the customers.

:class:`World` is the mutable state of one simulation run. It draws, once, every customer's
conversion, static attributes, latent traits (truth only), pre-sale journey and onboarding,
and holds the running state the month loop (:mod:`churn.stages.simulate.engine`) moves on:
subscription and billing state, the latent disengagement and the short behaviour history the
hazard looks back on.

The business
    A starting base of customers (converted before ``start_date``, 35%) plus monthly cohorts
    that convert inside the window. Each customer has one subscription (starter, pro or
    business; billed monthly or annually) that ends when the customer churns. Subscriptions end
    only at a billing date, ``started_at + k months``; annual ones only at a renewal
    anniversary, ``started_at + 12k months``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churn.config import ConfigError, SimulateConfig
from churn.domain.billing_calendar import add_months
from churn.domain.contract import (
    BILLING_PERIODS,
    POSTSALE_TOUCHPOINT_TYPES,
    PRESALE_TOUCHPOINT_TYPES,
    SUBSCRIPTION_CHANGE_TYPES,
)
from churn.stages.simulate.arrays import (
    _DAY,
    _MONTH_DAYS,
    _NAT,
    _NEVER,
    _categorical,
    _ids,
    _month_number,
    _Rows,
    _sigmoid,
)

LATENT_TRAITS = ("product_fit", "price_sensitivity", "support_need", "usage_intensity")

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
TICKET_CHANNELS = ("email", "chat", "phone")
TICKET_CATEGORIES = ("billing", "technical", "how_to", "bug", "account")
_PRESALE = {name: code for code, name in enumerate(PRESALE_TOUCHPOINT_TYPES)}
_POSTSALE = {name: code for code, name in enumerate(POSTSALE_TOUCHPOINT_TYPES)}
_CHANGE = {name: code for code, name in enumerate(SUBSCRIPTION_CHANGE_TYPES)}
_CHANNEL = {name: code for code, name in enumerate(CHANNELS)}
_PAID_CHANNELS = [_CHANNEL["paid_search"], _CHANNEL["paid_social"]]
_SALES_LED_CHANNELS = [_CHANNEL["partner"], _CHANNEL["outbound_sales"], _CHANNEL["events"]]
_ENTERPRISE = SEGMENTS.index("enterprise")
_ONBOARDING_EMAIL_DAYS = np.array([0, 1, 3, 7, 14, 21])
_ONBOARDING_STEPS = 5


class World:
    """Mutable state of one simulation run: the customers and everything that moves on.

    Set up with :meth:`draw_customers`, :meth:`draw_presale` and :meth:`draw_onboarding` (in
    this order: they share one random stream), then moved month by month by the engine.
    ``acquisition_static`` (the acquisition log-odds before fading) is set by the engine from
    :func:`churn.stages.simulate.hazard.acquisition_static` after the pre-sale draw.
    """

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
        self.acquisition_static: np.ndarray  # set by the engine after draw_presale

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
        self.end_discounts(ended, self.discount_end[ended])

    def draw_presale(self) -> dict[str, np.ndarray]:
        """Pre-sale touches between lead creation and conversion; remembers reading and demos."""
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

        # What the acquisition hazard term remembers of the journey.
        self.presale_reading = (
            counts[:, _PRESALE["docs_view"]] + counts[:, _PRESALE["help_center_view"]]
        )
        self.presale_demo = counts[:, _PRESALE["demo"]] > 0

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

    def end_discounts(self, customers: np.ndarray, when: np.ndarray) -> None:
        """End the running discounts of ``customers`` at ``when`` and record the changes."""
        before = self.mrr[customers]
        self.discounted[customers] = False
        self.mrr[customers] = np.round(self.list_mrr[customers], 2)
        self.last_discount_end[customers] = when
        self.changes.add(customer=customers, time=when,
                         type=np.full(len(customers), _CHANGE["discount_end"]),
                         before=before, after=self.mrr[customers])
