"""The features stage's scoring rows and their reuse by ``churn score``.

On exports shaped like a third party's (integer account ids, their own column names and codes,
paid-through contract ends, only customers, contracts and logins), every check runs the real
chain: validated tables and labels written to disk, ``run_features`` with and without
``scoring_out``, and ``build_scoring_features`` (what ``churn score`` computes itself) as the
reference of the scoring rows.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from support.event_export import make_event_export
from support.own_files import OWN_FILES_MAPPING, make_own_files

from churn.config import Params, parse_params
from churn.domain.modes import Mode
from churn.io import write_parquet
from churn.layout import table_file_name
from churn.model.artifact import write_manifest
from churn.model.baseline import save_baseline
from churn.model.fit import train_churn_models
from churn.stages.features import prepare_tables, run_features
from churn.stages.ingest import validate_tables
from churn.stages.label import run_label
from churn.stages.score import build_scoring_features, read_scoring_tables, run_score
from churn.stages.scoring_population import (
    SCORING_ROWS_KEY,
    choose_cutoff,
    describe_scoring_inputs,
    plan_scoring_rows,
    read_scoring_rows,
    write_no_scoring_rows,
)
from churn.stages.train import BASELINE_FILE

_TRAIN = {"n_estimators": 40, "min_child_samples": 20, "num_threads": 1}


def _own_files_case() -> tuple[dict[str, pd.DataFrame], Params]:
    """A billing system's and a product database's CSV export, mapped in params."""
    files = make_own_files(n_accounts=600, seed=7)
    ingest = copy.deepcopy(OWN_FILES_MAPPING)
    for table in ingest["tables"].values():
        table.pop("file", None)
    params = parse_params({"ingest": ingest, "label": {"min_history_days": 120}, "train": _TRAIN})
    raw = {
        "customers": files["accounts.csv"],
        "subscriptions": files["contracts.csv"],
        "usage_events": files["logins.csv"],
    }
    return raw, params


def _event_export_case() -> tuple[dict[str, pd.DataFrame], Params]:
    """A CRM's events export: integer ids, text values, contract column names."""
    params = parse_params(
        {"ingest": {"as_of": "2025-07-15"}, "label": {"min_history_days": 90}, "train": _TRAIN}
    )
    return make_event_export(n_customers=400, seed=3), params


_CASES = {"own_files": _own_files_case, "event_export": _event_export_case}


def _write_project(folder: Path, case: str) -> tuple[Path, Path, Params]:
    """Validated tables and labels on disk, as ``churn ingest`` and ``churn label`` leave them."""
    raw, params = _CASES[case]()
    as_of = pd.Timestamp(params.ingest.as_of, tz="UTC")
    valid = validate_tables(raw, params.ingest, as_of).valid
    validated = folder / "validated"
    validated.mkdir(parents=True)
    for name, frame in valid.items():
        write_parquet(frame, validated / table_file_name(name))
    labels_path = folder / "labels.parquet"
    run_label(params, validated, labels_path, folder / "labels.json")  # as churn label does
    return validated, labels_path, params


@pytest.fixture(scope="module", params=sorted(_CASES))
def project(request, tmp_path_factory) -> dict:
    """A project whose features were written with and without the scoring rows."""
    folder = tmp_path_factory.mktemp(request.param)
    validated, labels_path, params = _write_project(folder, request.param)
    out = {"validated": validated, "labels": labels_path, "params": params, "folder": folder}
    for name, scoring in (("with", folder / "scoring.parquet"), ("without", None)):
        run_features(
            params,
            validated,
            labels_path,
            folder / f"features_{name}.parquet",
            folder / f"catalog_{name}.csv",
            scoring_out=scoring,
        )
    out["scoring"] = folder / "scoring.parquet"
    out["reference"], out["cutoff"] = _reference_rows(out)
    return out


def _reference_rows(project: dict) -> tuple[pd.DataFrame, pd.Timestamp]:
    """What ``churn score`` computes itself: its tables, its cutoff, its features."""
    params = project["params"]
    tables = prepare_tables(params, read_scoring_tables(params, project["validated"]))
    cutoff = choose_cutoff(tables, params.score.cutoff)
    return build_scoring_features(tables, cutoff, params), cutoff


