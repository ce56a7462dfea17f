"""Large tables validated in worker processes (``ingest.workers``, issue #14).

The parity tests run ``run_ingest`` with every table in the main process and again with the
largest batched tables in real spawned workers, and assert the same files, reports and data
checks byte for byte: messy simulated tables (every rule broken across batch boundaries), a
third-party export with integer ids stored as floats, and a CSV export with mapped names and
codes. The scheduling is tested on the pure core with an in-process stand-in for the worker;
the error paths with real workers.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pandas as pd
import pytest
from support.ingest_runs import (
    assert_same_ingest_outputs,
    integer_id_export,
    messy_tables,
    run_ingest_with,
    write_tables,
)
from support.own_files import OWN_FILES_MAPPING, write_own_files

from churn import io
from churn.config import ConfigError, parse_params
from churn.errors import ChurnError, DataContractError, EmptyPopulationError
from churn.stages import check_data
from churn.stages.ingest import IngestResult
from churn.stages.ingest.batches import validate_table_in_batches
from churn.stages.ingest.core import choose_tables_elsewhere, validate_tables
from churn.stages.ingest.files import open_table_sinks
from churn.stages.ingest.runner import open_raw_tables
from churn.stages.ingest.tables import table_specs
from churn.stages.ingest.workers import (
    TableWorkers,
    _WorkerJob,
)

SECTION = {"as_of": "2026-01-01", "max_quarantine_share": 0.75, "batch_rows": 7}
IN_WORKERS = {"worker_min_rows": 1, "workers": 3}  # usage_events is the third largest
STARTED = "validated in worker process"


def _started_tables(caplog: pytest.LogCaptureFixture) -> set[str]:
    """The tables the runner logged as sent to a worker process."""
    return {r.args[0] for r in caplog.records if STARTED in r.getMessage()}


def _assert_same_with_workers(
    raw: Path, tmp_path: Path, section: dict, workers: int, caplog: pytest.LogCaptureFixture
) -> tuple[IngestResult, dict[str, pd.DataFrame]]:
    """Run ingest without and with ``workers`` workers; assert identical outputs."""
    here = run_ingest_with(raw, tmp_path / "here", {**section, "workers": 0})
    with caplog.at_level(logging.INFO, logger="churn.stages.ingest.workers"):
        elsewhere = run_ingest_with(
            raw, tmp_path / "workers", {**section, **IN_WORKERS, "workers": workers}
        )
    quarantine = assert_same_ingest_outputs(tmp_path / "here", tmp_path / "workers")
    assert elsewhere.streamed == here.streamed
    assert elsewhere.referenced_customers.keys() == here.referenced_customers.keys()
    for name, referenced in here.referenced_customers.items():
        pd.testing.assert_index_equal(elsewhere.referenced_customers[name], referenced)
    assert elsewhere.report == here.report
    return elsewhere, quarantine


# The largest tables that no other table references go; real workers run them. (CSV with one
# worker: each spawned process costs the suite about 2 s.)
@pytest.mark.parametrize(
    ("suffix", "workers", "expected"),
    [
        ("parquet", 3, {"postsale_touchpoints", "presale_touchpoints", "usage_events"}),
        ("csv", 1, {"postsale_touchpoints"}),
    ],
)
def test_messy_tables_in_workers_give_identical_outputs(
    tmp_path, suffix, workers, expected, caplog
):
    raw = write_tables(messy_tables(), tmp_path / "raw", suffix)

    result, quarantine = _assert_same_with_workers(raw, tmp_path, SECTION, workers, caplog)

    assert _started_tables(caplog) == expected
    assert "duplicate_row" in "; ".join(quarantine["usage_events"]["_failed_rules"])
    assert "postsale_touchpoints" in result.referenced_customers


@pytest.mark.parametrize("whole_ids", [True, False], ids=["whole-ids", "a-fractional-id"])
def test_integer_id_export_in_two_workers_gives_identical_outputs(tmp_path, whole_ids, caplog):
    tables = integer_id_export(whole_ids)
    opened = pd.date_range("2024-06-01", periods=30, freq="D", tz="UTC")
    tables["support_tickets"] = pd.DataFrame(  # a second large table, with integer ids
        {
            "ticket_id": range(900, 930),
            "customer_id": [5001.0, 5002.0, 5003.0] * 10,
            "opened_at": opened,
            "first_response_at": opened + pd.Timedelta(hours=2),
            "resolved_at": opened + pd.Timedelta(days=1),
            "priority": ["low", "high", None] * 10,
        }
    )
    raw = write_tables(tables, tmp_path / "raw")
    section = {"as_of": "2025-06-30", "max_quarantine_share": 1.0, "batch_rows": 7}

    _assert_same_with_workers(raw, tmp_path, section, 2, caplog)

    assert _started_tables(caplog) == {"usage_events", "support_tickets"}


def test_third_party_csv_export_with_mapping_in_a_worker(tmp_path, caplog, monkeypatch):
    raw = tmp_path / "raw"
    write_own_files(raw, n_accounts=25, seed=2)  # logins.csv is the usage events
    section = {**OWN_FILES_MAPPING, "batch_rows": 50}
    early = []

    def count_early(tables, params):
        early.append(check_data.count_labels_early(tables, params))
        return early[-1]

    monkeypatch.setattr("churn.stages.ingest.runner.count_labels_early", count_early)

    result, _ = _assert_same_with_workers(raw, tmp_path, section, 1, caplog)

    assert _started_tables(caplog) == {"usage_events"}
    # While the worker ran, the data check's labels were counted here (and the check, compared
    # above, is the same); only in the run with a worker.
    assert len(early) == 1 and early[0] is not None
    assert len(early[0].cutoffs) >= 2
    assert result.report["tables"]["usage_events"]["source"].endswith("logins.csv")


def _usage_largest() -> dict[str, pd.DataFrame]:
    """The messy tables without the (optional) touchpoint tables: the usage events are then the
    largest, and one worker takes them (each spawned process costs the suite about 2 s)."""
    tables = messy_tables()
    del tables["presale_touchpoints"], tables["postsale_touchpoints"]
    return tables


ONE_WORKER = {"worker_min_rows": 1, "workers": 1}


def _raw_tables(tmp_path: Path) -> tuple[dict, object]:
    raw = write_tables(messy_tables(), tmp_path / "raw")
    cfg = parse_params({"ingest": {**SECTION, **IN_WORKERS, "workers": 3}}).ingest
    return open_raw_tables(raw, cfg)[0], cfg


def test_the_largest_unreferenced_batched_tables_go_to_workers(tmp_path):
    frames, cfg = _raw_tables(tmp_path)
    rows = {name: len(table) for name, table in frames.items()}
    largest = sorted(
        (n for n in frames if n not in ("customers", "subscriptions") and rows[n] > 7),
        key=lambda n: -rows[n],
    )
    assert rows["customers"] > 7 and rows["subscriptions"] > 7  # batched, but parents
    assert rows["retention_actions"] <= 7  # validated whole: never sent

    assert choose_tables_elsewhere(frames, cfg) == largest[:3]
    assert largest[:3] == ["postsale_touchpoints", "presale_touchpoints", "usage_events"]
    one = cfg.model_copy(update={"workers": 1})
    assert choose_tables_elsewhere(frames, one) == ["postsale_touchpoints"]
    assert choose_tables_elsewhere(frames, cfg.model_copy(update={"workers": 9})) == largest
    assert choose_tables_elsewhere(frames, cfg.model_copy(update={"workers": 0})) == []
    # Below worker_min_rows a table stays here: starting a process would cost more.
    limit = cfg.model_copy(update={"worker_min_rows": rows["usage_events"]})
    assert choose_tables_elsewhere(frames, limit) == largest[:3]
    limit = cfg.model_copy(update={"worker_min_rows": rows["usage_events"] + 1})
    assert choose_tables_elsewhere(frames, limit) == largest[:2]
    entity = parse_params({"ingest": {**SECTION, **IN_WORKERS, "mode": "entity"}}).ingest
    assert choose_tables_elsewhere(frames, entity) == []


class _HereJob:
    """Stands in for a worker: validates the table in this process when asked for it."""

    def __init__(self, run):
        self.run = run

    def result(self):
        return self.run()


def test_worker_tables_start_once_their_parents_are_validated(tmp_path):
    frames, cfg = _raw_tables(tmp_path)  # three workers
    events: list[str] = []
    given: dict[str, dict[str, pd.Series]] = {}
    staging = tmp_path / "valid", tmp_path / "quarantine"
    for folder in staging:
        folder.mkdir()

    def open_sinks(name):
        events.append(f"here:{name}")
        return open_table_sinks(*staging, name)

    def start(name, future_from, parent_keys):
        events.append(f"start:{name}")
        given[name] = dict(parent_keys)

        def run():
            with open_table_sinks(*staging, name) as sinks:
                _, report, referenced = validate_table_in_batches(
                    name,
                    table_specs(cfg.mode)[name],
                    frames[name],
                    cfg,
                    future_from,
                    parent_keys,
                    sinks,
                )
            return report, referenced

        return _HereJob(run)

    result = validate_tables(
        frames, cfg, pd.Timestamp("2026-01-01"), open_sinks=open_sinks, start_elsewhere=start
    )
    expected = validate_tables(
        frames,
        cfg.model_copy(update={"workers": 0}),
        pd.Timestamp("2026-01-01"),
        open_sinks=lambda name: open_table_sinks(*staging, name),
    )

    # Each right after the customers (their only parent), before every other table here.
    assert events[:4] == [
        "here:customers",
        "start:postsale_touchpoints",  # largest first
        "start:presale_touchpoints",
        "start:usage_events",
    ]
    assert len(events) == len(result.streamed)
    valid_customers = pd.read_parquet(staging[0] / "customers.parquet")["customer_id"]
    for name in ("presale_touchpoints", "usage_events", "postsale_touchpoints"):
        assert list(given[name]) == ["customers"]
        keys = given[name]["customers"].reset_index(drop=True)
        pd.testing.assert_series_equal(keys, valid_customers)
    assert result.report == expected.report
    assert list(result.referenced_customers) == list(expected.referenced_customers)


def test_a_failed_worker_table_fails_the_run_as_in_one_process(tmp_path):
    tables = _usage_largest()
    raw = write_tables(tables, tmp_path / "raw")
    run_ingest_with(raw, tmp_path / "out", {**SECTION, "workers": 0})
    before = {p: p.read_bytes() for p in sorted((tmp_path / "out").rglob("*")) if p.is_file()}
    usage = tables["usage_events"]
    write_tables(
        {"usage_events": usage.assign(quantity=usage["quantity"].astype("str") + "x")}, raw
    )

    with pytest.raises(DataContractError, match="usage_events") as in_worker:
        run_ingest_with(raw, tmp_path / "out", {**SECTION, **ONE_WORKER})
    with pytest.raises(DataContractError) as here:
        run_ingest_with(raw, tmp_path / "here", {**SECTION, "workers": 0})

    assert str(in_worker.value) == str(here.value)
    after = {p: p.read_bytes() for p in sorted((tmp_path / "out").rglob("*")) if p.is_file()}
    assert after == before  # no half-written or mixed set of outputs


def test_an_error_here_stops_the_worker_and_leaves_the_outputs(tmp_path, monkeypatch):
    raw = write_tables(_usage_largest(), tmp_path / "raw")
    run_ingest_with(raw, tmp_path / "out", {**SECTION, "workers": 0})
    before = {p: p.read_bytes() for p in sorted((tmp_path / "out").rglob("*")) if p.is_file()}
    workers: list[TableWorkers] = []
    enter = TableWorkers.__enter__

    def remember(self):
        workers.append(self)
        return enter(self)

    def fail_after_the_customers(name, *args, **kwargs):
        if name == "customers":  # the parent of the usage events, which then start
            return validate_table_in_batches(name, *args, **kwargs)
        raise DataContractError(f"table {name}: broken here")

    monkeypatch.setattr(TableWorkers, "__enter__", remember)
    monkeypatch.setattr(
        "churn.stages.ingest.core.validate_table_in_batches", fail_after_the_customers
    )

    with pytest.raises(DataContractError, match="broken here"):
        run_ingest_with(raw, tmp_path / "out", {**SECTION, **ONE_WORKER})

    assert [job.name for job in workers[0].jobs] == ["usage_events"]  # it had started
    assert not any(job.process.is_alive() for job in workers[0].jobs)
    assert workers[0].scratch is not None and not workers[0].scratch.exists()
    after = {p: p.read_bytes() for p in sorted((tmp_path / "out").rglob("*")) if p.is_file()}
    assert after == before


def _start_worker(tmp_path: Path, source: Path, rows: int):
    cfg = parse_params({"ingest": SECTION}).ingest
    staging = tmp_path / "valid", tmp_path / "quarantine"
    for folder in staging:
        folder.mkdir()
    workers = TableWorkers(cfg, {"usage_events": source}, {"usage_events": rows}, *staging)
    return workers, staging


def test_an_unexpected_worker_error_comes_back_with_its_traceback(tmp_path):
    workers, _ = _start_worker(tmp_path, tmp_path / "nowhere.parquet", 10)

    with workers:
        job = workers.start("usage_events", pd.Timestamp("2026-01-02", tz="UTC"), {})
        with pytest.raises(RuntimeError, match=r"(?s)usage_events.*FileNotFoundError.*Traceback"):
            job.result()


def test_a_raw_file_that_changed_under_a_worker_is_a_contract_error(tmp_path):
    raw = write_tables({"usage_events": messy_tables()["usage_events"]}, tmp_path / "raw")
    rows = len(pd.read_parquet(raw / "usage_events.parquet"))
    workers, staging = _start_worker(tmp_path, raw / "usage_events.parquet", rows + 1)

    with workers:
        job = workers.start("usage_events", pd.Timestamp("2026-01-02", tz="UTC"), {})
        with pytest.raises(DataContractError, match="changed while it was validated"):
            job.result()
    assert list(staging[0].iterdir()) == []  # nothing written


def test_a_killed_worker_is_an_error_not_a_missing_table(tmp_path):
    raw = write_tables({"usage_events": messy_tables()["usage_events"]}, tmp_path / "raw")
    rows = len(pd.read_parquet(raw / "usage_events.parquet"))
    workers, _ = _start_worker(tmp_path, raw / "usage_events.parquet", rows)

    with workers:
        job = workers.start("usage_events", pd.Timestamp("2026-01-02", tz="UTC"), {})
        job.process.kill()
        with pytest.raises(RuntimeError, match="stopped without a result"):
            job.result()


@pytest.mark.skipif(sys.platform != "linux", reason="numpy advises huge pages on Linux only")
def test_a_worker_allocates_as_every_command(tmp_path, caplog, capfd, monkeypatch):
    """The spawned worker sets up its memory first (``churn.io.set_up_process_memory``)."""
    for variable in ("NUMPY_MADVISE_HUGEPAGE", "ARROW_DEFAULT_MEMORY_POOL"):
        monkeypatch.delenv(variable, raising=False)  # the worker inherits the environment
    raw = write_tables({"usage_events": messy_tables()["usage_events"]}, tmp_path / "raw")
    rows = len(pd.read_parquet(raw / "usage_events.parquet"))
    workers, _ = _start_worker(tmp_path, raw / "usage_events.parquet", rows)
    caplog.set_level(logging.DEBUG)  # the worker logs at this process's level, to stderr

    with workers:
        workers.start("usage_events", pd.Timestamp("2026-01-02", tz="UTC"), {}).result()

    logged = capfd.readouterr().err
    assert "[ingest usage_events] Arrow allocates with system" in logged
    assert "[ingest usage_events] numpy advises huge pages: no" in logged


class _FinishedProcess:
    exitcode = 0

    def join(self) -> None:
        pass


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("DataContractError", DataContractError),
        ("EmptyPopulationError", EmptyPopulationError),
        ("AnErrorThisVersionDoesNotKnow", ChurnError),
    ],
)
def test_a_churn_error_in_a_worker_is_raised_here_as_itself(tmp_path, name, expected):
    outcome = {"error": name, "user_error": True, "message": "the table is bad", "traceback": "t"}
    io.write_json(outcome, tmp_path / "result.json")

    with pytest.raises(expected, match=r"^the table is bad$") as raised:
        _WorkerJob("usage_events", _FinishedProcess(), tmp_path).result()

    assert type(raised.value) is expected  # the CLI prints it as a clean message


@pytest.mark.parametrize(
    "values",
    [
        pd.Series(["C1", None, "C10", "é"], dtype="str", name="customer_id"),
        pd.Series(["5001", "5002"], dtype="str", index=[7, 3], name="customer_id"),
        pd.Series(pd.array([1, None, 3], dtype="Int64"), name="customer_id"),
    ],
)
def test_a_key_column_crosses_to_a_worker_with_its_dtype(values):
    sent = io.encode_frame(values.reset_index(drop=True).to_frame())  # as TableWorkers.start

    back = io.decode_frame(sent).iloc[:, 0]

    expected = values.reset_index(drop=True)
    pd.testing.assert_series_equal(back, expected, check_exact=True)


def test_the_ingest_section_crosses_to_a_worker_unchanged():
    cfg = parse_params({"ingest": {**OWN_FILES_MAPPING, "workers": 2}}).ingest

    assert type(cfg).model_validate(cfg.model_dump(mode="json")) == cfg


def test_workers_must_not_be_negative():
    with pytest.raises(ConfigError, match="workers"):
        parse_params({"ingest": {"workers": -1}})
    with pytest.raises(ConfigError, match="worker_min_rows"):
        parse_params({"ingest": {"worker_min_rows": 0}})
    assert parse_params({}).ingest.workers == 1
