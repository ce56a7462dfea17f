"""The ``churn monitor`` stage: watch the champion after scoring.

Pure core :func:`monitor_champion` (frames, the model and config in; a report and history
entries out) and the thin runner :func:`run_monitor` (reads, writes the history entries and
``reports/monitor.json`` atomically). What it does, in order:

1. **Reference**: the champion's last ``monitor.reference_cutoffs`` training cutoffs of the
   feature table, and the champion's probabilities on them, binned once
   (:mod:`churn.monitoring.drift`). Entity mode has one cutoff: every row of it is the
   reference. Of every cutoff read from the feature table, at most
   ``monitor.max_rows_per_cutoff`` rows are used: a repeatable sample of customers
   (:mod:`churn.monitoring.sample`); the current scoring is never sampled.
2. **Entries**: the current scoring (``score``'s output and its features sidecar) and, to have
   realized performance on a single run, a *backfill*: the champion scores the last
   ``monitor.backfill_cutoffs`` cutoffs after its training cutoffs from the feature table. Each
   entry gets drift against the reference, a score PSI and estimated performance
   (:mod:`churn.monitoring.estimation`), and is written to the history keyed by cutoff and model
   version (re-running replaces; see :mod:`churn.monitoring.history`).
3. **Realized**: every history entry (of any model version) whose horizon has closed is joined
   to the labels (:mod:`churn.monitoring.realized`).
4. **Status**: the rules of :mod:`churn.monitoring.status` on the current scoring's drift and
   estimate and on the latest closed cutoff's realized AUC of the champion.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churn.domain.modes import Mode
from churn.errors import DataContractError
from churn.io import write_json, write_parquet
from churn.layout import FEATURES_SUFFIX, REGISTRY_FILE, sidecar_path
from churn.monitoring.drift import DriftReference, build_reference, compute_drift_table
from churn.monitoring.estimation import estimate_performance
from churn.monitoring.history import (
    RECORDS_FOLDER,
    SCORES_FOLDER,
    Source,
    build_history_scores,
    entry_stem,
    find_entry_rows,
    stack_history,
)
from churn.monitoring.realized import compute_realized_performance, join_closed_labels
from churn.monitoring.records import (
    build_entry_record,
    compare_estimated_to_realized,
    summarize_by_cutoff,
)
from churn.monitoring.sample import select_rows_per_cutoff
from churn.monitoring.status import (
    StatusThresholds,
    check_auc,
    check_calibration,
    check_feature_drift,
    check_score_drift,
    decide_status,
    flag_features,
)

if TYPE_CHECKING:
    from churn.config import MonitorConfig, Params
    from churn.model.artifact import ChurnModel

logger = logging.getLogger(__name__)

SCORE_COLUMN = "churn_probability"


@dataclass(frozen=True)
class HistoryEntry:
    """One scoring to keep: its key (file stem), per-customer scores and health record."""

    stem: str
    scores: pd.DataFrame
    record: dict[str, Any]


@dataclass(frozen=True)
class MonitorOutcome:
    """What :func:`monitor_champion` found: the JSON report and the entries to write."""

    report: dict[str, Any]
    entries: tuple[HistoryEntry, ...]


def thresholds_from(cfg: MonitorConfig) -> StatusThresholds:
    """Return the status thresholds of the ``monitor`` section."""
    return StatusThresholds(
        psi_warn=cfg.psi_warn,
        psi_retrain=cfg.psi_retrain,
        retrain_drifted_features=cfg.retrain_drifted_features,
        missing_rate_change_warn=cfg.missing_rate_change_warn,
        unseen_share_warn=cfg.unseen_share_warn,
        auc_drop_warn=cfg.auc_drop_warn,
        auc_drop_retrain=cfg.auc_drop_retrain,
        min_importance_share=cfg.min_importance_share,
        calibration_z_warn=cfg.calibration_z_warn,
    )


def _as_timestamps(values: Any) -> list[pd.Timestamp]:
    return sorted(pd.Timestamp(v, tz="UTC") if pd.Timestamp(v).tzinfo is None
                  else pd.Timestamp(v) for v in values)


def select_reference_rows(
    features: pd.DataFrame, train_cutoffs: list[pd.Timestamp], count: int, entity: bool
) -> pd.DataFrame:
    """Return the reference rows: the last ``count`` training cutoffs (entity mode: all rows).

    Raises:
        DataContractError: If none of the training cutoffs is in the feature table.
    """
    if entity:
        return features
    # The distinct cutoffs once (a set of every row's cutoff per training cutoff took 80 s at
    # 100k customers).
    present = set(pd.DatetimeIndex(features["cutoff"].unique()))
    chosen = [c for c in train_cutoffs if c in present][-count:]
    if not chosen:
        raise DataContractError(
            "monitor: none of the champion's training cutoffs is in the feature table; was the "
            "champion trained on other data? Retrain, or re-run 'churn features'"
        )
    return features[features["cutoff"].isin(chosen)]


def select_backfill_cutoffs(
    cutoffs: list[pd.Timestamp], after: pd.Timestamp, count: int, skip: pd.Timestamp | None
) -> list[pd.Timestamp]:
    """Return the last ``count`` cutoffs after ``after`` (the last training cutoff) but ``skip``."""
    later = sorted({c for c in cutoffs if c > after and c != skip})
    return later[-count:] if count else []


def _entry(
    cutoff: pd.Timestamp,
    source: Source,
    frame: pd.DataFrame | None,
    scores: pd.DataFrame,
    reference: DriftReference,
    score_reference: DriftReference,
    model_version: str,
    cfg: MonitorConfig,
) -> tuple[HistoryEntry, pd.DataFrame | None]:
    probabilities = scores[SCORE_COLUMN].to_numpy(dtype=np.float64)
    drift = compute_drift_table(reference, frame) if frame is not None else None
    score_drift = compute_drift_table(score_reference, scores)
    estimated = estimate_performance(
        probabilities, draws=cfg.estimate_draws, seed=int(cutoff.strftime("%Y%m%d"))
    )
    record = build_entry_record(
        cutoff=cutoff,
        model_version=model_version,
        source=source,
        probabilities=probabilities,
        estimated=estimated,
        score_psi=float(score_drift["psi"].iloc[0]),
        drift=drift,
        thresholds=thresholds_from(cfg),
    )
    history = build_history_scores(scores, model_version, source)
    return HistoryEntry(entry_stem(cutoff, model_version), history, record), drift


def predict_rows_once(model: ChurnModel, rows: pd.DataFrame, scored: pd.Series) -> np.ndarray:
    """Return the champion's probabilities of ``rows``, predicting only rows not yet scored.

    Args:
        model: The champion.
        rows: Feature rows (a slice of the monitor's feature table, its index unique).
        scored: Probabilities already computed in this run, indexed like the feature table
            (the backfilled cutoffs). A row's probability does not depend on the other rows
            of a call, so taking it from there gives the same number as predicting it again.
    """
    known = rows.index.isin(scored.index)
    probabilities = np.empty(len(rows), dtype=np.float64)
    probabilities[known] = scored.loc[rows.index[known]].to_numpy(dtype=np.float64)
    if not known.all():
        probabilities[~known] = model.predict_proba(rows[~known])
    return probabilities


def _reference_auc(
    model: ChurnModel, features: pd.DataFrame, entity: bool, scored: pd.Series
) -> tuple[float | None, str]:
    """Return the champion's ROC AUC on its test cutoffs (events mode) and where it came from.

    The test cutoffs are usually among the backfilled ones: their rows' probabilities come
    from ``scored`` (:func:`predict_rows_once`; at a million customers a test cutoff is about
    600,000 labeled rows of a 500-tree model).
    """
    if entity:
        return None, "entity mode: the test rows cannot be told apart after training"
    test = _as_timestamps(model.metadata.get("test_cutoffs", []))
    rows = features[features["cutoff"].isin(test) & features["label"].notna()]
    y = rows["label"].astype("int64").to_numpy()
    if not len(rows) or y.min() == y.max():
        return None, "no labeled test rows in the feature table"
    from sklearn.metrics import roc_auc_score

    auc = float(roc_auc_score(y, predict_rows_once(model, rows, scored)))
    return auc, f"test cutoffs {[f'{c:%Y-%m-%d}' for c in test]}"


def compute_importance_shares(model: ChurnModel) -> dict[str, float]:
    """Return each feature's share of the booster's total split gain (sums to 1)."""
    gain = np.asarray(model.booster.feature_importance("gain"), dtype=np.float64)
    total = gain.sum()
    shares = gain / total if total > 0 else np.full(gain.size, 1.0 / max(gain.size, 1))
    return {name: float(v) for name, v in zip(model.feature_names, shares, strict=True)}


def monitor_champion(
    *,
    model: ChurnModel,
    model_version: str,
    features: pd.DataFrame,
    labels: pd.DataFrame,
    data_end: pd.Timestamp | None,
    scores: pd.DataFrame,
    scoring_features: pd.DataFrame | None,
    history: pd.DataFrame,
    params: Params,
) -> MonitorOutcome:
    """Watch the champion: drift, estimated and realized performance, and the status.

    Args:
        model: The champion.
        model_version: Its registered version (the history key).
        features: The feature table (every cutoff, with labels where known).
        labels: The label table.
        data_end: End of the data (closes horizons); ``None``: nothing is closed.
        scores: The current scoring (``customer_id``, ``cutoff``, ``churn_probability``).
        scoring_features: The current scoring's feature values, or ``None`` (score drift only).
        history: History entries already stored (:data:`HISTORY_COLUMNS`).
        params: Pipeline parameters (``monitor``, ``label``, ``ingest.mode``).

    Returns:
        The report (status, reasons, drift, estimated and realized performance) and the
        history entries of this run.

    Raises:
        DataContractError: If the scores hold no or several cutoffs, or the reference is empty.
    """
    cfg = params.monitor
    t = thresholds_from(cfg)
    entity = params.ingest.mode is Mode.ENTITY
    features = features.assign(customer_id=features["customer_id"].astype("str"))
    if not features.index.is_unique:  # rows are matched to their scores by index label
        features = features.reset_index(drop=True)
    # A bounded, repeatable sample of each cutoff (churn.monitoring.sample); the runner reads
    # only these rows, and then every row is kept here.
    kept = select_rows_per_cutoff(features, cfg.max_rows_per_cutoff)
    if not kept.all():
        features = features[kept]
    if scores.empty or scores["cutoff"].nunique() != 1:
        raise DataContractError(
            f"monitor: the scores must hold exactly one cutoff, got {scores['cutoff'].nunique()}"
        )
    score_cutoff = _as_timestamps(scores["cutoff"].unique())[0]
    train_cutoffs = _as_timestamps(model.metadata.get("train_cutoffs", []))
    reference_rows = select_reference_rows(features, train_cutoffs, cfg.reference_cutoffs, entity)
    kinds = {n: ("categorical" if n in model.categorical_levels else "numeric")
             for n in model.feature_names}
    reference = build_reference(reference_rows, kinds, cfg.bins)  # type: ignore[arg-type]
    reference_scores = pd.DataFrame({SCORE_COLUMN: model.predict_proba(reference_rows)})
    score_reference = build_reference(reference_scores, {SCORE_COLUMN: "numeric"}, cfg.bins)

    entries: list[HistoryEntry] = []
    current, current_drift = _entry(score_cutoff, "scored", scoring_features, scores, reference,
                                    score_reference, model_version, cfg)
    backfill = [] if entity or not train_cutoffs else select_backfill_cutoffs(
        list(features["cutoff"].unique()), train_cutoffs[-1], cfg.backfill_cutoffs, score_cutoff)
    backfilled: list[pd.Series] = []
    for cutoff in backfill:
        rows = features[features["cutoff"] == cutoff]
        past = rows[["customer_id", "cutoff"]].assign(**{SCORE_COLUMN: model.predict_proba(rows)})
        backfilled.append(past[SCORE_COLUMN])
        entry, _ = _entry(cutoff, "backfilled", rows, past, reference, score_reference,
                          model_version, cfg)
        entries.append(entry)
    entries.append(current)

    # This run's entries replace stored ones with the same key (cutoff and model version).
    fresh = {(str(e.record["cutoff"]), str(e.record["model_version"])) for e in entries}
    stored = stack_history([history])
    stacked = stack_history([stored[~find_entry_rows(stored, fresh)],
                             *[e.scores for e in entries]])
    realized = _realized(stacked, labels, data_end, params, entity)

    scored = pd.concat(backfilled) if backfilled else pd.Series(dtype="float64")
    reference_auc, reference_auc_source = _reference_auc(model, features, entity, scored)
    score_psi = current.record["score_psi"]
    findings = check_score_drift(float("nan") if score_psi is None else score_psi, t)
    importance = compute_importance_shares(model)
    if current_drift is not None:
        findings += check_feature_drift(current_drift, t, importance)
        flagged = flag_features(current_drift, t, importance)
        current_drift = current_drift.assign(
            importance_share=current_drift["feature"].map(importance).fillna(0.0))
    else:
        flagged = pd.DataFrame()
    findings += check_auc(current.record["estimated"]["roc_auc"], reference_auc, "estimated", t)
    mine = realized[realized["model_version"] == str(model_version)] if len(realized) else realized
    latest_realized = mine.iloc[-1] if len(mine) else None
    if latest_realized is not None:
        findings += check_auc(float(latest_realized["roc_auc"]), reference_auc, "realized", t)
        findings += check_calibration(float(latest_realized["churn_rate"]),
                                      float(latest_realized["mean_probability"]),
                                      int(latest_realized["labeled_rows"]), t)
    decision = decide_status(findings)
    by_cutoff = summarize_by_cutoff([e.record for e in entries], realized,
                                    str(model_version))
    report = {
        "status": decision.status,
        "reasons": decision.reasons(),
        "model_version": str(model_version),
        "mode": params.ingest.mode.value,
        "cutoff": f"{score_cutoff:%Y-%m-%d}",
        "data_end": None if data_end is None else data_end.isoformat(),
        "reference": {
            # Each distinct cutoff formatted once: every row's took 10 s at 1M customers.
            "cutoffs": sorted({f"{c:%Y-%m-%d}" for c in reference_rows["cutoff"].unique()}),
            "rows": len(reference_rows),
            "roc_auc": reference_auc,
            "roc_auc_source": reference_auc_source,
        },
        "thresholds": cfg.model_dump(),
        "current": current.record,
        "flagged_features": flagged.to_dict(orient="records"),
        "drift": [] if current_drift is None else current_drift.to_dict(orient="records"),
        "drift_note": None if current_drift is not None else
        "no feature values of the current scoring (features sidecar absent): score drift only",
        "by_cutoff": by_cutoff,
        "estimated_vs_realized": compare_estimated_to_realized(by_cutoff),
        "realized": realized.assign(cutoff=realized["cutoff"].dt.strftime("%Y-%m-%d"))
        .to_dict(orient="records") if len(realized) else [],
        "realized_note": "entity mode: no label horizon to close; score --input with the label "
        "column writes realized metrics" if entity else None,
        "history_entries": sorted({entry_stem(pd.Timestamp(c), v) for c, v in
                                   stacked[["cutoff", "model_version"]].drop_duplicates()
                                   .itertuples(index=False)}),
    }
    return MonitorOutcome(report=_jsonable(report), entries=tuple(entries))


def _realized(stacked: pd.DataFrame, labels: pd.DataFrame, data_end: pd.Timestamp | None,
              params: Params, entity: bool) -> pd.DataFrame:
    columns = ["model_version", "cutoff"]
    if entity or data_end is None or stacked.empty:
        return pd.DataFrame(columns=columns)
    parts = []
    for version, group in stacked.groupby("model_version", sort=True):
        joined = join_closed_labels(group, labels, data_end, params.label.horizon_days,
                                    params.label.grace_days)
        if len(joined):
            parts.append(compute_realized_performance(joined).assign(model_version=version))
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True).sort_values(columns).reset_index(drop=True)


def _jsonable(payload: Any) -> Any:
    """Return ``payload`` with NaN as ``None``, numpy scalars and timestamps as JSON values."""
    from churn.model.metrics import make_jsonable

    return make_jsonable(payload)


def read_model_version(model_dir: str | Path) -> str:
    """Return the registered version of the exported champion (``registry.json``).

    A folder without a registry record (a model exported by hand) is keyed by the SHA-256 of
    its LightGBM text, so two different models never share history entries.
    """
    import json

    folder = Path(model_dir)
    registry = folder / REGISTRY_FILE
    if registry.exists():
        record = json.loads(registry.read_text())
        version = record.get("model_version") or record.get("version")
        if version is not None:
            return str(version)
    from churn.model.verification import compute_sha256

    return "sha-" + compute_sha256(folder / "model.txt")[:12]


def read_history(history_dir: str | Path) -> pd.DataFrame:
    """Return every stored entry's scores in one frame (empty when there is no history yet)."""
    folder = Path(history_dir) / SCORES_FOLDER
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    return stack_history([pd.read_parquet(f) for f in files])


def read_data_end(labels_report: str | Path) -> pd.Timestamp | None:
    """Return ``data_end`` from the label stage's report (``None`` when it has none)."""
    import json

    value = json.loads(Path(labels_report).read_text()).get("data_end")
    return None if value is None else pd.Timestamp(value)


def list_monitored_cutoffs(
    cutoffs: list[pd.Timestamp], model: ChurnModel, params: Params, score_cutoff: pd.Timestamp
) -> list[pd.Timestamp]:
    """Return the feature cutoffs :func:`monitor_champion` reads (events mode), from the list.

    The reference (:func:`select_reference_rows`), the backfill
    (:func:`select_backfill_cutoffs`) and the champion's test cutoffs: the runner reads only
    these rows. Given only these, the core chooses the same reference and backfill cutoffs,
    since each takes the latest of its candidates and every one it would take is here.
    """
    present = set(cutoffs)
    train_cutoffs = _as_timestamps(model.metadata.get("train_cutoffs", []))
    reference = [c for c in train_cutoffs if c in present][-params.monitor.reference_cutoffs:]
    backfill = [] if not train_cutoffs else select_backfill_cutoffs(
        cutoffs, train_cutoffs[-1], params.monitor.backfill_cutoffs, score_cutoff)
    test = [c for c in _as_timestamps(model.metadata.get("test_cutoffs", [])) if c in present]
    return sorted({*reference, *backfill, *test})


def run_monitor(
    params: Params,
    *,
    features_path: str | Path,
    labels_path: str | Path,
    labels_report: str | Path,
    model_dir: str | Path,
    scores_path: str | Path,
    history_dir: str | Path,
    out_path: str | Path,
) -> dict[str, Any]:
    """Read the inputs, watch the champion, write the history entries and the JSON report.

    The history folder is swapped in whole with this run's entries added or replaced
    (:func:`churn.io.atomic_directory` with ``keep_existing``), so a kill never leaves an
    entry's scores without its record; the report is written after it.

    Returns:
        The report (``status``, ``reasons``, drift, estimated and realized performance).

    Raises:
        DataContractError: If the scores file is missing or holds no single cutoff.
    """
    from churn.io import atomic_directory, read_frame, read_frame_positions
    from churn.tracking.loading import load_model

    scores_path = Path(scores_path)
    if not scores_path.exists():
        raise DataContractError(f"no scores at {scores_path}; run 'churn score' first")
    model = load_model(model_dir)
    scores = read_frame(scores_path)
    # Each monitored cutoff has about as many rows as the scores: at a size that predicts
    # with numba's kernel, it compiles while the features are read.
    model.start_compiling(len(scores), contributions=False)
    scores["cutoff"] = pd.to_datetime(scores["cutoff"], utc=True)
    features_file = sidecar_path(scores_path, FEATURES_SUFFIX)
    scoring_features = pd.read_parquet(features_file) if features_file.exists() else None
    if params.ingest.mode is Mode.ENTITY or scores.empty or scores["cutoff"].nunique() != 1:
        features = read_frame(features_path)  # entity mode reads every row; the core reports
    else:
        # Only the rows the core reads: the cutoffs it looks at (about a third of the file with
        # the defaults), and of each at most monitor.max_rows_per_cutoff (select_rows_per_cutoff).
        keys = pd.read_parquet(features_path, columns=["customer_id", "cutoff"])
        cutoffs = _as_timestamps(keys["cutoff"].unique())
        needed = list_monitored_cutoffs(cutoffs, model, params, scores["cutoff"].iloc[0])
        if needed:
            wanted = np.flatnonzero(pd.to_datetime(keys["cutoff"], utc=True).isin(needed))
            kept = select_rows_per_cutoff(keys.iloc[wanted], params.monitor.max_rows_per_cutoff)
            features = read_frame_positions(features_path, wanted[kept])
        else:
            features = read_frame(features_path)
    outcome = monitor_champion(
        model=model,
        model_version=read_model_version(model_dir),
        features=features,
        labels=pd.read_parquet(labels_path),
        data_end=read_data_end(labels_report),
        scores=scores,
        scoring_features=scoring_features,
        history=read_history(history_dir),
        params=params,
    )
    with atomic_directory(history_dir, keep_existing=True) as staging:
        for entry in outcome.entries:
            (staging / SCORES_FOLDER).mkdir(exist_ok=True)
            (staging / RECORDS_FOLDER).mkdir(exist_ok=True)
            write_parquet(entry.scores, staging / SCORES_FOLDER / f"{entry.stem}.parquet")
            write_json(entry.record, staging / RECORDS_FOLDER / f"{entry.stem}.json")
    write_json(outcome.report, out_path)
    logger.info(
        "monitor: status %s (%d reasons) at %s; history %s",
        outcome.report["status"], len(outcome.report["reasons"]), outcome.report["cutoff"],
        history_dir,
    )
    return outcome.report
