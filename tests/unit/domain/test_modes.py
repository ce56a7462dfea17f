"""Tests for churn.domain.modes: the Mode enum and the one reference date."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from churn.config import ConfigError, IngestConfig, parse_params
from churn.domain.modes import Mode, reference_date, reference_timestamp


def test_config_accepts_the_mode_strings_and_yields_members():
    assert IngestConfig(mode="entity").mode is Mode.ENTITY
    assert IngestConfig().mode is Mode.EVENTS
    assert parse_params({"ingest": {"mode": "events"}}).ingest.mode is Mode.EVENTS


def test_an_unknown_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="mode"):
        parse_params({"ingest": {"mode": "entities"}})


def test_effective_config_prints_the_plain_string():
    assert json.loads(IngestConfig(mode="entity").model_dump_json())["mode"] == "entity"


def test_configured_as_of_wins_over_the_clock():
    assert reference_date(dt.date(2025, 3, 1), today=dt.date(2026, 1, 1)) == dt.date(2025, 3, 1)


def test_without_as_of_the_reference_is_today():
    assert reference_date(None, today=dt.date(2026, 1, 1)) == dt.date(2026, 1, 1)
    assert reference_date(None) == dt.datetime.now(dt.UTC).date()


def test_reference_timestamp_is_utc_midnight_in_microseconds():
    stamp = reference_timestamp(dt.date(2025, 3, 1))
    assert stamp == pd.Timestamp("2025-03-01T00:00:00Z")
    assert str(stamp.tz) == "UTC" and stamp.unit == "us"