def test_the_scoring_rows_leave_the_training_file_unchanged(project):
    folder = project["folder"]
    with_rows = (folder / "features_with.parquet").read_bytes()
    assert with_rows == (folder / "features_without.parquet").read_bytes()
    assert (folder / "catalog_with.csv").read_text() == (folder / "catalog_without.csv").read_text()


def test_the_scoring_rows_are_what_score_computes_itself(project):
    expected, cutoff = project["reference"], project["cutoff"]
    assert len(expected) > 50
    assert expected["customer_id"].str.fullmatch(r"\d+").all()  # the export's integer ids
    frame, note = read_scoring_rows(
        project["scoring"],
        describe_scoring_inputs(project["params"], project["validated"]),
        cutoff,
        [c for c in expected.columns if c not in ("customer_id", "cutoff", "label")],
    )
    assert frame is not None, note
    pd.testing.assert_frame_equal(frame, expected, check_exact=True)
    # Point in time: the scoring cutoff lies after every labeled cutoff, and no row of the
    # training file is at it.
    training = pd.read_parquet(project["folder"] / "features_with.parquet")
    assert training["cutoff"].max() < cutoff
    assert (frame["cutoff"] == cutoff).all()


def test_the_file_records_its_cutoff_and_fingerprint(project):
    cutoff = project["cutoff"]
    metadata = pq.read_schema(project["scoring"]).metadata
    record = json.loads(metadata[SCORING_ROWS_KEY.encode()])
    assert record["cutoff"] == cutoff.isoformat()
    assert record["fingerprint"] == describe_scoring_inputs(project["params"], project["validated"])


def _read(project: dict, **changes) -> tuple[pd.DataFrame | None, str]:
    arguments = {
        "path": project["scoring"],
        "fingerprint": describe_scoring_inputs(project["params"], project["validated"]),
        "cutoff": project["cutoff"],
        "feature_names": ["tenure_days"],
    }
    arguments.update(changes)
    return read_scoring_rows(**arguments)


def test_rows_of_other_inputs_or_another_cutoff_are_not_used(project, tmp_path):
    assert _read(project)[0] is not None  # the control
    other_cutoff = _read(project, cutoff=project["cutoff"] + pd.Timedelta(days=1))
    assert other_cutoff[0] is None and "not at" in other_cutoff[1]
    # Another configuration: a window changes every windowed feature.
    params = project["params"]
    features = params.features.model_copy(update={"windows_days": (7, 30)})
    changed = describe_scoring_inputs(
        params.model_copy(update={"features": features}), project["validated"]
    )
    refused = _read(project, fingerprint=changed)
    assert refused[0] is None and "other validated tables" in refused[1]
    lacking = _read(project, feature_names=["tenure_days", "no_such_feature"])
    assert lacking[0] is None and "no_such_feature" in lacking[1]
    missing = _read(project, path=tmp_path / "absent.parquet")
    assert missing[0] is None and "does not exist" in missing[1]
    plain = tmp_path / "plain.parquet"
    write_parquet(pd.DataFrame({"customer_id": ["1"]}), plain)
    no_metadata = _read(project, path=plain)
    assert no_metadata[0] is None and SCORING_ROWS_KEY in no_metadata[1]


def test_other_validated_tables_change_the_fingerprint(project, tmp_path):
    validated = tmp_path / "validated"
    validated.mkdir()
    for path in project["validated"].iterdir():
        (validated / path.name).write_bytes(path.read_bytes())
    params = project["params"]
    before = describe_scoring_inputs(params, project["validated"])
    assert describe_scoring_inputs(params, validated) == before  # the same bytes elsewhere
    usage = validated / table_file_name("usage_events")
    write_parquet(pd.read_parquet(usage).iloc[1:], usage)  # one login fewer
    assert describe_scoring_inputs(params, validated) != before


