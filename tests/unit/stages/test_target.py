"""The ``churn target`` stage: with and without logged retention actions, third-party shapes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.event_export import make_event_export
from support.tiny import TINY_CATALOG, fit_tiny_model, make_feature_frame

from churn.config import IngestConfig, PlayConfig, TableMapping, TargetConfig, parse_params
from churn.layout import CONTRIBUTIONS_SUFFIX, sidecar_path
from churn.model.scoring import score_population
from churn.model.verification import write_manifest
from churn.stages.ingest import validate_tables
from churn.stages.target import run_target

PLAYBOOK = {
    "teams": {"support": 12, "success": 8, "sales": 5},
    "plays": {
        "support_escalation": {"families": ["support"], "team": "support", "cost": 5,
                               "save_rate": 0.3},
        "adoption_session": {"families": ["usage"], "team": "success", "cost": 10,
                             "save_rate": 0.3, "weekly_capacity": 3},
        "discount_offer": {"families": ["billing"], "team": "sales", "cost": 1,
                           "cost_share_of_mrr": 0.2, "cost_months": 3, "save_rate": 0.3},
    },
    "min_rows_per_arm": 30,
    "tlearner_bootstrap_rounds": 3,
    # Each segment's estimate on its own; test_with_retention_actions_a_known_effect_is_learned
    # checks the other scopes.
    "one_source_per": "segment",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict[str, Path]:
    """Model, scores (+ contributions), catalog, features and labels of a tiny world."""
    root = tmp_path_factory.mktemp("target")
    features = make_feature_frame(n_customers=4000, n_cutoffs=4, seed=2)
    model = fit_tiny_model(features)
    model.save(root / "model")
    write_manifest(root / "model")
    last = features["cutoff"].max()
    result = score_population(model, features[features["cutoff"] == last], 3)
    (root / "scores").mkdir()
    scores_path = root / "scores" / "scores.parquet"
    result.scores.to_parquet(scores_path)
    result.contributions.to_parquet(sidecar_path(scores_path, CONTRIBUTIONS_SUFFIX))
    TINY_CATALOG.to_csv(root / "catalog.csv", index=False)
    features.to_parquet(root / "features.parquet")
    labels = features[["customer_id", "cutoff", "label"]].copy()
    labels.loc[labels["cutoff"] == last, "label"] = pd.NA
    labels.to_parquet(root / "labels.parquet")
    return {"root": root, "scores": scores_path, "features": root / "features.parquet",
            "labels": root / "labels.parquet"}


def _run(project: dict[str, Path], validated: Path, name: str,
         **target: object) -> tuple[dict, Path]:
    out = project["root"] / name
    params = parse_params({"target": {**PLAYBOOK, **target}, "score": {"reasons": 3}})
    metrics = run_target(
        params, project["scores"], project["root"] / "catalog.csv", validated,
        project["labels"], project["features"], project["root"] / "model", None,
        out / "targets", out / "contacts.csv", out / "target.json",
    )
    return metrics, out


def _check_list(metrics: dict, out: Path) -> pd.DataFrame:
    targets = pd.read_parquet(out / "targets" / "targets.parquet")
    assert len(targets) > 0
    assert targets["customer_id"].is_unique
    assert (targets["expected_value"] > 0).all()
    for team, limit in PLAYBOOK["teams"].items():
        assert (targets["team"] == team).sum() <= limit
    assert (targets["play"] == "adoption_session").sum() <= 3
    contacts = pd.read_csv(out / "contacts.csv")
    assert len(contacts) == len(targets)
    assert {"customer_id", "team", "play", "expected_value", "cost", "churn_probability",
            "reason_behind_play", "next_decision_date"} <= set(contacts.columns)
    assert contacts["reason_behind_play"].notna().all()
    assert json.loads((out / "target.json").read_text()) == json.loads(json.dumps(metrics))
    return targets


def test_without_retention_actions_the_configured_rates_are_used(project, tmp_path):
    metrics, out = _run(project, tmp_path, "plain")
    targets = _check_list(metrics, out)
    assert {e["source"] for e in metrics["effects"]} == {"configured"}
    assert set(targets["effect_source"]) == {"configured"}
    assert metrics["policy_comparison"] == {}
    # Expected value, recomputed naively from its parts.
    naive = (targets["churn_probability"] * 0.3 * targets["mrr"] * 12 - targets["cost"])
    np.testing.assert_allclose(targets["expected_value"], naive, rtol=1e-9)


def test_the_truth_is_read_at_the_test_cutoff_only_and_without_actions(project, tmp_path):
    """Only the test cutoff's month of the truth is compared (a truth row of another month
    would double a contact or add its 1,000), and with no logged action nothing else is read."""
    labels = pd.read_parquet(project["labels"])
    test_cutoff = labels.loc[labels["label"].notna(), "cutoff"].max()
    customers = labels["customer_id"].unique()
    months = [test_cutoff, test_cutoff - pd.DateOffset(months=1)]
    truth = pd.DataFrame(
        [(c, m, play) for m in months for c in customers for play in PLAYBOOK["plays"]],
        columns=["customer_id", "month_start", "play"],
    )
    truth["saved_revenue"] = np.where(truth["month_start"] == test_cutoff, 1.0, 1000.0)
    truth["discount_given"] = 0.0
    truth_dir = tmp_path / "truth"
    truth_dir.mkdir()
    truth.to_parquet(truth_dir / "retention_truth.parquet")
    out = tmp_path / "out"
    params = parse_params({"target": PLAYBOOK, "score": {"reasons": 3}})
    metrics = run_target(
        params, project["scores"], project["root"] / "catalog.csv", tmp_path,
        project["labels"], project["features"], project["root"] / "model", truth_dir,
        out / "targets", out / "contacts.csv", out / "target.json",
    )
    comparison = metrics["policy_comparison"]
    assert comparison["cutoff"] == str(test_cutoff.date())
    assert comparison["effects_vs_truth"] == []
    assert comparison["customers"] == (labels["cutoff"] == test_cutoff).sum()
    assert 0 < comparison["customers_explained"] <= comparison["customers"]
    for policy in comparison["policies"]:
        assert policy["contacts"] > 0
        assert policy["matched"] == policy["contacts"]
        assert policy["true_saved_revenue"] == policy["contacts"]


def _logged_actions(project: dict[str, Path], save: float, seed: int) -> pd.DataFrame:
    """Actions on the labeled cutoffs; treated churners are kept with probability ``save``.

    The labels file is rewritten accordingly, so the true save rate is ``save`` everywhere.
    """
    rng = np.random.default_rng(seed)
    labels = pd.read_parquet(project["labels"])
    labeled = labels[labels["label"].notna()].reset_index(drop=True)
    chosen = labeled.sample(frac=0.8, random_state=seed).reset_index(drop=True)
    control = rng.random(len(chosen)) < 0.35
    play = rng.choice(list(PLAYBOOK["plays"]), len(chosen))
    kept = (~control) & (chosen["label"].to_numpy(dtype=int) == 1) & (rng.random(len(chosen))
                                                                       < save)
    chosen.loc[kept, "label"] = 0
    new_labels = labels.merge(chosen[["customer_id", "cutoff", "label"]],
                              on=["customer_id", "cutoff"], how="left", suffixes=("", "_new"))
    new_labels["label"] = new_labels["label_new"].fillna(new_labels["label"]).astype("Int8")
    new_labels.drop(columns="label_new").to_parquet(project["labels"])
    return pd.DataFrame({
        "customer_id": chosen["customer_id"],
        "action_at": chosen["cutoff"] + pd.Timedelta(hours=9),
        "play": pd.array(play, dtype="str"),
        "control": pd.array(control, dtype="boolean"),
    })


def test_with_retention_actions_a_known_effect_is_learned(project, tmp_path):
    original = pd.read_parquet(project["labels"])
    try:
        actions = _logged_actions(project, save=0.5, seed=4)
        actions.to_parquet(tmp_path / "retention_actions.parquet")
        metrics, out = _run(project, tmp_path, "logged", max_standard_error=1.0)
        strict, _ = _run(project, tmp_path, "logged_strict", max_standard_error=0.01)
        # A gate between the addressed segments' errors: some pass, some do not.
        errors = sorted(e["standard_error"] for e in metrics["effects"]
                        if e["source"] == "logged actions" and e["segment"] != "not_addressed")
        middle = (errors[len(errors) // 2 - 1] + errors[len(errors) // 2]) / 2
        scoped = {scope: _run(project, tmp_path, f"one_source_{scope}",
                              max_standard_error=middle, one_source_per=scope)[0]
                  for scope in ("segment", "play", "playbook")}
    finally:
        original.to_parquet(project["labels"])
    _check_list(metrics, out)
    assert metrics["logged_actions"]["used"] == len(actions)
    learned = [e for e in metrics["effects"] if e["source"] == "logged actions"]
    assert len(learned) >= 3
    for effect in learned:
        gap = abs(effect["save_rate"] - 0.5)
        assert gap < 3 * effect["standard_error"] + 0.02, effect
    assert metrics["tlearner_check"]
    # A limit no estimate meets: the same estimates are reported, the configured rates used.
    by_key = {(e["play"], e["segment"]): e for e in strict["effects"]}
    for effect in learned:
        kept = by_key[(effect["play"], effect["segment"])]
        assert kept["source"] == "configured (logged estimate too uncertain)"
        assert kept["save_rate"] == (0.0 if effect["segment"] == "not_addressed" else 0.3)
        assert kept["logged_save_rate"] == pytest.approx(effect["save_rate"])
        assert kept["logged_standard_error"] == pytest.approx(effect["standard_error"])
    _check_one_source(scoped)


def _addressed_logged(metrics: dict) -> dict[str, set[bool]]:
    """Play -> whether each of its addressed segments' rates is logged."""
    out: dict[str, set[bool]] = {}
    for e in metrics["effects"]:
        if e["segment"] != "not_addressed":
            out.setdefault(e["play"], set()).add(e["source"] == "logged actions")
    return out


