"""Play effects from treated and control rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.targeting.uplift import (
    SOURCE_CONFIGURED,
    SOURCE_LOGGED,
    SOURCE_ONE_SOURCE,
    SOURCE_TOO_UNCERTAIN,
    PlayEffect,
    difference_in_means,
    estimate_play_effects,
    standardized_difference,
    t_learner_save_rate,
    unify_effect_sources,
)


def test_difference_in_means_matches_a_hand_computed_case():
    churned = np.array([1, 0, 0, 0, 1, 1, 0, 0])
    control = np.array([False] * 4 + [True] * 4)
    estimate = difference_in_means(churned, control)
    # p_t = 1/4, p_c = 2/4, save = 1 - 0.5 = 0.5.
    assert estimate.save_rate == pytest.approx(0.5)
    var = (1 - 0.25) / (4 * 0.25) + (1 - 0.5) / (4 * 0.5)
    assert estimate.standard_error == pytest.approx(0.5 * np.sqrt(var))


def test_no_estimate_without_a_control_churner():
    assert difference_in_means(np.array([1, 0, 0]), np.array([False, True, True])) is None


@pytest.mark.parametrize("seed", range(10))
def test_a_known_effect_is_recovered_within_its_uncertainty(seed):
    rng = np.random.default_rng(seed)
    n, p_control, save = 6000, 0.2, 0.3
    control = rng.random(n) < 0.3
    p = np.where(control, p_control, p_control * (1 - save))
    churned = (rng.random(n) < p).astype(int)
    estimate = difference_in_means(churned, control)
    assert abs(estimate.save_rate - save) < 3 * estimate.standard_error
    assert estimate.standard_error < 0.1


def test_logged_estimate_replaces_the_configured_rate_only_with_enough_rows():
    rng = np.random.default_rng(0)
    n = 2000
    logged = pd.DataFrame({
        "play": "call",
        "control": rng.random(n) < 0.3,
        "addressed": rng.random(n) < 0.7,
        "dose": rng.random(n),
    })
    logged["churned"] = (rng.random(n) < np.where(logged["control"], 0.3, 0.2)).astype(int)
    effects, estimates = estimate_play_effects(logged, {"call": 0.11, "idle": 0.22}, 30)
    by = {(e.play, e.segment): e for e in effects}
    assert by[("call", "addressed_high_dose")].source == SOURCE_LOGGED
    assert by[("call", "addressed_high_dose")].save_rate != 0.11
    assert by[("idle", "addressed_low_dose")].source == SOURCE_CONFIGURED
    assert by[("idle", "addressed_low_dose")].save_rate == 0.22
    assert by[("idle", "not_addressed")].save_rate == 0.0
    strict, _ = estimate_play_effects(logged, {"call": 0.11}, 10_000)
    assert all(e.source == SOURCE_CONFIGURED for e in strict)
    assert set(estimates["segment"]) == {"not_addressed", "addressed_low_dose",
                                         "addressed_high_dose"}


def _logged_rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    logged = pd.DataFrame({"play": "call", "control": rng.random(n) < 0.3,
                           "addressed": True, "dose": rng.random(n)})
    logged["churned"] = (rng.random(n) < np.where(logged["control"], 0.3, 0.2)).astype(int)
    return logged


def test_an_estimate_noisier_than_the_limit_is_reported_but_not_used():
    logged = _logged_rows(400, seed=1)
    effects, estimates = estimate_play_effects(logged, {"call": 0.11}, 30, 0.05)
    high = {e.segment: e for e in effects}["addressed_high_dose"]
    row = estimates.set_index("segment").loc["addressed_high_dose"]
    assert row["standard_error"] > 0.05  # 200 rows: far too few for a 0.05 error
    assert high.source == SOURCE_TOO_UNCERTAIN
    assert high.save_rate == 0.11
    assert high.standard_error is None
    assert high.logged_save_rate == pytest.approx(row["save_rate"])
    assert high.logged_standard_error == pytest.approx(row["standard_error"])
    # Without the limit the same estimate is used.
    loose, _ = estimate_play_effects(logged, {"call": 0.11}, 30)
    used = {e.segment: e for e in loose}["addressed_high_dose"]
    assert used.source == SOURCE_LOGGED
    assert used.save_rate == pytest.approx(row["save_rate"])


def test_a_precise_estimate_passes_the_limit_and_recovers_the_effect():
    logged = _logged_rows(40_000, seed=2)
    effects, _ = estimate_play_effects(logged, {"call": 0.11}, 30, 0.05)
    for effect in (e for e in effects if e.segment != "not_addressed"):
        assert effect.source == SOURCE_LOGGED
        assert effect.standard_error <= 0.05
        # True save rate 1 - 0.2 / 0.3 = 1/3.
        assert abs(effect.save_rate - 1 / 3) < 3 * effect.standard_error


def test_t_learner_recovers_a_known_effect():
    rng = np.random.default_rng(1)
    n = 4000
    x = pd.DataFrame({"risk": rng.normal(size=n)})
    base = 1 / (1 + np.exp(-(x["risk"].to_numpy() - 1.5)))
    control = rng.random(n) < 0.5
    churned = (rng.random(n) < np.where(control, base, base * 0.6)).astype(int)
    estimate, spread = t_learner_save_rate(
        (x[~control], churned[~control]), (x[control], churned[control]), x,
        rounds=8, seed=3,
    )
    assert spread is not None and spread > 0
    assert abs(estimate - 0.4) < max(3 * spread, 0.08)


def _refit_mean(frame, outcome, rows, population, binned_on):
    """A naive T-learner arm: a fresh dataset of the rows, with the bins of ``binned_on``."""
    import lightgbm as lgb

    from churn.targeting.uplift import _t_learner_params

    params = _t_learner_params(5)  # the same model; the resampling and binning are checked
    outcome = np.asarray(outcome)[rows]
    if outcome.min() == outcome.max():
        return float(outcome[0])
    reference = lgb.Dataset(binned_on[0], binned_on[1], params=params, free_raw_data=False)
    data = lgb.Dataset(frame.iloc[rows], outcome, reference=reference, params=params)
    return float(lgb.train(params, data, num_boost_round=80).predict(population).mean())


def test_t_learner_refits_each_resample_on_its_rows_with_the_arms_bins():
    rng = np.random.default_rng(6)
    n = 900
    x = pd.DataFrame({"risk": rng.normal(size=n), "tenure": rng.integers(0, 40, n) * 1.0})
    control = rng.random(n) < 0.4
    churned = (rng.random(n) < 1 / (1 + np.exp(1.0 - x["risk"].to_numpy()))).astype(int)
    arms = [(x[~control], churned[~control]), (x[control], churned[control])]
    estimate, spread = t_learner_save_rate(*arms, x, rounds=4, seed=5)

    draws_rng = np.random.default_rng(5)
    draws = []
    for _ in range(4):
        rows = [np.sort(draws_rng.integers(0, len(f), len(f))) for f, _ in arms]
        t_mean, c_mean = (
            _refit_mean(f, y, r, x, (f, y)) for (f, y), r in zip(arms, rows, strict=True)
        )
        draws.append(1 - t_mean / c_mean)
    t_mean, c_mean = (_refit_mean(f, y, np.arange(len(f)), x, (f, y)) for f, y in arms)
    assert estimate == pytest.approx(1 - t_mean / c_mean, rel=1e-12)
    assert spread == pytest.approx(float(np.std(draws, ddof=1)), rel=1e-12)


def test_standardized_difference_matches_a_hand_computed_case():
    churned = np.array([1, 0, 0, 0, 1, 1, 0, 0])
    control = np.array([False] * 4 + [True] * 4)
    expected = np.array([0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25])
    estimate = standardized_difference(churned, control, expected)
    # Treated: O/E = 1 / 2; control: O/E = 2 / 1; save = 1 - 0.5 / 2.
    assert estimate.save_rate == pytest.approx(0.75)
    assert estimate.treated_churn_rate == pytest.approx(0.25)


@pytest.mark.parametrize("seed", range(10))
def test_standardized_difference_removes_a_chance_imbalance_in_risk(seed):
    rng = np.random.default_rng(seed)
    n, save = 8000, 0.3
    control = rng.random(n) < 0.25
    # The control arm is riskier (as a bad draw would make it): the plain difference in means
    # overstates the effect; the risk before the action (here known exactly) corrects it.
    risk = np.where(control, rng.uniform(0.1, 0.5, n), rng.uniform(0.05, 0.35, n))
    churned = (rng.random(n) < np.where(control, risk, risk * (1 - save))).astype(int)
    adjusted = standardized_difference(churned, control, risk)
    plain = difference_in_means(churned, control)
    assert abs(adjusted.save_rate - save) < 3 * adjusted.standard_error
    assert plain.save_rate - save > 3 * plain.standard_error


def _effect(play: str, segment: str, source: str, rate: float) -> PlayEffect:
    logged = source == SOURCE_LOGGED
    return PlayEffect(play, segment, rate, 0.03 if logged else None, source, 500, 200, 0.4,
                      logged_save_rate=rate if logged else 0.5,
                      logged_standard_error=0.03 if logged else 0.2)


def _mixed_playbook() -> list[PlayEffect]:
    """``call``: one addressed segment logged, one too uncertain; ``mail``: both logged."""
    return [
        _effect("call", "not_addressed", SOURCE_LOGGED, 0.01),
        _effect("call", "addressed_low_dose", SOURCE_LOGGED, 0.04),
        _effect("call", "addressed_high_dose", SOURCE_TOO_UNCERTAIN, 0.25),
        _effect("mail", "not_addressed", SOURCE_CONFIGURED, 0.0),
        _effect("mail", "addressed_low_dose", SOURCE_LOGGED, 0.06),
        _effect("mail", "addressed_high_dose", SOURCE_LOGGED, 0.09),
    ]


def _addressed_sources(effects: list[PlayEffect]) -> dict[str, set[bool]]:
    """Play -> whether each addressed segment's rate is logged."""
    out: dict[str, set[bool]] = {}
    for e in effects:
        if e.segment != "not_addressed":
            out.setdefault(e.play, set()).add(e.source == SOURCE_LOGGED)
    return out


