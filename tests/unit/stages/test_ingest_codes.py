"""Value codes mapped once per distinct text equal the per-cell mapping of the contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.domain.contract import BILLING_PERIOD_CODES, map_codes
from churn.stages.ingest.tables import map_value_codes
from churn.validation.coerce import to_text

MAPPINGS = [
    dict(BILLING_PERIOD_CODES),
    {1: "monthly", "3": "quarterly", 12.0: "annual"},
    {True: "yes_plan", "No": "no_plan"},
    {" M ": "monthly"},
]


@pytest.mark.parametrize("mapping", MAPPINGS)
def test_text_column_maps_like_map_codes(mapping):
    values = pd.Series(
        ["1", "3", " 12 ", None, "monthly", "1.0", "weekly", "TRUE", "no", "M", " ", "6"] * 3,
        dtype="str",
        index=np.arange(36) + 100,
    )

    mapped = map_value_codes(values, mapping)

    assert mapped.dtype == pd.StringDtype(na_value=np.nan)
    assert list(mapped.index) == list(values.index)
    pd.testing.assert_series_equal(to_text(mapped), to_text(map_codes(values, mapping)))


def test_integer_codes_keep_the_per_cell_path():
    values = pd.Series([1, 3, 12, 2], dtype="int64")

    mapped = map_value_codes(values, {1: "monthly", 3: "quarterly"})

    assert list(mapped) == ["monthly", "quarterly", 12, 2]


def test_mixed_object_codes_are_not_merged_by_equality():
    # 1 and 1.0 are equal values but different text when left unmapped.
    values = pd.Series([1, 1.0, "1"], dtype="object")

    mapped = map_value_codes(values, {"2": "x"})

    assert to_text(mapped).tolist() == ["1", "1.0", "1"]