def _check_one_source(scoped: dict[str, dict]) -> None:
    """Per segment some play mixes sources; per play none does; per playbook none is logged."""
    assert scoped["segment"]["one_source_per"] == "segment"
    assert any(len(kinds) == 2 for kinds in _addressed_logged(scoped["segment"]).values())
    per_play = _addressed_logged(scoped["play"])
    assert all(len(kinds) == 1 for kinds in per_play.values())
    assert {True} in per_play.values()  # the play whose every segment passed keeps its log
    assert set().union(*_addressed_logged(scoped["playbook"]).values()) == {False}
    dropped = [e for e in scoped["playbook"]["effects"]
               if e["source"] == "configured (one source: another segment's logged estimate "
               "not usable)"]
    assert dropped and all(e["save_rate"] == 0.3 for e in dropped)


def test_third_party_retention_actions_are_mapped_and_validated():
    raw = make_event_export(n_customers=40)
    ids = raw["customers"]["customer_id"].to_numpy()
    raw["retention_actions"] = pd.DataFrame({
        "account": [ids[0], ids[1], ids[2], ids[3]],  # integer ids
        "contacted_on": ["2025-03-03", "2025-03-04", "2025-03-05", "2031-01-01"],
        "action_code": [7, 9, 7, 7],
        "holdout": ["no", "yes", "maybe", "no"],
    })
    mapping = TableMapping(
        columns={"customer_id": "account", "action_at": "contacted_on", "play": "action_code",
                 "control": "holdout"},
        values={"play": {7: "support_escalation", 9: "discount_offer"}},
    )
    cfg = IngestConfig(as_of="2025-07-01", max_quarantine_share=1.0,
                       tables={"retention_actions": mapping})
    result = validate_tables(raw, cfg, pd.Timestamp("2025-07-01", tz="UTC"))
    valid = result.valid["retention_actions"]
    assert list(valid.columns) == ["customer_id", "action_at", "play", "control"]
    assert valid["play"].tolist() == ["support_escalation", "discount_offer"]
    assert valid["control"].tolist() == [False, True]
    assert valid["customer_id"].tolist() == [str(ids[0]), str(ids[1])]
    quarantined = result.quarantine["retention_actions"]
    assert len(quarantined) == 2  # an unreadable flag and a future-dated row
    assert quarantined["_failed_rules"].str.contains("control").any()
    assert quarantined["_failed_rules"].str.contains("action_at").any()


