"""Tests for churn.stages.check_data: the data check before training."""

from __future__ import annotations

import json

import pandas as pd
from support.event_export import make_event_export
from support.synthetic import contract_frame

from churn.config import Params, parse_params
from churn.domain.modes import Mode
from churn.features.build import family_skip_reasons
from churn.labels.build import count_labels_at
from churn.labels.plausibility import describe_cutoff_counts
from churn.labels.schedule import build_cutoffs
from churn.stages.check_data import (
    EarlyLabelCounts,
    check_data,
    count_labels_early,
    render_data_check,
    run_check_data,
)
from churn.stages.ingest import run_ingest, validate_tables

# Four customers converting 2024-01-01; c1 cancels on 2024-03-10; the data ends 2024-06-30.
PARAMS = {
    "ingest": {"as_of": "2024-07-01"},
    "label": {
        "first_cutoff": "2024-03-01",
        "last_cutoff": "2024-06-01",
        "horizon_days": 30,
        "grace_days": 0,
        "min_tenure_days": 0,
        "max_churn_rate": 0.9,
    },
}


def _tables() -> dict[str, pd.DataFrame]:
    ids = ["c1", "c2", "c3", "c4"]
    customers = contract_frame(
        "customers", [{"customer_id": c, "converted_at": "2024-01-01"} for c in ids]
    )
    subscriptions = contract_frame(
        "subscriptions",
        [
            {
                "subscription_id": f"s_{c}",
                "customer_id": c,
                "plan": "pro",
                "billing_period": "monthly",
                "mrr": 10.0,
                "started_at": "2024-01-01",
                "ended_at": "2024-03-10" if c == "c1" else None,
            }
            for c in ids
        ],
    )
    usage = contract_frame(
        "usage_events",
        [
            {"customer_id": "c1", "occurred_at": "2024-01-05T10:00:00", "event_type": "login"},
            {"customer_id": "c2", "occurred_at": "2024-02-01T09:00:00", "event_type": "login"},
            {"customer_id": "c2", "occurred_at": "2024-06-30T08:00:00", "event_type": "login"},
        ],
    )
    return {"customers": customers, "subscriptions": subscriptions, "usage_events": usage}


def _naive_churn_rate(subscriptions: pd.DataFrame, cutoff: str, horizon_days: int) -> float:
    """Share of customers active at ``cutoff`` whose subscription ends inside the horizon."""
    start = pd.Timestamp(cutoff, tz="UTC")
    stop = start + pd.Timedelta(days=horizon_days)
    active = subscriptions[
        (subscriptions["started_at"] < start)
        & (subscriptions["ended_at"].isna() | (subscriptions["ended_at"] >= start))
    ]
    ended = active["ended_at"].notna() & (active["ended_at"] < stop)
    return ended.sum() / len(active)


def test_tables_rows_time_ranges_and_coverage_match_a_naive_count():
    tables = _tables()
    check = check_data(tables, parse_params(PARAMS))
    usage = check["tables"]["usage_events"]
    assert usage["rows"] == 3
    assert usage["first"] == pd.Timestamp("2024-01-05T10:00:00", tz="UTC").isoformat()
    assert usage["last"] == pd.Timestamp("2024-06-30T08:00:00", tz="UTC").isoformat()
    naive = tables["usage_events"]["customer_id"].nunique() / len(tables["customers"])
    assert usage["coverage"] == naive == 0.5
    assert check["tables"]["subscriptions"]["coverage"] == 1.0
    assert check["customers"] == 4
    assert check["tables"]["support_tickets"] == {"present": False, "required": False}
    # Without ingest's report the ignored columns are unknown, not "none".
    assert usage["ignored_columns"] is None