def test_no_rows_when_the_scoring_cutoff_is_a_labeled_cutoff(project, tmp_path):
    params = project["params"]
    labels = pd.read_parquet(project["labels"])
    labeled = labels["cutoff"].max()
    score = params.score.model_copy(update={"cutoff": labeled.date()})
    pinned = params.model_copy(update={"score": score})
    scoring = tmp_path / "scoring.parquet"
    run_features(
        pinned,
        project["validated"],
        project["labels"],
        tmp_path / "features.parquet",
        tmp_path / "catalog.csv",
        scoring_out=scoring,
    )
    assert pq.read_metadata(scoring).num_rows == 0
    record = json.loads(pq.read_schema(scoring).metadata[SCORING_ROWS_KEY.encode()])
    assert record["fingerprint"] is None and "not after every labeled cutoff" in record["note"]
    # The training file is still the same, and score would compute its own rows.
    assert (tmp_path / "features.parquet").read_bytes() == (
        project["folder"] / "features_without.parquet"
    ).read_bytes()
    frame, note = read_scoring_rows(
        scoring, describe_scoring_inputs(pinned, project["validated"]), labeled, []
    )
    assert frame is None and "computed no scoring rows" in note


def test_entity_mode_and_spark_get_no_scoring_rows(project):
    params = project["params"]
    labels = pd.read_parquet(project["labels"])
    entity = params.model_copy(
        update={"ingest": params.ingest.model_copy(update={"mode": Mode.ENTITY})}
    )
    assert plan_scoring_rows(entity, {}, labels)[0] is None
    spark = params.model_copy(
        update={"features": params.features.model_copy(update={"engine": "spark"})}
    )
    population, _, note = plan_scoring_rows(spark, {}, labels)
    assert population is None and "spark" in note


def test_no_rows_when_the_labels_keys_differ_in_type_from_the_population(project):
    params = project["params"]
    tables = prepare_tables(params, read_scoring_tables(params, project["validated"]))
    labels = pd.read_parquet(project["labels"])
    population, cutoff, note = plan_scoring_rows(params, tables, labels)
    assert population is not None and cutoff == project["cutoff"]  # the control
    retyped = labels.assign(label=labels["label"].astype("float64"))
    population, cutoff, note = plan_scoring_rows(params, tables, retyped)
    assert population is None and cutoff == project["cutoff"]
    assert "differ in type" in note


def test_a_file_without_rows_says_why(tmp_path):
    path = tmp_path / "scoring.parquet"
    write_no_scoring_rows(path, "features.engine spark: only the local engine")
    assert pq.read_metadata(path).num_rows == 0
    frame, note = read_scoring_rows(path, "0" * 64, pd.Timestamp("2025-01-01", tz="UTC"), [])
    assert frame is None
    assert (
        note == "the features stage computed no scoring rows: features.engine spark: only "
        "the local engine"
    )


def _export_model(project: dict, directory: Path) -> None:
    """A model trained on the project's features, written as ``churn train`` exports it."""
    features = pd.read_parquet(project["folder"] / "features_with.parquet")
    catalog = pd.read_csv(project["folder"] / "catalog_with.csv")
    result = train_churn_models(features, catalog, project["params"])
    result.model.save(directory)
    save_baseline(result.baseline, directory / BASELINE_FILE)
    write_manifest(directory)


def test_score_with_the_scoring_rows_writes_the_same_files(project, tmp_path, caplog):
    model = tmp_path / "model"
    _export_model(project, model)
    written = {}
    for name, scoring in (("reused", project["scoring"]), ("computed", None)):
        out = tmp_path / name / "scores.parquet"
        with caplog.at_level("INFO", logger="churn.stages.score"):
            caplog.clear()
            run_score(project["params"], project["validated"], model, out, scoring_features=scoring)
        logged = caplog.text
        written[name] = {p.name: p.read_bytes() for p in out.parent.iterdir()}
        if scoring is not None:
            assert "the features stage's scoring rows" in logged
    assert written["reused"] == written["computed"]
    assert "scores.parquet" in written["reused"]


def test_score_computes_its_features_when_the_rows_do_not_fit(project, tmp_path, caplog):
    model = tmp_path / "model"
    _export_model(project, model)
    params = project["params"]
    # Another usage event type list: the fingerprint differs, so the rows are not used.
    features = params.features.model_copy(update={"usage_event_types_top": 3})
    other = params.model_copy(update={"features": features})
    out = tmp_path / "scores.parquet"
    with caplog.at_level("INFO", logger="churn.stages.score"):
        run_score(other, project["validated"], model, out, scoring_features=project["scoring"])
    assert "features computed here" in caplog.text
    assert len(pd.read_parquet(out)) == len(project["reference"])