def test_customers_whose_reasons_no_play_addresses_get_no_contact():
    # Entity mode: every reason is a "profile" feature, which no default play addresses.
    from churn.config import TargetConfig
    from churn.stages.target import crm_contacts, describe_contacts, learn_effects
    from churn.targeting.planning import plan_contacts

    config = TargetConfig()
    scores = pd.DataFrame({
        "customer_id": [1, 2], "cutoff": pd.Timestamp("2025-01-01", tz="UTC"),
        "churn_probability": [0.9, 0.8], "mrr": [1e5, 2e5],
        "reason_1_feature": ["age", "tenure"], "reason_1_text": ["old", "new"],
    })
    family_of = {"age": "profile", "tenure": "profile"}
    empty = pd.DataFrame(columns=["customer_id", "cutoff", "action_at", "play", "control",
                                  "churned"])
    effects, _ = learn_effects(empty, None, family_of, config)
    doses = pd.DataFrame({"customer_id": [1, 2], "dose_profile": [2.0, 3.0]})
    candidates, chosen = plan_contacts(scores, doses, family_of, effects, config)
    assert candidates.empty
    assert all(frame.empty for frame in chosen.values())
    assert crm_contacts(describe_contacts(chosen["expected_value"], scores)).empty


def test_dose_effects_are_learned_per_play_and_compared_with_the_truth():
    from churn.stages.target import learn_dose_effects
    from churn.targeting.dose_truth import dose_effects_vs_truth

    rng = np.random.default_rng(4)
    n, theta = 6000, 0.6
    expected = rng.uniform(0.05, 0.4, n)
    dose = rng.exponential(1.0, n)
    control = rng.random(n) < 0.25
    logit = np.log(expected / (1 - expected))
    churn_untreated = expected
    churn_treated = 1 / (1 + np.exp(-(logit - theta * dose)))
    churned = (rng.random(n) < np.where(control, churn_untreated, churn_treated)).astype(int)
    rows = pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(n)], "play": "call", "control": control,
        "churned": churned, "expected": expected, "dose": dose,
        "segment": np.where(dose > 1.0, "addressed_high_dose", "addressed_low_dose"),
        "action_at": pd.Timestamp("2025-03-01 09:00", tz="UTC"),
    })
    config = TargetConfig(teams={"t": 5}, min_rows_per_arm=30, effect_model="dose_response", plays={
        "call": PlayConfig(families=("support",), team="t", cost=1.0, save_rate=0.3),
        "idle": PlayConfig(families=("usage",), team="t", cost=1.0, save_rate=0.3)})
    fits = learn_dose_effects(rows, config)
    assert set(fits) == {"call"}  # "idle" has no logged rows
    assert abs(fits["call"].theta - theta) < 3 * fits["call"].standard_error
    assert learn_dose_effects(rows, config.model_copy(update={"effect_model": "segments"})) == {}

    truth = pd.DataFrame({
        "customer_id": rows["customer_id"], "play": "call",
        "month_start": pd.Timestamp("2025-03-01", tz="UTC"),
        "churn_untreated": churn_untreated, "churn_treated": churn_treated,
    })
    compared = {r["segment"]: r for r in dose_effects_vs_truth(rows, truth, fits)}
    for segment in ("addressed_high_dose", "addressed_low_dose"):
        part = rows["segment"] == segment
        naive = 1 - churn_treated[part].sum() / churn_untreated[part].sum()
        assert compared[segment]["true_save_rate"] == pytest.approx(naive, rel=1e-6)
        assert compared[segment]["within_2_se"]
        assert compared[segment]["rows"] == int(part.sum())