def test_one_source_per_segment_leaves_the_effects_as_estimated():
    effects = _mixed_playbook()
    assert unify_effect_sources(effects, {"call": 0.25, "mail": 0.3}, "segment") == effects


def test_one_source_per_play_never_mixes_sources_within_a_play():
    effects = _mixed_playbook()
    unified = unify_effect_sources(effects, {"call": 0.25, "mail": 0.3}, "play")
    by = {(e.play, e.segment): e for e in unified}
    # call mixed a logged 0.04 with a configured 0.25: both addressed segments now configured.
    low = by[("call", "addressed_low_dose")]
    assert (low.save_rate, low.source, low.standard_error) == (0.25, SOURCE_ONE_SOURCE, None)
    assert low.logged_save_rate == 0.04  # the estimate is still reported
    assert by[("call", "addressed_high_dose")] == effects[2]
    # mail had every addressed segment logged: kept; not-addressed segments untouched.
    assert [by[("mail", s)] for s in ("addressed_low_dose", "addressed_high_dose")] == \
        effects[4:6]
    assert by[("call", "not_addressed")] == effects[0]
    assert {play: len(kinds) for play, kinds in _addressed_sources(unified).items()} == \
        {"call": 1, "mail": 1}
    assert [(e.play, e.segment) for e in unified] == [(e.play, e.segment) for e in effects]


def test_one_source_per_playbook_is_logged_only_when_every_play_is():
    configured = {"call": 0.25, "mail": 0.3}
    unified = unify_effect_sources(_mixed_playbook(), configured, "playbook")
    assert _addressed_sources(unified) == {"call": {False}, "mail": {False}}
    assert {e.save_rate for e in unified if e.segment != "not_addressed"} == {0.25, 0.3}
    everywhere = [e for e in _mixed_playbook() if e.play == "mail"]
    assert unify_effect_sources(everywhere, configured, "playbook") == everywhere


def test_shrunk_rates_count_as_logged_when_named():
    effects = [_effect("call", "addressed_low_dose", "shrunk", 0.05),
               _effect("call", "addressed_high_dose", SOURCE_LOGGED, 0.07)]
    assert unify_effect_sources(effects, {"call": 0.25}, "play",
                                logged_sources=(SOURCE_LOGGED, "shrunk")) == effects
    assert unify_effect_sources(effects, {"call": 0.25}, "play")[1].save_rate == 0.25


def test_an_unknown_scope_is_an_error():
    with pytest.raises(ValueError, match="scope"):
        unify_effect_sources(_mixed_playbook(), {"call": 0.25, "mail": 0.3}, "team")
