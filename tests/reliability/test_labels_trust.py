"""Reliability: stray rows cannot fabricate labels, and implausible labels stop ``churn label``."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from support.event_export import DATA_END, make_event_export

from churn.config import IngestConfig, parse_params
from churn.errors import DataContractError
from churn.labels.build import build_labels
from churn.labels.plausibility import describe_cutoffs
from churn.labels.schedule import data_end
from churn.stages.ingest import validate_tables
from churn.stages.label import run_label
from churn.stages.scoring_population import choose_cutoff

AS_OF = pd.Timestamp("2026-03-01", tz="UTC")
INGEST = IngestConfig(as_of=AS_OF.date())
PARAMS = parse_params({"ingest": {"as_of": "2026-03-01"}, "label": {"min_history_days": 90}})


def _with_stray_event(raw: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """One valid login of an active customer eight months after the rest of the data."""
    usage = raw["usage_events"]
    stray = usage.iloc[[-1]].assign(occurred_at="2026-02-20T09:00:00Z")
    return {**raw, "usage_events": pd.concat([usage, stray], ignore_index=True)}


def test_stray_future_event_cannot_fabricate_labels() -> None:
    raw = make_event_export()
    clean = validate_tables(raw, INGEST, AS_OF)
    stray = validate_tables(_with_stray_event(raw), INGEST, AS_OF)

    # Ingest quarantines the stray row as out_of_range, and keeps every row accounted for.
    quarantined = stray.quarantine["usage_events"]
    assert quarantined["_failed_rules"].tolist() == ["occurred_at:out_of_range[after_data_end]"]
    report = stray.report["tables"]["usage_events"]
    assert report["rows_in"] == report["rows_valid"] + report["rows_quarantined"]
    assert report["time_range"]["last_seen"].startswith("2026-02-20")
    assert report["time_range"]["data_end"] < DATA_END.isoformat()[:10] + "T23:59"

    expected = build_labels(clean.valid, PARAMS.label)
    # After ingest: the same labels, and scoring stays at the real end of the data.
    pd.testing.assert_frame_equal(build_labels(stray.valid, PARAMS.label), expected)
    assert choose_cutoff(stray.valid, None) == choose_cutoff(clean.valid, None)
    # Even on tables that still hold the stray row, labels ignore it.
    with_row = {**clean.valid, "usage_events": _typed_usage_with_stray(clean.valid)}
    assert data_end(with_row) == data_end(clean.valid)
    pd.testing.assert_frame_equal(build_labels(with_row, PARAMS.label), expected)

    # Naive reference: a cutoff is labeled only when cutoff + 60 + 14 days <= 2025-06-30.
    cutoffs = describe_cutoffs(expected, PARAMS.label, data_end(clean.valid))
    labeled = [row["cutoff"] for row in cutoffs if row["labeled"]]
    assert labeled[-1] == "2025-04-01"
    assert all(row["churners"] > 0 for row in cutoffs if row["labeled"])


def _typed_usage_with_stray(valid: dict[str, pd.DataFrame]) -> pd.DataFrame:
    usage = valid["usage_events"]
    row = usage.iloc[[-1]].copy()
    row["occurred_at"] = pd.Timestamp("2026-02-20T09:00:00", tz="UTC")
    return pd.concat([usage, row], ignore_index=True)


def _bulk_closed(raw: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """A CRM migration stamped ended_at = 2025-03-20 on most still-open subscriptions."""
    subs = raw["subscriptions"].copy()
    still_open = subs.index[subs["ended_at"].isna()]
    subs.loc[still_open[: int(len(still_open) * 0.8)], "ended_at"] = "2025-03-20"
    return {**raw, "subscriptions": subs}


def _missing_recent_ends(raw: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """A subscription export that stopped recording ends after 2025-01-31."""
    subs = raw["subscriptions"].copy()
    late = pd.to_datetime(subs["ended_at"], utc=True) > pd.Timestamp("2025-01-31", tz="UTC")
    subs.loc[late, "ended_at"] = None
    return {**raw, "subscriptions": subs}


@pytest.mark.parametrize(
    ("corrupt", "cutoff", "rule"),
    [
        (_bulk_closed, "2025-03-01", "above label.max_churn_rate"),
        (_missing_recent_ends, "2025-02-01", "predicts about"),
    ],
    ids=["bulk_close", "missing_ends"],
)
def test_implausible_churn_rate_stops_label(tmp_path, corrupt, cutoff, rule) -> None:
    validated = tmp_path / "validated"
    validated.mkdir()
    for name, frame in validate_tables(corrupt(make_event_export()), INGEST, AS_OF).valid.items():
        frame.to_parquet(validated / f"{name}.parquet")
    out, report = tmp_path / "labels.parquet", tmp_path / "labels.json"

    with pytest.raises(DataContractError) as raised:
        run_label(PARAMS, validated, out, report)

    message = str(raised.value)
    assert f"cutoff {cutoff}:" in message and rule in message
    assert "subscriptions.ended_at" in message and "label.grace_days" in message
    assert not out.exists()
    written = json.loads(report.read_text())
    assert any(problem.startswith(f"cutoff {cutoff}:") for problem in written["problems"])


def test_clean_export_passes_the_label_checks(tmp_path) -> None:
    validated = tmp_path / "validated"
    validated.mkdir()
    for name, frame in validate_tables(make_event_export(), INGEST, AS_OF).valid.items():
        frame.to_parquet(validated / f"{name}.parquet")

    report = run_label(PARAMS, validated, tmp_path / "labels.parquet", tmp_path / "labels.json")

    assert report["problems"] == [] and report["labeled_cutoffs"] >= 6
