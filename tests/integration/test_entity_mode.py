"""Entity-level mode end to end: one CRM/telecom-style customer table with a churn label.

The table flows through the real runners (ingest -> label -> features -> train -> score) with a
real MLflow sqlite store, as `dvc repro` would run them with `ingest.mode: entity`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.config import parse_params
from churn.stages.features import run_features
from churn.stages.ingest import run_ingest
from churn.stages.label import run_label
from churn.stages.score import run_score
from churn.stages.train import run_train

pytestmark = pytest.mark.slow


def _telecom_extract(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, n)
    charges = rng.uniform(20, 120, n).round(2)
    contract = rng.choice(["Month-to-month", "One year", "Two year"], n, p=[0.55, 0.25, 0.2])
    calls = rng.poisson(1.5, n)
    logit = -1.0 - 0.04 * tenure + 0.015 * charges + 0.5 * calls
    logit += np.where(contract == "Month-to-month", 1.2, -0.8)
    churned = rng.random(n) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "CustomerID": [f"T{i:05d}" for i in range(n)],
            "tenure_months": tenure,
            "MonthlyCharges": charges,
            "Contract": contract,
            "support_calls": calls,
            "Churn": np.where(churned, "Yes", "No"),
        }
    )


def test_entity_table_flows_through_training_and_scoring(tmp_path, monkeypatch):
    # The default store (sqlite:///mlflow.db in the working directory) is created on first use,
    # as in a fresh clone.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    raw = tmp_path / "raw"
    raw.mkdir()
    extract = _telecom_extract(3000, seed=3)
    # The export's own header names everything; only the id needs mapping, and the label
    # column is named as params say (ingest.label_column) with Yes/No values.
    extract.rename(columns={"Churn": "churned"}).to_csv(raw / "crm_export.csv", index=False)
    params = parse_params(
        {
            "ingest": {
                "mode": "entity",
                "as_of": "2026-01-31",
                "label_column": "churned",
                "tables": {
                    "customers": {
                        "file": "crm_export.csv",
                        "columns": {"customer_id": "CustomerID"},
                    }
                },
            },
            "train": {"num_threads": 1, "n_estimators": 100, "min_positives": 20},
        }
    )

    validated, quarantine = tmp_path / "validated", tmp_path / "quarantine"
    run_ingest(params.ingest, raw, validated, quarantine, tmp_path / "ingest.json")
    labels_path = tmp_path / "labels.parquet"
    run_label(params=params, validated_dir=validated, out_path=labels_path)
    labels = pd.read_parquet(labels_path)
    assert len(labels) == len(extract)
    assert labels["label"].sum() == (extract["Churn"] == "Yes").sum()

    features_path, catalog_path = tmp_path / "features.parquet", tmp_path / "catalog.csv"
    run_features(params, validated, labels_path, features_path, catalog_path)
    catalog = pd.read_csv(catalog_path)
    assert {"tenure_months", "monthlycharges", "contract", "support_calls"} <= set(
        catalog["name"].str.lower()
    )

    model_dir = tmp_path / "models" / "churn"
    run_train(
        params,
        features_path,
        model_dir,
        tmp_path / "train.json",
        catalog_path,
        challenger_dir=tmp_path / "models" / "challenger",
        model_record_path=tmp_path / "model.json",
    )
    assert (model_dir / "model.txt").exists()

    scores_path = tmp_path / "scores" / "scores.parquet"  # score swaps its folder in whole
    run_score(params, validated, str(model_dir), scores_path, None)
    scores = pd.read_parquet(scores_path)
    assert sorted(scores["customer_id"]) == sorted(extract["CustomerID"])
    assert scores["churn_probability"].between(0, 1).all()
    # The learned signal is real: churners rank above stayers on average.
    merged = scores.merge(extract, left_on="customer_id", right_on="CustomerID")
    by_label = merged.groupby("Churn")["churn_probability"].mean()
    assert by_label["Yes"] > by_label["No"]


def _telecom_export_with_codes(n: int, seed: int) -> pd.DataFrame:
    """A telecom CRM export as it comes: integer ids, "29,85" charges, blanks, Yes/No churn."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, n)
    charges = rng.uniform(20, 120, n).round(2)
    logit = -1.0 - 0.04 * tenure + 0.015 * charges
    churned = rng.random(n) < 1 / (1 + np.exp(-logit))
    total = [f"{c * max(t, 1):.2f}".replace(".", ",") for c, t in zip(charges, tenure, strict=True)]
    for i in np.flatnonzero(tenure == 0):
        total[i] = " "  # new customers: no total yet, a blank cell as in the public export
    return pd.DataFrame(
        {
            "customerID": np.arange(10_000, 10_000 + n, dtype="int64"),
            "tenure": tenure,
            "MonthlyCharges": [f"{c:.2f}".replace(".", ",") for c in charges],
            "TotalCharges": total,
            "Churn": np.where(churned, "Yes", "No"),
        }
    )


def test_entity_scores_fill_revenue_at_risk_from_a_mapped_revenue_column(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    raw = tmp_path / "raw"
    raw.mkdir()
    extract = _telecom_export_with_codes(2000, seed=5)
    assert (extract["TotalCharges"] == " ").any()
    extract.to_csv(raw / "telco.csv", index=False)
    params = parse_params(
        {
            "ingest": {
                "mode": "entity",
                "as_of": "2026-01-31",
                "label_column": "Churn",
                "tables": {
                    "customers": {
                        "file": "telco.csv",
                        "columns": {"customer_id": "customerID", "mrr": "MonthlyCharges"},
                    }
                },
            },
            "train": {"num_threads": 1, "n_estimators": 60, "min_positives": 20},
        }
    )

    validated, quarantine = tmp_path / "validated", tmp_path / "quarantine"
    result = run_ingest(params.ingest, raw, validated, quarantine, tmp_path / "ingest.json")
    assert result.report["rows_quarantined"] == 0
    customers = result.valid["customers"]
    assert str(customers["TotalCharges"].dtype) == "float64"
    assert customers["TotalCharges"].isna().sum() == (extract["TotalCharges"] == " ").sum()
    labels_path = tmp_path / "labels.parquet"
    run_label(params=params, validated_dir=validated, out_path=labels_path)
    features_path, catalog_path = tmp_path / "features.parquet", tmp_path / "catalog.csv"
    run_features(params, validated, labels_path, features_path, catalog_path)
    model_dir = tmp_path / "models" / "churn"
    run_train(
        params,
        features_path,
        model_dir,
        tmp_path / "train.json",
        catalog_path,
        challenger_dir=tmp_path / "models" / "challenger",
        model_record_path=tmp_path / "model.json",
    )

    scores_path = tmp_path / "scores" / "scores.parquet"
    run_score(params, validated, str(model_dir), scores_path, None)
    scores = pd.read_parquet(scores_path)

    assert sorted(scores["customer_id"]) == sorted(extract["customerID"].astype(str))
    assert (scores["expected_revenue_at_risk"] > 0).all()
    # Naive reference: probability * 12 months * the export's monthly charge.
    charge = extract.set_index(extract["customerID"].astype(str))["MonthlyCharges"]
    mrr = charge.str.replace(",", ".").astype(float).reindex(scores["customer_id"]).to_numpy()
    expected = scores["churn_probability"].to_numpy() * 12 * mrr
    np.testing.assert_allclose(scores["expected_revenue_at_risk"].to_numpy(), expected, rtol=1e-9)
