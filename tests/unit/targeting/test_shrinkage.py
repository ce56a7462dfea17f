"""Segment effects shrunk toward their play's pooled effect."""

from __future__ import annotations

import numpy as np
import pytest

from churn.targeting.shrinkage import SOURCE_SHRUNK, between_segment_variance, shrink_effects
from churn.targeting.uplift import SOURCE_CONFIGURED, SOURCE_LOGGED, Estimate, PlayEffect


def _effect(segment: str, rate: float, se: float | None, source: str = SOURCE_LOGGED):
    return PlayEffect("call", segment, rate, se, source, 100, 100, 0.5)


def test_between_segment_variance_matches_the_dersimonian_laird_formula_by_hand():
    e, se = np.array([0.1, 0.5, 0.3, 0.2]), np.array([0.1, 0.1, 0.2, 0.05])
    groups = np.array(["a", "a", "b", "b"], dtype=object)
    centres = {"a": 0.2, "b": 0.25}
    w = 1 / se**2
    q = sum(w * (e - np.array([0.2, 0.2, 0.25, 0.25])) ** 2)
    expected = (q - 2) / (w.sum() - (w**2).sum() / w.sum())
    assert between_segment_variance(e, se, groups, centres) == pytest.approx(max(expected, 0))
    assert expected > 0
    # Estimates equal to their centres: no spread beyond chance.
    assert between_segment_variance(np.array([0.2, 0.2, 0.25]), se[:3], groups[:3],
                                    centres) == 0.0


def test_with_no_spread_every_addressed_segment_takes_the_pooled_effect():
    effects = [_effect("not_addressed", 0.05, 0.1),
               _effect("addressed_low_dose", -0.1, 0.4),  # Q = 0.36 < df = 1: tau^2 = 0
               _effect("addressed_high_dose", 0.2, 0.3),
               ]
    pooled = {"call": Estimate(0.1, 0.05, 200, 60, 0.2, 0.22)}
    out = {e.segment: e for e in shrink_effects(effects, pooled, 30)}
    assert out["not_addressed"].save_rate == 0.05  # untouched
    assert out["addressed_low_dose"].save_rate == pytest.approx(0.1)
    assert out["addressed_high_dose"].save_rate == pytest.approx(0.1)
    assert out["addressed_low_dose"].source == SOURCE_SHRUNK
    assert out["addressed_low_dose"].standard_error == pytest.approx(0.05)


def test_a_precise_segment_keeps_most_of_its_own_effect():
    effects = [_effect("addressed_low_dose", 0.0, 0.01), _effect("addressed_high_dose", 0.4, 0.01)]
    pooled = {"call": Estimate(0.2, 0.01, 400, 120, 0.2, 0.25)}
    out = {e.segment: e for e in shrink_effects(effects, pooled, 30)}
    # tau^2 is large against se^2 = 1e-4, so the weights are close to 1.
    assert out["addressed_low_dose"].save_rate == pytest.approx(0.0, abs=0.01)
    assert out["addressed_high_dose"].save_rate == pytest.approx(0.4, abs=0.01)
    assert out["addressed_low_dose"].save_rate < out["addressed_high_dose"].save_rate


def test_a_configured_segment_takes_the_trusted_pooled_effect_and_untrusted_pools_do_nothing():
    effects = [_effect("addressed_low_dose", 0.25, None, SOURCE_CONFIGURED)]
    trusted = {"call": Estimate(0.07, 0.03, 200, 60, 0.2, 0.22)}
    assert shrink_effects(effects, trusted, 30)[0].save_rate == pytest.approx(0.07)
    too_few = {"call": Estimate(0.07, 0.03, 200, 20, 0.2, 0.22)}
    assert shrink_effects(effects, too_few, 30)[0] == effects[0]
    too_noisy = {"call": Estimate(0.07, 0.03, 200, 60, 0.2, 0.22)}
    assert shrink_effects(effects, too_noisy, 30, max_standard_error=0.02)[0] == effects[0]
    assert shrink_effects(effects, too_noisy, 30, max_standard_error=0.03)[0].save_rate == \
        pytest.approx(0.07)
