"""Categorical values as text (:mod:`churn.domain.categories`), against a naive reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.domain.categories import code_category_texts, code_levels


def _naive_texts(values: pd.Series) -> tuple[list[int], list[str]]:
    """Each value's text by ``str``, numbered in order of first appearance; -1 when missing."""
    texts: list[str] = []
    positions = []
    for value, missing in zip(values.astype("object"), values.isna(), strict=True):
        if missing:
            positions.append(-1)
            continue
        text = str(value)
        if text not in texts:
            texts.append(text)
        positions.append(texts.index(text))
    return positions, texts


COLUMNS = {
    "arrow text": pd.Series(["b", None, "a", "b", "c"], dtype="str"),
    "python text": pd.Series(["b", None, "a", "b"], dtype="string[python]"),
    "integer codes": pd.Series([3, 1, 3, 20], dtype="int64"),
    "nullable integer codes": pd.Series([3, None, 1, 3], dtype="Int64"),
    # Factorizing these first would merge values whose texts differ.
    "object, 1 and 1.0": pd.Series([1, 1.0, None, "1", True], dtype="object"),
    "float, 0.0 and -0.0": pd.Series([0.0, -0.0, np.nan, 2.5, 0.0], dtype="float64"),
    "categorical": pd.Series(pd.Categorical(["x", None, "y", "x"])),
    "empty text": pd.Series([], dtype="str"),
    "all missing": pd.Series([None, None], dtype="str"),
}


@pytest.mark.parametrize("name", list(COLUMNS))
def test_texts_and_positions_match_str_of_every_value(name: str) -> None:
    values = COLUMNS[name]
    positions, texts = code_category_texts(values)
    naive_positions, naive_texts = _naive_texts(values)
    assert positions.dtype == np.int64
    assert positions.tolist() == naive_positions
    assert texts.tolist() == naive_texts


def test_levels_are_matched_as_text_and_missing_takes_its_level_only_when_asked() -> None:
    values = pd.Series([3, None, 7, 1], dtype="Int64")
    assert code_levels(values, ("1", "3")).tolist() == [1, -1, -1, 0]
    assert code_levels(values, ("1", "3", "missing"), "missing").tolist() == [1, 2, -1, 0]
    # A missing level that is not among the levels leaves missing values at -1.
    assert code_levels(values, ("1", "3"), "missing").tolist() == [1, -1, -1, 0]


def test_unseen_values_take_the_unseen_level_and_missing_values_do_not() -> None:
    values = pd.Series(["b", None, "zzz", "a"], dtype="str")
    assert code_levels(values, ("a", "b", "other"), unseen_level="other").tolist() == [1, -1, 2, 0]
    assert code_levels(values, ("a", "b", "other", "missing"), "missing", "other").tolist() == [
        1,
        3,
        2,
        0,
    ]
    # An unseen level that is not among the levels leaves unseen values at -1.
    assert code_levels(values, ("a", "b"), unseen_level="other").tolist() == [1, -1, -1, 0]
