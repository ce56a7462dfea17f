"""A past retention team and the true effect of its plays (``simulate.retention_actions``).

The truth model is fixed here, apart from any method that estimates it (docs/targeting.md):

* **Past policy.** At each month start the team contacts about :data:`CONTACT_SHARE` (5%) of
  the active customers not already under a play: half the highest true hazards of the month,
  half at random among the rest. Each contact gets a play drawn uniformly from :data:`PLAYS`
  (the team had no targeting rule, so the log is also randomised over plays), and a random
  :data:`CONTROL_SHARE` (20%) of the chosen are held out as a control group (logged, not
  treated).
* **Driving families.** A family drives a customer at a month when its log-odds term is above
  the mean of that term over the month's active customers; its *excess* is
  ``max(term - mean, 0)``.
* **Effect.** Every active customer and play has a fraction ``f ~ Beta(2, 5)`` (mean 2/7 ~
  0.29), drawn once per customer, play and month. A treated customer's hazard terms of the
  play's families are lowered by ``f * excess`` (the excess at the contact month) for
  :data:`EFFECT_MONTHS` (3) months; a play aimed at families that are not driving has no
  effect (zero excess). Nothing else in the hazard changes.
* **Discount.** ``discount_offer`` lowers the MRR the customer pays by :data:`DISCOUNT_RATE`
  for the 3 months; the truth's revenue kept is net of it (``discount_given``). The exported
  subscription tables do not show it (the billing features and the billing term are unchanged
  by it: a play changes only the addressed families' terms).

The truth table ``retention_truth`` holds, for every active customer, month and play, what the
play *would* do if contacted at that month start: the fraction, the log-odds reduction, the
probability of churning within 2 months untreated and treated, and the revenue kept over the
next 12 months. The 12-month projection holds the customer's month terms fixed (the annual
renewal bump only in renewal months) and compares survival with and without the reduction:
``saved = sum_{m=1..12} (S_treated(m) * MRR_treated(m) - S_untreated(m) * MRR)``, where
``MRR_treated`` is the MRR after a discount (equal to MRR for the other plays).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churn.domain.families import FAMILIES
from churn.stages.simulate.arrays import _labels, _month_number, _sigmoid
from churn.stages.simulate.hazard import _ANNUAL_RENEWAL_EFFECT
from churn.stages.simulate.sinks import MonthlyTable
from churn.stages.simulate.world import World

#: Plays of the simulated team and the families each addresses (the default playbook's names).
PLAYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("support_escalation", ("support",)),
    ("adoption_session", ("usage",)),
    ("success_review", ("engagement",)),
    ("discount_offer", ("billing",)),
    ("fit_winback", ("acquisition",)),
)
CONTACT_SHARE = 0.05
RISK_SHARE = 0.5  # of the contacts, chosen by the highest true hazard
CONTROL_SHARE = 0.2
EFFECT_MONTHS = 3
EFFECT_BETA = (2.0, 5.0)
DISCOUNT_RATE = 0.2
VALUE_MONTHS = 12
HORIZON_MONTHS = 2  # the truth's churn-within-horizon columns (label.horizon_days 60)
_CONTACT_HOUR = 9  # actions are stamped at 09:00 UTC on the month start
_SEED_SALT = 15  # the team draws from its own stream: the business stream is unchanged
_PLAY_NAMES = np.array([name for name, _ in PLAYS])


class RetentionTeam:
    """The past retention team: picks contacts every month and applies the true effects.

    Args:
        w: The world (customers drawn).
        truth: Receives the ``retention_truth`` month by month (built by
            :func:`retention_truth_frame`).
    """

    def __init__(self, w: World, truth: MonthlyTable) -> None:
        self.w = w
        self.rng = np.random.default_rng([w.cfg.seed, _SEED_SALT])
        self.reduction = np.zeros(w.n)  # log-odds removed while under a play
        self.until = np.full(w.n, -1)  # last month of the running effect
        self.actions: list[dict[str, np.ndarray]] = []
        self.truth = truth
        self._play_masks = np.array(
            [[family in families for family in FAMILIES] for _, families in PLAYS]
        )

    def act(self, t: int, act: np.ndarray, base: np.ndarray, obs: dict[str, np.ndarray],
            renewal: np.ndarray) -> np.ndarray:
        """Month ``t``: record the truth, contact customers, return the plays' log-odds change.

        The family terms in ``obs`` are left as the tables show them (features and the
        explanation checks recompute them); the plays' reduction of the addressed terms is
        returned apart and recorded as the truth's ``logit_retention``.

        Args:
            t: Month of the window.
            act: Customers active at the month start.
            base: Their latent log-odds (:func:`~churn.stages.simulate.hazard.base_logit`).
            obs: Their family terms (:func:`~churn.stages.simulate.hazard.observe`).
            renewal: Whether each contract can end this month.

        Returns:
            The log-odds change (<= 0) of each customer in ``act`` this month.
        """
        if len(act) == 0:
            return np.zeros(0)
        w = self.w
        terms = np.column_stack([obs[f] for f in FAMILIES])
        excess = np.maximum(terms - terms.mean(axis=0), 0.0)
        fraction = self.rng.beta(*EFFECT_BETA, size=(len(act), len(PLAYS)))
        # (customers, plays, families): the reduction each play would bring now.
        per_family = fraction[:, :, None] * excess[:, None, :] * self._play_masks[None]
        # The renewal bump is exposure, not a family term: no play lowers it, but the hazard
        # (and so whom the risk-based half of the policy picks) includes it.
        total = base + terms.sum(axis=1) + obs["exposure"]
        self._record_truth(t, act, total, renewal, fraction, per_family.sum(axis=2))

        chosen, play, control = self._choose(t, act, total, renewal)
        treated = chosen[~control]
        rows = np.searchsorted(act, treated)
        self.reduction[treated] = per_family[rows, play[~control]].sum(axis=1)
        self.until[treated] = t + EFFECT_MONTHS - 1
        self.actions.append({
            "customer": chosen,
            "time": np.full(len(chosen), w.month_start(t) + _CONTACT_HOUR * 3600),
            "play": play,
            "control": control,
        })

        running = self.until[act] >= t
        return -np.where(running, self.reduction[act], 0.0)

    def _choose(self, t: int, act: np.ndarray, total: np.ndarray, renewal: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The month's contacts (sorted customer indices), their plays and control flags."""
        free = self.until[act] < t
        candidates = np.flatnonzero(free)
        n_contact = min(round(CONTACT_SHARE * len(act)), len(candidates))
        n_risk = round(RISK_SHARE * n_contact)
        hazard = np.where(renewal, _sigmoid(total), 0.0)[candidates]
        by_risk = candidates[np.argsort(-hazard, kind="stable")[:n_risk]]
        rest = np.setdiff1d(candidates, by_risk)
        at_random = self.rng.choice(rest, size=n_contact - n_risk, replace=False)
        rows = np.sort(np.concatenate([by_risk, at_random]))
        play = self.rng.integers(0, len(PLAYS), len(rows))
        control = self.rng.random(len(rows)) < CONTROL_SHARE
        return act[rows], play, control

    def _record_truth(self, t: int, act: np.ndarray, total: np.ndarray, renewal: np.ndarray,
                      fraction: np.ndarray, reduction: np.ndarray) -> None:
        """Every active customer's true effect of each play if contacted at month ``t``.

        The state the month changes afterwards (plans, prices) is read here; the projection
        itself draws nothing and may run on the truth table's job thread while the month goes
        on (:meth:`~churn.stages.simulate.sinks.MonthlyTable.add_from`).
        """
        w = self.w
        months_in = _month_number(w.month_start(t)) - w.conversion_month[act]
        annual = w.annual[act]  # copies: the month's plan changes come after this
        mrr = w.mrr[act]

        def truth_rows() -> dict[str, np.ndarray]:
            ahead = np.arange(VALUE_MONTHS)
            renews = ~annual[:, None] | ((months_in[:, None] + ahead) % 12 == 0)
            unbumped = total - _ANNUAL_RENEWAL_EFFECT * (annual & renewal)
            logit = unbumped[:, None] + _ANNUAL_RENEWAL_EFFECT * (annual[:, None] & renews)
            s0, s1 = project_survival(logit, renews, reduction)
            gross = mrr[:, None] * (s1 - s0[:, None, :]).sum(axis=2)
            discount = np.zeros_like(gross)
            d = [name for name, _ in PLAYS].index("discount_offer")
            discount[:, d] = DISCOUNT_RATE * mrr * s1[:, d, :EFFECT_MONTHS].sum(axis=1)
            saved = gross - discount  # a discount lowers the MRR the customer pays
            n_plays = len(PLAYS)
            return {
                "customer": np.repeat(act, n_plays),
                "month": np.full(len(act) * n_plays, t, np.int16),
                "play": np.tile(np.arange(n_plays), len(act)),
                "fraction": fraction.ravel().astype(np.float32),
                "logit_reduction": reduction.ravel().astype(np.float32),
                "churn_untreated": np.repeat(1 - s0[:, HORIZON_MONTHS - 1], n_plays
                                             ).astype(np.float32),
                "churn_treated": (1 - s1[:, :, HORIZON_MONTHS - 1]).ravel().astype(np.float32),
                "saved_revenue": saved.ravel().astype(np.float32),
                "discount_given": discount.ravel().astype(np.float32),
            }

        self.truth.add_from(truth_rows)

    def actions_table(self) -> pd.DataFrame:
        """The raw ``retention_actions`` table."""
        w = self.w
        actions = {k: np.concatenate([a[k] for a in self.actions]) for k in self.actions[0]}
        return pd.DataFrame({
            "customer_id": w.customer_id(actions["customer"]),
            "action_at": _utc(actions["time"]),
            "play": _labels(_PLAY_NAMES, actions["play"]),
            "control": pd.array(actions["control"], dtype="boolean"),
        })