def test_shrunk_segments_pool_each_play_addressed_rows_only_when_asked():
    from churn.stages.target import shrink_to_pooled
    from churn.targeting.shrinkage import SOURCE_SHRUNK
    from churn.targeting.uplift import estimate_play_effects

    rng = np.random.default_rng(8)
    n = 4000
    control = rng.random(n) < 0.3
    addressed = rng.random(n) < 0.6
    churned = (rng.random(n) < np.where(control | ~addressed, 0.3, 0.2)).astype(int)
    rows = pd.DataFrame({"play": "call", "control": control, "addressed": addressed,
                         "dose": rng.random(n), "churned": churned, "expected": 0.3})
    config = TargetConfig(teams={"t": 5}, effect_model="shrunk_segments",
                          max_standard_error=1.0, plays={
        "call": PlayConfig(families=("support",), team="t", cost=1.0, save_rate=0.9)})
    effects, _ = estimate_play_effects(rows, {"call": 0.9}, 30)
    shrunk = {e.segment: e for e in shrink_to_pooled(effects, rows, config)}
    part = rows[rows["addressed"]]
    naive = 1 - part.loc[~part["control"], "churned"].mean() / part.loc[
        part["control"], "churned"].mean()
    for segment in ("addressed_low_dose", "addressed_high_dose"):
        assert shrunk[segment].source == SOURCE_SHRUNK
        # Between the segment's own estimate and the pooled one (both near the true 1/3).
        own = next(e for e in effects if e.segment == segment).save_rate
        assert min(own, naive) - 1e-9 <= shrunk[segment].save_rate <= max(own, naive) + 1e-9
    assert shrunk["not_addressed"] == next(e for e in effects if e.segment == "not_addressed")
    plain = config.model_copy(update={"effect_model": "segments"})
    assert shrink_to_pooled(effects, rows, plain) == effects


