"""Rare categorical levels pooled into one level, so a model cannot memorise labels.

A high-cardinality categorical (a 127-level ``campaign``) lets gradient boosting isolate small
levels whose few customers happened to churn: the level then "explains" their risk although it
only names them. Levels seen on fewer than ``train.min_category_count`` training rows are
therefore pooled into :data:`POOLED_LEVEL` before training; a level never seen in training is
mapped to the same pooled level at scoring (it is, by definition, rarer still), instead of being
scored as missing. This is the usual "other" bucket of categorical encoders (e.g. scikit-learn's
``OneHotEncoder(min_frequency=...)`` with its infrequent category).

The pooled level is stored as one more entry of the model's categorical levels, so a saved model
needs no new field and stays pickle-free; a model trained without pooling has no such entry and
keeps scoring unseen levels as missing.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

#: The level standing for every rare or unseen level (parentheses: no real code looks like it).
POOLED_LEVEL = "(rare levels)"


def learn_pooled_levels(values: pd.Series, min_count: int) -> tuple[str, ...]:
    """Return the levels a categorical keeps: those seen at least ``min_count`` times, sorted.

    Args:
        values: Training values of one categorical column (missing values are not a level).
        min_count: Minimum number of rows a level needs to keep its own code; ``<= 1`` keeps
            every level and adds no pooled level (the behaviour before pooling).

    Returns:
        The kept levels sorted, followed by :data:`POOLED_LEVEL` when ``min_count > 1`` (always,
        so unseen levels at scoring have a code even when no training level was rare).
    """
    counts = values.dropna().astype("str").value_counts()
    if min_count <= 1:
        return tuple(sorted(str(level) for level in counts.index))
    kept = sorted(str(level) for level, count in counts.items() if count >= min_count)
    return (*kept, POOLED_LEVEL)


def learn_all_pooled_levels(
    frame: pd.DataFrame, columns: Iterable[str], min_count: int
) -> dict[str, tuple[str, ...]]:
    """Return :func:`learn_pooled_levels` of every categorical column of ``frame``."""
    return {column: learn_pooled_levels(frame[column], min_count) for column in columns}


def pool_values(values: pd.Series, levels: tuple[str, ...]) -> pd.Series:
    """Return the values as the model reads them: a non-missing level not kept becomes pooled.

    Without :data:`POOLED_LEVEL` in ``levels`` the values are returned as text unchanged.
    """
    text = values.astype("object").where(values.notna(), None)
    text = text.map(str, na_action="ignore")
    if POOLED_LEVEL not in levels:
        return text
    known = text.isin(set(levels)) | text.isna()
    return text.where(known, POOLED_LEVEL)
