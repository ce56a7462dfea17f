"""Acquisition features: reference comparison on random data and hand-made cases."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from support import reference
from support.helpers import CFG, SEEDS, assert_family_matches, random_case, row
from support.synthetic import contract_frame, population

from churn.config import FeaturesConfig
from churn.errors import DataContractError
from churn.features.build import build_features


@pytest.mark.parametrize("seed", SEEDS)
def test_acquisition_matches_reference(seed: int) -> None:
    tables, keys, result = random_case(seed)
    assert_family_matches(result, reference.acquisition(tables, keys, CFG), "acquisition")


def test_acquisition_hand_made() -> None:
    customers = [
        {
            "customer_id": "a",
            "lead_created_at": "2024-01-01",
            "converted_at": "2024-01-11T12:00",
            "acquisition_channel": "referral",
            "segment": "smb",
            "trial_days": 14,
        },
        # Converts exactly at the cutoff: not a customer yet, nothing is known.
        {"customer_id": "b", "converted_at": "2024-06-01", "acquisition_channel": "partner"},
    ]
    touches = [
        {"customer_id": "a", "occurred_at": "2024-01-02", "touchpoint_type": "docs_view"},
        {"customer_id": "a", "occurred_at": "2024-01-03", "touchpoint_type": "help_center_view"},
        {"customer_id": "a", "occurred_at": "2024-01-04", "touchpoint_type": "demo"},
        {"customer_id": "a", "occurred_at": "2024-06-01", "touchpoint_type": "demo"},  # future
    ]
    usage = [
        {"customer_id": "a", "occurred_at": "2024-01-05", "event_type": "login", "quantity": 3.0},
        {"customer_id": "a", "occurred_at": "2024-01-05T08:00", "event_type": "login"},
        {"customer_id": "a", "occurred_at": "2024-01-11T12:00", "event_type": "login"},  # paid
    ]
    tables = {
        "customers": contract_frame("customers", customers),
        "presale_touchpoints": contract_frame("presale_touchpoints", touches),
        "usage_events": contract_frame("usage_events", usage),
    }
    result = build_features(tables, population([("a", "2024-06-01"), ("b", "2024-06-01")]), CFG)
    a = row(result, "a", "2024-06-01")
    assert a["acquisition_channel"] == "referral" and a["segment"] == "smb"
    assert pd.isna(a["campaign_stem"])
    assert a["days_lead_to_conversion"] == pytest.approx(10.5)
    assert a["trial_days"] == 14.0
    assert a["presale_demo_touches"] == 1.0
    assert a["docs_and_help_views_before_conversion"] == 2.0
    assert a["total_presale_touches"] == 3.0
    assert a["trial_usage_events"] == 4.0 and a["trial_active_days"] == 1.0
    b = row(result, "b", "2024-06-01")
    assert pd.isna(b["acquisition_channel"]) and math.isnan(b["total_presale_touches"])


def test_presale_touches_at_each_cutoff() -> None:
    """Touches before each cutoff, counted once per moment, for integer customer ids.

    The counts come from running counts over each customer's touches and an as-of join: two
    touches at the same moment both count from then on, a touch at the cutoff does not, and a
    touch stamped after the purchase counts at the cutoffs after it (the cutoff is the rule).
    """
    customers = [
        {"customer_id": 7, "converted_at": "2024-02-15"},
        {"customer_id": 8, "converted_at": "2024-01-01"},  # no touches at all
    ]
    touches = [
        {"customer_id": 7, "occurred_at": "2024-01-10", "touchpoint_type": "webinar"},
        {"customer_id": 7, "occurred_at": "2024-02-01", "touchpoint_type": "docs_view"},
        {"customer_id": 7, "occurred_at": "2024-02-01", "touchpoint_type": "demo"},
        {"customer_id": 7, "occurred_at": "2024-03-01", "touchpoint_type": "demo"},  # at a cutoff
        {"customer_id": 7, "occurred_at": None, "touchpoint_type": "demo"},  # never known
    ]
    tables = {
        "customers": contract_frame("customers", customers),
        "presale_touchpoints": contract_frame("presale_touchpoints", touches),
    }
    cutoffs = ("2024-03-01", "2024-04-01")
    result = build_features(tables, population([(c, t) for c in (7, 8) for t in cutoffs]), CFG)
    march, april = row(result, "7", "2024-03-01"), row(result, "7", "2024-04-01")
    assert march["total_presale_touches"] == 3.0 and april["total_presale_touches"] == 4.0
    assert march["presale_demo_touches"] == 1.0 and april["presale_demo_touches"] == 2.0
    assert march["presale_webinar_touches"] == 1.0
    assert march["docs_and_help_views_before_conversion"] == 1.0
    none = row(result, "8", "2024-03-01")
    assert none["total_presale_touches"] == 0.0 and none["presale_demo_touches"] == 0.0


def _trial_use_export() -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """A CRM-shaped export (integer ids) whose customers sit at each edge of trial use.

    Trial use reads only the customers whose first usage event (kept by the usage family)
    precedes their conversion, so the cases are where that first event lies: long before the
    bucket grid (prehistory), inside it, exactly at the conversion, after it, after the last
    cutoff, and none at all.
    """
    customers = [
        {"customer_id": 11, "converted_at": "2023-03-01"},  # trial use in the prehistory
        {"customer_id": 12, "converted_at": "2024-05-20"},  # trial use inside the grid
        {"customer_id": 13, "converted_at": "2024-01-05"},  # first event at the conversion
        {"customer_id": 14, "converted_at": "2024-01-05"},  # only after the conversion
        {"customer_id": 15, "converted_at": "2024-08-01"},  # converts after the last cutoff
        {"customer_id": 16, "converted_at": "2024-02-01"},  # no usage at all
    ]
    usage = [
        {"customer_id": 11, "occurred_at": "2023-01-10", "quantity": 2.0},
        {"customer_id": 11, "occurred_at": "2023-02-27T23:00"},
        {"customer_id": 11, "occurred_at": "2024-06-15"},  # paid use
        {"customer_id": 12, "occurred_at": "2024-05-10"},
        {"customer_id": 12, "occurred_at": "2024-05-10T09:00", "quantity": 4.0},
        {"customer_id": 12, "occurred_at": "2024-05-19T23:59"},
        {"customer_id": 12, "occurred_at": "2024-05-20"},  # at the conversion: paid
        {"customer_id": 13, "occurred_at": "2024-01-05"},
        {"customer_id": 13, "occurred_at": "2024-03-01"},
        {"customer_id": 14, "occurred_at": "2024-01-06"},
        {"customer_id": 15, "occurred_at": "2024-06-20"},
        {"customer_id": 15, "occurred_at": "2024-07-15"},  # after the last cutoff
    ]
    tables = {
        "customers": contract_frame("customers", customers),
        "usage_events": contract_frame(
            "usage_events", [{"event_type": "login", **event} for event in usage]
        ),
    }
    keys = population([(c, t) for c in range(11, 17) for t in ("2024-06-01", "2024-07-01")])
    return tables, keys


def test_trial_use_reads_only_customers_used_before_their_conversion() -> None:
    tables, keys = _trial_use_export()
    result = build_features(tables, keys, CFG)
    assert_family_matches(result, reference.acquisition(tables, keys, CFG), "acquisition")
    for cutoff in ("2024-06-01", "2024-07-01"):
        prehistory, grid = row(result, "11", cutoff), row(result, "12", cutoff)
        assert prehistory["trial_usage_events"] == 3.0
        assert prehistory["trial_active_days"] == 2.0
        assert grid["trial_usage_events"] == 6.0 and grid["trial_active_days"] == 2.0
        for paid_only in ("13", "14", "16"):
            assert row(result, paid_only, cutoff)["trial_usage_events"] == 0.0
            assert row(result, paid_only, cutoff)["trial_active_days"] == 0.0
        later = row(result, "15", cutoff)  # not a customer yet: nothing known
        assert math.isnan(later["trial_usage_events"]) and math.isnan(later["trial_days"])


def test_trial_use_without_any_is_zero_for_every_customer() -> None:
    tables, keys = _trial_use_export()
    usage = tables["usage_events"]
    converted = usage["customer_id"].map(
        tables["customers"].set_index("customer_id")["converted_at"]
    )
    tables["usage_events"] = usage[usage["occurred_at"] >= converted].reset_index(drop=True)
    result = build_features(tables, keys, CFG)
    assert_family_matches(result, reference.acquisition(tables, keys, CFG), "acquisition")
    converted_rows = result.frame["customer_id"] != "15"
    assert (result.frame.loc[converted_rows, "trial_usage_events"] == 0.0).all()
    assert (result.frame.loc[converted_rows, "trial_active_days"] == 0.0).all()


def _naive_age_years(born: pd.Timestamp, at: pd.Timestamp) -> float:
    """Whole years from ``born`` to ``at``: the year difference, minus one before the birthday."""
    if born >= at:
        return math.nan
    before_birthday = (at.month, at.day, at.time()) < (born.month, born.day, born.time())
    return float(at.year - born.year - before_birthday)


def _attribute_tables() -> dict[str, pd.DataFrame]:
    """A third-party-shaped export: integer customer ids and integer industry codes."""
    customers = contract_frame(
        "customers",
        [
            {"customer_id": 1001, "converted_at": "2024-01-10"},
            {"customer_id": 1002, "converted_at": "2024-01-10"},
            {"customer_id": 1003, "converted_at": "2024-08-01"},  # converts after the cutoff
        ],
    )
    customers["industry"] = pd.Series([7, 12, 7]).astype("str")
    customers["company_size"] = [250.0, None, 12.0]
    customers["date_of_birth"] = pd.to_datetime(
        ["1990-06-02", "1984-06-01T18:00", "2001-12-24"], utc=True, format="ISO8601"
    ).astype("datetime64[us, UTC]")
    return {"customers": customers}


ATTRIBUTES = {"industry": "categorical", "company_size": "numeric", "date_of_birth": "age"}


def test_declared_customer_attributes_become_acquisition_features() -> None:
    tables = _attribute_tables()
    cfg = FeaturesConfig(customer_attributes=ATTRIBUTES)
    keys = population([("1001", "2024-06-01"), ("1002", "2024-06-01"), ("1003", "2024-06-01")])
    result = build_features(tables, keys, cfg, mode="events")
    catalog = result.catalog.set_index("name")
    for name, kind in [
        ("industry", "categorical"),
        ("company_size", "numeric"),
        ("date_of_birth_age_years", "numeric"),
    ]:
        assert catalog.loc[name, "family"] == "acquisition"
        assert catalog.loc[name, "phase"] == "pre_sale"
        assert catalog.loc[name, "kind"] == kind
    assert "date_of_birth" not in catalog.index  # the date itself is never a feature
    cutoff = pd.Timestamp("2024-06-01", tz="UTC")
    births = tables["customers"]["date_of_birth"].iloc[:2]
    for customer, born in zip(["1001", "1002"], births, strict=True):
        assert row(result, customer, "2024-06-01")["date_of_birth_age_years"] == (
            _naive_age_years(pd.Timestamp(born), cutoff)
        )
    first = row(result, "1001", "2024-06-01")
    assert first["date_of_birth_age_years"] == 33.0  # birthday tomorrow
    assert row(result, "1002", "2024-06-01")["date_of_birth_age_years"] == 39.0
    assert first["industry"] == "7" and first["company_size"] == 250.0
    assert math.isnan(row(result, "1002", "2024-06-01")["company_size"])
    later = row(result, "1003", "2024-06-01")  # not yet won: no acquisition features at all
    assert pd.isna(later["industry"]) and math.isnan(later["date_of_birth_age_years"])


def test_without_declared_attributes_extra_columns_stay_out() -> None:
    keys = population([("1001", "2024-06-01")])
    tables = _attribute_tables()
    tables["customers"] = tables["customers"].drop(columns=["date_of_birth"])
    result = build_features(tables, keys, FeaturesConfig(), mode="events")
    names = set(result.catalog["name"])
    assert not names & {"industry", "company_size", "date_of_birth_age_years"}


@pytest.mark.parametrize(
    ("declared", "allowed", "message"),
    [
        # A date of birth is personal data: refused unless used as an age...
        ({"industry": "categorical"}, (), "customers.date_of_birth: its name contains"),
        # ... and even when allowed, never as anything but an age.
        ({"date_of_birth": "numeric"}, ("date_of_birth",), "only become a feature as an age"),
    ],
)
def test_a_date_of_birth_is_only_ever_an_age(declared, allowed, message) -> None:
    cfg = FeaturesConfig(customer_attributes=declared, allow_personal_columns=allowed)
    with pytest.raises(DataContractError, match=message):
        build_features(
            _attribute_tables(), population([("1001", "2024-06-01")]), cfg, mode="events"
        )


def test_a_personal_attribute_is_refused_unless_allowed() -> None:
    tables = _attribute_tables()
    tables["customers"] = tables["customers"].drop(columns=["date_of_birth"])
    tables["customers"]["contact_email"] = ["a@x.io", "b@y.io", "c@z.io"]
    declared = {"contact_email": "categorical"}
    keys = population([("1001", "2024-06-01")])
    with pytest.raises(DataContractError, match=r"customers\.contact_email"):
        build_features(tables, keys, FeaturesConfig(customer_attributes=declared), mode="events")
    cfg = FeaturesConfig(customer_attributes=declared, allow_personal_columns=("contact_email",))
    result = build_features(tables, keys, cfg, mode="events")
    value = row(result, "1001", "2024-06-01")["contact_email"]
    assert value.startswith("pii_") and "@" not in value
