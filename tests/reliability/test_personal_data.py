"""Reliability: personal data never becomes a feature, and its values are never stored.

The fixture is shaped like a CRM export, not like the simulator: integer account ids, a
contact name, an e-mail address, a phone number, a Yes/No churn column, and a free-text note
that sometimes holds an e-mail address.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churn.config import parse_params
from churn.errors import DataContractError
from churn.stages.features import run_features
from churn.stages.ingest import run_ingest
from churn.stages.label import run_label

FIRST = ("Anna", "Ben", "Chloe", "David", "Emma", "Felix", "Grace", "Henry", "Ida", "Jonas")
LAST = ("Miller", "Schmidt", "Garcia", "Rossi", "Nowak", "Dubois", "Jensen", "Silva")
NOTES = ("renewal call booked", "asked about pricing", "happy with support", "")


def _crm_export(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    first, last = rng.choice(FIRST, n), rng.choice(LAST, n)
    tenure = rng.integers(1, 60, n)
    charges = rng.uniform(20, 120, n).round(2)
    logit = -0.6 - 0.03 * tenure + 0.01 * charges
    notes = rng.choice(NOTES, n).astype(object)
    notes[::40] = [
        f"cc {f.lower()}.{la.lower()}@example.org"
        for f, la in zip(first[::40], last[::40], strict=True)
    ]
    return pd.DataFrame(
        {
            "AccountID": np.arange(100_001, 100_001 + n),
            "contact_name": [f"{f} {la}" for f, la in zip(first, last, strict=True)],
            "email": [
                f"{f.lower()}.{la.lower()}{i}@example.com"
                for i, (f, la) in enumerate(zip(first, last, strict=True))
            ],
            "phone": [f"+49 30 {rng.integers(1000000, 9999999)}" for _ in range(n)],
            "PlanCode": rng.integers(1, 4, n),
            "tenure_months": tenure,
            "MonthlyCharges": charges,
            "notes": notes,
            "Churn": np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "Yes", "No"),
        }
    )


def _entity_params(**features) -> object:
    return parse_params(
        {
            "ingest": {
                "mode": "entity",
                "as_of": "2026-01-31",
                "label_column": "Churn",
                "tables": {
                    "customers": {"file": "crm.csv", "columns": {"customer_id": "AccountID"}}
                },
            },
            "features": features,
            # A store of its own in tmp_path (not the default store): allowed to be created.
            "train": {
                "num_threads": 1,
                "n_estimators": 60,
                "min_positives": 10,
                "create_tracking_store": True,
            },
        }
    )


def _ingest_and_label(tmp_path: Path, extract: pd.DataFrame, params) -> tuple[Path, Path]:
    raw, validated = tmp_path / "raw", tmp_path / "validated"
    raw.mkdir()
    extract.to_csv(raw / "crm.csv", index=False)
    run_ingest(params.ingest, raw, validated, tmp_path / "quarantine", tmp_path / "ingest.json")
    labels = tmp_path / "labels.parquet"
    run_label(params, validated, labels)
    return validated, labels


def test_personal_columns_never_become_features(tmp_path) -> None:
    extract = _crm_export(400, seed=1)
    params = _entity_params()
    validated, labels = _ingest_and_label(tmp_path, extract, params)
    out, catalog = tmp_path / "features.parquet", tmp_path / "catalog.csv"

    with pytest.raises(DataContractError) as raised:
        run_features(params, validated, labels, out, catalog)

    message = str(raised.value)
    for column in ("customers.contact_name", "customers.email", "customers.phone"):
        assert column in message
    assert "features.allow_personal_columns" in message
    # Ordinary attributes, the integer plan code and the free-text note are not refused.
    for column in ("PlanCode", "tenure_months", "MonthlyCharges", "notes"):
        assert f"customers.{column}" not in message
    assert not out.exists() and not catalog.exists()


def test_personal_column_renamed_away_is_caught_by_its_values(tmp_path) -> None:
    # An e-mail column exported as "contact" and a name column as "owner": names say nothing.
    extract = _crm_export(400, seed=2).drop(columns=["phone"])
    extract = extract.rename(columns={"email": "contact", "contact_name": "owner"})
    params = _entity_params()
    validated, labels = _ingest_and_label(tmp_path, extract, params)

    with pytest.raises(DataContractError) as raised:
        run_features(params, validated, labels, tmp_path / "f.parquet", tmp_path / "c.csv")

    assert "customers.contact: 100% of its values are e-mail addresses" in str(raised.value)
    assert "customers.owner:" in str(raised.value)
    assert "person names" in str(raised.value)


def _run_allowed_pipeline(tmp_path: Path, with_mlflow: bool) -> tuple[pd.DataFrame, list[Path]]:
    """Ingest -> label -> features -> train -> score -> report with the personal columns allowed.

    Returns:
        The raw export and every file written (model, features, catalog, scores, report, and
        with ``with_mlflow`` the MLflow store and its artifacts).
    """
    from churn.model.fit import train_churn_models
    from churn.report.inputs import ReportPaths
    from churn.stages.report import run_report
    from churn.stages.score import run_score
    from churn.stages.train import run_train

    extract = _crm_export(1200, seed=3)
    params = _entity_params(allow_personal_columns=["contact_name", "email", "phone"])
    validated, labels = _ingest_and_label(tmp_path, extract, params)
    features, catalog = tmp_path / "features.parquet", tmp_path / "reports" / "catalog.csv"
    run_features(params, validated, labels, features, catalog)
    model_dir = tmp_path / "models" / "churn"
    if with_mlflow:
        run_train(
            params,
            features,
            model_dir,
            tmp_path / "reports" / "train.json",
            catalog,
            challenger_dir=tmp_path / "models" / "challenger",
            model_record_path=tmp_path / "reports" / "model.json",
        )
    else:
        frame = pd.read_parquet(features)
        train_churn_models(frame, pd.read_csv(catalog, dtype=str), params).model.save(model_dir)
    scores = tmp_path / "scores" / "scores.parquet"
    run_score(params, validated, str(model_dir), scores, None)
    report = tmp_path / "reports" / "index.html"
    reports = tmp_path / "reports"
    paths = ReportPaths(
        ingest_report=reports / "ingest.json",
        train_report=reports / "train.json",
        model_record=reports / "model.json",
        metrics=reports / "metrics.json",
        plots_dir=reports / "plots",
        explain_dir=reports / "explain",
        catalog=catalog,
        labels=labels,
        scores=scores,
        customers=validated / "customers.parquet",
    )
    run_report(params, paths, report)
    written = [*model_dir.rglob("*"), features, catalog, scores, report]
    if with_mlflow:
        written += [*(tmp_path / "mlruns").rglob("*"), *(tmp_path / "mlartifacts").rglob("*")]
        written.append(tmp_path / "mlflow.db")
    return extract, [path for path in written if path.is_file()]


def _assert_no_personal_value_written(extract: pd.DataFrame, written: list[Path]) -> None:
    secrets = [
        *extract["contact_name"],
        *extract["email"],
        *extract["phone"],
        *extract.loc[extract["notes"].str.contains("@"), "notes"],
    ]
    contents = b"".join(path.read_bytes() for path in written)
    assert len(contents) > 100_000  # the model, the scores and the report were really read
    leaked = [secret for secret in secrets if secret.encode() in contents]
    assert leaked == []


def test_personal_values_never_reach_artifact_or_report(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)

    extract, written = _run_allowed_pipeline(tmp_path, with_mlflow=False)

    frame = pd.read_parquet(tmp_path / "features.parquet")
    assert frame["email"].str.fullmatch(r"pii_[0-9a-f]{10}").all()
    assert frame["contact_name"].str.fullmatch(r"pii_[0-9a-f]{10}").all()
    assert frame["phone"].str.fullmatch(r"pii_[0-9a-f]{10}").all()
    assert frame["email"].nunique() == extract["email"].nunique()  # still a usable level
    hidden = frame["notes"].dropna().str.startswith("pii_")
    assert hidden.sum() == extract["notes"].str.contains("@").sum() == 30
    assert set(frame.loc[frame["notes"].notna(), "notes"][~hidden]) == set(NOTES) - {""}
    _assert_no_personal_value_written(extract, written)


@pytest.mark.slow
def test_personal_values_never_reach_mlflow(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.chdir(tmp_path)

    extract, written = _run_allowed_pipeline(tmp_path, with_mlflow=True)

    assert tmp_path / "mlflow.db" in written
    assert any(path.name == "input_example.json" for path in written)  # MLflow artifacts read
    _assert_no_personal_value_written(extract, written)
