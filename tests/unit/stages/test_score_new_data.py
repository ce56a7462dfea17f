"""Tests for scoring new data: ``churn score --input FILE`` and ``--raw-input DIR``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from churn.config import Params
from churn.errors import DataContractError
from churn.stages.score import QUARANTINE_FILE, REALIZED_METRICS_FILE, run_score

AS_OF = "2026-06-30"


def _telecom_crm(rows: int, first_id: int = 7000) -> pd.DataFrame:
    """A telecom-style CRM export: integer ids, Yes/No churn, "29,85" decimal commas."""
    ids = pd.Series(range(first_id, first_id + rows), dtype="int64")
    tenure = [1 + (i * 7) % 36 for i in range(rows)]
    return pd.DataFrame(
        {
            "customerID": ids,
            "SeniorCitizen": pd.Series([i % 2 for i in range(rows)], dtype="int64"),
            "tenure": pd.Series(tenure, dtype="int64"),
            "Contract": ["Month-to-month", "One year", "Two year"] * (rows // 3),
            "MonthlyCharges": [f"{20 + i % 50},{i % 100:02d}" for i in range(rows)],
            "Churn": ["Yes" if t <= 6 or i % 9 == 0 else "No" for i, t in enumerate(tenure)],
        }
    ).astype({"MonthlyCharges": "str", "Contract": "str", "Churn": "str"})


def _entity_params() -> Params:
    return Params.model_validate(
        {
            "ingest": {
                "mode": "entity",
                "as_of": AS_OF,
                "label_column": "Churn",
                "tables": {
                    "customers": {"columns": {"customer_id": "customerID", "mrr": "MonthlyCharges"}}
                },
            },
            "train": {"n_estimators": 20, "min_child_samples": 10, "early_stopping_rounds": 5},
        }
    )


@pytest.fixture(scope="module")
def entity_model(tmp_path_factory):
    """A model trained in entity mode on a CRM export, saved as an exported directory."""
    from churn.labels.entity import build_entity_labels
    from churn.model.fit import fit_churn_model
    from churn.stages.features import compute_features, prepare_tables
    from churn.stages.ingest import validate_tables

    params = _entity_params()
    valid = validate_tables(
        {"customers": _telecom_crm(300)}, params.ingest, pd.Timestamp(AS_OF, tz="UTC")
    ).valid
    labels = build_entity_labels(valid["customers"], "Churn", pd.Timestamp(AS_OF, tz="UTC"))
    result = compute_features(params, prepare_tables(params, valid), labels)
    frame = result.frame.reset_index(drop=True)
    train = frame.index % 4 != 0
    model = fit_churn_model(frame[train], frame[~train], result.catalog, params.train)
    directory = tmp_path_factory.mktemp("entity_model") / "model"
    model.save(directory)
    return str(directory)


def test_input_without_label_is_scored_and_a_bad_row_quarantined(entity_model, tmp_path):
    new = _telecom_crm(60, first_id=9000).drop(columns=["Churn"])
    new.loc[5, "MonthlyCharges"] = "n/a-ish"  # mrr must be a number: quarantined, not dropped
    path = tmp_path / "new_customers.csv"
    new.to_csv(path, index=False)
    out = tmp_path / "scores" / "scores.parquet"

    summary = run_score(_entity_params(), None, entity_model, out, input_path=path)

    scores = pd.read_parquet(out)
    expected_ids = sorted(str(i) for i in new["customerID"] if i != 9005)
    assert sorted(scores["customer_id"]) == expected_ids
    assert scores["churn_probability"].between(0, 1).all()
    assert scores["reason_1_feature"].notna().any()
    assert str(scores["cutoff"].iloc[0].date()) == AS_OF
    quarantine = pd.read_parquet(out.parent / QUARANTINE_FILE)
    assert quarantine["customerID"].tolist() == ["9005"]
    assert quarantine["_table"].tolist() == ["customers"]
    assert "mrr" in quarantine["_failed_rules"].iloc[0]
    assert quarantine["_row_number"].tolist() == [5]
    assert summary["rows_quarantined"] == 1
    assert summary["rows"] + summary["rows_quarantined"] == len(new)
    assert "realized_metrics" not in summary
    assert not (out.parent / REALIZED_METRICS_FILE).exists()


def test_scoring_rows_are_ignored_with_a_new_file_and_the_log_says_so(
    entity_model, tmp_path, caplog
):
    new = _telecom_crm(30, first_id=9100).drop(columns=["Churn"])
    path = tmp_path / "new_customers.csv"
    new.to_csv(path, index=False)
    out = tmp_path / "scores" / "scores.parquet"
    absent = tmp_path / "scoring.parquet"  # never opened: the rows are for --validated only
    with caplog.at_level("INFO", logger="churn.stages.score"):
        run_score(
            _entity_params(), None, entity_model, out, input_path=path, scoring_features=absent
        )
    assert "--scoring-features ignored" in caplog.text
    assert len(pd.read_parquet(out)) == len(new)


def test_input_with_label_reports_realized_metrics(entity_model, tmp_path):
    new = _telecom_crm(90, first_id=5000)
    path = tmp_path / "labelled.parquet"
    new.to_parquet(path)
    out = tmp_path / "scores" / "scores.csv"
    params = _entity_params().model_copy(
        update={"score": _entity_params().score.model_copy(update={"output_format": "csv"})}
    )

    summary = run_score(params, None, entity_model, out, input_path=path)

    written = json.loads((out.parent / REALIZED_METRICS_FILE).read_text())
    assert written == summary["realized_metrics"]
    scores = pd.read_csv(out, dtype={"customer_id": str})
    truth = new.assign(customer_id=new["customerID"].astype(str))
    joined = scores.merge(truth[["customer_id", "Churn"]], on="customer_id", validate="1:1")
    y = (joined["Churn"] == "Yes").astype(int).to_numpy()
    p = joined["churn_probability"].to_numpy()
    assert written["rows"] == len(new)
    assert written["positives"] == int(y.sum())
    assert written["base_rate"] == pytest.approx(y.mean())
    assert written["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert written["pr_auc"] == pytest.approx(average_precision_score(y, p), rel=0.05)
    # Naive lift: positive rate among the 9 highest scores over the base rate (ties broken by
    # averaging over the tied block, as the library does).
    order = np.sort(p)[::-1]
    threshold = order[8]
    above = p > threshold
    tied = p == threshold
    top_positives = y[above].sum() + y[tied].mean() * (9 - above.sum())
    assert written["lift_top_decile"] == pytest.approx((top_positives / 9) / y.mean())
    assert pd.read_parquet(out.parent / QUARANTINE_FILE).empty


def test_input_needs_entity_mode_and_exactly_one_source(entity_model, tmp_path):
    path = tmp_path / "new.csv"
    _telecom_crm(30).to_csv(path, index=False)
    out = tmp_path / "scores.parquet"
    with pytest.raises(DataContractError, match=r"ingest\.mode: entity"):
        run_score(Params(), None, entity_model, out, input_path=path)
    with pytest.raises(DataContractError, match="exactly one of"):
        run_score(_entity_params(), tmp_path, entity_model, out, input_path=path)
    with pytest.raises(DataContractError, match="exactly one of"):
        run_score(_entity_params(), None, entity_model, out)
    assert not out.exists()


def test_input_missing_a_mapped_column_names_it(entity_model, tmp_path):
    path = tmp_path / "new.csv"
    _telecom_crm(30).drop(columns=["MonthlyCharges"]).to_csv(path, index=False)
    with pytest.raises(DataContractError, match="MonthlyCharges"):
        run_score(_entity_params(), None, entity_model, tmp_path / "s.parquet", input_path=path)


def test_raw_input_is_validated_in_memory_and_scores_like_the_ingested_tables(tmp_path):
    from churn.domain.modes import reference_timestamp
    from churn.features.build import build_features
    from churn.labels.build import build_labels
    from churn.model.fit import fit_churn_model
    from churn.stages.ingest import validate_tables
    from churn.stages.simulate.engine import simulate

    params = Params.model_validate(
        {
            "simulate": {"customers": 300, "months": 9, "mess": False},
            "label": {"min_history_days": 60},
            "train": {"n_estimators": 20, "min_child_samples": 20, "early_stopping_rounds": 5},
        }
    )
    raw = simulate(params.simulate).tables
    raw["nps_responses"].loc[0, "score"] = 15  # outside 0..10: quarantined, not dropped
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    for name, frame in raw.items():
        frame.to_parquet(raw_dir / f"{name}.parquet")
    ingested = validate_tables(raw, params.ingest, reference_timestamp(None))
    validated = tmp_path / "validated"
    validated.mkdir()
    for name, frame in ingested.valid.items():
        frame.to_parquet(validated / f"{name}.parquet")
    tables = ingested.valid
    result = build_features(tables, build_labels(tables, params.label), params.features)
    labeled = result.frame[result.frame["label"].notna()]
    last = labeled["cutoff"].max()
    model = fit_churn_model(
        labeled[labeled["cutoff"] < last],
        labeled[labeled["cutoff"] == last],
        result.catalog,
        params.train,
    )
    model.save(tmp_path / "model")
    cutoff = (last + pd.Timedelta(days=30)).date()
    at_cutoff = params.model_copy(
        update={"score": params.score.model_copy(update={"cutoff": cutoff})}
    )

    from_raw = run_score(
        at_cutoff, None, str(tmp_path / "model"), tmp_path / "a" / "s.parquet", raw_dir=raw_dir
    )
    from_validated = run_score(
        at_cutoff, validated, str(tmp_path / "model"), tmp_path / "b" / "s.parquet"
    )

    assert from_raw["cutoff"] == from_validated["cutoff"] == f"{cutoff}T00:00:00+00:00"
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "a" / "s.parquet"),
        pd.read_parquet(tmp_path / "b" / "s.parquet"),
    )
    quarantine = pd.read_parquet(tmp_path / "a" / QUARANTINE_FILE)
    expected = sum(len(frame) for frame in ingested.quarantine.values())
    assert len(quarantine) == expected == from_raw["rows_quarantined"]
    bad = quarantine[quarantine["_table"] == "nps_responses"]
    assert bad["_row_number"].tolist() == [0]
    assert "score" in bad["_failed_rules"].iloc[0]
    assert not (tmp_path / "b" / QUARANTINE_FILE).exists()


def test_cli_scores_a_new_file_and_refuses_two_sources(entity_model, tmp_path):
    import yaml
    from typer.testing import CliRunner

    from churn.cli import app

    params_path = tmp_path / "params.yaml"
    params_path.write_text(
        yaml.safe_dump(_entity_params().model_dump(mode="json", include={"ingest", "train"}))
    )
    path = tmp_path / "new.csv"
    _telecom_crm(30, first_id=100).drop(columns=["Churn"]).to_csv(path, index=False)
    out = tmp_path / "new_scores" / "scores.parquet"
    common = ["score", "--params", str(params_path), "--model", entity_model, "--out", str(out)]

    result = CliRunner().invoke(app, [*common, "--input", str(path)])

    assert result.exit_code == 0, result.output
    assert sorted(pd.read_parquet(out)["customer_id"]) == sorted(str(i) for i in range(100, 130))
    assert pd.read_parquet(out.parent / QUARANTINE_FILE).empty
    both = CliRunner().invoke(app, [*common, "--input", str(path), "--validated", str(tmp_path)])
    assert both.exit_code == 2
    assert "exactly one of" in both.output
