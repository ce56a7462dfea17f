"""The Model health section: drawn from a monitor record, grouped by family, or "not available"."""

from __future__ import annotations

import pandas as pd
from support.monitor_fakes import make_monitor_record

from churn.config import ReportConfig
from churn.report.health import drift_by_family, health_section
from churn.report.inputs import ReportInputs

CATALOG = pd.DataFrame({
    "name": ["tickets", "csat", "plan"],
    "family": ["support", "support", "billing"],
    "phase": ["post_sale"] * 3, "kind": ["numeric", "numeric", "categorical"],
    "unit": ["", "", ""], "description": ["a", "b", "c"],
})
DRIFT = make_monitor_record()["drift"]


def test_drift_is_grouped_by_catalog_family() -> None:
    families = drift_by_family(pd.DataFrame(DRIFT), CATALOG, 0.1).set_index("family")
    assert families.loc["support", "features"] == 2
    assert families.loc["support", "max_psi"] == 0.4
    assert families.loc["support", "most_drifted"] == "tickets"
    assert families.loc["support", "over_warn"] == 2
    assert families.loc["billing", "over_warn"] == 0
    assert list(families.index) == ["support", "billing"]


def test_section_shows_status_reasons_families_and_charts() -> None:
    inputs = ReportInputs(monitor=make_monitor_record(), catalog=CATALOG)
    lead, body = health_section(inputs, ReportConfig())
    assert "Status warn" in lead
    assert "tickets: PSI 0.400" in body
    assert "Drift by feature family" in body and "support" in body
    assert body.count("data:image/png;base64") == 2
    assert "3 closed cutoffs" in body


def test_section_without_monitor_says_why() -> None:
    inputs = ReportInputs(missing={"monitor": "reports/monitor.json does not exist"})
    lead, body = health_section(inputs, ReportConfig())
    assert lead is None and "reports/monitor.json does not exist" in body
