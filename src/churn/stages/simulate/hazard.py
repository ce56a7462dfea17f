"""The churn hazard: the truth every later stage is measured against.

For every customer active at the start of month ``t`` (converted before it, not churned)::

    logit_total = logit_base + logit_acquisition + logit_billing + logit_usage
                  + logit_support + logit_engagement + logit_exposure
    churn_probability = sigmoid(logit_total)   if the contract can end in month t
                      = 0                      otherwise (annual plan, no renewal in t)

``logit_exposure`` is the annual renewal bump (a year of churn decisions landing on the one
month an annual contract can end): it says *when* a customer can leave, not why, so the truth
records it apart from the family terms (``logit_billing`` holds the billing drivers only). The
hazard itself is computed exactly as before the split (same sum, same draws, same churns):
see :func:`observe`.

The customer churns in month ``t`` with that probability, at its billing date inside the
month. ``logit_base`` is the intercept plus latent traits (product fit, price sensitivity)
and a latent disengagement state. Each family term is a function of rows stamped before the
month start only (tests recompute all five from the tables), so a point-in-time model can
learn it:

* ``acquisition``: channel, docs/help-center views before buying, trial, demo; fades with
  tenure.
* ``billing``: starting plan, price increase (last 3 months, by its
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
"""

from __future__ import annotations

import numpy as np

from churn.domain.families import FAMILIES
from churn.stages.simulate.arrays import _DAY, _MONTH_DAYS, _NAT, _any_by, _sigmoid
from churn.stages.simulate.world import CHANNELS, World

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


def _fade(tenure_months: np.ndarray, decay_months: float) -> np.ndarray:
    """Weight of an effect that fades with tenure from 1 to ``_FADE_FLOOR``."""
    return _FADE_FLOOR + (1 - _FADE_FLOOR) * np.exp(-tenure_months / decay_months)


def acquisition_static(w: World) -> np.ndarray:
    """Acquisition log-odds of every customer before fading (needs :meth:`World.draw_presale`).

    Args:
        w: The world, with its pre-sale journey drawn.

    Returns:
        One value per customer.
    """
    return (
        _CHANNEL_EFFECT[w.channel]
        + _PRESALE_READING_COEF * np.log1p(w.presale_reading)
        + _TRIAL_EFFECT * (w.trial_days > 0)
        + _DEMO_EFFECT * w.presale_demo
    )


def base_logit(w: World, act: np.ndarray) -> np.ndarray:
    """The latent part of the log-odds of ``act``: intercept, traits and disengagement."""
    depth = w.depth[act]
    return (
        _INTERCEPT
        + _FIT_COEF * w.fit[act]
        + _PRICE_SENSITIVITY_COEF * w.price_sensitivity[act]
        + np.where(depth >= 0, _DISENGAGED_BUMP[np.clip(depth, 0, 2)], 0.0)
    )