def project_survival(logit: np.ndarray, renews: np.ndarray, reduction: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Survival to the end of each month ahead, untreated and under each play.

    Untreated, month ``m``'s hazard is ``sigmoid(logit[:, m])`` where the contract can end
    (``renews``), else 0; under a play the first :data:`EFFECT_MONTHS` months' log-odds are
    lowered by the play's ``reduction``. The months after the effect have the untreated
    hazards, so they are not computed again for every play: the treated survival carries on
    from the last treated month by the same multiplications ``np.cumprod`` makes, and gives
    the numbers of the whole ``(customers, plays, months)`` computation bit for bit (a test
    compares the two) with a quarter of its hazards (simulate at a million customers spent
    about a fifth of its time here).

    Args:
        logit: Untreated log-odds, ``(customers, months)``.
        renews: Whether the contract can end in each month, ``(customers, months)``.
        reduction: Each play's log-odds reduction, ``(customers, plays)``.

    Returns:
        ``s0`` ``(customers, months)`` and ``s1`` ``(customers, plays, months)``.
    """
    h0 = np.where(renews, _sigmoid(logit), 0.0)
    survive = 1 - h0
    s0 = np.cumprod(survive, axis=1)
    months, effect = logit.shape[1], min(EFFECT_MONTHS, logit.shape[1])
    s1 = np.empty((len(logit), reduction.shape[1], months))
    h1 = np.where(renews[:, None, :effect],
                  _sigmoid(logit[:, None, :effect] - reduction[:, :, None]), 0.0)
    s1[:, :, :effect] = np.cumprod(1 - h1, axis=2)
    for month in range(effect, months):
        np.multiply(s1[:, :, month - 1], survive[:, None, month], out=s1[:, :, month])
    return s0, s1


def retention_truth_frame(w: World, rows: dict[str, np.ndarray]) -> pd.DataFrame:
    """One month's rows of the ``retention_truth`` (what each play would do per customer).

    Args:
        w: The world (customer ids and month starts).
        rows: The month's arrays as :class:`RetentionTeam` records them.
    """
    rows = dict(rows)
    return pd.DataFrame({
        "customer_id": w.customer_id(rows.pop("customer")),
        "month_start": _utc(w.month_start(np.arange(w.months))[rows.pop("month")]),
        "play": _labels(_PLAY_NAMES, rows.pop("play")),
        **rows,
    })


def _utc(seconds: np.ndarray) -> pd.Series:
    return pd.Series(pd.to_datetime(np.asarray(seconds) * 1_000_000, unit="us", utc=True)
                     .astype("datetime64[us, UTC]"))

