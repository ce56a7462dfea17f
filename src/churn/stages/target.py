"""The ``churn target`` stage: whom to contact this week, with which play (docs/targeting.md).

Pure cores :func:`learn_effects`, :func:`~churn.targeting.planning.plan_contacts` and
:func:`compare_policies_on_truth` take frames and config; the runner :func:`run_target` reads
the scores, the catalog, the logged ``retention_actions`` (optional) and, where the simulator
wrote it, the truth, and writes:

* ``<out_dir>/targets.parquet``: the chosen contacts (one play per customer, within every
  capacity) with their expected value, cost, probability, reasons and next decision date.
* ``<out_dir>/candidates.parquet``: every eligible (customer, play) with its expected value.
* ``<out_dir>/curves.parquet``: cumulative value against contacts per policy (expected at the
  scoring cutoff; true at the test cutoff when the truth exists).
* the CRM-ready CSV (``contacts_path``) and ``reports/target.json`` (DVC metrics: play effects
  with source and uncertainty, the policy comparison).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churn.config import Params, TargetConfig
from churn.domain.families import FAMILIES, PROFILE_FAMILY
from churn.errors import DataContractError
from churn.io import (
    atomic_directory,
    atomic_path,
    read_frame,
    read_frame_keys,
    read_frame_rows,
    write_json,
    write_parquet,
)
from churn.layout import (
    CANDIDATES_FILE,
    CONTRIBUTIONS_SUFFIX,
    CURVES_FILE,
    TARGETS_FILE,
    sidecar_path,
    table_file_name,
)
from churn.stages.tlearner_checks import plan_play_checks, start_play_checks
from churn.targeting.dose_response import DoseEffect, fit_play_dose_effects
from churn.targeting.dose_truth import dose_effects_vs_truth, join_truth, list_truth_keys
from churn.targeting.logged import attach_outcomes
from churn.targeting.planning import Explained, plan_contacts, plan_population_contacts
from churn.targeting.playbook import (
    actionable_families,
    count_reasons,
    family_doses,
    play_dose,
    reason_families,
)
from churn.targeting.policies import compare_on_truth, cumulative_curves
from churn.targeting.shrinkage import SOURCE_SHRUNK, shrink_effects
from churn.targeting.uplift import (
    SEGMENTS,
    SOURCE_LOGGED,
    Estimate,
    PlayEffect,
    assign_segments,
    estimate_play_effects,
    standardized_difference,
    unify_effect_sources,
)

logger = logging.getLogger(__name__)

ACTIONS_TABLE = "retention_actions"
TRUTH_TABLE = "retention_truth"
_ALL_FAMILIES = [*FAMILIES, PROFILE_FAMILY]


def probability_column(config: TargetConfig, label_horizon_days: int,
                       scores: pd.DataFrame) -> str:
    """The scores column holding P(churn within ``target.horizon_days``).

    Raises:
        DataContractError: If the horizon is not the label horizon and the scores carry no
            ``churn_probability_<h>d`` column for it.
    """
    horizon = config.horizon_days or label_horizon_days
    if horizon == label_horizon_days:
        return "churn_probability"
    column = f"churn_probability_{horizon}d"
    if column not in scores.columns:
        raise DataContractError(
            f"target.horizon_days is {horizon} but the scores have no column {column!r} "
            f"(only churn_probability, for label.horizon_days {label_horizon_days})"
        )
    return column


def learn_effects(
    logged: pd.DataFrame,
    explained: Explained | None,
    family_of: dict[str, str],
    config: TargetConfig,
) -> tuple[list[PlayEffect], pd.DataFrame]:
    """Play effects per segment from logged actions (configured rates where too few rows).

    ``target.one_source_per`` then decides whether a play (or the playbook) may mix logged
    and configured rates (:func:`~churn.targeting.uplift.unify_effect_sources`). The T-learner
    cross-check of the same rows is :mod:`churn.stages.tlearner_checks`.

    Args:
        logged: :func:`~churn.targeting.logged.attach_outcomes` output (may be empty).
        explained: Reasons and doses of the logged rows' (customer, cutoff), or ``None``.
        family_of: Feature -> family.
        config: The ``target`` section.

    Returns:
        The effects, and the logged rows with ``addressed``, ``dose`` and ``segment``.
    """
    configured = {name: play.save_rate for name, play in config.plays.items()}
    rows = _annotate_logged(logged, explained, family_of, config)
    effects, _ = estimate_play_effects(rows, configured, config.min_rows_per_arm,
                                       config.max_standard_error)
    effects = unify_effect_sources(effects, configured, config.one_source_per)
    split = {e.play: e.dose_split or 0.0 for e in effects}
    if len(rows):
        rows["segment"] = assign_segments(rows["addressed"].to_numpy(), rows["dose"].to_numpy(),
                                          rows["play"].map(split).to_numpy(dtype=np.float64))
    return effects, rows


def learn_dose_effects(rows: pd.DataFrame, config: TargetConfig) -> dict[str, DoseEffect]:
    """Each play's dose response from the annotated logged rows (``effect_model``).

    Args:
        rows: :func:`learn_effects`' logged rows (``play``, ``churned``, ``control``,
            ``expected``, ``dose``).
        config: The ``target`` section.

    Returns:
        Play -> fit for the plays with ``min_rows_per_arm`` rows in each arm; empty with
        ``effect_model: segments`` or without the model's probability on the rows.
    """
    if config.effect_model != "dose_response" or rows.empty or "expected" not in rows:
        return {}
    usable = rows[rows["expected"].notna()]
    arrays = {name: tuple(part[c].to_numpy() for c in ("churned", "control", "expected", "dose"))
              for name, part in usable.groupby("play", sort=False) if name in config.plays}
    return fit_play_dose_effects(arrays, config.min_rows_per_arm)


def shrink_to_pooled(effects: list[PlayEffect], rows: pd.DataFrame, config: TargetConfig
                     ) -> list[PlayEffect]:
    """With ``effect_model: shrunk_segments``, the addressed segments shrunk to each play's
    pooled addressed estimate (:func:`~churn.targeting.shrinkage.shrink_effects`).

    Args:
        effects: :func:`learn_effects`' effects.
        rows: Its logged rows (``play``, ``addressed``, ``churned``, ``control``,
            ``expected``).
        config: The ``target`` section.

    Returns:
        The effects, unchanged with another ``effect_model`` or without logged rows; with
        ``target.one_source_per`` applied again after shrinking (a shrunk rate counts as
        logged).
    """
    if config.effect_model != "shrunk_segments" or rows.empty or "expected" not in rows:
        return effects
    pooled: dict[str, Estimate] = {}
    for name in config.plays:
        part = rows[(rows["play"] == name) & rows["addressed"] & rows["expected"].notna()]
        estimate = standardized_difference(part["churned"].to_numpy(),
                                           part["control"].to_numpy(dtype=bool),
                                           part["expected"].to_numpy()) if len(part) else None
        if estimate is not None:
            pooled[name] = estimate
    shrunk = shrink_effects(effects, pooled, config.min_rows_per_arm, config.max_standard_error)
    configured = {name: play.save_rate for name, play in config.plays.items()}
    return unify_effect_sources(shrunk, configured, config.one_source_per,
                                logged_sources=(SOURCE_LOGGED, SOURCE_SHRUNK))


def _annotate_logged(logged: pd.DataFrame, explained: Explained | None,
                     family_of: dict[str, str], config: TargetConfig) -> pd.DataFrame:
    """Logged rows with ``addressed`` (a play family among the reasons) and the play's dose."""
    rows = logged.copy()
    if rows.empty or explained is None:
        return rows.assign(addressed=pd.Series(dtype=bool), dose=pd.Series(dtype=float))
    keys = ["customer_id", "cutoff"]
    reasons = reason_families(explained.scores, family_of)  # carries the cutoff
    addressed = np.zeros(len(rows), dtype=bool)
    dose = np.zeros(len(rows))
    doses = rows[keys].merge(explained.doses, on=keys, how="left")
    expected = rows[keys].merge(explained.scores[[*keys, "churn_probability"]], on=keys,
                                how="left")["churn_probability"].to_numpy(dtype=np.float64)
    for name, play in config.plays.items():
        mask = (rows["play"] == name).to_numpy()
        hit = reasons.loc[reasons["family"].isin(play.families), keys].drop_duplicates()
        flag = rows[keys].merge(hit.assign(_hit=True), on=keys, how="left")["_hit"]
        addressed[mask] = flag.fillna(False).to_numpy(dtype=bool)[mask]
        dose[mask] = np.nan_to_num(play_dose(doses, play))[mask]
    return rows.assign(addressed=addressed, dose=dose, expected=expected)


