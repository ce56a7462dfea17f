"""Tiny fake pipeline outputs for the report tests, written in the real on-disk layout.

Shapes follow docs/architecture.md and dvc.yaml: JSON reports, plot CSVs, explanation PNGs and
tables under ``reports/``, labels and scores Parquet under ``data/``. One customer id and one
reason text are hostile HTML so the tests can check that the report escapes them.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from churn.domain.families import FAMILIES
from churn.report.inputs import ReportPaths
from support.monitor_fakes import make_monitor_record
from support.target_fakes import write_fake_target_outputs

EVIL_ID = '"><img src=x onerror=alert(1)><script>alert("pwned")</script>'
EVIL_REASON = "<b>4 support tickets</b> & <script>document.title='x'</script>"


def png_bytes(title: str) -> bytes:
    """A small real PNG drawn with matplotlib."""
    fig = Figure(figsize=(3, 2), dpi=60)
    ax = fig.add_subplot()
    ax.plot([0, 1, 2], [1, 0, 2])
    ax.set_title(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_fake_outputs(root: Path, seed: int = 0) -> dict[str, Path]:
    """Write a complete set of fake pipeline outputs under ``root``.

    Returns:
        The keyword arguments of :func:`churn.stages.report.run_report` but ``params``:
        ``inputs_paths`` (a :class:`churn.report.inputs.ReportPaths`, whose customers table
        holds the acquisition channel) and ``out_path``.
    """
    rng = np.random.default_rng(seed)
    reports, data = root / "reports", root / "data"
    for directory in (
        reports / "plots",
        reports / "explain",
        data / "labels",
        data / "scores",
        data / "validated",
    ):
        directory.mkdir(parents=True, exist_ok=True)

    n = 240
    ids = [f"c{i:04d}" for i in range(n - 1)] + [EVIL_ID]
    cutoffs = pd.date_range("2025-01-01", periods=6, freq="MS", tz="UTC").astype(
        "datetime64[us, UTC]"
    )
    plans = rng.choice(["starter", "pro", "business"], n)
    labels = pd.DataFrame(
        {
            "customer_id": np.tile(ids, len(cutoffs)),
            "cutoff": np.repeat(cutoffs, n),
            "label": pd.array(
                np.where(np.repeat(np.arange(len(cutoffs)), n) >= 4, -1, rng.random(n * 6) < 0.12),
                dtype="Int8",
            ),
            "mrr": np.tile(rng.choice([49.0, 199.0, 799.0], n), len(cutoffs)),
            "plan": np.tile(plans, len(cutoffs)),
            "billing_period": np.tile(rng.choice(["monthly", "annual"], n), len(cutoffs)),
            "tenure_days": np.tile(rng.integers(10, 900, n), len(cutoffs)),
        }
    )
    labels["label"] = labels["label"].mask(labels["label"] == -1)
    labels.to_parquet(data / "labels" / "labels.parquet", index=False)

    prob = np.clip(rng.beta(1.2, 8, n), 0.001, 0.999)
    prob[-1] = 0.97  # the hostile id leads the at-risk list
    mrr = labels["mrr"].to_numpy()[:n].copy()
    mrr[-1] = 799.0
    scores = pd.DataFrame(
        {
            "customer_id": ids,
            "cutoff": cutoffs[-1],
            "churn_probability": prob,
            "risk_decile": pd.qcut(prob, 10, labels=False) + 1,
            "mrr": mrr,
            "expected_revenue_at_risk": prob * 12 * mrr,  # a year of revenue, as churn.score
        }
    )
    for i in (1, 2, 3):
        scores[f"reason_{i}_feature"] = "support_tickets_last_30d"
        scores[f"reason_{i}_value"] = float(i)
        scores[f"reason_{i}_contribution"] = 0.5 / i
        scores[f"reason_{i}_text"] = f"{i} support tickets in the last 30 days; typical is 0"
    scores.loc[n - 1, "reason_1_text"] = EVIL_REASON
    shares = rng.dirichlet(np.ones(len(FAMILIES)), n)
    for j, family in enumerate(FAMILIES):
        scores[f"risk_share_{family}"] = shares[:, j]
    scores["risk_share_pre_sale"] = shares[:, 0]
    scores["risk_share_post_sale"] = 1 - shares[:, 0]
    # The survival head's columns (docs/survival.md): risk non-decreasing in the horizon.
    for horizon, factor in ((30, 0.6), (60, 1.0), (90, 1.3)):
        scores[f"churn_probability_{horizon}d"] = np.minimum(prob * factor, 1.0)
    scores["next_decision_date"] = cutoffs[-1] + pd.to_timedelta(rng.integers(0, 365, n), "D")
    scores = scores.sort_values("expected_revenue_at_risk", ascending=False)
    scores.to_parquet(data / "scores" / "scores.parquet", index=False)

    previous = np.clip(prob + rng.normal(0, 0.08, n), 0, 1)
    changes = pd.DataFrame(
        {
            "customer_id": ids,
            "status": ["continuing"] * (n - 2) + ["new", "gone"],
            "churn_probability": prob,
            "previous_probability": previous,
            "probability_change": prob - previous,
            "moved_1_feature": "active_days_last_30d",
            "moved_1_delta": 0.4,
            "moved_2_feature": "support_tickets_last_30d",
            "moved_2_delta": -0.1,
        }
    )
    changes.loc[n - 2, ["previous_probability", "probability_change"]] = np.nan
    changes.to_parquet(data / "scores" / "scores_changes.parquet", index=False)
    pd.DataFrame(
        {"customer_id": ids, "acquisition_channel": rng.choice(["paid_search", "referral"], n)}
    ).to_parquet(data / "validated" / "customers.parquet", index=False)

    grid = np.linspace(0, 1, 11)
    pd.DataFrame({"fpr": grid, "tpr": np.sqrt(grid)}).to_csv(reports / "plots/roc.csv", index=False)
    pd.DataFrame({"recall": grid, "precision": 1 - 0.8 * grid}).to_csv(
        reports / "plots/precision_recall.csv", index=False
    )
    pd.DataFrame({"mean_predicted": grid[1:] / 2, "fraction_positive": grid[1:] / 2.1}).to_csv(
        reports / "plots/calibration.csv", index=False
    )
    pd.DataFrame({"fraction_customers": grid, "fraction_churners_captured": grid**0.4}).to_csv(
        reports / "plots/gains.csv", index=False
    )

    # Shapes as churn.evaluate, churn.train and churn.stages.ingest write them.
    test = {
        "n": 240,
        "positives": 29,
        "roc_auc": 0.81,
        "pr_auc": 0.42,
        "brier": 0.08,
        "log_loss": 0.29,
        "base_rate": 0.12,
        "ece": 0.012,
        "lift_top_decile": 3.4,
        "capture_top_decile": 0.34,
        "revenue_capture_top_decile": 0.38,
        "lift_at": {"5": 4.1, "10": 3.4, "20": 2.5},
        "capture_at": {"5": 0.2, "10": 0.34, "20": 0.5},
        "oracle_roc_auc": 0.86,
        "oracle_lift_top_decile": 4.0,
        "roc_auc_ratio_to_oracle": 0.94,
    }
    metrics = {
        "split": {"mode": "time", "test_cutoffs": ["2025-04-01"], "n_test": 240},
        "test": test,
        "baseline": {
            "test": {
                "roc_auc": 0.66,
                "pr_auc": 0.21,
                "brier": 0.1,
                "ece": 0.03,
                "log_loss": 0.35,
                "lift_top_decile": 1.9,
                "lift_at": {"5": 2.0, "10": 1.9, "20": 1.6},
            }
        },
        "segments": {
            "plan": {"pro": {"n": 80, "positives": 9, "roc_auc": 0.8, "baseline_roc_auc": 0.7}}
        },
        "notes": ["segment 'acquisition_channel' skipped: not a column of the features frame"],
        "backtest": [
            {"cutoff": "2025-02-01", "skipped": "the validation cutoff holds a single class"},
            {
                "cutoff": "2025-03-01",
                "n_train": 480,
                "n_test": 238,
                "positives": 27,
                "roc_auc": 0.82,
                "pr_auc": 0.43,
                "lift_top_decile": 3.1,
                "baseline_roc_auc": 0.65,
            },
        ],
    }
    (reports / "metrics.json").write_text(json.dumps(metrics))
    train = {
        "split": {
            "mode": "time",
            "sizes": {"train": 480, "validation": 240, "test": 240},
            "cutoffs": {
                "train": ["2025-01-01", "2025-02-01"],
                "validation": ["2025-03-01"],
                "test": ["2025-04-01"],
            },
            "removed_rows": {},
            "notes": ["2 cutoffs purged between validation and test (label horizon)"],
        },
        "metrics": {
            "validation": {"n": 240, "positives": 30, "roc_auc": 0.8},
            "test": {"n": 240, "positives": 29, "roc_auc": 0.81},
        },
        "best_iteration": 57,
        "registry": {
            "run_id": "0123abcd",
            "registered_model_name": "churn",
            "model_version": "3",
            "alias": "champion",
            "gate": {
                "alias": "champion",
                "outcome": "promoted",
                "reason": "test pr_auc 0.4200 beats champion v2 (0.4000) by more than 0.0",
                "metric": "pr_auc",
                "new_score": 0.42,
                "champion_score": 0.40,
                "champion_version": "2",
            },
        },
    }
    (reports / "train.json").write_text(json.dumps(train))
    model = {
        "registered_model_name": "churn",
        "version": "3",
        "run_id": "0123abcd",
        "model_uri": "models:/churn/3",
        "alias": "champion",
        "promoted": True,
        "trained_version": "3",
        "trained_run_id": "0123abcd",
        "challenger_version": None,
        "gate_outcome": "promoted",
        "gate_reason": "test pr_auc 0.4200 beats champion v2 (0.4000) by more than 0.0",
    }
    (reports / "model.json").write_text(json.dumps(model))
    ingest = {
        "as_of": "2025-06-30",
        "mode": "events",
        "tables": {
            "customers": {
                "present": True,
                "rows_in": 250,
                "rows_valid": 240,
                "rows_quarantined": 10,
                "quarantined_share": 0.04,
                "rules": {
                    "customer_id:unique": {"count": 6},
                    "converted_at:not_null": {"count": 4},
                },
            },
            "subscriptions": {
                "present": True,
                "rows_in": 300,
                "rows_valid": 300,
                "rows_quarantined": 0,
                "quarantined_share": 0.0,
                "rules": {},
            },
            "nps_responses": {"present": False},
        },
    }
    (reports / "ingest.json").write_text(json.dumps(ingest))
    # Shape as churn.stages.check_data.check_data writes it (reports/data_check.json).
    data_check = {
        "mode": "events",
        "as_of": "2025-06-30",
        "data_end": "2025-06-30T23:59:59+00:00",
        "customers": 240,
        "tables": {
            "customers": {
                "present": True,
                "required": True,
                "rows": 240,
                "time_column": "converted_at",
                "first": "2023-01-04T00:00:00+00:00",
                "last": "2025-06-28T00:00:00+00:00",
                "coverage": 1.0,
                "ignored_columns": ["crm_owner", EVIL_REASON],
            },
            "subscriptions": {
                "present": True,
                "required": True,
                "rows": 300,
                "time_column": "started_at",
                "first": "2023-01-04T00:00:00+00:00",
                "last": "2025-06-28T00:00:00+00:00",
                "coverage": 0.975,
                "ignored_columns": [],
            },
            "nps_responses": {"present": False, "required": False},
        },
        "cutoffs": [
            {
                "cutoff": "2025-05-01",
                "population": 230,
                "labeled": True,
                "churners": 23,
                "churn_rate": 0.1,
                "unlabeled_reason": None,
            },
            {
                "cutoff": "2025-06-01",
                "population": 240,
                "labeled": False,
                "churners": None,
                "churn_rate": None,
                "unlabeled_reason": "horizon 60 d + grace 14 d runs to 2025-08-14, past the "
                "data end 2025-06-30",
            },
        ],
        "labeled_cutoffs": 1,
        "unlabeled_cutoffs": 1,
        "cutoff_problem": None,
        "label_problems": [],
        "families": {
            "acquisition": {"runs": True, "reason": None},
            "engagement": {
                "runs": False,
                "reason": "none of the tables postsale_touchpoints, nps_responses is present",
            },
        },
    }
    (reports / "data_check.json").write_text(json.dumps(data_check))
    (reports / "monitor.json").write_text(json.dumps(make_monitor_record()))
    catalog = pd.DataFrame(
        [
            (
                "support_tickets_last_30d",
                "support",
                "post_sale",
                "numeric",
                "tickets",
                "support tickets opened in the last 30 days",
            ),
            (
                "active_days_last_30d",
                "usage",
                "post_sale",
                "numeric",
                "days",
                "days with product activity in the last 30 days",
            ),
            (
                "acquisition_channel",
                "acquisition",
                "pre_sale",
                "categorical",
                "",
                "acquisition channel",
            ),
        ],
        columns=["name", "family", "phase", "kind", "unit", "description"],
    )
    catalog.to_csv(reports / "feature_catalog.csv", index=False)
    explain = reports / "explain"
    for name in (
        "shap_beeswarm",
        "importance_features",
        "importance_families",
        "importance_phases",
        "dependence_support_tickets_last_30d",
    ):
        (explain / f"{name}.png").write_bytes(png_bytes(name))
    pd.DataFrame(
        {
            "feature": catalog["name"],
            "family": catalog["family"],
            "phase": catalog["phase"],
            "mean_abs_shap": [0.3, 0.2, 0.1],
            "share": [0.5, 0.33, 0.17],
        }
    ).to_csv(explain / "global_importance.csv", index=False)
    pd.DataFrame(
        {
            "family": ["support", "usage", "acquisition"],
            "mean_abs_shap": [0.3, 0.2, 0.1],
            "share": [0.5, 0.33, 0.17],
        }
    ).to_csv(explain / "family_importance.csv", index=False)
    pd.DataFrame(
        {"phase": ["post_sale", "pre_sale"], "mean_abs_shap": [0.5, 0.1], "share": [0.83, 0.17]}
    ).to_csv(explain / "phase_importance.csv", index=False)
    (explain / "explain.json").write_text(json.dumps({"rows_explained": 240}))
    write_fake_target_outputs(reports / "target.json", data / "targets",
                              [str(i) for i in scores["customer_id"].head(12)], seed)
    return {
        "inputs_paths": ReportPaths(
            ingest_report=reports / "ingest.json",
            train_report=reports / "train.json",
            model_record=reports / "model.json",
            metrics=reports / "metrics.json",
            plots_dir=reports / "plots",
            explain_dir=reports / "explain",
            catalog=reports / "feature_catalog.csv",
            labels=data / "labels" / "labels.parquet",
            scores=data / "scores" / "scores.parquet",
            customers=data / "validated" / "customers.parquet",
            data_check=reports / "data_check.json",
            monitor=reports / "monitor.json",
            target_report=reports / "target.json",
            targets_dir=data / "targets",
        ),
        "out_path": reports / "index.html",
    }