def test_true_effects_compare_used_and_unused_logged_estimates_with_the_truth():
    from churn.stages.target import true_effects
    from churn.targeting.uplift import SOURCE_LOGGED, SOURCE_TOO_UNCERTAIN, PlayEffect

    month = pd.Timestamp("2025-03-01", tz="UTC")
    logged = pd.DataFrame({
        "customer_id": ["a", "b", "c", "d"],
        "action_at": [month + pd.Timedelta(hours=9)] * 4,
        "play": ["call", "call", "mail", "mail"],
        "segment": ["addressed_high_dose"] * 4,
    })
    truth = pd.DataFrame({
        "customer_id": ["a", "b", "c", "d"], "month_start": [month] * 4,
        "play": ["call", "call", "mail", "mail"],
        "churn_treated": [0.1, 0.3, 0.2, 0.2], "churn_untreated": [0.2, 0.3, 0.4, 0.4],
    })
    effects = [
        PlayEffect("call", "addressed_high_dose", 0.29, 0.05, SOURCE_LOGGED, 2, 2, 0.5, 0.29,
                   0.05),
        PlayEffect("mail", "addressed_high_dose", 0.25, None, SOURCE_TOO_UNCERTAIN, 2, 2, 0.5,
                   0.9, 0.1),
        PlayEffect("mail", "addressed_low_dose", 0.25, None, "configured", 0, 0, 0.5),
    ]
    rows = {r["play"]: r for r in true_effects(logged, truth, effects)}
    assert set(rows) == {"call", "mail"}  # no estimate, no comparison
    # call: truth 1 - 0.4 / 0.5 = 0.2; estimate 0.29 +- 0.05 -> z = 1.8, within 2 SE.
    assert rows["call"]["true_save_rate"] == pytest.approx(0.2)
    assert rows["call"]["used"] is True
    assert rows["call"]["z"] == pytest.approx(1.8)
    assert rows["call"]["within_2_se"]
    # mail: truth 1 - 0.4 / 0.8 = 0.5; the unused estimate 0.9 +- 0.1 is 4 SE away.
    assert rows["mail"]["used"] is False
    assert rows["mail"]["estimate"] == 0.9
    assert rows["mail"]["z"] == pytest.approx(4.0)
    assert not rows["mail"]["within_2_se"]


