"""Tests for churn.stages.label: the labels report and the stop on implausible churn rates."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from support.label_tables import write_label_tables

from churn.config import parse_params
from churn.errors import DataContractError
from churn.stages.label import run_label

PARAMS = {"label": {"first_cutoff": "2024-06-01", "last_cutoff": "2024-12-01"}}


def test_run_label_writes_the_report_per_cutoff(tmp_path) -> None:
    write_label_tables(tmp_path / "validated", churned=2, retained=8)
    out, report_path = tmp_path / "labels.parquet", tmp_path / "reports" / "labels.json"

    run_label(parse_params(PARAMS), tmp_path / "validated", out, report_path)

    report = json.loads(report_path.read_text())
    assert report["data_end"].startswith("2025-01-01")
    assert (report["horizon_days"], report["grace_days"]) == (60, 14)
    by_cutoff = {row["cutoff"]: row for row in report["cutoffs"]}
    # Naive reference: 11 customers (10 + sentinel), 2 end inside [06-01, 07-31).
    assert by_cutoff["2024-06-01"]["population"] == 11
    assert by_cutoff["2024-06-01"]["churners"] == 2
    assert by_cutoff["2024-06-01"]["churn_rate"] == pytest.approx(2 / 11)
    assert by_cutoff["2024-11-01"]["labeled"] is False
    assert "past the data end 2025-01-01" in by_cutoff["2024-11-01"]["unlabeled_reason"]
    assert report["problems"] == []
    labels = pd.read_parquet(out)
    assert sorted(labels["cutoff"].dt.strftime("%Y-%m-%d").unique()) == sorted(by_cutoff)


def test_implausible_churn_rate_stops_before_writing_labels(tmp_path) -> None:
    write_label_tables(tmp_path / "validated", churned=8, retained=2)
    out, report_path = tmp_path / "labels.parquet", tmp_path / "labels.json"

    with pytest.raises(DataContractError) as caught:
        run_label(parse_params(PARAMS), tmp_path / "validated", out, report_path)

    message = str(caught.value)
    assert "cutoff 2024-06-01: 8 of 11 churned (72.7%)" in message
    assert "label.max_churn_rate" in message and "label.grace_days" in message
    assert not out.exists()
    assert json.loads(report_path.read_text())["problems"]  # the report explains the stop
