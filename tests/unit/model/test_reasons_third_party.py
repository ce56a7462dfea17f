"""Reasons on a third-party-shaped export: integer ids and codes, other column names.

A telecom CRM extract in entity mode: integer customer ids, a ``Contract`` column holding
integer codes, ``tenure`` in months, a high-cardinality ``campaign`` code. Reasons must never
name contract timing (by the catalog's name rule), must not repeat the typical contract, and
must speak of rates for categorical codes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.config import Params
from churn.domain.catalog import FeatureSpec, catalog_frame, slug
from churn.model.fit import fit_churn_model
from churn.model.pooling import POOLED_LEVEL
from churn.model.scoring import score_frame

REASONS = 3


def _telecom_extract(seed: int = 0, n: int = 3000) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    cutoffs = pd.to_datetime(["2025-01-01", "2025-04-01", "2025-07-01"], utc=True)
    contract = rng.choice([0, 1, 2], n, p=[0.55, 0.25, 0.2])  # month-to-month, 1y, 2y codes
    campaign = rng.integers(1000, 1150, n)  # 150 integer campaign codes, most of them rare
    calls = rng.poisson(1.0, n).astype(float)
    tenure = rng.integers(1, 72, n).astype(float)
    payment = rng.choice([1, 2, 3, 4], n)  # integer payment-method codes; 1 churns more
    logit = -2.2 + 1.4 * (contract == 0) + 0.6 * calls - 0.02 * tenure + 0.9 * (payment == 1)
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int8")
    columns = {"Contract": "categorical", "campaign": "categorical", "PaymentMethod": "categorical",
               "TechSupportCalls": "numeric", "tenure": "numeric"}
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(n) + 70000,  # integer ids
            "cutoff": np.repeat(cutoffs.to_numpy(), -(-n // 3))[:n],
            "label": pd.array(label, dtype="Int8"),
            slug("Contract"): pd.array(contract.astype(str), dtype="str"),
            slug("campaign"): pd.array(campaign.astype(str), dtype="str"),
            slug("PaymentMethod"): pd.array(payment.astype(str), dtype="str"),
            slug("TechSupportCalls"): calls,
            slug("tenure"): tenure,
        }
    )
    frame["cutoff"] = frame["cutoff"].astype("datetime64[us, UTC]")
    units = {"techsupportcalls": "calls", "tenure": "months"}
    specs = [
        # As the profile family builds them: the column name in words, no explicit eligibility.
        FeatureSpec(slug(c), "profile", "post_sale", kind, units.get(slug(c), ""),
                    c.lower() if slug(c) != "techsupportcalls" else "calls to tech support")
        for c, kind in columns.items()
    ]
    return frame, catalog_frame(specs)


@pytest.fixture(scope="module")
def fitted():
    frame, catalog = _telecom_extract()
    params = Params.model_validate(
        {"train": {"min_category_count": 30, "n_estimators": 60, "num_threads": 1}}
    )
    train = frame[frame["cutoff"] < frame["cutoff"].max()]
    validation = frame[frame["cutoff"] == frame["cutoff"].max()]
    return frame, catalog, fit_churn_model(train, validation, catalog, params.train)


def test_timing_columns_are_ineligible_by_name(fitted):
    _, catalog, _ = fitted
    eligible = dict(zip(catalog["name"], catalog["reason_eligible"], strict=True))
    assert eligible == {"contract": False, "campaign": True, "paymentmethod": True,
                        "techsupportcalls": True, "tenure": False}


def test_reasons_on_a_telecom_extract_name_behaviour_with_rates(fitted):
    frame, _, model = fitted
    scores = score_frame(model, frame, REASONS)
    assert scores["customer_id"].tolist() == frame["customer_id"].tolist()  # integer ids kept
    features = scores[[f"reason_{i}_feature" for i in range(1, REASONS + 1)]]
    assert not features.isin(["contract", "tenure"]).any().any()
    texts = scores[[f"reason_{i}_text" for i in range(1, REASONS + 1)]].stack()
    assert not texts.str.contains("(typical: 0)", regex=False).any()
    payment = texts[texts.str.startswith("paymentmethod is")]
    assert len(payment) and payment.str.contains(r"leave \d", regex=True).all()
    # Code 1 churns most: it is the most frequent payment reason, with a ratio above 1.
    assert payment.str.startswith("paymentmethod is 1: customers with it leave 1.").mean() > 0.5
    calls = texts[texts.str.contains("calls to tech support|call to tech support")]
    # The typical customer makes 1 call, so "1 call" is never a reason; more read plural.
    assert model.typical_values["techsupportcalls"] == 1.0
    assert len(calls) and not calls.str.startswith("1 ").any()
    assert calls.str.match(r"^\d+ calls to tech support; a typical customer has 1$").all()


def test_integer_campaign_codes_are_pooled_and_unseen_codes_join_them(fitted):
    frame, _, model = fitted
    levels = model.categorical_levels["campaign"]
    assert levels[-1] == POOLED_LEVEL
    counts = frame[frame["cutoff"] < frame["cutoff"].max()]["campaign"].value_counts()
    assert set(levels[:-1]) == set(counts[counts >= 30].index)  # naive count
    row = frame.head(1)
    rare = counts[counts < 30].index[0]
    assert model.predict_proba(row.assign(campaign="99999")) == pytest.approx(
        model.predict_proba(row.assign(campaign=rare))
    )
