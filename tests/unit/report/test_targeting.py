"""The "Who to contact this week" section."""

from __future__ import annotations

from dataclasses import replace

import pytest
from support.report_fakes import write_fake_outputs

from churn.config import ReportConfig
from churn.report.inputs import load_report_inputs
from churn.report.targeting import targeting_section


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    paths = write_fake_outputs(tmp_path_factory.mktemp("targeting"))
    return load_report_inputs(paths["inputs_paths"])


def test_section_lists_contacts_by_team_with_curves_effects_and_comparison(inputs):
    lead, body = targeting_section(inputs, ReportConfig())
    assert lead.startswith("12 contacts this week (sales: 4, success: 4, support: 4)")
    for team in ("sales", "success", "support"):
        assert f"<h3>{team}</h3>" in body
    assert body.count("data:image/png;base64,") == 1  # expected curves only: no truth curves
    assert "logged actions" in body and "support_escalation" in body
    assert "3.00x top churn probability" in body
    assert "1 of 2 (50.0%)" in body


def test_section_says_why_when_the_target_outputs_are_missing(inputs):
    lead, body = targeting_section(replace(inputs, target=None, targets=None), ReportConfig())
    assert lead is None
    assert "Not available" in body
