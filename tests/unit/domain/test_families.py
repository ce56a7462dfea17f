"""Tests for churn.domain.families: the one family and phase list."""

from __future__ import annotations

from churn.domain.families import FAMILIES, FAMILY_PHASES, PHASES, PROFILE_FAMILY
from churn.features.build import ENTITY_FAMILIES, EVENT_FAMILIES
from churn.stages.simulate import engine as simulator


def test_every_family_has_one_phase():
    assert set(FAMILY_PHASES) == {*FAMILIES, PROFILE_FAMILY}
    assert set(FAMILY_PHASES.values()) <= set(PHASES)
    assert [f for f in FAMILIES if FAMILY_PHASES[f] == "pre_sale"] == ["acquisition"]


def test_feature_modules_declare_the_domain_families_and_phases():
    assert tuple(module.FAMILY for module in EVENT_FAMILIES) == FAMILIES
    assert [module.FAMILY for module in ENTITY_FAMILIES] == [PROFILE_FAMILY]
    for module in (*EVENT_FAMILIES, *ENTITY_FAMILIES):
        assert FAMILY_PHASES[module.FAMILY] == module.PHASE


def test_simulator_truth_uses_the_same_families():
    assert simulator.FAMILIES is FAMILIES
