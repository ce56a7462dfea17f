"""docs/your-data.md as written: the real ``dvc repro`` on a folder of third-party-shaped CSVs.

A scratch copy of the project (see :mod:`support.scratch_project`) plays a fresh clone. The
page's fenced blocks are replayed in order: a ``yaml`` block starting with ``# params.yaml`` is
the user's edit, merged into ``params.yaml`` key by key; every ``bash`` block runs as is. The
example files come from ``tests/support/own_files.py`` (the page tells the user to run it):
integer ids, integer and letter codes, other column names, naive local timestamps and
paid-through contract ends after the export date. Slow (about a minute of ``dvc repro``).
"""

from __future__ import annotations

import compileall
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from support.own_files import make_own_files
from support.scratch_project import DVC, REPO, copy_project, run

pytestmark = pytest.mark.slow

DOC = REPO / "docs" / "your-data.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
STAGES = list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])


def doc_blocks() -> list[tuple[str, str]]:
    """Return the page's fenced blocks as (language, text), in order."""
    return FENCE.findall(DOC.read_text())


def merge(base: dict[str, Any], edit: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``edit`` applied as a user edits the file.

    Sections merge key by key; a value (``ingest.tables`` included, which the user writes in
    place of ``tables: {}``) replaces the old one.
    """
    merged = dict(base)
    for key, value in edit.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "tables":
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def test_the_page_has_commands_and_one_params_edit():
    blocks = doc_blocks()
    edits = [text for lang, text in blocks if lang == "yaml" and text.startswith("# params.yaml")]
    commands = "\n".join(text for lang, text in blocks if lang == "bash")
    assert len(edits) == 1
    assert yaml.safe_load(edits[0])["data"] == {"source": "files"}
    assert "dvc repro" in commands
    assert "own_files.py data/raw" in commands


@pytest.fixture(scope="module")
def followed(tmp_path_factory) -> tuple[Path, dict[str, str], list[str]]:
    """A fresh project where every block of the page was run; returns it and the outputs."""
    work, env = copy_project(tmp_path_factory.mktemp("your_data"), {})
    (work / "tests" / "support").mkdir(parents=True)
    shutil.copy(REPO / "tests/support/own_files.py", work / "tests/support/own_files.py")
    outputs = []
    for lang, text in doc_blocks():
        if lang == "yaml" and text.startswith("# params.yaml"):
            params = yaml.safe_load((work / "params.yaml").read_text())
            merged = merge(params, yaml.safe_load(text))
            (work / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
        elif lang == "bash":
            outputs.append(run(["bash", "-euo", "pipefail", "-c", text], work, env))
    return work, env, outputs


def test_every_stage_ran_and_nothing_is_left_to_run(followed):
    work, env, _ = followed
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)
    # Bytecode beside the sources, as a user's Python writes it on import (here the package
    # is imported from the developer's checkout, so it is written explicitly), and a desktop's
    # folder metadata: the sources are stage deps, and .dvcignore keeps both out of their
    # hashes.
    compileall.compile_dir(work / "src", quiet=1)
    assert list((work / "src" / "churn").glob("__pycache__/*.pyc"))
    (work / "src" / "churn" / "model" / ".DS_Store").write_bytes(b"\0")  # a Mac's Finder
    status = run([*DVC, "status", "--json"], work, env)
    assert json.loads(status) == {}
    for path in ("data/scores/scores.parquet", "reports/index.html", "models/churn/model.txt"):
        assert (work / path).stat().st_size > 0, path


def test_the_simulator_was_off_and_ingest_read_the_users_files(followed):
    work, _, _ = followed
    for folder in ("data/simulated/raw", "data/simulated/truth"):
        assert [p.name for p in (work / folder).iterdir()] == ["README.md"], folder
    report = json.loads((work / "reports/ingest.json").read_text())
    sources = {t: Path(i["source"]).name for t, i in report["tables"].items() if i["present"]}
    assert sources == {
        "customers": "accounts.csv",
        "subscriptions": "contracts.csv",
        "usage_events": "logins.csv",
    }
    export = make_own_files()
    for table, file in (("customers", "accounts.csv"), ("usage_events", "logins.csv")):
        assert report["tables"][table]["rows_in"] == len(export[file])


def test_third_party_ids_codes_and_paid_through_ends_arrive_mapped(followed):
    work, _, _ = followed
    export = make_own_files()
    customers = pd.read_parquet(work / "data/validated/customers.parquet")
    account_numbers = sorted(str(i) for i in export["accounts.csv"]["AccountNo"])
    assert sorted(customers["customer_id"]) == account_numbers
    assert set(customers["acquisition_channel"]) == {"paid_search", "referral", "partner"}
    subscriptions = pd.read_parquet(work / "data/validated/subscriptions.parquet")
    assert set(subscriptions["billing_period"]) == {"monthly", "annual"}
    # Dates are local (ingest.input_timezone); "after the export" means after its last local day.
    export_end = pd.Timestamp("2025-12-31T23:59:59", tz="Europe/Berlin")
    paid_through = pd.to_datetime(export["contracts.csv"]["PaidThrough"]).dt.tz_localize(
        "Europe/Berlin"
    )
    later = int((paid_through > export_end).sum())
    assert later > 0  # the example has contracts paid through a date after the export
    assert len(subscriptions) == len(export["contracts.csv"])  # none quarantined
    kept = int((subscriptions["ended_at"] > export_end).sum())
    assert kept == later


def test_scores_and_metrics_without_truth(followed):
    work, _, outputs = followed
    metrics = json.loads((work / "reports/metrics.json").read_text())
    assert not [key for key in metrics["test"] if key.startswith("oracle")]
    assert 0.5 < metrics["test"]["roc_auc"] < 0.97  # learns something, nothing leaks
    scores = pd.read_parquet(work / "data/scores/scores.parquet")
    assert len(scores) > 0
    assert scores["churn_probability"].between(0, 1).all()
    accounts = make_own_files()["accounts.csv"]
    assert set(scores["customer_id"]) <= {str(i) for i in accounts["AccountNo"]}
    assert str(metrics["test"]["roc_auc"]) in "\n".join(outputs)  # the page's read-out ran


def test_switching_back_to_the_simulator_is_one_param(followed):
    """data.source: simulator makes ``dvc status`` see simulate and ingest as changed."""
    work, env, _ = followed
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["data"]["source"] = "simulator"
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        changed = json.loads(run([*DVC, "status", "--json"], work, env))
    finally:
        params["data"]["source"] = "files"
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert {"simulate", "ingest"} <= set(changed)
