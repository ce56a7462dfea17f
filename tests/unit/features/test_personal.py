"""Tests for churn.features.personal: which columns and values count as personal data."""

from __future__ import annotations

import hashlib

import duckdb
import numpy as np
import pandas as pd
import pytest

from churn.errors import DataContractError
from churn.features.personal import (
    find_personal_columns,
    looks_personal,
    personal_name_reason,
    pseudonymize_sql,
    refuse_personal_columns,
    split_words,
)

PERSONAL_NAMES = [
    "email",
    "E_Mail",
    "ContactEmail",
    "email_address",
    "contact_name",
    "first_name",
    "LastName",
    "Surname",
    "name",
    "street_address",
    "Street",
    "zip",
    "PostCode",
    "postal_code",
    "ssn",
    "IBAN",
    "phone",
    "phone_number",
    "MobileNumber",
    "date_of_birth",
]
ORDINARY_NAMES = [
    "plan_name",
    "PhoneService",
    "mobile_app_sessions",
    "campaign",
    "segment",
    "tenure_months",
    "MonthlyCharges",
    "Contract",
    "country",
    "business_size",
    "PaymentMethod",
]


def test_split_words_handles_camel_case_and_separators() -> None:
    assert split_words("ContactEMail") == ["contact", "e", "mail"]
    assert split_words("Monthly Fee-2") == ["monthly", "fee", "2"]


@pytest.mark.parametrize("column", PERSONAL_NAMES)
def test_personal_column_names(column: str) -> None:
    assert personal_name_reason(column) is not None


@pytest.mark.parametrize("column", ORDINARY_NAMES)
def test_ordinary_column_names(column: str) -> None:
    assert personal_name_reason(column) is None


@pytest.mark.parametrize(
    ("value", "personal"),
    [
        ("jane.doe@example.com", True),
        ("write to Jane.Doe+crm@mail.example.co.uk please", True),
        ("+49 30 1234567", True),
        ("(555) 123-4567", True),
        ("555-123-4567", True),
        ("2024-01-15", False),  # a date, not a phone
        ("2024-01-15 10:00:00", False),
        ("1234567", False),  # a bare code
        ("12.5", False),
        ("Month-to-month", False),
        ("pro", False),
        ("user at example dot com", False),
    ],
)
def test_single_values(value: str, personal: bool) -> None:
    assert looks_personal(value) is personal


def test_duckdb_pseudonymisation_agrees_with_python() -> None:
    values = [
        "jane.doe@example.com",
        "note: bob@example.org",
        "+49 30 1234567",
        "(555) 123-4567",
        "2024-01-15",
        "1234567",
        "pro",
        "it's fine",
        None,
    ]
    frame = pd.DataFrame({"v": pd.Series(values, dtype="str")})
    con = duckdb.connect()
    con.register("t", frame)
    got = [row[0] for row in con.execute(f"SELECT {pseudonymize_sql('v')} FROM t").fetchall()]
    con.close()

    expected = [
        None
        if v is None
        else f"pii_{hashlib.md5(v.encode()).hexdigest()[:10]}"
        if looks_personal(v)
        else v
        for v in values
    ]
    assert got == expected
    assert sum(str(g).startswith("pii_") for g in got) == 4


def test_columns_are_personal_by_their_values() -> None:
    rng = np.random.default_rng(0)
    n = 200
    first = rng.choice(["Anna", "Ben", "Chloe", "David", "Emma", "Felix", "Ida", "Jonas"], n)
    last = rng.choice(["Miller", "Schmidt", "Garcia", "Rossi", "Nowak", "Silva", "Dubois"], n)
    frame = pd.DataFrame(
        {
            "contact": [f"{f.lower()}{i}@example.com" for i, f in enumerate(first)],
            "owner": [f"{f} {la}" for f, la in zip(first, last, strict=True)],
            "line": [f"+1 555 {1000000 + i}" for i in range(n)],
            "contract": rng.choice(["Month To Month", "One Year", "Two Year"], n),
            "notes": ["ok"] * (n - 10) + ["mail x@example.com"] * 10,
            "seats": rng.integers(1, 9, n),
            "code": [str(1000000 + i) for i in range(n)],
        }
    )

    found = find_personal_columns(frame, frame.columns)

    assert set(found) == {"contact", "owner", "line"}
    assert found["contact"] == "100% of its values are e-mail addresses"
    assert found["line"] == "100% of its values are phone numbers"
    assert found["owner"].startswith("100% of its values look like person names")


def test_refusal_names_each_column_and_honours_the_allow_list() -> None:
    frame = pd.DataFrame({"email": ["a@example.com"], "contact_name": ["A B"], "seats": [3]})

    with pytest.raises(DataContractError) as raised:
        refuse_personal_columns(frame, frame.columns, [], "customers")
    message = str(raised.value)
    assert "customers.email: its name contains 'email'" in message
    assert "customers.contact_name: its name contains 'contact name'" in message
    assert "seats" not in message

    allowed = refuse_personal_columns(frame, frame.columns, ["email", "contact_name"], "customers")
    assert allowed == ["email", "contact_name"]