def test_cutoffs_are_labeled_until_the_horizon_passes_the_data_end():
    tables = _tables()
    check = check_data(tables, parse_params(PARAMS))
    cutoffs = {row["cutoff"]: row for row in check["cutoffs"]}
    assert list(cutoffs) == ["2024-03-01", "2024-04-01", "2024-05-01", "2024-06-01"]
    for cutoff in ("2024-03-01", "2024-04-01", "2024-05-01"):
        assert cutoffs[cutoff]["labeled"] is True
        expected = _naive_churn_rate(tables["subscriptions"], cutoff, 30)
        assert cutoffs[cutoff]["churn_rate"] == expected
    assert cutoffs["2024-03-01"]["churn_rate"] == 0.25
    last = cutoffs["2024-06-01"]
    assert last["labeled"] is False and last["churn_rate"] is None
    assert "past the data end" in last["unlabeled_reason"]
    assert (check["labeled_cutoffs"], check["unlabeled_cutoffs"]) == (3, 1)
    assert check["cutoff_problem"] is None


def test_families_say_which_run_and_why_the_others_are_skipped():
    check = check_data(_tables(), parse_params(PARAMS))
    families = check["families"]
    assert {f for f, info in families.items() if info["runs"]} == {
        "acquisition",
        "billing",
        "usage",
    }
    assert families["support"] == {"runs": False, "reason": "table(s) support_tickets absent"}
    assert "postsale_touchpoints" in families["engagement"]["reason"]
    assert family_skip_reasons(["customers"], Mode.ENTITY) == {"profile": None}


def test_a_problem_that_stops_labels_is_reported_not_raised():
    tables = _tables()
    tables["customers"] = tables["customers"].iloc[0:0]
    tables["subscriptions"] = tables["subscriptions"].iloc[0:0]
    check = check_data(tables, parse_params(PARAMS))
    assert check["cutoffs"] == []
    assert check["cutoff_problem"]


def test_third_party_export_with_integer_ids_reports_ignored_columns_and_absent_tables():
    raw = make_event_export(n_customers=40)
    raw["customers"] = raw["customers"].assign(crm_owner="someone")  # not in the contract
    params = parse_params({"ingest": {"as_of": "2025-07-01"}})
    result = validate_tables(raw, params.ingest, pd.Timestamp("2025-07-01", tz="UTC"))
    check = check_data(result.valid, params, ingest_report=result.report)

    assert check["tables"]["customers"]["ignored_columns"] == ["crm_owner"]
    assert check["tables"]["subscriptions"]["ignored_columns"] == []
    for absent in ("support_tickets", "nps_responses", "subscription_changes"):
        assert check["tables"][absent]["present"] is False
    usage = result.valid["usage_events"]
    naive = usage["customer_id"].nunique() / result.valid["customers"]["customer_id"].nunique()
    assert check["tables"]["usage_events"]["coverage"] == round(naive, 6)
    assert check["tables"]["usage_events"]["last"] == usage["occurred_at"].max().isoformat()
    assert check["labeled_cutoffs"] >= 1
    labeled = [row for row in check["cutoffs"] if row["labeled"]]
    assert all(0.0 <= row["churn_rate"] <= 1.0 for row in labeled)
    assert check["families"]["support"]["runs"] is False
    assert check["families"]["usage"]["runs"] is True
    json.dumps(check)  # JSON-ready


def test_entity_mode_has_one_cutoff_at_as_of_and_runs_only_the_profile_family():
    customers = pd.DataFrame(
        {
            "customer_id": pd.Series(["a", "b", "c", "d"], dtype="str"),
            "churned": pd.array([1, 0, 0, 0], dtype="Int64"),
            "plan_code": pd.Series(["x", "y", "x", "y"], dtype="str"),
        }
    )
    params = parse_params({"ingest": {"mode": "entity", "as_of": "2025-01-01"}})
    check = check_data({"customers": customers}, params)
    assert list(check["tables"]) == ["customers"]
    assert [row["cutoff"] for row in check["cutoffs"]] == ["2025-01-01"]
    assert check["cutoffs"][0]["churn_rate"] == 0.25
    assert check["families"] == {"profile": {"runs": True, "reason": None}}


