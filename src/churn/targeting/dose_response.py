"""A play's effect as a dose response: log-odds removed per unit of its families' contribution.

The segment estimates of :mod:`~churn.targeting.uplift` split a play's few hundred control rows
three ways and give every customer of a segment the same save rate. A play acts on the hazard
terms of the families it addresses, so the log-odds it can remove grows with how much of the
customer's risk sits there: the play's *dose* (its families' positive SHAP contributions, in
log-odds). One parameter per play, pooled over all its logged rows, says how much:

    logit P(churn | x, treated) = alpha + logit(q(x)) - theta * dose(x) * treated

with ``q`` the churn model's probability before the action (an offset: the pre-treatment risk),
``alpha`` a calibration shift shared by both arms (the logged population is chosen partly by
risk, so the model need not be calibrated on it), and ``theta`` the share of the dose a contact
removes. It is a logistic regression with an offset, fitted by Newton's method; the standard
error of ``theta`` is the inverse Fisher information (the usual Wald interval; Agresti,
"Categorical Data Analysis", ch. 5). Randomisation of the control group makes ``theta`` an
effect, not a correlation: ``dose x treated`` is independent of the outcome's other causes
given the dose.

A customer's save rate is then ``1 - sigmoid(logit(p) - theta * dose) / p`` (``p`` the scored
probability): zero at zero dose (a play aimed elsewhere does nothing) and larger where the
addressed family drives the risk.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

_EPS = 1e-6


@dataclass(frozen=True)
class DoseEffect:
    """Fitted dose response of one play.

    Attributes:
        theta: Log-odds removed per unit of dose by a contact.
        standard_error: Wald standard error of ``theta``.
        alpha: Calibration shift of the model's log-odds on the logged rows.
        treated_rows: Logged treated rows.
        control_rows: Logged control rows.
    """

    theta: float
    standard_error: float
    alpha: float
    treated_rows: int
    control_rows: int

    def to_dict(self) -> dict[str, object]:
        """The fit as a JSON-ready dict."""
        return asdict(self)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def fit_dose_response(
    churned: np.ndarray,
    control: np.ndarray,
    expected: np.ndarray,
    dose: np.ndarray,
    *,
    max_iter: int = 50,
) -> DoseEffect | None:
    """Fit ``theta`` (and the calibration ``alpha``) by maximum likelihood.

    Args:
        churned: 1 if the row churned within the horizon, else 0.
        control: True for control rows.
        expected: The churn model's probability before the action.
        dose: The play's dose of each row (log-odds, >= 0).
        max_iter: Newton steps at most.

    Returns:
        The fit, or ``None`` when an arm is empty, no treated row has a dose, or the outcomes
        are all equal (the likelihood has no maximum).
    """
    y = np.asarray(churned, dtype=np.float64)
    control = np.asarray(control, dtype=bool)
    n_t, n_c = int((~control).sum()), int(control.sum())
    treated_dose = np.where(control, 0.0, np.nan_to_num(np.asarray(dose, dtype=np.float64)))
    if n_t == 0 or n_c == 0 or not (treated_dose > 0).any() or y.min() == y.max():
        return None
    offset = _logit(expected)
    # Columns: alpha (1), -dose x treated (theta's sign: a positive theta lowers churn).
    design = np.column_stack([np.ones_like(y), -treated_dose])
    beta = np.zeros(2)
    for _ in range(max_iter):
        p = _sigmoid(offset + design @ beta)
        weight = p * (1 - p)
        information = design.T @ (design * weight[:, None])
        step = np.linalg.solve(information, design.T @ (y - p))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    p = _sigmoid(offset + design @ beta)
    information = design.T @ (design * (p * (1 - p))[:, None])
    covariance = np.linalg.inv(information)
    return DoseEffect(theta=float(beta[1]), standard_error=float(np.sqrt(covariance[1, 1])),
                      alpha=float(beta[0]), treated_rows=n_t, control_rows=n_c)


def save_rates_from_dose(
    probability: np.ndarray, dose: np.ndarray, theta: float | np.ndarray
) -> np.ndarray:
    """Each customer's save rate ``1 - sigmoid(logit(p) - theta * dose) / p``.

    Args:
        probability: Scored churn probability.
        dose: The play's dose for each customer (missing: 0).
        theta: Log-odds removed per unit of dose (:class:`DoseEffect`), one for all rows or
            one per row.

    Returns:
        The share of would-be churners the contact keeps (0 where the dose or ``p`` is 0).
    """
    p = np.clip(np.asarray(probability, dtype=np.float64), _EPS, 1 - _EPS)
    d = np.nan_to_num(np.asarray(dose, dtype=np.float64))
    return 1.0 - _sigmoid(_logit(p) - theta * d) / p


def implied_save_rate(probability: np.ndarray, dose: np.ndarray, fit: DoseEffect
                      ) -> tuple[float, float]:
    """The fit's average save rate over rows, ``1 - sum(p_treated) / sum(p)``, and its SE.

    The same ratio-of-sums the truth reports for a group of logged rows, so the two can be
    compared. The standard error is the delta method through ``theta``.
    """
    p = np.clip(np.asarray(probability, dtype=np.float64), _EPS, 1 - _EPS)
    d = np.nan_to_num(np.asarray(dose, dtype=np.float64))
    treated = _sigmoid(_logit(p) - fit.theta * d)
    rate = 1.0 - treated.sum() / p.sum()
    # d rate / d theta = sum(treated (1 - treated) dose) / sum(p)
    slope = float((treated * (1 - treated) * d).sum() / p.sum())
    return float(rate), abs(slope) * fit.standard_error


def fit_play_dose_effects(logged: dict[str, tuple[np.ndarray, ...]], min_rows_per_arm: int
                          ) -> dict[str, DoseEffect]:
    """:func:`fit_dose_response` per play, kept where both arms have enough rows.

    Args:
        logged: Play -> (churned, control, expected, dose) arrays of its logged rows.
        min_rows_per_arm: Treated and control rows (each) a play needs.

    Returns:
        Play -> its fit, for the plays with enough rows and a defined fit.
    """
    fits = {}
    for play, (churned, control, expected, dose) in logged.items():
        control = np.asarray(control, dtype=bool)
        if min(int((~control).sum()), int(control.sum())) < min_rows_per_arm:
            continue
        fit = fit_dose_response(churned, control, expected, dose)
        if fit is not None:
            fits[play] = fit
    return fits
