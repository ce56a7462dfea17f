"""Typed, frozen configuration loaded once from ``params.yaml``.

``params.yaml`` is the only home of knobs. Each pipeline stage has its own section, named like
the stage and its CLI command (DVC example-get-started convention). Paths are *not* knobs: they
live in ``dvc.yaml`` and reach the stages as CLI options.

Every model forbids unknown keys and is frozen, so a typo such as ``train.learnig_rate`` fails
at load time with a message naming the key instead of being silently ignored.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from churn.domain.campaigns import DEFAULT_CAMPAIGN_PERIOD_PATTERN, check_period_pattern
from churn.domain.families import FAMILIES, PROFILE_FAMILY
from churn.domain.modes import Mode


class ConfigError(ValueError):
    """Raised when ``params.yaml`` is missing, malformed, or holds an unknown or mistyped key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ShiftConfig(_Section):
    """A shift the simulator injects from a month on (see churn.stages.simulate.shifts)."""

    kind: Literal["price_increase", "support_outage", "new_channel"]
    from_month: int = Field(ge=0, description="First simulated month (0-based) of the shift.")
    plan: str | None = Field(None, description="price_increase: the plan whose price rises.")
    size: float = Field(
        0.0, ge=0.0, le=5.0,
        description="price_increase: relative increase; new_channel: share of conversions.",
    )
    resolution_days_factor: float = Field(
        1.0, gt=0.0, description="support_outage: resolution time multiplier."
    )
    channel: str | None = Field(None, description="new_channel: the acquisition channel.")


class SimulateConfig(_Section):
    """Knobs of the built-in simulator (``churn simulate``)."""

    customers: int = Field(20_000, ge=10, description="Number of simulated customers.")
    months: int = Field(24, ge=3, le=120, description="Months of history to simulate.")
    seed: int = Field(42, description="Random seed; the same seed gives byte-identical tables.")
    start_date: dt.date = Field(dt.date(2024, 1, 1), description="First day of the simulation.")
    mess: bool = Field(
        True,
        description="Inject realistic mess: missing values, duplicate rows, mixed time-zone "
        "offsets, late CSAT.",
    )
    shifts: tuple[ShiftConfig, ...] = Field(
        (), description="Shifts injected from a month on (monitoring tests); none by default."
    )
    retention_actions: bool = Field(
        True,
        description="Simulate a past retention team (contacts, plays, a control group) and its "
        "true effects (docs/targeting.md); changes the simulated data.",
    )


#: Where the raw tables come from: the built-in simulator or the user's own files.
DataSource = Literal["simulator", "files"]


class DataConfig(_Section):
    """Where the pipeline's raw tables come from (the folders themselves live in ``dvc.yaml``)."""

    source: DataSource = Field(
        "simulator",
        description="'simulator': the simulate stage writes the raw tables (and its ground "
        "truth) and ingest reads them. 'files': your own CSV or Parquet files in the raw "
        "folder (data/raw); the simulate stage then writes only a marker and no truth.",
    )


class TableMapping(_Section):
    """How one of the user's tables maps onto the data contract."""

    file: str | None = Field(
        None,
        description="File name inside the raw directory (default: '<table>.parquet' or "
        "'<table>.csv').",
    )
    columns: dict[str, str] = Field(
        default_factory=dict, description="Contract column name -> the user's column name."
    )
    values: dict[str, dict[bool | int | float | str, str]] = Field(
        default_factory=dict,
        description="Contract column -> {user's value: contract value} for vocabulary columns. "
        "Keys may be numbers, booleans or text; 1, '1' and '1.0' are the same code.",
    )


