"""Labels of entity mode: one row per customer at one cutoff, the label given in the data.

Entity mode (``ingest.mode: entity``) reads a single customer table (a CRM export with a
churned flag) instead of subscriptions: there is no schedule, no population SQL and no churn
time, so these labels share nothing with :mod:`churn.labels.build` but the columns
(:data:`~churn.labels.build.LABEL_COLUMNS`).
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from churn.domain.contract import TIMESTAMP_DTYPE
from churn.errors import DataContractError, EmptyPopulationError
from churn.sql import utc_timestamp


def build_entity_labels(
    customers: pd.DataFrame, label_column: str, as_of: pd.Timestamp | dt.date
) -> pd.DataFrame:
    """Build the labels frame of entity mode: one row per customer at one constant cutoff.

    Args:
        customers: The validated customer table with the label column.
        label_column: Name of the 0/1 label column.
        as_of: The cutoff (its date, at midnight UTC).

    Returns:
        A labels frame. ``mrr``, ``plan``, ``billing_period`` and ``tenure_days`` come from
        same-named columns when present (``tenure`` is accepted for ``tenure_days``), else they
        are missing; ``tenure_days`` is nullable ``Int64`` here because it may be unknown.

    Raises:
        DataContractError: If the label column is missing or holds values other than 0/1.
        EmptyPopulationError: If there are no customers.
    """
    if label_column not in customers.columns:
        raise DataContractError(
            f"entity mode: the label column {label_column!r} is not in the customer table "
            f"(columns: {list(customers.columns)}); set ingest.label_column"
        )
    if customers.empty:
        raise EmptyPopulationError("entity mode: the customer table is empty")
    customers = customers.reset_index(drop=True)
    label = pd.to_numeric(customers[label_column].astype("object"), errors="coerce")
    if not label.isin([0, 1]).all():  # missing values fail too
        raise DataContractError(
            f"entity mode: the label column {label_column!r} must hold only 0 and 1"
        )
    cutoff = utc_timestamp(pd.Timestamp(as_of).normalize()).as_unit("us")
    tenure_source = next((c for c in ("tenure_days", "tenure") if c in customers.columns), None)
    if tenure_source is None:
        tenure = pd.Series(pd.NA, index=customers.index, dtype="Int64")
    else:
        tenure = pd.to_numeric(customers[tenure_source], errors="coerce").round().astype("Int64")
    missing_text = pd.Series(None, index=customers.index, dtype="str")
    return pd.DataFrame(
        {
            "customer_id": customers["customer_id"].astype("str"),
            "cutoff": pd.Series(cutoff, index=customers.index, dtype=TIMESTAMP_DTYPE),
            "label": label.astype("Int8"),
            "mrr": (
                pd.to_numeric(customers["mrr"], errors="coerce").astype("float64")
                if "mrr" in customers.columns
                else pd.Series(float("nan"), index=customers.index)
            ),
            "plan": customers["plan"].astype("str") if "plan" in customers else missing_text,
            "billing_period": (
                customers["billing_period"].astype("str")
                if "billing_period" in customers
                else missing_text
            ),
            "tenure_days": tenure,
            # Entity mode has no dates: no churn time, the survival head falls back to the
            # classifier (docs/survival.md).
            "days_to_churn": pd.Series(float("nan"), index=customers.index),
            "observed_days": pd.Series(pd.NA, index=customers.index, dtype="Int64"),
        }
    )
