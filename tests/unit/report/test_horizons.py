"""The "Risk over 30, 60 and 90 days" report section."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from support.report_fakes import write_fake_outputs

from churn.config import ReportConfig
from churn.report.horizons import find_horizon_columns, horizons_section
from churn.report.inputs import load_report_inputs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    paths = write_fake_outputs(tmp_path_factory.mktemp("report"))
    return load_report_inputs(paths["inputs_paths"])


def _with_horizons(inputs):
    scores = inputs.scores.copy()
    rng = np.random.default_rng(0)
    p30 = rng.uniform(0, 0.2, len(scores))
    scores["churn_probability_30d"] = p30
    scores["churn_probability_60d"] = p30 * 1.5
    scores["churn_probability_90d"] = p30 * 2.0
    scores["next_decision_date"] = pd.Timestamp("2026-02-14", tz="UTC")
    return dataclasses.replace(inputs, scores=scores), scores


def test_horizon_columns_are_found_in_order() -> None:
    frame = pd.DataFrame(columns=["churn_probability_90d", "x", "churn_probability_30d"])
    assert find_horizon_columns(frame) == [
        (30, "churn_probability_30d"),
        (90, "churn_probability_90d"),
    ]


def test_section_draws_segments_and_next_decision(inputs) -> None:
    with_horizons, scores = _with_horizons(inputs)
    lead, body = horizons_section(with_horizons, ReportConfig(top_customers=5))
    assert "30, 60, 90 days" in lead
    assert body.count("<img") >= 1
    assert "2026-02-14" in body
    # The first listed customer is the one with the highest 90-day risk.
    best = scores.loc[scores["churn_probability_90d"].idxmax(), "customer_id"]
    first_row = body.split("Highest 90-day risk")[1]
    assert first_row.index(str(best)[:8]) < first_row.index("</tr>", first_row.index("<tbody"))


def test_section_without_horizons_says_why(inputs) -> None:
    scores = inputs.scores.drop(columns=[c for c in inputs.scores if "_probability_" in c])
    lead, body = horizons_section(dataclasses.replace(inputs, scores=scores), ReportConfig())
    assert lead is None and "survival" in body
