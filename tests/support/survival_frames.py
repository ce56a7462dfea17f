"""A tiny features frame with churn times drawn from a known hazard at decision dates.

Each row (customer, monthly cutoff) has one behavioural feature ``usage_score``, the billing
features ``days_to_renewal`` and ``billing_period`` (a quarter annual), and the labels' churn
time: at each decision inside 90 days the customer leaves with probability
``sigmoid(-3 + 1.5 * usage_score)``; ``observed_days`` is 90 for every row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churn.domain.catalog import validate_catalog_frame


def make_survival_frame(n_customers: int = 600, n_cutoffs: int = 8, seed: int = 0) -> pd.DataFrame:
    """Return the frame (see the module docstring), sorted by cutoff then customer."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_cutoffs):
        cutoff = pd.Timestamp("2024-01-01", tz="UTC") + pd.DateOffset(months=c)
        annual = rng.random(n_customers) < 0.25
        renewal = np.where(
            annual, rng.uniform(0, 365, n_customers), rng.uniform(0, 30, n_customers)
        )
        usage = rng.normal(size=n_customers)
        hazard = 1.0 / (1.0 + np.exp(3.0 - 1.5 * usage))
        churn = np.full(n_customers, np.nan)
        for i in range(n_customers):
            step = 365.0 if annual[i] else 30.4
            when = renewal[i]
            while when < 90 and np.isnan(churn[i]):
                if rng.random() < hazard[i]:
                    churn[i] = when
                when += step
        rows.append(
            pd.DataFrame(
                {
                    "customer_id": [str(1000 + i) for i in range(n_customers)],
                    "cutoff": cutoff,
                    "usage_score": usage,
                    "days_to_renewal": renewal,
                    "billing_period": np.where(annual, "annual", "monthly"),
                    "days_to_churn": churn,
                    "observed_days": pd.array([90] * n_customers, dtype="Int64"),
                }
            )
        )
    frame = pd.concat(rows, ignore_index=True)
    frame["cutoff"] = frame["cutoff"].astype("datetime64[us, UTC]")
    frame.insert(2, "label", pd.array((frame["days_to_churn"] < 60).astype(int), dtype="Int8"))
    return frame


def survival_catalog() -> pd.DataFrame:
    """The catalog of :func:`make_survival_frame`'s features."""
    return validate_catalog_frame(
        pd.DataFrame(
            {
                "name": ["usage_score", "days_to_renewal", "billing_period"],
                "family": ["usage", "billing", "billing"],
                "phase": ["post_sale", "post_sale", "post_sale"],
                "kind": ["numeric", "numeric", "categorical"],
                "unit": ["points", "days", ""],
                "description": [
                    "usage score",
                    "days until the next renewal date",
                    "billing period",
                ],
            }
        ),
        "survival catalog",
    )


def save_model_with_head(folder, n_customers: int = 300):
    """Fit a classifier and its survival head on :func:`make_survival_frame`; save both.

    Returns:
        ``(test rows without outcomes, params)``; ``folder`` then holds an export folder like
        ``churn train`` writes (classifier, head, manifest).
    """
    from churn.config import parse_params
    from churn.model.fit import build_lgb_params, fit_churn_model
    from churn.model.survival import fit_survival_head
    from churn.model.verification import write_manifest

    params = parse_params(
        {"train": {"n_estimators": 30, "min_child_samples": 20, "num_threads": 1}}
    )
    frame = make_survival_frame(n_customers=n_customers, n_cutoffs=8)
    cutoffs = sorted(frame["cutoff"].unique())
    train = frame[frame["cutoff"].isin(cutoffs[:5])]
    validation = frame[frame["cutoff"] == cutoffs[5]]
    test = frame[frame["cutoff"] == cutoffs[7]].drop(columns=["label", "days_to_churn"])
    columns = ["customer_id", "cutoff", "label", "usage_score", "days_to_renewal", "billing_period"]
    model = fit_churn_model(train[columns], validation[columns], survival_catalog(), params.train)
    head = fit_survival_head(
        train,
        validation,
        list(model.feature_names),
        list(model.categorical_features),
        params.train,
        params.label,
        build_lgb_params(params.train),
    )
    model.save(folder)
    head.save(folder)
    write_manifest(folder)
    return test.reset_index(drop=True), params
