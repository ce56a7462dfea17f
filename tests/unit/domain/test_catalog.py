"""Tests for churn.domain.catalog: the one catalog entry type, reader and validator."""

from __future__ import annotations

import pandas as pd
import pytest
from support.tiny import TINY_CATALOG, make_feature_frame

from churn.domain.catalog import (
    CATALOG_COLUMNS,
    KEY_COLUMNS,
    KIND_DTYPES,
    FeatureSpec,
    catalog_frame,
    catalog_specs,
    feature_dtypes,
    read_catalog,
    select_feature_catalog,
    uncatalogued_spec,
    validate_catalog_frame,
)
from churn.errors import DataContractError, ModelError


def test_round_trip_through_csv_keeps_every_cell(tmp_path):
    path = tmp_path / "catalog.csv"
    TINY_CATALOG.to_csv(path, index=False)
    read = read_catalog(path)
    assert list(read.columns) == list(CATALOG_COLUMNS)
    # An empty unit is read back as "" (pandas would read NaN by default).
    assert read.loc[read["name"] == "plan", "unit"].item() == ""
    pd.testing.assert_frame_equal(read[list(TINY_CATALOG.columns)], TINY_CATALOG.astype("str"))
    # A catalog without the optional columns gets them derived (see the eligibility tests).
    assert read["reason_eligible"].dtype == bool and read["reason_eligible"].all()
    assert read.loc[read["name"] == "plan", "singular"].item() == "plan"


def test_specs_follow_row_order_and_extra_columns_are_ignored():
    frame = TINY_CATALOG.assign(owner="analytics").iloc[::-1]
    specs = catalog_specs(frame)
    assert [s.name for s in specs] == list(TINY_CATALOG["name"])[::-1]
    assert specs[-1] == FeatureSpec(*TINY_CATALOG.iloc[0])


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataContractError, match=r"not found.*churn features"):
        read_catalog(tmp_path / "nope.csv")


def test_missing_columns_are_named():
    with pytest.raises(DataContractError, match=r"missing: \['phase', 'unit'\]"):
        catalog_specs(TINY_CATALOG.drop(columns=["phase", "unit"]), "my.csv")


def test_each_bad_row_is_named_with_its_number_and_rule():
    bad = TINY_CATALOG.copy()
    bad.loc[1, "kind"] = "integer"
    bad.loc[3, "phase"] = "during_sale"
    bad.loc[4, "family"] = "marketing"
    with pytest.raises(DataContractError) as caught:
        catalog_specs(bad, "my.csv")
    message = str(caught.value)
    assert message.startswith("my.csv: 3 invalid catalog row(s)")
    assert "row 2: active_days_last_30d: kind must be numeric or categorical" in message
    assert "row 4: last_nps_score: phase must be one of" in message
    assert "row 5: docs_and_help_views_before_conversion: family must be one of" in message


def test_duplicated_names_and_key_columns_are_rejected():
    with pytest.raises(DataContractError, match=r"duplicated names \['plan'\]"):
        catalog_specs(pd.concat([TINY_CATALOG, TINY_CATALOG.tail(1)]))
    keyed = TINY_CATALOG.copy()
    keyed.loc[0, "name"] = "label"
    with pytest.raises(DataContractError, match="invalid feature name 'label'"):
        catalog_specs(keyed)


def test_an_empty_frame_is_an_empty_catalog():
    assert catalog_specs(pd.DataFrame()) == ()
    assert list(validate_catalog_frame(pd.DataFrame()).columns) == list(CATALOG_COLUMNS)


def test_a_third_party_style_catalog_with_blank_cells_reads_as_text():
    # An export from a spreadsheet: integer-looking units, blanks read as NaN, other order.
    frame = pd.DataFrame(
        {
            "description": pd.array(["seats on the contract", "region code"], dtype="object"),
            "unit": pd.array([None, 7], dtype="Int64"),
            "kind": ["numeric", "categorical"],
            "phase": ["post_sale", "post_sale"],
            "family": ["profile", "profile"],
            "name": ["seat_count", "region_code"],
        }
    )
    specs = catalog_specs(frame)
    assert [(s.name, s.unit) for s in specs] == [("seat_count", ""), ("region_code", "7")]
    assert list(catalog_frame(specs).columns) == list(CATALOG_COLUMNS)


def test_kind_dtypes_and_key_columns():
    assert KEY_COLUMNS == ("customer_id", "cutoff", "label")
    specs = catalog_specs(TINY_CATALOG)
    dtypes = feature_dtypes(specs)
    assert dtypes["plan"] == KIND_DTYPES["categorical"] == "str"
    assert dtypes["mrr_at_cutoff"] == KIND_DTYPES["numeric"] == "float64"
    assert len(dtypes) == len(TINY_CATALOG)


def test_uncatalogued_spec_is_unknown_and_worded_from_its_name():
    spec = uncatalogued_spec("days_since_login", "numeric")
    assert (spec.family, spec.phase, spec.description) == ("unknown", "unknown", "days since login")


def test_the_catalog_rows_of_a_frame_follow_its_columns_and_every_one_is_required():
    frame = make_feature_frame(n_customers=20, n_cutoffs=2, seed=3)
    features = [column for column in frame.columns if column not in KEY_COLUMNS]
    reordered = frame[[*KEY_COLUMNS, *reversed(features)]]
    selected = select_feature_catalog(reordered, TINY_CATALOG)
    assert list(selected["name"]) == list(reversed(features))
    pd.testing.assert_frame_equal(
        selected.set_index("name"), TINY_CATALOG.set_index("name").loc[list(reversed(features))]
    )
    with pytest.raises(ModelError, match="mystery_column"):
        select_feature_catalog(frame.assign(mystery_column=1.0), TINY_CATALOG)
    with pytest.raises(ModelError, match="no feature columns"):
        select_feature_catalog(frame[list(KEY_COLUMNS)], TINY_CATALOG)