def test_rendered_tables_and_the_runner_output(tmp_path, capsys):
    validated = tmp_path / "validated"
    validated.mkdir()
    for name, frame in _tables().items():
        frame.to_parquet(validated / f"{name}.parquet")
    out = tmp_path / "data_check.json"
    check = run_check_data(parse_params(PARAMS), validated, tmp_path / "missing.json", out)
    assert json.loads(out.read_text()) == json.loads(json.dumps(check))
    shown = capsys.readouterr().out
    assert shown == render_data_check(check) + "\n"
    assert "absent (optional)" in shown
    assert "skipped: table(s) support_tickets absent" in shown
    assert "3 labeled, 1 unlabeled" in shown


def test_run_ingest_writes_the_check_of_the_valid_tables(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, frame in make_event_export(n_customers=30).items():
        frame.to_csv(raw / f"{name}.csv", index=False)
    params = parse_params({"ingest": {"as_of": "2025-07-01"}})
    check_path = tmp_path / "reports" / "data_check.json"
    result = run_ingest(
        params.ingest,
        raw,
        tmp_path / "validated",
        tmp_path / "quarantine",
        tmp_path / "reports" / "ingest.json",
        params=params,
        data_check_path=check_path,
    )
    written = json.loads(check_path.read_text())
    expected = check_data(result.valid, params, ingest_report=result.report)
    assert written == json.loads(json.dumps(expected))
    assert written["tables"]["customers"]["rows"] == 30


def _export_check() -> tuple[dict[str, pd.DataFrame], Params, dict]:
    raw = make_event_export(n_customers=60, seed=5)
    params = parse_params({"ingest": {"as_of": "2025-07-01"}})
    valid = validate_tables(raw, params.ingest, pd.Timestamp("2025-07-01", tz="UTC")).valid
    return valid, params, check_data(valid, params)


def test_label_counts_counted_early_are_reused_when_they_are_the_same(monkeypatch):
    valid, params, expected = _export_check()
    early = count_labels_early(valid, params)
    assert early is not None and expected["labeled_cutoffs"] >= 1

    def recount(*args, **kwargs):
        raise AssertionError("counted again")

    monkeypatch.setattr("churn.stages.check_data.count_labels", recount)
    assert check_data(valid, params, early_label_counts=early) == expected


def test_label_counts_of_another_end_or_schedule_are_counted_again():
    valid, params, expected = _export_check()
    usage = valid["usage_events"]
    last = usage["occurred_at"].max()
    # The event table ends 45 days earlier (a window ends between the two data ends), or
    # starts 90 days later (another schedule): the early counts are not those of the check.
    shorter = usage[usage["occurred_at"] <= last - pd.Timedelta(days=45)]
    later = usage[usage["occurred_at"] >= usage["occurred_at"].min() + pd.Timedelta(days=90)]
    for events in (shorter, later):
        early = count_labels_early({**valid, "usage_events": events}, params)
        assert early is not None
        final = check_data(valid, params)["cutoffs"]
        assert describe_cutoff_counts(early.counts, params.label, early.end) != final

        assert check_data(valid, params, early_label_counts=early) == expected
    # The same schedule, counted at an end just before the last label window closes.
    end = pd.Timestamp(expected["data_end"])
    cutoffs = build_cutoffs(valid, params.label, end)
    window = pd.Timedelta(days=params.label.horizon_days + params.label.grace_days)
    closed = max(c + window for c in cutoffs if c + window <= end)
    before = closed - pd.Timedelta(seconds=1)
    early = EarlyLabelCounts(before, cutoffs, count_labels_at(valid, params.label, cutoffs, before))
    assert not early.counts.equals(count_labels_at(valid, params.label, cutoffs, end))

    assert check_data(valid, params, early_label_counts=early) == expected


def test_no_early_label_counts_in_entity_mode_or_without_a_schedule():
    valid, _, _ = _export_check()
    entity = parse_params({"ingest": {"mode": "entity", "as_of": "2025-07-01"}})
    assert count_labels_early(valid, entity) is None
    short = parse_params({"ingest": {"as_of": "2025-07-01"}, "label": {"min_history_days": 5000}})
    assert count_labels_early(valid, short) is None