def true_effects(logged: pd.DataFrame, truth: pd.DataFrame,
                 effects: list[PlayEffect]) -> list[dict[str, Any]]:
    """Each logged estimate against the truth's average effect on the same logged rows.

    The truth's save rate of a segment is ``1 - sum(churn_treated) / sum(churn_untreated)``
    over its logged rows (both arms): the quantity the difference in means estimates. The
    estimate compared is the one the list uses when it comes from the log (shrunk or not),
    else the segment's logged estimate that was too uncertain to use (``used`` False).
    """
    if logged.empty:
        return []
    joined = join_truth(logged, truth)
    out = []
    for effect in effects:
        part = joined[(joined["play"] == effect.play) & (joined["segment"] == effect.segment)]
        used = effect.standard_error is not None
        estimate = effect.save_rate if used else effect.logged_save_rate
        error = effect.standard_error if used else effect.logged_standard_error
        if part.empty or estimate is None or error is None:
            continue
        true_rate = 1 - part["churn_treated"].sum() / part["churn_untreated"].sum()
        gap = estimate - float(true_rate)
        out.append({
            "play": effect.play, "segment": effect.segment, "estimate": estimate,
            "standard_error": error, "used": used, "true_save_rate": float(true_rate),
            "z": gap / error if error > 0 else None,
            "within_2_se": abs(gap) <= 2 * error, "rows": len(part),
        })
    return out


