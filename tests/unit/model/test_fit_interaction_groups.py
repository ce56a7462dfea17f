"""Tests for the family-additive option of churn.model.fit (``train.interaction_groups``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from support.tiny import TINY_CATALOG, make_feature_frame

from churn.config import parse_params
from churn.model.fit import (
    build_family_interaction_groups,
    build_lgb_params,
    fit_churn_model,
)
from churn.model.split import split_by_time

FAST_TRAIN = {"min_child_samples": 20, "n_estimators": 60, "num_threads": 1, "max_depth": 4}


def _params(**train):
    return parse_params(
        {"label": {"horizon_days": 20, "grace_days": 5}, "train": {**FAST_TRAIN, **train}}
    )


def _catalog_with_timing() -> pd.DataFrame:
    timing = pd.DataFrame(
        [("days_to_renewal", "billing", "post_sale", "numeric", "days", "days to renewal")],
        columns=TINY_CATALOG.columns,
    )
    return pd.concat([TINY_CATALOG, timing], ignore_index=True)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    data = make_feature_frame(n_customers=500, n_cutoffs=5, seed=3)
    rng = np.random.default_rng(5)
    data["days_to_renewal"] = rng.integers(0, 365, len(data)).astype(float)
    return data


def test_groups_are_one_per_family_with_timing_features_in_every_group():
    # A third-party shaped catalog: other names, a contract column found ineligible by its name.
    catalog = pd.DataFrame(
        [
            ("monthly_charges", "billing", "post_sale", "numeric", "currency/month", "charges"),
            ("contract", "billing", "post_sale", "categorical", "", "contract"),
            ("logins_30", "usage", "post_sale", "numeric", "logins", "logins"),
            ("tickets_30", "support", "post_sale", "numeric", "tickets", "tickets"),
            ("seats", "usage", "post_sale", "numeric", "seats", "seats"),
        ],
        columns=TINY_CATALOG.columns,
    )
    groups = build_family_interaction_groups(catalog)
    assert groups == [[0, 1], [2, 4, 1], [3, 1]]
    params = build_lgb_params(_params().train, groups)
    assert params["interaction_constraints"] == groups
    assert "interaction_constraints" not in build_lgb_params(_params().train)


def _tree_feature_sets(model) -> list[set[int]]:
    """Naive reference: the split features of every tree of the dumped model."""
    def walk(node, found):
        if "split_feature" in node:
            found.add(node["split_feature"])
            walk(node["left_child"], found)
            walk(node["right_child"], found)
        return found

    return [walk(tree["tree_structure"], set()) for tree in model.booster.dump_model()["tree_info"]]


@pytest.mark.parametrize("mode", ["family", "none"])
def test_family_groups_keep_every_tree_inside_one_family(frame, mode):
    params = _params(interaction_groups=mode)
    split = split_by_time(frame, params.train, params.label)
    train, validation = frame.iloc[split.train], frame.iloc[split.validation]
    catalog = _catalog_with_timing()
    model = fit_churn_model(train, validation, catalog, params.train)
    groups = [set(g) for g in build_family_interaction_groups(catalog)]
    trees = _tree_feature_sets(model)
    mixed = [used for used in trees if not any(used <= group for group in groups)]
    if mode == "family":
        assert len(trees) > 5 and not mixed
        assert model.metadata["lgb_params"]["interaction_constraints"] == [
            [*sorted(g - {7}), 7] for g in groups
        ]
    else:  # without constraints these trees do mix families: the check above can fail
        assert mixed


def test_family_additive_model_sums_contributions_to_its_family_functions(frame):
    params = _params(interaction_groups="family")
    plain = frame.drop(columns=["days_to_renewal"])  # no timing: a plain sum of families
    split = split_by_time(plain, params.train, params.label)
    train, validation = plain.iloc[split.train], plain.iloc[split.validation]
    catalog = TINY_CATALOG
    model = fit_churn_model(train, validation, catalog, params.train)
    rows = validation.head(40)
    contributions, _ = model.contributions(rows)
    # Changing only support features moves only the support family's summed contribution.
    changed = rows.copy()
    changed["support_tickets_last_30d"] = changed["support_tickets_last_30d"] + 3
    after, _ = model.contributions(changed)
    families = catalog["family"].to_numpy()
    for family in set(families) - {"support"}:
        np.testing.assert_allclose(
            after[:, families == family].sum(axis=1),
            contributions[:, families == family].sum(axis=1),
            atol=1e-9,
        )
    moved = after[:, families == "support"].sum(axis=1) - contributions[
        :, families == "support"
    ].sum(axis=1)
    raw_moved = model.predict_raw(changed) - model.predict_raw(rows)
    np.testing.assert_allclose(moved, raw_moved, atol=1e-9)
    assert np.abs(raw_moved).max() > 0.01  # support matters to this model