def churn_probability(
    base: np.ndarray, terms: dict[str, np.ndarray], renewal: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The total log-odds (base plus every family and the exposure) and the hazard.

    Args:
        base: :func:`base_logit` of the actives.
        terms: The family terms from :func:`observe` (billing read with its exposure, as
            ``billing_with_exposure``).
        renewal: Whether each contract can end this month; the hazard is 0 where not.

    Returns:
        ``logit_total`` and ``churn_probability``.
    """
    total = base
    for family in FAMILIES:
        total = total + terms["billing_with_exposure" if family == "billing" else family]
    return total, np.where(renewal, _sigmoid(total), 0.0)


def observe(w: World, t: int, act: np.ndarray, renewal: np.ndarray) -> dict[str, np.ndarray]:
    """Family log-odds terms for ``act`` from what is visible before month ``t`` starts.

    Args:
        w: The world at the start of month ``t``.
        t: Month of the window.
        act: Customers active at the month start.
        renewal: Whether each contract can end this month.

    Returns:
        The five family terms (``billing`` without the renewal bump), ``exposure`` (the
        renewal bump), ``billing_with_exposure`` (their sum as the hazard uses it) and helpers
        (``billing_shock``, ``usage_trend``).
    """
    n = w.n
    now = w.month_start(t)
    one_ago, two_ago, three_ago = (w.month_start(t - k) for k in (1, 2, 3))
    tenure = (now - w.converted[act]) / (_MONTH_DAYS * _DAY)

    acquisition = w.acquisition_static[act] * _fade(tenure, _ACQUISITION_DECAY_MONTHS)

    increase_recent = w.last_price_increase[act] >= three_ago
    discount_ended = w.last_discount_end[act] >= two_ago
    plan = _PLAN_EFFECT[w.start_plan[act]]
    exposure = _ANNUAL_RENEWAL_EFFECT * (w.annual[act] & renewal)
    changes = (
        _PRICE_INCREASE_COEF * w.last_price_increase_pct[act] * increase_recent,
        _DISCOUNT_ENDED_EFFECT * discount_ended,
        _DISCOUNT_ACTIVE_EFFECT * w.discounted[act],
        _DOWNGRADE_EFFECT * (w.last_downgrade[act] >= three_ago),
        _UPGRADE_EFFECT * (w.last_upgrade[act] >= three_ago),
        _PRICE_DECREASE_EFFECT * (w.last_price_decrease[act] >= three_ago),
    )
    # Two sums: the family term without the renewal bump (the truth of *why*), and the term the
    # hazard has always used, summed in the original order so floating-point rounding, and so
    # every draw and churn, stays bit-identical to the simulator before the split.
    billing = plan
    billing_with_exposure = plan + exposure
    for change in changes:
        billing = billing + change
        billing_with_exposure = billing_with_exposure + change

    days = w.usage_days[:, act]
    quantity = w.usage_quantity[:, act]
    enough = days[0] >= _USAGE_MIN_DAYS
    share = np.divide(w.usage_active_days[act], days[0], out=np.zeros(len(act)),
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
    if w.recent_tickets is not None:
        tk = w.recent_tickets
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

    step_times = w.step_times[act]
    steps = ((step_times != _NAT) & (step_times < now)).sum(axis=1)
    score = w.nps_score[act]
    nps_known = (score >= 0) & (w.nps_time[act] >= now - _NPS_MEMORY_DAYS * _DAY)
    help_views = w.help_views[act]
    engagement = (
        (_ONBOARDING_EFFECT_ZERO_STEPS + _ONBOARDING_EFFECT_PER_STEP * steps)
        * _fade(tenure, _ONBOARDING_DECAY_MONTHS)
        + nps_known * np.where(score <= _NPS_DETRACTOR_MAX,
                               _NPS_DETRACTOR_EFFECT
                               + _NPS_DETRACTOR_SLOPE * (_NPS_DETRACTOR_MAX - score), 0.0)
        + nps_known * np.where(score >= _NPS_PROMOTER_MIN, _NPS_PROMOTER_EFFECT, 0.0)
        + _COMMUNITY_EFFECT * (w.community_posts[:, act].sum(axis=0) > 0)
        + _WEBINAR_EFFECT * (w.webinars[:, act].sum(axis=0) > 0)
        + _HELP_SELF_SERVE_EFFECT * ((help_views >= 1) & (help_views < _HELP_STRUGGLE_VIEWS))
        + _HELP_STRUGGLE_EFFECT * (help_views >= _HELP_STRUGGLE_VIEWS)
    )
    return {
        "acquisition": acquisition,
        "billing": billing,
        "exposure": exposure,
        "billing_with_exposure": billing_with_exposure,
        "usage": usage,
        "support": support,
        "engagement": engagement,
        "billing_shock": increase_recent | discount_ended,
        "usage_trend": trend,
    }

def update_disengagement(
    w: World, t: int, act: np.ndarray, obs: dict[str, np.ndarray]
) -> None:
    """Move the latent disengagement state of ``act`` one month on (draws from ``w.rng``).

    Onset odds rise with the visible support term and billing shocks in ``obs``
    (from :func:`observe`).
    """
    rng = w.rng
    depth = w.depth[act]
    engaged = depth < 0
    onset_odds = (
        _DISENGAGE_INTERCEPT
        - 0.6 * w.fit[act]
        + 0.25 * w.price_sensitivity[act]
        + 0.8 * np.maximum(obs["support"], 0.0)
        + (0.6 + 0.4 * w.price_sensitivity[act]) * obs["billing_shock"]
    )
    draw = rng.random(len(act))
    onset = engaged & (draw < _sigmoid(onset_odds))
    recover = ~engaged & (draw < _RECOVERY_PROBABILITY)
    depth = np.where(engaged, np.where(onset, 0, -1), np.where(recover, -1, depth + 1))
    w.depth[act] = depth
    first = act[onset & (w.disengaged_at[act] == _NAT)]
    w.disengaged_at[first] = w.month_start(t)