def compare_policies_on_truth(
    chosen: dict[str, pd.DataFrame], truth_at_cutoff: pd.DataFrame, config: TargetConfig
) -> dict[str, Any]:
    """The policy comparison on the truth, with the ratios of the issue's targets."""
    fixed = {name: play.cost for name, play in config.plays.items()}
    table = compare_on_truth(chosen, truth_at_cutoff, fixed)
    saved = dict(zip(table["policy"], table["true_saved_revenue"], strict=True))
    result: dict[str, Any] = {"policies": table.to_dict(orient="records")}
    for other in ("top_probability", "top_revenue_at_risk", "random"):
        result[f"ratio_vs_{other}"] = (saved["expected_value"] / saved[other]
                                       if saved.get(other) else None)
        # The same ratio with the expected-value list cut to the baseline's number of
        # contacts (a baseline may fill fewer slots: its first reasons crowd one team).
        first = chosen["expected_value"].head(len(chosen[other]))
        same = compare_on_truth({"expected_value": first}, truth_at_cutoff, fixed)
        ev_saved = float(same["true_saved_revenue"].iloc[0])
        result[f"ratio_vs_{other}_equal_contacts"] = (ev_saved / saved[other]
                                                      if saved.get(other) else None)
    return result


def describe_contacts(targets: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """The chosen contacts with the reasons' sentences and the next decision date.

    ``reason_behind_play`` is the sentence of the reason whose family the play addresses;
    ``next_decision_date`` (next renewal or billing date) is copied from the scores when they
    carry it, else missing.
    """
    reason_columns = [c for i in range(1, count_reasons(scores) + 1)
                      for c in (f"reason_{i}_feature", f"reason_{i}_text")]
    extra = [c for c in ("next_decision_date",) if c in scores.columns]
    joined = targets.merge(scores[["customer_id", *reason_columns, *extra]],
                           on="customer_id", how="left")
    joined["reason_behind_play"] = [
        row.get(f"reason_{int(rank)}_text") for rank, row in zip(
            joined["reason_rank"], joined.to_dict(orient="records"), strict=True)
    ]
    if "next_decision_date" not in joined.columns:
        joined["next_decision_date"] = pd.Series(pd.NaT, index=joined.index,
                                                 dtype="datetime64[us, UTC]")
    return joined


#: Columns of the CRM-ready CSV, in order (then the reasons' sentences).
CONTACT_COLUMNS = ("contact_rank", "customer_id", "team", "play", "expected_value", "cost",
                   "churn_probability", "mrr", "save_rate", "effect_source",
                   "reason_behind_play")


def crm_contacts(described: pd.DataFrame) -> pd.DataFrame:
    """The CRM-ready list: who, which team and play, value, cost, probability, reasons."""
    texts = [c for c in described.columns if c.startswith("reason_") and c.endswith("_text")]
    columns = [*CONTACT_COLUMNS, *texts, "next_decision_date"]
    return described[columns].sort_values(["team", "contact_rank"], kind="stable")


def run_target(
    params: Params,
    scores_path: Path,
    catalog_path: Path,
    validated_dir: Path,
    labels_path: Path,
    features_path: Path,
    model_dir: Path,
    truth_dir: Path | None,
    out_dir: Path,
    contacts_path: Path,
    metrics_path: Path,
) -> dict[str, Any]:
    """Learn play effects, choose this week's contacts, compare policies, write everything.

    Args:
        params: All parameters (``target``, ``label.horizon_days``, ``score.reasons``,
            ``train.num_threads`` for the T-learner cross-check).
        scores_path: Scores of ``churn score`` (its contributions sidecar beside it).
        catalog_path: Feature catalog (feature -> family).
        validated_dir: Validated tables; ``retention_actions.parquet`` is optional.
        labels_path: Labels (outcomes of the logged actions; the test cutoff).
        features_path: Features (the logged actions' and the test cutoff's rows).
        model_dir: The champion, to explain those rows like the scores.
        truth_dir: Simulator truth; the policy comparison runs only with
            ``retention_truth.parquet`` in it.
        out_dir: Folder for targets, candidates and curves (swapped in whole).
        contacts_path: The CRM-ready CSV.
        metrics_path: ``reports/target.json``.

    Returns:
        The metrics written.
    """
    from churn.domain.catalog import read_catalog
    from churn.model.artifact import ChurnModel
    from churn.model.scoring import read_mrr, score_population

    config = params.target
    scores = read_frame(scores_path)
    contributions = read_frame(sidecar_path(scores_path, CONTRIBUTIONS_SUFFIX))
    catalog = read_catalog(catalog_path)
    family_of = dict(zip(catalog["name"], catalog["family"], strict=True))
    dose_family_of = actionable_families(catalog)  # no dose from timing and exposure
    probability = probability_column(config, params.label.horizon_days, scores)
    model = ChurnModel.load(model_dir)
    truth_file = Path(truth_dir) / table_file_name(TRUTH_TABLE) if truth_dir else None
    if truth_file is not None and not truth_file.exists():
        truth_file = None  # no policy comparison on the truth
    # The rows explained below (the logged actions' and, on simulated data, the test cutoff's
    # customers who can make a list) number up to as many as the scores: numba compiles the
    # TreeSHAP kernel while the labels, actions and features are read, instead of at the first
    # explanation. Their raw scores come from that kernel's walk; the prediction kernel is
    # needed only for the test cutoff's probabilities.
    model.start_compiling(len(scores), raw_scores=truth_file is not None)
    labels = None

    def explain(rows: pd.DataFrame, population_rows: int | None = None) -> Explained:
        # Only which features push each row's risk is read here, never the sentences.
        result = score_population(model, rows, params.score.reasons, texts=False,
                                  population_rows=population_rows)
        return Explained(result.scores,
                         family_doses(result.contributions, dose_family_of, _ALL_FAMILIES))

    actions_file = Path(validated_dir) / table_file_name(ACTIONS_TABLE)
    scoring_cutoff = pd.Timestamp(scores["cutoff"].max())
    logged = pd.DataFrame(columns=["customer_id", "cutoff", "action_at", "play", "control",
                                   "churned"])
    counts: dict[str, int] = {"rows": 0}
    explained = model_features = None
    if actions_file.exists():
        labels = read_frame(labels_path)
        logged, counts = attach_outcomes(read_frame(actions_file), labels, list(config.plays),
                                         scoring_cutoff)
        if len(logged):
            keys = logged[["customer_id", "cutoff"]].drop_duplicates()
            # Only the rows of the logged (customer, cutoff) pairs are read, then matched.
            matched = read_frame_keys(features_path, keys)
            rows = matched.merge(keys, on=["customer_id", "cutoff"], how="inner")
            explained = explain(rows)
            # The T-learner sees the features as the model does (categories encoded as codes).
            frame = pd.DataFrame(model.prepare(rows), columns=list(model.feature_names),
                                 index=rows.index)
            model_features = logged[["customer_id", "cutoff"]].merge(
                pd.concat([rows[["customer_id", "cutoff"]], frame], axis=1),
                on=["customer_id", "cutoff"], how="left")[list(model.feature_names)]
    else:
        logger.info("no %s in %s: configured save rates", ACTIONS_TABLE, validated_dir)
    effects, logged_rows = learn_effects(logged, explained, family_of, config)
    checks = [] if model_features is None else plan_play_checks(logged_rows, model_features,
                                                                config)
    # The cross-check runs in worker processes while this one chooses and compares.
    with start_play_checks(checks, config, params.train.num_threads) as checks_run:
        dose_fits = learn_dose_effects(logged_rows, config)
        effects = shrink_to_pooled(effects, logged_rows, config)

        doses = family_doses(contributions, dose_family_of, _ALL_FAMILIES)
        candidates, chosen = plan_contacts(scores, doses, family_of, effects, config, probability,
                                           dose_fits)
        targets = describe_contacts(chosen["expected_value"], scores)
        expected = {policy: frame.assign(expected_saved=frame["churn_probability"]
                                         * frame["save_rate"] * frame["value_at_risk"])
                    for policy, frame in chosen.items()}
        curves = cumulative_curves(expected, "expected_saved").assign(
            cutoff=scoring_cutoff, value="expected_saved_revenue")

        comparison: dict[str, Any] = {}
        if truth_file is not None:
            labels = labels if labels is not None else read_frame(labels_path)
            test_cutoff = labels.loc[labels["label"].notna(), "cutoff"].max()
            test_rows = read_frame_rows(features_path, {"cutoff": [test_cutoff]})
            population = pd.DataFrame({
                "customer_id": test_rows["customer_id"].array,
                "churn_probability": model.predict_proba(test_rows),
                "mrr": read_mrr(test_rows),
            })
            test_chosen, explained_rows = plan_population_contacts(
                population,
                lambda positions: explain(test_rows.iloc[positions],
                                          population_rows=len(test_rows)),
                family_of, effects, config, dose_fits)
            logger.info("policy comparison at %s: %s of %s customers explained",
                        pd.Timestamp(test_cutoff).date(), explained_rows, len(test_rows))
            # The truth holds every customer, month and play: only the test cutoff's month and the
            # rows of the logged contacts (customer, contact month, play) are read. Reading every
            # month of the logged customers and joining them took 40 s at 1M customers (26M rows
            # for 414k contacts); the contacts' own keys take about 5 s.
            at_cutoff = read_frame_rows(truth_file, {"month_start": [test_cutoff]})
            # Only the chosen customers' rows can match a contact: the joins below validated
            # and factorised the month's every (customer, play), 11 s at a million customers.
            chosen_ids = pd.concat([frame["customer_id"] for frame in test_chosen.values()])
            at_cutoff = at_cutoff[at_cutoff["customer_id"].isin(chosen_ids)]
            truth = read_frame_keys(truth_file, list_truth_keys(logged_rows)) if len(
                logged_rows) else at_cutoff.iloc[:0]
            comparison = compare_policies_on_truth(test_chosen, at_cutoff, config)
            comparison["cutoff"] = str(pd.Timestamp(test_cutoff).date())
            comparison["customers"] = len(test_rows)
            comparison["customers_explained"] = explained_rows
            comparison["effects_vs_truth"] = true_effects(logged_rows, truth, effects)
            comparison["dose_effects_vs_truth"] = dose_effects_vs_truth(logged_rows, truth,
                                                                        dose_fits)
            truthful = {policy: frame.merge(at_cutoff, on=["customer_id", "play"], how="left")
                        for policy, frame in test_chosen.items()}
            curves = pd.concat([curves, cumulative_curves(truthful, "saved_revenue").assign(
                cutoff=test_cutoff, value="true_saved_revenue")], ignore_index=True)
        tlearner = checks_run.collect()

    metrics = {
        "scoring_cutoff": str(scoring_cutoff.date()),
        "contacts": len(targets),
        "contacts_by_team": targets.groupby("team").size().to_dict(),
        "expected_value": float(targets["expected_value"].sum()),
        "candidates": len(candidates),
        "logged_actions": counts,
        "effects": [e.to_dict() for e in effects],
        "tlearner_check": tlearner.to_dict(orient="records"),
        "effect_model": config.effect_model,
        "one_source_per": config.one_source_per,
        "dose_effects": {play: fit.to_dict() for play, fit in dose_fits.items()},
        "segments": list(SEGMENTS),
        "policy_comparison": comparison,
    }
    with atomic_directory(out_dir) as staging:
        write_parquet(targets, staging / TARGETS_FILE)
        write_parquet(candidates, staging / CANDIDATES_FILE)
        write_parquet(curves, staging / CURVES_FILE)
    with atomic_path(contacts_path) as staged:
        crm_contacts(targets).to_csv(staged, index=False)
    write_json(metrics, metrics_path)
    logger.info("%s contacts (%s), expected value %.0f; %s", len(targets),
                metrics["contacts_by_team"], metrics["expected_value"],
                {k: comparison.get(k) for k in ("ratio_vs_top_probability",
                                                "ratio_vs_top_revenue_at_risk")})
    return metrics