@pytest.mark.parametrize(("scaling", "plays"), [
    ("none", {1: "cheap", 2: "cheap"}),
    # 1's risk is mostly billing (0.9 of 1.0), 2's mostly support (0.8 of 1.0).
    ("addressed_share", {1: "dear", 2: "cheap"}),
])
def test_plan_contacts_scales_configured_rates_by_the_addressed_share(scaling, plays):
    from churn.stages.target import learn_effects
    from churn.targeting.planning import plan_contacts
    from churn.targeting.playbook import family_doses

    config = TargetConfig(
        months_kept=10, teams={"t": 5}, configured_rate_scaling=scaling,
        plays={"cheap": PlayConfig(families=("support",), team="t", cost=1.0, save_rate=0.3),
               "dear": PlayConfig(families=("billing",), team="t", cost=5.0, save_rate=0.3)},
    )
    family_of = {"tickets": "support", "price_up": "billing"}
    scores = pd.DataFrame({
        "customer_id": [1, 2], "cutoff": pd.Timestamp("2025-01-01", tz="UTC"),
        "churn_probability": [0.5, 0.5], "mrr": [100.0, 100.0],
        "reason_1_feature": ["price_up", "tickets"], "reason_2_feature": ["tickets", "price_up"],
    })
    contributions = pd.DataFrame({"customer_id": [1, 2], "base_value": [-2.0, -2.0],
                                  "tickets": [0.1, 0.8], "price_up": [0.9, 0.2]})
    doses = family_doses(contributions, family_of, ["support", "billing"])
    empty = pd.DataFrame(columns=["customer_id", "cutoff", "action_at", "play", "control",
                                  "churned"])
    effects, _ = learn_effects(empty, None, family_of, config)
    candidates, chosen = plan_contacts(scores, doses, family_of, effects, config)
    ev = chosen["expected_value"]
    assert dict(zip(ev["customer_id"], ev["play"], strict=True)) == plays
    if scaling == "addressed_share":
        rates = candidates.set_index(["customer_id", "play"])["save_rate"]
        assert rates[(1, "dear")] == pytest.approx(0.3 * 0.9)
        assert rates[(2, "cheap")] == pytest.approx(0.3 * 0.8)


def test_the_test_cutoffs_lists_from_a_real_model_are_those_of_everyone_explained(project):
    """The stage's own path: probabilities from the model's predictions, parts explained
    with the population's kernel, lists equal to planning on the whole explanation."""
    from churn.model.artifact import ChurnModel
    from churn.model.scoring import read_mrr
    from churn.stages.target import learn_effects
    from churn.targeting.planning import Explained, plan_contacts, plan_population_contacts
    from churn.targeting.playbook import actionable_families, family_doses

    model = ChurnModel.load(project["root"] / "model")
    features = pd.read_parquet(project["features"])
    rows = features[features["cutoff"] == features["cutoff"].min()].reset_index(drop=True)
    catalog = TINY_CATALOG
    family_of = dict(zip(catalog["name"], catalog["family"], strict=True))
    dose_family_of = actionable_families(catalog)
    families = sorted(set(family_of.values()))
    config = TargetConfig(**{**PLAYBOOK, "teams": {"support": 6, "success": 3, "sales": 2}})
    empty = pd.DataFrame(columns=["customer_id", "cutoff", "action_at", "play", "control",
                                  "churned"])
    effects, _ = learn_effects(empty, None, family_of, config)

    def explain(part: pd.DataFrame) -> Explained:
        result = score_population(model, part, 3, texts=False, population_rows=len(rows))
        return Explained(result.scores, family_doses(result.contributions, dose_family_of,
                                                     families))

    whole = explain(rows)
    _, everyone = plan_contacts(whole.scores, whole.doses, family_of, effects, config)
    population = pd.DataFrame({"customer_id": rows["customer_id"].array,
                               "churn_probability": model.predict_proba(rows),
                               "mrr": read_mrr(rows)})
    np.testing.assert_array_equal(population["churn_probability"],
                                  whole.scores["churn_probability"])
    chosen, explained = plan_population_contacts(
        population, lambda positions: explain(rows.iloc[positions]), family_of, effects,
        config, first_block=50)
    assert explained < len(rows)
    for policy, frame in everyone.items():
        assert len(frame) > 0
        pd.testing.assert_frame_equal(chosen[policy], frame)
