"""Tests for churn.config: typed, frozen params; unknown or mistyped keys are named errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pydantic
import pytest
import yaml

from churn.config import ConfigError, load_params, parse_params

REPO = Path(__file__).resolve().parents[2]


def test_repository_params_file_is_valid():
    params = load_params(REPO / "params.yaml")
    # Every value written in the file is the value loaded (not a default, not re-typed).
    written = yaml.safe_load((REPO / "params.yaml").read_text())
    loaded = params.model_dump(mode="json")
    assert written and written.keys() <= loaded.keys()
    for section, values in written.items():
        for key, value in values.items():
            assert loaded[section][key] == value, f"{section}.{key}"


def test_defaults_fill_missing_sections():
    params = parse_params({})
    assert params.label.horizon_days == 60
    assert params.features.windows_days == (7, 30, 90)


def test_unknown_key_is_an_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"train\.learnig_rate: unknown key"):
        parse_params({"train": {"learnig_rate": 0.1}})


def test_unknown_section_is_an_error():
    with pytest.raises(ConfigError, match="trian: unknown key"):
        parse_params({"trian": {}})


def test_mistyped_value_is_an_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"simulate\.customers"):
        parse_params({"simulate": {"customers": "many"}})


def test_out_of_range_value_is_rejected():
    with pytest.raises(ConfigError, match=r"ingest\.max_quarantine_share"):
        parse_params({"ingest": {"max_quarantine_share": 1.5}})


def test_unknown_time_zone_is_rejected():
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        parse_params({"ingest": {"input_timezone": "Mars/Olympus"}})


def test_column_mapping_must_name_contract_columns():
    with pytest.raises(ConfigError, match="not_a_column"):
        parse_params({"ingest": {"tables": {"customers": {"columns": {"not_a_column": "x"}}}}})
    with pytest.raises(ConfigError, match="unknown table"):
        parse_params({"ingest": {"tables": {"invoices": {}}}})


def test_cutoff_order_is_checked():
    with pytest.raises(ConfigError, match="last_cutoff"):
        parse_params({"label": {"first_cutoff": "2025-06-01", "last_cutoff": "2025-01-01"}})


def test_params_are_frozen():
    params = parse_params({"simulate": {"seed": 3}})
    with pytest.raises(pydantic.ValidationError):
        params.simulate.seed = 4  # type: ignore[misc]
    assert params.simulate.start_date == dt.date(2024, 1, 1)


def test_load_params_reports_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("simulate: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_an_empty_params_file_is_an_error_not_silent_defaults(tmp_path):
    for text in ("", "# only a comment\n", "{}\n"):
        path = tmp_path / "params.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=r"params\.yaml is empty"):
            load_params(path)


def test_a_duplicated_key_is_an_error_naming_it_and_both_lines(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  learning_rate: 0.1\n  num_leaves: 15\n  learning_rate: 0.5\n")
    with pytest.raises(ConfigError, match=r"duplicated key 'learning_rate' \(first on line 2, "):
        load_params(path)


def test_a_duplicated_section_is_an_error(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("label:\n  horizon_days: 30\nlabel:\n  horizon_days: 90\n")
    with pytest.raises(ConfigError, match="duplicated key 'label'"):
        load_params(path)


def test_the_yaml_loader_builds_no_python_objects(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(path)


def test_same_key_in_different_sections_is_fine(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  seed: 1\nsimulate:\n  seed: 2\n")
    params = load_params(path)
    assert (params.train.seed, params.simulate.seed) == (1, 2)


def test_one_source_per_accepts_its_three_scopes_only():
    assert parse_params({}).target.one_source_per == "playbook"
    assert parse_params({"target": {"one_source_per": "play"}}).target.one_source_per == "play"
    with pytest.raises(ConfigError, match="one_source_per"):
        parse_params({"target": {"one_source_per": "team"}})


def test_configured_rate_scaling_accepts_none_addressed_share_and_dose_only():
    assert parse_params({}).target.configured_rate_scaling == "none"
    for scaling in ("addressed_share", "dose"):
        parsed = parse_params({"target": {"configured_rate_scaling": scaling}})
        assert parsed.target.configured_rate_scaling == scaling
    with pytest.raises(ConfigError, match=r"target\.configured_rate_scaling"):
        parse_params({"target": {"configured_rate_scaling": "by_dose"}})
