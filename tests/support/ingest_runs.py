"""Ingest runs on raw folders written by the tests, and their outputs compared file by file.

Shared by the parity tests of ingest in batches (``ingest.batch_rows``) and in worker
processes (``ingest.workers``): messy simulated tables that break every rule across batch
boundaries, and a third-party export with integer ids stored as floats.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from churn.config import SimulateConfig, parse_params
from churn.stages.ingest import IngestResult, run_ingest
from churn.stages.simulate import simulate
from support.event_export import make_event_export


def run_ingest_with(raw: Path, out: Path, section: Mapping[str, Any]) -> IngestResult:
    """``run_ingest`` of ``raw`` into ``out`` with the ``ingest`` section ``section``, the data
    check included (``out``/validated, quarantine, ingest.json, data_check.json)."""
    params = parse_params({"ingest": dict(section)})
    return run_ingest(
        params.ingest,
        raw,
        out / "validated",
        out / "quarantine",
        out / "ingest.json",
        params=params,
        data_check_path=out / "data_check.json",
    )


def list_files(folder: Path) -> list[str]:
    """The names of the files in ``folder``, sorted."""
    return sorted(p.name for p in folder.iterdir())


def assert_same_ingest_outputs(left: Path, right: Path) -> dict[str, pd.DataFrame]:
    """Assert that two ingest output folders (:func:`run_ingest_with`) hold the same outputs:
    both reports byte for byte, and every Parquet file with its schema, pandas metadata and
    values.

    Returns:
        The quarantine frames (table -> rows), read from ``left``.
    """
    for name in ("ingest.json", "data_check.json"):
        assert json.loads((right / name).read_text()) == json.loads((left / name).read_text())
        assert (right / name).read_text() == (left / name).read_text()
    quarantine = {}
    for folder in ("validated", "quarantine"):
        names = list_files(left / folder)
        assert list_files(right / folder) == names
        for file in names:
            expected_path, path = left / folder / file, right / folder / file
            assert pq.read_schema(path).equals(pq.read_schema(expected_path), check_metadata=True)
            assert pq.read_table(path).equals(pq.read_table(expected_path))
            expected = pd.read_parquet(expected_path)
            pd.testing.assert_frame_equal(pd.read_parquet(path), expected, check_exact=True)
            if folder == "quarantine":
                quarantine[file.removesuffix(".parquet")] = expected
    return quarantine


def messy_tables() -> dict[str, pd.DataFrame]:
    """Small messy simulated tables with every rule broken, across batch boundaries."""
    tables = simulate(SimulateConfig(customers=30, months=6, seed=7, mess=True)).tables
    # About 160 rows per table, spread over the whole time span.
    tables = {
        name: frame.iloc[:: max(1, len(frame) // 160)].reset_index(drop=True)
        for name, frame in tables.items()
    }
    usage = tables["usage_events"]
    usage["quantity"] = usage["quantity"].astype("str")  # text, as some exports hold numbers
    usage.loc[[20, 40, 60], "quantity"] = ["-2", "many", "1e300"]
    usage.loc[30, "occurred_at"] = pd.Timestamp("2030-01-01 00:00:00", tz="UTC")  # future
    usage.loc[50, "occurred_at"] = pd.Timestamp("2025-09-01 08:00:00", tz="UTC")  # stray
    # A finer resolution far from the quarantined rows decides how their times are shown.
    usage.loc[2, "occurred_at"] = usage.loc[2, "occurred_at"] + pd.Timedelta(microseconds=7)
    usage.loc[70, "customer_id"] = "nobody"
    usage.loc[[80, 81], "customer_id"] = None
    copies = usage.iloc[[3, 4, 5, 3, 90]]  # copies in later batches (row 3 twice)
    usage = pd.concat([usage.iloc[:9], usage.iloc[[0]], usage.iloc[9:], copies])
    tables["usage_events"] = usage.reset_index(drop=True)
    subscriptions = tables["subscriptions"]
    subscriptions.loc[1, "billing_period"] = "weekly"
    subscriptions.loc[20, "subscription_id"] = subscriptions.loc[2, "subscription_id"]  # key
    subscriptions.loc[12, "ended_at"] = subscriptions.loc[12, "started_at"] - pd.Timedelta(days=3)
    customers = tables["customers"]
    customers.loc[9, "trial_days"] = 999
    customers.loc[17, "customer_id"] = None
    nps = tables["nps_responses"].astype({"score": "str"})
    nps.loc[nps.index[:2], "score"] = ["11", "7.5"]
    tables["nps_responses"] = nps
    return tables


def integer_id_export(whole_ids: bool) -> dict[str, pd.DataFrame]:
    """A third-party export with integer ids stored as floats (gaps make them floats)."""
    tables = make_event_export(n_customers=12, seed=4)
    usage = tables["usage_events"].head(150).copy()
    ids = usage["customer_id"].astype("float64")
    ids[10] = np.nan  # a gap: missing
    if not whole_ids:
        ids[140] = 5003.5  # one id that is not whole, in the last batch: no id is shown whole
    usage["customer_id"] = ids
    usage["occurred_at"] = usage["occurred_at"].str.replace("Z", "+02:00")
    usage.loc[5, "occurred_at"] = "01/02/2025"  # ambiguous: not a timestamp
    tables["usage_events"] = pd.concat([usage, usage.iloc[[1, 2]]], ignore_index=True)
    customers = tables["customers"].copy()
    customers["customer_id"] = customers["customer_id"].astype("float64")
    tables["customers"] = customers
    return tables


def write_tables(tables: Mapping[str, pd.DataFrame], folder: Path, suffix: str = "parquet") -> Path:
    """Write each table as ``<name>.<suffix>`` (Parquet or CSV) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        if suffix == "csv":
            frame.to_csv(folder / f"{name}.csv", index=False)
        else:
            frame.to_parquet(folder / f"{name}.parquet", index=False)
    return folder
