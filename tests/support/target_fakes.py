"""Fake ``churn target`` outputs for the report tests (the contact list, curves, JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from churn.layout import CURVES_FILE, TARGETS_FILE


def write_fake_target_outputs(report_path: Path, targets_dir: Path,
                              customer_ids: list[str], seed: int = 0) -> None:
    """Write ``reports/target.json`` and a targets folder for ``customer_ids``."""
    rng = np.random.default_rng(seed)
    n = len(customer_ids)
    teams = np.array(["support", "success", "sales"])[np.arange(n) % 3]
    targets = pd.DataFrame({
        "customer_id": customer_ids,
        "play": np.where(teams == "support", "support_escalation", "adoption_session"),
        "team": teams,
        "churn_probability": rng.uniform(0.05, 0.6, n),
        "mrr": rng.uniform(50, 900, n),
        "save_rate": 0.25,
        "effect_source": "configured",
        "cost": 40.0,
        "reason_feature": "support_tickets_last_30d",
        "reason_behind_play": "3 support tickets opened in the last 30 days",
        "contact_rank": np.arange(1, n + 1),
        "next_decision_date": pd.Series(pd.NaT, index=range(n), dtype="datetime64[us, UTC]"),
    })
    targets["expected_value"] = np.sort(rng.uniform(10, 500, n))[::-1]
    targetsdir = Path(targets_dir)
    targetsdir.mkdir(parents=True, exist_ok=True)
    targets.to_parquet(targetsdir / TARGETS_FILE)
    curves = pd.concat([
        pd.DataFrame({"policy": policy, "contacts": np.arange(1, n + 1),
                      "cumulative_value": np.cumsum(rng.uniform(0, scale, n)),
                      "value": "expected_saved_revenue"})
        for policy, scale in (("expected_value", 100), ("top_probability", 40), ("random", 10))
    ], ignore_index=True)
    curves.to_parquet(targetsdir / CURVES_FILE)
    effect = {"play": "support_escalation", "segment": "addressed_high_dose",
              "save_rate": 0.21, "standard_error": 0.05, "source": "logged actions",
              "treated_rows": 400, "control_rows": 100, "dose_split": 0.3}
    Path(report_path).write_text(json.dumps({
        "contacts": n,
        "contacts_by_team": pd.Series(teams).value_counts().sort_index().to_dict(),
        "expected_value": float(targets["expected_value"].sum()),
        "effects": [effect],
        "policy_comparison": {
            "cutoff": "2025-05-01",
            "policies": [
                {"policy": "expected_value", "contacts": n, "true_saved_revenue": 900.0,
                 "true_net_value": 800.0},
                {"policy": "top_probability", "contacts": n, "true_saved_revenue": 300.0,
                 "true_net_value": 250.0},
            ],
            "ratio_vs_top_probability": 3.0,
            "ratio_vs_top_revenue_at_risk": 1.5,
            "effects_vs_truth": [{"within_2_se": True}, {"within_2_se": False}],
        },
    }))
