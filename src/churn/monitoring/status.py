"""The alert: ok / warn / retrain from drift and performance, with a reason per finding.

Rules (thresholds from ``params.yaml``'s ``monitor`` section, see docs/monitoring.md):

* a feature's PSI at or above ``psi_warn`` warns; at or above ``psi_retrain`` it counts as
  *strongly drifted*, and ``retrain_drifted_features`` strongly drifted features ask for a
  retrain (one feature alone is a data problem to look at before it is a model problem);
* the score's own PSI: ``psi_warn`` warns, ``psi_retrain`` asks for a retrain;
* a missing rate rising by ``missing_rate_change_warn`` or more, or an unseen-category share at
  or above ``unseen_share_warn``, warns (a broken export looks like this);
* the realized churn rate of the latest closed cutoff more than ``calibration_z_warn`` standard
  errors from the mean predicted probability warns: the calibration no longer holds (concept
  drift), so the confidence-based estimates are off too;
* the feature rules count only features carrying at least ``min_importance_share`` of the
  champion's total gain: drift in a feature the trees barely use cannot move the scores (the
  score PSI would show it if many such features moved together); every feature stays in the
  drift table;
* ROC AUC below the model's reference (its test AUC at training) by ``auc_drop_warn`` warns and
  by ``auc_drop_retrain`` asks for a retrain; realized AUC of the latest closed cutoff and the
  estimated AUC of the current scoring are both checked, the realized one named as such.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

Status = Literal["ok", "warn", "retrain"]

#: Statuses from least to most severe.
STATUS_ORDER: tuple[Status, ...] = ("ok", "warn", "retrain")


@dataclass(frozen=True)
class StatusThresholds:
    """The thresholds of the status rules (mirrors ``MonitorConfig``; see the module doc)."""

    psi_warn: float = 0.1
    psi_retrain: float = 0.25
    retrain_drifted_features: int = 3
    missing_rate_change_warn: float = 0.05
    unseen_share_warn: float = 0.05
    auc_drop_warn: float = 0.03
    auc_drop_retrain: float = 0.06
    min_importance_share: float = 0.01
    calibration_z_warn: float = 3.0


@dataclass(frozen=True)
class Finding:
    """One reason for a status: its level, the rule, the subject and a sentence."""

    level: Status
    rule: str
    subject: str
    message: str


@dataclass(frozen=True)
class StatusDecision:
    """The overall status and the findings that set it (most severe first)."""

    status: Status
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    def reasons(self) -> list[dict[str, str]]:
        """Return the findings as JSON-friendly records."""
        return [
            {"level": f.level, "rule": f.rule, "subject": f.subject, "message": f.message}
            for f in self.findings
        ]


def severity(status: Status) -> int:
    """Return the rank of ``status`` in :data:`STATUS_ORDER` (0 = ok)."""
    return STATUS_ORDER.index(status)


def check_feature_drift(
    drift: pd.DataFrame, t: StatusThresholds, importance: Mapping[str, float] | None = None
) -> list[Finding]:
    """Return findings for the features of a drift table.

    Args:
        drift: :func:`churn.monitoring.drift.compute_drift_table` rows.
        t: Thresholds.
        importance: Feature -> share of the model's total gain; features below
            ``t.min_importance_share`` raise no finding. ``None``: every feature counts.
    """
    findings: list[Finding] = []
    if importance is not None:
        shares = drift["feature"].map(importance).fillna(0.0)
        drift = drift[shares >= t.min_importance_share]
    strong = drift[drift["psi"] >= t.psi_retrain]
    for row in drift[drift["psi"] >= t.psi_warn].itertuples():
        findings.append(Finding("warn", "feature_psi", row.feature,
                                f"{row.feature}: PSI {row.psi:.3f} >= {t.psi_warn}"))
    if len(strong) >= t.retrain_drifted_features:
        names = ", ".join(strong["feature"].head(5))
        findings.append(Finding(
            "retrain", "drifted_features", "features",
            f"{len(strong)} features with PSI >= {t.psi_retrain} (e.g. {names}); at least "
            f"{t.retrain_drifted_features} ask for a retrain",
        ))
    for row in drift[drift["missing_rate_change"] >= t.missing_rate_change_warn].itertuples():
        findings.append(Finding(
            "warn", "missing_rate", row.feature,
            f"{row.feature}: missing rate {row.missing_rate_reference:.1%} -> "
            f"{row.missing_rate_current:.1%}",
        ))
    for row in drift[drift["unseen_share"] >= t.unseen_share_warn].itertuples():
        findings.append(Finding(
            "warn", "unseen_categories", row.feature,
            f"{row.feature}: {row.unseen_share:.1%} of values are categories unseen in training",
        ))
    return findings


def check_score_drift(score_psi: float, t: StatusThresholds) -> list[Finding]:
    """Return a finding when the score distribution moved."""
    if math.isnan(score_psi) or score_psi < t.psi_warn:
        return []
    level: Status = "retrain" if score_psi >= t.psi_retrain else "warn"
    return [Finding(level, "score_psi", "churn_probability",
                    f"score distribution PSI {score_psi:.3f} (warn {t.psi_warn}, "
                    f"retrain {t.psi_retrain})")]


def check_auc(auc: float, reference_auc: float | None, kind: str, t: StatusThresholds
              ) -> list[Finding]:
    """Return a finding when ``auc`` (``kind``: estimated or realized) fell below the reference."""
    if reference_auc is None or math.isnan(reference_auc) or math.isnan(auc):
        return []
    drop = reference_auc - auc
    if drop < t.auc_drop_warn:
        return []
    level: Status = "retrain" if drop >= t.auc_drop_retrain else "warn"
    return [Finding(level, f"{kind}_auc", "roc_auc",
                    f"{kind} ROC AUC {auc:.3f} is {drop:.3f} below the reference "
                    f"{reference_auc:.3f}")]


def check_calibration(realized_rate: float, mean_probability: float, rows: int,
                      t: StatusThresholds) -> list[Finding]:
    """Return a finding when a closed cutoff's churn rate is far from its mean probability.

    The standard error is the binomial one at the mean probability, ``sqrt(p (1 - p) / n)``,
    an upper bound of the exact ``sqrt(sum p_i (1 - p_i)) / n``, so the rule errs on quiet.
    """
    values = (realized_rate, mean_probability)
    if rows <= 0 or any(v is None or math.isnan(v) for v in values):
        return []
    if not 0.0 < mean_probability < 1.0:
        return []
    z = (realized_rate - mean_probability) / math.sqrt(
        mean_probability * (1 - mean_probability) / rows)
    if abs(z) < t.calibration_z_warn:
        return []
    return [Finding("warn", "calibration", "churn_probability",
                    f"realized churn rate {realized_rate:.2%} vs predicted {mean_probability:.2%} "
                    f"({z:+.1f} standard errors): the calibration no longer holds")]


def decide_status(findings: list[Finding]) -> StatusDecision:
    """Return the most severe level among ``findings`` (ok when none) and the sorted findings."""
    ordered = sorted(findings, key=lambda f: -severity(f.level))
    status: Status = ordered[0].level if ordered else "ok"
    return StatusDecision(status, tuple(ordered))


def reaches(status: Status, fail_on: Status) -> bool:
    """Return whether ``status`` is at least as severe as ``fail_on``."""
    return severity(status) >= severity(fail_on)


def flag_features(drift: pd.DataFrame, t: StatusThresholds,
                  importance: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Return the drift rows any feature rule fires on, whatever the feature's importance.

    Columns: the drift table's, plus ``importance_share`` and ``counts_for_status`` (whether
    the feature carries enough of the gain for the status rules, see the module doc).
    """
    fired = ((drift["psi"] >= t.psi_warn)
             | (drift["missing_rate_change"] >= t.missing_rate_change_warn)
             | (drift["unseen_share"] >= t.unseen_share_warn))
    flagged = drift[fired].copy()
    shares = (flagged["feature"].map(importance).fillna(0.0) if importance is not None
              else pd.Series(1.0, index=flagged.index))
    flagged["importance_share"] = shares.astype("float64")
    flagged["counts_for_status"] = shares >= t.min_importance_share
    return flagged.reset_index(drop=True)

