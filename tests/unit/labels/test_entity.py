"""Entity-mode labels: one CRM table, its own churned flag, one cutoff."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from churn.errors import DataContractError, EmptyPopulationError
from churn.labels.build import LABEL_COLUMNS
from churn.labels.entity import build_entity_labels


def test_entity_labels() -> None:
    customers = pd.DataFrame(
        {
            "customer_id": pd.Series(["a", "b"], dtype="str"),
            "churned": pd.array([1, 0], dtype="Int64"),
            "mrr": [10.0, 20.0],
            "tenure": [12.4, 300.0],
            "age": [30, 40],
        }
    )
    labels = build_entity_labels(customers, "churned", dt.date(2025, 1, 1))
    assert list(labels.columns) == list(LABEL_COLUMNS)
    assert labels["label"].tolist() == [1, 0] and labels["label"].dtype == "Int8"
    assert (labels["cutoff"] == pd.Timestamp("2025-01-01", tz="UTC")).all()
    assert labels["tenure_days"].tolist() == [12, 300]
    assert labels["plan"].isna().all() and labels["plan"].dtype == "str"
    with pytest.raises(DataContractError):
        build_entity_labels(customers, "label", dt.date(2025, 1, 1))


def test_entity_labels_of_a_crm_export() -> None:
    """Integer ids, a float flag, ``tenure_days`` over ``tenure``, a cutoff inside a day."""
    customers = pd.DataFrame(
        {
            "customer_id": [1001, 1002, 1003],
            "Exited": [0.0, 1.0, 0.0],
            "tenure_days": [5, 40, 700],
            "tenure": [99, 99, 99],  # tenure_days wins
            "plan": ["basic", "pro", "basic"],
            "billing_period": ["monthly", "annual", "monthly"],
        },
        index=[7, 3, 9],  # an index from a filtered export: the rows stay in order
    )
    labels = build_entity_labels(customers, "Exited", pd.Timestamp("2025-03-04 17:30", tz="UTC"))
    assert labels["customer_id"].tolist() == ["1001", "1002", "1003"]
    assert labels["label"].tolist() == [0, 1, 0]
    assert labels["tenure_days"].tolist() == [5, 40, 700]
    assert labels["plan"].tolist() == ["basic", "pro", "basic"]
    assert labels["billing_period"].tolist() == ["monthly", "annual", "monthly"]
    # The cutoff is the day of as_of at midnight UTC, the same for every row.
    assert labels["cutoff"].unique().tolist() == [pd.Timestamp("2025-03-04", tz="UTC")]
    # No dates in entity mode: no churn time, no observation window.
    assert labels["days_to_churn"].isna().all() and labels["observed_days"].isna().all()
    assert labels["mrr"].isna().all() and labels.index.tolist() == [0, 1, 2]


def test_entity_labels_without_tenure_are_unknown() -> None:
    customers = pd.DataFrame({"customer_id": ["x"], "churned": [1]})
    labels = build_entity_labels(customers, "churned", dt.date(2025, 1, 1))
    assert labels["tenure_days"].dtype == "Int64" and labels["tenure_days"].isna().all()


@pytest.mark.parametrize(
    "values",
    [
        [1, 2],  # a count, not a flag
        [1, np.nan],  # a missing label
        ["yes", "no"],  # text the value mapping should have coded
    ],
)
def test_entity_labels_other_than_0_and_1_stop(values: list[object]) -> None:
    customers = pd.DataFrame({"customer_id": ["a", "b"], "churned": values})
    with pytest.raises(DataContractError, match="'churned' must hold only 0 and 1"):
        build_entity_labels(customers, "churned", dt.date(2025, 1, 1))


def test_entity_labels_of_no_customers_stop() -> None:
    customers = pd.DataFrame({"customer_id": pd.Series([], dtype="str"), "churned": []})
    with pytest.raises(EmptyPopulationError, match="customer table is empty"):
        build_entity_labels(customers, "churned", dt.date(2025, 1, 1))


def test_entity_labels_name_the_missing_label_column() -> None:
    customers = pd.DataFrame({"customer_id": ["a"], "Churn": [0]})
    with pytest.raises(DataContractError, match=r"'churned'.*set ingest.label_column"):
        build_entity_labels(customers, "churned", dt.date(2025, 1, 1))
