"""Tests for the report's Data check section and its wording on snapshot (entity-mode) data."""

from __future__ import annotations

import dataclasses
import html

import pandas as pd
import pytest
from support.report_fakes import EVIL_REASON, write_fake_outputs

from churn.config import ReportConfig
from churn.report.data import is_snapshot
from churn.report.inputs import load_report_inputs
from churn.report.render import render_report

# Phrases that only make sense with several cutoffs over time.
TIME_SERIES_PHRASES = (
    "Churn rate over time",
    "Data window and population",
    "Trained on earlier cutoffs",
    "at earlier cutoffs",
    "Last cutoff",
    "for scoring only",
    "outcome window still open",
    "the latest cutoffs have no outcome yet",
    "Population at the last",
    "Each cutoff is a point in time",
)


def _section(document: str, anchor: str) -> str:
    start = document.index(f'<section id="{anchor}">')
    return document[start : document.index("</section>", start)]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    paths = write_fake_outputs(tmp_path_factory.mktemp("report"))
    return load_report_inputs(paths["inputs_paths"])


@pytest.fixture(scope="module")
def events_document(inputs) -> str:
    return render_report(inputs, ReportConfig(top_customers=20))


@pytest.fixture(scope="module")
def entity_inputs(inputs):
    """The fake outputs as an entity-mode run: one cutoff, every customer labeled."""
    labels = inputs.labels.drop_duplicates("customer_id").reset_index(drop=True)
    labels = labels.assign(
        cutoff=pd.Timestamp("2025-06-01", tz="UTC"),
        label=pd.array([1 if i % 4 == 0 else 0 for i in range(len(labels))], dtype="Int8"),
    )
    metrics = {k: v for k, v in inputs.metrics.items() if k != "backtest"}
    return dataclasses.replace(
        inputs,
        ingest={**inputs.ingest, "mode": "entity"},
        data_check={**inputs.data_check, "mode": "entity"},
        labels=labels,
        metrics=metrics,
    )


@pytest.fixture(scope="module")
def entity_document(entity_inputs) -> str:
    return render_report(entity_inputs, ReportConfig(top_customers=20))


def test_data_check_section_shows_tables_cutoffs_and_families(events_document):
    check = _section(events_document, "data-check")
    assert "absent (optional)" in check
    assert "crm_owner" in check
    assert EVIL_REASON not in check and html.escape(EVIL_REASON) in check
    assert "97.5%" in check  # subscriptions coverage
    assert "2023-01-04" in check and "2025-06-28" in check
    assert "no: horizon 60 d + grace 14 d runs to 2025-08-14" in check
    assert "10.0%" in check  # the labeled cutoff's churn rate
    assert "skipped: none of the tables postsale_touchpoints, nps_responses is present" in check


def test_data_check_section_says_when_the_check_is_missing(inputs):
    document = render_report(
        dataclasses.replace(inputs, data_check=None, missing={"data_check": "no data check"}),
        ReportConfig(top_customers=5),
    )
    check = _section(document, "data-check")
    assert "Not available: data check" in check and "no data check" in check


def test_snapshot_is_entity_mode_or_a_single_cutoff(inputs, entity_inputs):
    assert not is_snapshot(inputs)
    assert is_snapshot(entity_inputs)
    one_cutoff = inputs.labels[inputs.labels["cutoff"] == inputs.labels["cutoff"].min()]
    assert is_snapshot(dataclasses.replace(inputs, labels=one_cutoff))


def test_events_report_keeps_its_time_series_wording(events_document):
    # The same phrases must exist in the events report, so their absence below is meaningful.
    present = [p for p in TIME_SERIES_PHRASES if p in events_document]
    assert present == list(TIME_SERIES_PHRASES)


def test_entity_report_has_no_over_time_or_later_cutoff_wording(entity_document):
    found = [p for p in TIME_SERIES_PHRASES if p in entity_document]
    assert found == []
    assert "could not render" not in entity_document


def test_entity_report_shows_one_churn_rate_and_why_there_is_no_backtest(
    entity_inputs, entity_document
):
    churn = _section(entity_document, "churn-rate")
    labels = entity_inputs.labels
    naive = labels["label"].astype(float).mean()
    assert f"labeled as churned: {naive:.1%}" in churn
    assert "<img" not in churn  # no one-point chart
    data = _section(entity_document, "data")
    assert "one (snapshot data" in data and "Population at the cutoff" in data
    model = _section(entity_document, "model")
    assert "no earlier cutoffs to backtest on" in model
    assert "tested on the others, which it never saw" in model