class IngestConfig(_Section):
    """Knobs of ``churn ingest`` (validation, quarantine, column mapping)."""

    mode: Mode = Field(
        Mode.EVENTS,
        description="'events': the full contract (customers, subscriptions, event tables). "
        "'entity': one customer table with a label column and no event tables.",
    )
    as_of: dt.date | None = Field(
        None,
        description="Rows stamped after this date are quarantined as future-dated. "
        "None: the day the stage runs.",
    )
    input_timezone: str = Field(
        "UTC", description="IANA zone in which naive (offset-less) timestamps are read."
    )
    max_quarantine_share: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Fail when a table's quarantined share of rows exceeds this.",
    )
    label_column: str = Field(
        "churned", description="Entity mode: name (after mapping) of the 0/1 churn label column."
    )
    data_end: dt.date | None = Field(
        None,
        description="Last day of data: rows whose event time is after it are quarantined as "
        "out_of_range, and labels treat it as the end of observation. None: derived per table "
        "from where its data density ends (see churn.domain.data_end).",
    )
    data_end_gap_days: int = Field(
        30,
        ge=1,
        description="Derived data end: rows after a silent gap longer than this (or 10x the "
        "table's median gap between active days, if longer) past the bulk are stray.",
    )
    tables: dict[str, TableMapping] = Field(
        default_factory=dict, description="Per-table column mapping, keyed by contract table."
    )
    allow_outside_raw: bool = Field(
        False,
        description="Allow tables.<t>.file to point outside the raw folder (absolute paths, "
        "'..', symlinks leading out). Off: a parameter must not read any file on the machine.",
    )
    max_abs_value: float = Field(
        1e12,
        gt=0.0,
        description="Numeric values (amounts, counts, durations) whose magnitude exceeds this "
        "are quarantined: a finite but absurd value (1.5e308) would overflow features to inf.",
    )
    batch_rows: int = Field(
        2_000_000,
        ge=1,
        description="Events mode: a table file with more rows than this is validated and "
        "written in batches of this many rows, with the outputs of validating it whole; memory "
        "then follows the batch instead of the table, plus 17-26 bytes per row of whole-table "
        "state (duplicates, data end). Smaller tables are validated whole, which is faster.",
    )
    workers: int = Field(
        1,
        ge=0,
        description="Events mode: worker processes that each validate one large table read in "
        "batches (the largest first) while the main process validates the others; the outputs "
        "are the same. Only a table that no other table references (not customers or "
        "subscriptions) with at least worker_min_rows rows goes to a worker. 0: every table "
        "in the main process.",
    )
    worker_min_rows: int = Field(
        20_000_000,
        ge=1,
        description="Events mode: the fewest rows of a table validated in a worker process. "
        "Starting one costs 2-3 s of CPU; measured on 2026-12-07, 170M usage events took 133 s "
        "instead of 154 s with a worker, 17M the same 15-17 s either way.",
    )

    @field_validator("input_timezone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("tables")
    @classmethod
    def _check_tables(
        cls, value: dict[str, TableMapping], info: ValidationInfo
    ) -> dict[str, TableMapping]:
        from churn.domain.contract import CONTRACT, ENTITY_CUSTOMER_COLUMNS

        unknown = sorted(set(value) - set(CONTRACT))
        if unknown:
            raise ValueError(f"unknown table(s) {unknown}; contract tables are {sorted(CONTRACT)}")
        # `mode` is declared before `tables`, so it is validated already (absent if invalid).
        entity = info.data.get("mode") is Mode.ENTITY
        for table, mapping in value.items():
            spec = CONTRACT[table]
            known = spec.column_names
            if entity and table == "customers":
                known = known + [c.name for c in ENTITY_CUSTOMER_COLUMNS]
            bad = sorted(set(mapping.columns) - set(known))
            if bad:
                raise ValueError(
                    f"tables.{table}.columns maps unknown contract column(s) {bad}; "
                    f"{table} has {known}"
                )
        return value


DEFAULT_HORIZONS_DAYS = (30, 60, 90)
"""Survival head horizons when ``label.horizons_days`` is left out (plus ``horizon_days``)."""


class LabelConfig(_Section):
    """Knobs of ``churn label``: the cutoff schedule and the churn definition."""

    first_cutoff: dt.date | None = Field(
        None,
        description="First cutoff date. None: the first month start after 'min_history_days' "
        "of data.",
    )
    last_cutoff: dt.date | None = Field(
        None, description="Last cutoff date. None: the last month start covered by the data."
    )
    every_months: int = Field(1, ge=1, le=12, description="Months between cutoffs.")
    min_history_days: int = Field(
        180, ge=0, description="Data history required before the first automatic cutoff."
    )
    horizon_days: int = Field(
        60, ge=1, description="A customer churns if all subscriptions end within this horizon."
    )
    horizons_days: tuple[int, ...] = Field(
        DEFAULT_HORIZONS_DAYS,
        description="Horizons of the survival head (churn_probability_<H>d); must include "
        "horizon_days. Labels record the churn time up to the longest. Left out: 30, 60, 90 "
        "and horizon_days.",
    )
    grace_days: int = Field(
        14, ge=0, description="A new subscription started within this many days is a renewal."
    )
    min_tenure_days: int = Field(
        0, ge=0, description="Customers younger than this at the cutoff are not in the population."
    )
    max_churn_rate: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="Stop when a labeled cutoff's churn rate is above this: the end dates, the "
        "data end or the grace period are likely wrong.",
    )
    max_rate_ratio: float = Field(
        5.0,
        gt=1.0,
        description="Stop when a labeled cutoff's churn rate is more than this many times the "
        "median rate of the other labeled cutoffs.",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_horizons(cls, data: Any) -> Any:
        # Left out, the horizons follow horizon_days, so changing horizon_days alone stays valid.
        if isinstance(data, dict) and data.get("horizons_days") is None:
            primary = int(data.get("horizon_days", 60))
            data = {**data, "horizons_days": tuple(sorted({*DEFAULT_HORIZONS_DAYS, primary}))}
        return data

    @field_validator("horizons_days")
    @classmethod
    def _sort_horizons(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(h <= 0 for h in value) or len(set(value)) != len(value):
            raise ValueError("horizons_days must be distinct positive integers")
        return tuple(sorted(value))

    @model_validator(mode="after")
    def _check_primary_horizon(self) -> LabelConfig:
        if self.horizon_days not in self.horizons_days:
            raise ValueError(
                f"horizons_days {list(self.horizons_days)} must include horizon_days = "
                f"{self.horizon_days}"
            )
        return self


class SparkConfig(_Section):
    """Knobs of the Spark engine (local mode or a cluster)."""

    shards: int = Field(8, ge=1, description="Customer hash partitions for feature computation.")
    master: str = Field("local[2]", description="Spark master URL used by the CLI engine.")


class FeaturesConfig(_Section):
    """Knobs of ``churn features``."""

    engine: Literal["local", "spark"] = Field(
        "local", description="'local' runs DuckDB in process; 'spark' runs the same code on Spark."
    )
    windows_days: tuple[int, ...] = Field(
        (7, 30, 90), description="Look-back windows (days before the cutoff) for event counts."
    )
    usage_event_types: Literal["auto"] | tuple[str, ...] = Field(
        "auto",
        description="Usage event types counted one by one; other types count only in totals. "
        "'auto': the 'usage_event_types_top' most frequent types among the events before the "
        "first cutoff being computed (training: the first label cutoff); scoring uses the "
        "types the model was trained with.",
    )
    usage_event_types_top: int = Field(
        8, ge=1, description="How many event types 'usage_event_types: auto' picks."
    )
    ticket_categories: tuple[str, ...] = Field(
        ("billing", "technical", "how_to", "bug", "account"),
        description="Support ticket categories counted one by one.",
    )
    allow_personal_columns: tuple[str, ...] = Field(
        (),
        description="Customer columns that look like personal data (name, e-mail, phone, "
        "address) but may become features anyway. E-mail- or phone-like values are still "
        "pseudonymised.",
    )
    customer_attributes: dict[str, Literal["categorical", "numeric", "age"]] = Field(
        default_factory=dict,
        description="Extra customer columns (beyond the contract) that become acquisition "
        "features in events mode: column -> 'categorical', 'numeric' or 'age' (a date, e.g. "
        "of birth, turned into whole years at the cutoff; never used as it is). Ingest keeps "
        "these columns.",
    )
    duckdb_threads: int = Field(2, ge=1, description="Threads DuckDB may use.")
    duckdb_memory_limit: str = Field("4GB", description="DuckDB memory limit.")
    spark: SparkConfig = Field(default_factory=SparkConfig)
    campaign_period_pattern: str = Field(
        DEFAULT_CAMPAIGN_PERIOD_PATTERN,
        description="Regex of one period token in a campaign code (a year with an optional "
        "quarter, half or month: 2024q1, 2024-03, Q3-2024, H1 2024, mar2024); the acquisition "
        "feature campaign_stem is the code without its tokens. Python regex, case-insensitive, "
        "no capturing groups (see churn.domain.campaigns).",
    )

    @field_validator("campaign_period_pattern")
    @classmethod
    def _check_campaign_period_pattern(cls, value: str) -> str:
        return check_period_pattern(value)

    @field_validator("windows_days")
    @classmethod
    def _check_windows(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(w <= 0 for w in value) or len(set(value)) != len(value):
            raise ValueError("windows_days must be distinct positive integers")
        return tuple(sorted(value))


class GateConfig(_Section):
    """Champion/challenger promotion rule."""

    metric: Literal["roc_auc", "pr_auc", "brier", "log_loss"] = Field(
        "pr_auc", description="Metric compared on the same test rows."
    )
    margin: float = Field(
        0.0, ge=0.0, description="The challenger must beat the champion by more than this."
    )


class TuningConfig(_Section):
    """Optional optuna search; trials are nested MLflow runs."""

    enabled: bool = False
    trials: int = Field(20, ge=1)
    timeout_seconds: int | None = Field(None, ge=1)


class TrainConfig(_Section):
    """Knobs of ``churn train``: split, LightGBM, calibration, guards, registry gate."""

    test_cutoffs: int = Field(1, ge=1, description="Last labeled cutoffs held out as test.")
    validation_cutoffs: int = Field(
        1, ge=1, description="Latest training cutoffs used for early stopping and calibration."
    )
    entity_test_share: float = Field(0.2, gt=0.0, lt=0.5)
    entity_validation_share: float = Field(0.2, gt=0.0, lt=0.5)
    learning_rate: float = Field(0.05, gt=0.0, le=1.0)
    n_estimators: int = Field(500, ge=1)
    num_leaves: int = Field(15, ge=2)
    max_depth: int = Field(5, description="-1 means no limit; shallow trees explain faster.")
    min_child_samples: int = Field(100, ge=1)
    subsample: float = Field(0.8, gt=0.0, le=1.0)
    colsample_bytree: float = Field(0.8, gt=0.0, le=1.0)
    reg_lambda: float = Field(1.0, ge=0.0)
    scale_pos_weight: float = Field(
        1.0,
        gt=0.0,
        description="Weight of churners in the LightGBM loss; above 1 favours recall of rare "
        "churners. The calibrator maps the skewed raw scores back to probabilities.",
    )
    negative_sample_rate: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="Share r of the retained (label 0) training rows LightGBM is fitted on; "
        "every churned row is kept and each kept retained row weighs 1/r, so the loss stays "
        "unbiased (He et al. 2014, negative downsampling). Drawn per cutoff with the seed; "
        "validation rows (early stopping, calibration) are never sampled. 1.0: off (the "
        "default here); params.yaml sets 0.25, measured equal in test ROC AUC and ECE at 20k "
        "and 100k customers for a 3.6x cheaper fit (docs/training.md).",
    )
    max_training_rows: int | None = Field(
        None,
        ge=1,
        description="Budget of LightGBM training rows: when the training slice holds more, the "
        "retained rows are sampled at the rate that fits it (or at negative_sample_rate if "
        "that is lower), all churned rows kept; churned rows alone past it are fitted with as "
        "many retained rows (a warning). None: no budget (the default here); params.yaml sets "
        "600,000, measured equal in test metrics at 1M customers for half the fit's CPU "
        "(docs/training.md).",
    )
    baseline_max_rows: int | None = Field(
        250_000,
        ge=100,
        description="The logistic baseline is fitted on at most this many rows of the "
        "classifier's sample: past it, the rows with the smallest seeded hash of (customer, "
        "cutoff), their weights scaled to the sample's total (docs/training.md). None: the "
        "whole sample.",
    )
    early_stopping_rounds: int = Field(50, ge=1)
    early_stopping_metric: Literal["binary_logloss", "auc", "average_precision"] = Field(
        "binary_logloss",
        description="Validation metric for early stopping. With scale_pos_weight != 1 use a "
        "ranking metric: the unweighted log loss penalises the weighting itself and stops early.",
    )
    num_threads: int = Field(
        2,
        ge=1,
        description="LightGBM threads. Use 1 on a busy machine or for tiny data: OpenMP threads "
        "spin while waiting, and on oversubscribed cores that costs far more than it saves.",
    )
    calibration: Literal["isotonic", "platt"] = Field(
        "platt",
        description="Platt scaling is strictly monotone, so calibrated probabilities rank "
        "customers exactly as the raw scores do; isotonic can fit any monotone shape but "
        "merges scores into steps, which ties customers and costs PR AUC on small slices.",
    )
    min_category_count: int = Field(
        1,
        ge=1,
        description="Categorical levels on fewer training rows are pooled into one level, and "
        "unseen levels at scoring join it (no memorised labels, see docs/reasons.md); 1 keeps "
        "every level.",
    )
    interaction_groups: Literal["none", "family"] = Field(
        "none",
        description="'family': LightGBM interaction constraints so that features interact "
        "only within their catalog family (exposure and contract-timing features, catalog "
        "reason_eligible false, may join any family's trees): the model is additive across "
        "families, so a family's summed contributions are exactly its own term (the idea of "
        "explainable boosting machines). 'none': trees mix any features. Measured in "
        "docs/reasons.md; the survival head ignores it.",
    )
    first_reason: Literal["feature", "family"] = Field(
        "family",
        description="How the model picks a customer's first reason (stored in the model, so "
        "every scorer agrees): 'family' names the family whose eligible features push risk up "
        "the most together (net sum of contributions), told by its strongest feature; "
        "'feature' names the single largest contribution. The other reasons follow by size.",
    )
    min_positives: int = Field(20, ge=1, description="Fail when training has fewer positives.")
    leakage_auc_threshold: float = Field(
        0.97, gt=0.5, le=1.0, description="A single feature above this test AUC fails the run."
    )
    max_plausible_auc: float = Field(
        0.97,
        gt=0.5,
        le=1.0,
        description="A model whose validation or test ROC AUC is above this fails the run as "
        "too good to be true (leakage), naming its strongest features.",
    )
    allow_high_auc: bool = Field(
        False,
        description="Accept a model above max_plausible_auc (or above the simulator oracle) for "
        "a known-easy problem; recorded as an MLflow tag and in the train report.",
    )
    seed: int = 7
    registered_model_name: str = "churn"
    create_tracking_store: bool = Field(
        False,
        description="Create a missing SQLite store at an explicitly set MLFLOW_TRACKING_URI. "
        "The default store (sqlite:///mlflow.db) is always created on first use; any other "
        "missing store is refused, since a mistyped path would start an empty registry.",
    )
    model_form: Literal["hazard", "classifier"] = Field(
        "classifier",
        description="'hazard': discrete-time hazard over the contract's decision dates "
        "(docs/survival.md), risk at every label.horizons_days; 'classifier': one binary "
        "classifier at label.horizon_days.",
    )
    gate: GateConfig = Field(default_factory=GateConfig)
    tuning: TuningConfig = Field(default_factory=TuningConfig)


class EvaluateConfig(_Section):
    """Knobs of ``churn evaluate``."""

    top_fractions: tuple[float, ...] = (0.05, 0.1, 0.2)
    calibration_bins: int = Field(10, ge=2)
    segments: tuple[str, ...] = ("plan", "acquisition_channel", "billing_period")
    backtest_cutoffs: int = Field(3, ge=0, description="Rolling backtest over the last K cutoffs.")
    oracle_tolerance_se: float = Field(
        3.0,
        gt=0.0,
        description="Fail when the model's test ROC AUC beats the simulator oracle's by more "
        "than this many standard errors (Hanley-McNeil) of the oracle AUC.",
    )
    model_form_max_customers: int | None = Field(
        25_000,
        ge=100,
        description="The model-form comparison (a survival head and a classifier per horizon, "
        "fitted beside the exported model) fits and measures on at most this many customers, "
        "a seeded hash sample of them with all their rows; null: every customer.",
    )


class ScoreConfig(_Section):
    """Knobs of ``churn score``."""

    reasons: int = Field(3, ge=1, le=10, description="Reasons per customer.")
    cutoff: dt.date | None = Field(None, description="Cutoff to score; None: last date in data.")
    output_format: Literal["parquet", "csv"] = "parquet"
    batch_rows: int = Field(200_000, ge=1_000, description="Rows explained per batch.")


class ExplainConfig(_Section):
    """Knobs of ``churn explain``."""

    sample_rows: int = Field(3000, ge=50, description="Rows sampled for global plots.")
    dependence_features: int = Field(4, ge=0, description="Dependence plots for top features.")


class ReportConfig(_Section):
    """Knobs of ``churn report``."""

    top_customers: int = Field(50, ge=1)
    customer_cards: int = Field(
        10,
        ge=0,
        description="Customer cards drawn for the riskiest scored customers (0: none).",
    )


class MonitorConfig(_Section):
    """Knobs of ``churn monitor``: the drift reference, the backfill and the status thresholds."""

    reference_cutoffs: int = Field(
        3, ge=1, description="Drift reference: the champion's last K training cutoffs."
    )
    backfill_cutoffs: int = Field(
        6, ge=0, description="Past cutoffs after training the monitor scores into the history."
    )
    bins: int = Field(10, ge=2, le=100, description="Quantile bins of numeric features.")
    estimate_draws: int = Field(
        200, ge=0, description="Monte Carlo label draws for the estimated-performance band."
    )
    max_rows_per_cutoff: int | None = Field(
        200_000,
        ge=1,
        description="Rows of a reference, backfilled or test cutoff the monitor reads at most: "
        "past it, the customers whose id hashes lowest (null: every row).",
    )
    psi_warn: float = Field(0.1, gt=0.0, description="A feature or score PSI that warns.")
    psi_retrain: float = Field(0.25, gt=0.0, description="A PSI counted as strong drift.")
    retrain_drifted_features: int = Field(
        3, ge=1, description="Strongly drifted features that ask for a retrain."
    )
    missing_rate_change_warn: float = Field(
        0.05, gt=0.0, le=1.0, description="Rise of a feature's missing rate that warns."
    )
    unseen_share_warn: float = Field(
        0.05, gt=0.0, le=1.0, description="Share of unseen categories that warns."
    )
    auc_drop_warn: float = Field(0.03, gt=0.0, description="ROC AUC drop that warns.")
    auc_drop_retrain: float = Field(0.06, gt=0.0, description="ROC AUC drop asking a retrain.")
    min_importance_share: float = Field(
        0.01, ge=0.0, lt=1.0,
        description="Feature rules count features with at least this share of the gain.",
    )
    calibration_z_warn: float = Field(
        3.0, gt=0.0, description="Gap of realized vs predicted churn rate (std errors) that warns."
    )

    @model_validator(mode="after")
    def _check_order(self) -> MonitorConfig:
        if self.psi_retrain < self.psi_warn or self.auc_drop_retrain < self.auc_drop_warn:
            raise ValueError("monitor: a retrain threshold is below its warn threshold")
        return self


class PlayConfig(_Section):
    """One retention play of the playbook.

    The cost of one contact is ``cost + cost_share_of_mrr * mrr * cost_months`` (a discount of
    20% for 3 months is ``cost_share_of_mrr: 0.2, cost_months: 3``).
    """

    families: tuple[str, ...] = Field(
        ..., min_length=1, description="Reason families the play addresses."
    )
    team: str = Field(..., min_length=1, description="Team that runs the play (a key of teams).")
    cost: float = Field(0.0, ge=0.0, description="Fixed cost of one contact (currency).")
    cost_share_of_mrr: float = Field(
        0.0, ge=0.0, le=1.0, description="Discount plays: share of MRR given away per month."
    )
    cost_months: int = Field(3, ge=0, le=36, description="Months the MRR share is given away.")
    save_rate: float = Field(
        ..., ge=0.0, le=1.0,
        description="Configured effect: share of would-be churners the play keeps.",
    )
    weekly_capacity: int | None = Field(
        None, ge=0, description="Contacts per week of this play; None: only the team's limit."
    )

    @model_validator(mode="after")
    def _check_families(self) -> PlayConfig:
        known = (*FAMILIES, PROFILE_FAMILY)
        unknown = [f for f in self.families if f not in known]
        if unknown:
            raise ValueError(f"unknown families {unknown}; known: {list(known)}")
        return self


def _default_plays() -> dict[str, PlayConfig]:
    return {
        "support_escalation": PlayConfig(families=("support",), team="support", cost=40.0,
                                         save_rate=0.25),
        "adoption_session": PlayConfig(families=("usage",), team="success", cost=80.0,
                                       save_rate=0.25),
        "success_review": PlayConfig(families=("engagement",), team="success", cost=120.0,
                                     save_rate=0.25),
        "discount_offer": PlayConfig(families=("billing",), team="sales", cost=10.0,
                                     cost_share_of_mrr=0.2, cost_months=3, save_rate=0.25),
        "fit_winback": PlayConfig(families=("acquisition",), team="sales", cost=100.0,
                                  save_rate=0.25),
    }


class TargetConfig(_Section):
    """Knobs of ``churn target``: plays, team capacities and the expected-value model."""

    horizon_days: int | None = Field(
        None, ge=1,
        description="Horizon of the churn probability used; None: label.horizon_days.",
    )
    months_kept: float = Field(
        12.0, gt=0.0, description="Months of MRR a saved customer is worth (value at risk)."
    )
    min_rows_per_arm: int = Field(
        30, ge=1,
        description="Logged treated and control rows a play needs (each) before its logged "
        "effect replaces the configured save rate.",
    )
    max_standard_error: float = Field(
        0.05, gt=0.0,
        description="Largest standard error at which a logged effect replaces the configured "
        "save rate. A noisier estimate is still reported (with its uncertainty and, on "
        "simulated data, against the truth) but does not rank the list: its noise would "
        "decide which play and customer come first. 0.05 lets a logged estimate tell apart "
        "effects 0.1 apart (two standard errors), less than half the default save rate of "
        "0.25 (docs/targeting.md, 'When logged effects are used').",
    )
    tlearner_bootstrap_rounds: int = Field(
        20, ge=0, description="Bootstrap resamples of the T-learner's average effect (0: off)."
    )
    seed: int = Field(11, description="Seed of the random policy and the bootstrap.")
    effect_model: Literal["segments", "shrunk_segments", "dose_response"] = Field(
        "segments",
        description="Save rates of the expected value: per segment (not addressed / low / high "
        "dose); the addressed segments shrunk toward the play's pooled effect; or each "
        "customer's own from the play's dose response fitted on the logged actions (the "
        "segments for a play with too few rows).",
    )
    one_source_per: Literal["segment", "play", "playbook"] = Field(
        "playbook",
        description="Where the source of the save rates (logged or configured) may change: "
        "per segment (each addressed segment takes its logged estimate when that passes the "
        "gate); per play (a play's addressed segments are all logged, when every one passes, "
        "or all configured: never a mix within a play); or for the whole playbook (logged "
        "only when every addressed segment of every play passes). The expected value "
        "compares plays with each other, so a measured effect next to a configured guess "
        "ranks by the gap between the two, not by the plays' effects: at 100,000 simulated "
        "customers the mix lost to a single source on both seeds measured (mean ratio to top "
        "revenue at risk 0.92 and 0.94 per segment, 1.05 and 1.21 per play or playbook; "
        "docs/targeting.md, 'One source for the save rates').",
    )
    configured_rate_scaling: Literal["none", "addressed_share", "dose"] = Field(
        "none",
        description="How a configured save rate (no usable logged estimate) applies to one "
        "customer. none: the configured rate as is, for every eligible customer. "
        "addressed_share: the configured rate is read as the rate for a customer whose excess "
        "risk lies entirely in the play's families, and a customer gets save_rate x share, "
        "share = the positive log-odds contributions of the play's families / all the "
        "customer's positive contributions (0 when there are none). A play lowers only the "
        "hazard of the families it addresses, so its effect grows with that share. Logged "
        "(measured) rates are averages over their segment and are used as they are. "
        "dose: the configured rate is read as the share of the play's families' log-odds push "
        "(the play's dose: positive contributions of the features a reason may name, "
        "churn.targeting.playbook.actionable_families) that a contact removes, so a customer "
        "gets 1 - sigmoid(logit(p) - save_rate x dose) / p, the truth model's form. "
        "With the dose counting reason-eligible features only, both scalings beat none on the "
        "three simulated businesses measured (mean ratio to top revenue at risk over four "
        "cutoffs: dose 1.30 / 1.23 / 1.43, addressed_share 1.31 / 1.16 / 1.39, none 1.22 / "
        "1.05 / 1.21); the pipeline's params.yaml uses dose. The default here stays none, the "
        "configured rate exactly as written (docs/targeting.md, 'The dose without contract "
        "timing').",
    )
    teams: dict[str, int] = Field(
        default_factory=lambda: {"support": 40, "success": 60, "sales": 30},
        description="Team -> contacts per week.",
    )
    plays: dict[str, PlayConfig] = Field(default_factory=_default_plays)

    @model_validator(mode="after")
    def _check_teams(self) -> TargetConfig:
        missing = sorted({p.team for p in self.plays.values()} - set(self.teams))
        if missing:
            raise ValueError(f"plays name teams without a capacity in target.teams: {missing}")
        if any(v < 0 for v in self.teams.values()):
            raise ValueError("target.teams capacities must be >= 0")
        if not self.plays:
            raise ValueError("target.plays must hold at least one play")
        return self


class Params(_Section):
    """All pipeline parameters: ``data`` (where raw tables come from), then one per stage."""

    data: DataConfig = Field(default_factory=DataConfig)
    simulate: SimulateConfig = Field(default_factory=SimulateConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    label: LabelConfig = Field(default_factory=LabelConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    target: TargetConfig = Field(default_factory=TargetConfig)

    @model_validator(mode="after")
    def _check_cutoffs(self) -> Params:
        first, last = self.label.first_cutoff, self.label.last_cutoff
        if first is not None and last is not None and last < first:
            raise ValueError("label.last_cutoff is before label.first_cutoff")
        return self


def _format_validation_error(source: str, error: ValidationError) -> str:
    lines = [f"{source}: invalid parameters"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        if item["type"] == "extra_forbidden":
            lines.append(f"  - {key}: unknown key")
        else:
            lines.append(f"  - {key}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def parse_params(raw: dict[str, Any] | None, source: str = "params") -> Params:
    """Validate a parsed parameter mapping.

    Args:
        raw: The mapping read from YAML (``None`` means all defaults).
        source: Name used in error messages.

    Returns:
        The frozen, validated parameters.

    Raises:
        ConfigError: On an unknown key, a wrong type or an out-of-range value; the message
            names every offending key.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw)}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(source, exc)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key written twice in one mapping.

    Plain YAML loaders keep the last value silently, so a knob pasted twice would quietly
    override the first; here it is an error naming the key and both lines.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicated key {key!r} (first on line {seen[key]}, again on line {line})",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file safely (no tags that build objects), refusing duplicated keys.

    Raises:
        ConfigError: If the file is not valid YAML or repeats a key in one mapping.
    """
    path = Path(path)
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # a SafeLoader: no objects
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def apply_overrides(raw: dict[str, Any] | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of a parsed parameter mapping with dotted keys replaced.

    Overrides are applied to the *raw* mapping, before validation, so a command-line override
    meets exactly the rules a value in ``params.yaml`` meets (``simulate.customers: 5`` and
    ``--customers 5`` fail alike). A ``None`` value means "not overridden" and is skipped.

    Args:
        raw: The mapping read from YAML (``None`` means all defaults).
        overrides: Dotted key (``"features.spark.shards"``) -> value.

    Returns:
        The updated copy; ``raw`` is not changed.

    Raises:
        ConfigError: If a key's parent is not a mapping in ``raw`` (e.g. ``simulate: 3``).
    """
    updated: dict[str, Any] = copy.deepcopy(raw) if isinstance(raw, dict) else {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        node = updated
        for part in parents:
            child = node.setdefault(part, {})
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"cannot override {dotted}: {part} is not a mapping")
            node = child
        node[leaf] = value
    return updated


def load_params(
    path: str | Path = "params.yaml", overrides: Mapping[str, Any] | None = None
) -> Params:
    """Load and validate ``params.yaml``, with optional overrides validated the same way.

    An empty file (or one holding only comments) is an error, not "all defaults": a truncated
    or wrongly mounted parameter file would otherwise run the pipeline on built-in values
    without a word. (:func:`parse_params` with ``None`` still means defaults, for code.)

    Args:
        path: The YAML file.
        overrides: Dotted key -> value replacing the file's value before validation (see
            :func:`apply_overrides`); ``None`` values are ignored.

    Returns:
        The frozen, validated parameters.

    Raises:
        ConfigError: If the file is missing or empty, is not YAML, repeats a key, or fails
            validation (the message names the offending key, whether it came from the file or
            an override).
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"parameter file not found: {path}")
    raw = read_yaml(path)
    if raw is None or raw == {}:
        raise ConfigError(
            f"{path} is empty: write the parameters (see the repository's params.yaml) rather "
            "than running on built-in defaults"
        )
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    if not given:
        return parse_params(raw, source=str(path))
    if not isinstance(raw, dict):
        return parse_params(raw, source=str(path))  # reports the malformed top level
    source = f"{path} with overrides {', '.join(sorted(given))}"
    return parse_params(apply_overrides(raw, given), source=source)
