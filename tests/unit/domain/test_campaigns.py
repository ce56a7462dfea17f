"""Tests for churn.domain.campaigns: the period pattern is checked when params load."""

from __future__ import annotations

import re

import pytest

from churn.config import ConfigError, FeaturesConfig, parse_params
from churn.domain.campaigns import DEFAULT_CAMPAIGN_PERIOD_PATTERN, check_period_pattern


def test_default_pattern_is_valid_and_is_the_config_default() -> None:
    assert check_period_pattern(DEFAULT_CAMPAIGN_PERIOD_PATTERN) == DEFAULT_CAMPAIGN_PERIOD_PATTERN
    assert FeaturesConfig().campaign_period_pattern == DEFAULT_CAMPAIGN_PERIOD_PATTERN


@pytest.mark.parametrize(
    ("token", "is_period"),
    [
        ("2024", True),
        ("2024q1", True),
        ("Q3-2024", True),
        ("H1 2024", True),
        ("mar2024", True),
        ("2024-03", True),
        ("2024_03_15", True),
        ("1899", False),
        ("24q1", False),
        ("q5-2024", False),
        ("spring", False),
    ],
)
def test_default_pattern_matches_whole_period_tokens(token: str, is_period: bool) -> None:
    matched = re.fullmatch(DEFAULT_CAMPAIGN_PERIOD_PATTERN, token, re.IGNORECASE)
    assert (matched is not None) == is_period


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("[0-9", "does not compile"),
        ("(20)[0-9]{2}", "capturing groups"),
        ("[0-9]*", "empty string"),
    ],
)
def test_bad_patterns_are_refused_with_the_reason(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_period_pattern(pattern)


def test_bad_pattern_in_params_names_the_key() -> None:
    with pytest.raises(ConfigError, match="campaign_period_pattern"):
        parse_params({"features": {"campaign_period_pattern": "(20)24"}})
