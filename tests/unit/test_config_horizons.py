"""label.horizons_days and train.model_form: defaults and validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from churn.config import LabelConfig, parse_params


def test_left_out_horizons_follow_horizon_days() -> None:
    assert LabelConfig().horizons_days == (30, 60, 90)
    assert LabelConfig(horizon_days=20).horizons_days == (20, 30, 60, 90)


def test_horizons_are_sorted_and_must_include_the_primary() -> None:
    assert LabelConfig(horizons_days=(90, 30, 60)).horizons_days == (30, 60, 90)
    with pytest.raises(ValidationError, match="must include horizon_days = 45"):
        LabelConfig(horizon_days=45, horizons_days=(30, 60))
    with pytest.raises(ValidationError, match="distinct positive"):
        LabelConfig(horizons_days=(60, 60))


def test_model_form_is_hazard_or_classifier() -> None:
    assert parse_params({}).train.model_form == "classifier"
    assert parse_params({"train": {"model_form": "hazard"}}).train.model_form == "hazard"
    with pytest.raises(Exception, match="model_form"):
        parse_params({"train": {"model_form": "cox"}})
