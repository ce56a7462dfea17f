"""Negative downsampling of training rows: every churner, a seeded share of the rest.

Shared by the classifier (:mod:`churn.model.fit`) and the survival head
(:mod:`churn.model.survival`), so both models are fitted on the same kind of sample.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from churn.config import TrainConfig
from churn.domain.categories import code_category_texts
from churn.errors import ModelError
from churn.model.split import label_array

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSample:
    """The rows LightGBM is fitted on after negative downsampling, and their weights.

    The sample is kept as positions in the frame it was drawn from, not as a copy of its rows:
    a fit builds its matrix from ``source`` at ``positions`` column by column
    (:func:`churn.model.artifact.prepare_features`), so the kept rows never exist twice (at a
    million customers a copy was about 1.9 GB beside the frame and the matrix).

    Attributes:
        source: The training rows the sample was drawn from.
        positions: The kept rows' positions in ``source``, increasing (their original order:
            LightGBM's result depends on it); ``None`` when every row is kept.
        weights: Row weights aligned with the kept rows (1 for churned rows, ``n / k`` for the
            ``k`` retained rows kept out of a cutoff's ``n``); ``None`` when nothing was
            sampled.
        rate: The negative sampling rate applied (1.0: every row kept).
    """

    source: pd.DataFrame
    positions: np.ndarray | None
    weights: np.ndarray | None
    rate: float

    @property
    def rows(self) -> pd.DataFrame:
        """The kept rows (a copy of them when sampled: take it only where it is needed)."""
        if self.positions is None:
            return self.source
        return self.source.iloc[self.positions]

    @property
    def index(self) -> pd.Index:
        """The kept rows' index labels in ``source`` (no copy of the rows)."""
        if self.positions is None:
            return self.source.index
        return self.source.index[self.positions]

    @property
    def size(self) -> int:
        """How many rows are kept."""
        return len(self.source) if self.positions is None else len(self.positions)

    def labels(self) -> np.ndarray:
        """The kept rows' 0/1 labels."""
        labels = label_array(self.source)
        return labels if self.positions is None else labels[self.positions]


def choose_negative_rate(positives: int, negatives: int, cfg: TrainConfig) -> float:
    """Return the share of retained training rows to keep: the configured rate, or lower when
    ``train.max_training_rows`` needs it (every churned row is always kept).

    When the churned rows alone reach the budget, no rate can hold it without dropping
    churners, which this never does: the retained rows are then kept one for one with the
    churned rows (rate ``positives / negatives``, never above ``negative_sample_rate``), so the
    fit is still bounded by the data's churners, and a warning names both numbers. A default
    budget therefore never stops a large run (at a 5% churn rate ``params.yaml``'s 600,000
    rows are reached at about 12M training rows, some 2.5M customers).
    """
    rate = cfg.negative_sample_rate
    budget = cfg.max_training_rows
    if budget is None or positives + negatives <= budget or negatives == 0:
        return rate
    if positives >= budget:
        balanced = min(rate, positives / negatives)
        logger.warning(
            "train.max_training_rows = %d cannot hold the %d churned training rows, which are "
            "all kept: fitted on them and %d retained rows (at most one per churned row, rate "
            "%.4g); raise train.max_training_rows or set it to null to fit more",
            budget,
            positives,
            round(balanced * negatives),
            balanced,
        )
        return balanced
    return min(rate, (budget - positives) / negatives)


def hash_row_keys(
    rows: pd.DataFrame,
    salt: str,
    factorized_cutoffs: tuple[np.ndarray, pd.DatetimeIndex] | None = None,
) -> np.ndarray:
    """Return a 64-bit hash of each row's (customer id as text, cutoff day) under ``salt``.

    The same row gets the same hash whatever the frame's order, the id's type (an integer id
    hashes like its text) or the other rows present, so draws made by the smallest hashes are
    blind to all three; another ``salt`` (a seed) draws other rows.

    Args:
        rows: Rows with ``customer_id`` and ``cutoff``.
        salt: The hash key's seed.
        factorized_cutoffs: ``pd.factorize`` of the rows' cutoffs when the caller made it
            already (the negative sampling groups by it too); ``None``: made here.
    """
    # A 16-character hash key from the salt.
    key = hashlib.blake2b(salt.encode(), digest_size=8).hexdigest()
    # Each distinct cutoff is formatted once, not once per row: the same texts.
    if factorized_cutoffs is None:
        factorized_cutoffs = pd.factorize(pd.DatetimeIndex(rows["cutoff"]))
    cutoff_codes, cutoffs = factorized_cutoffs
    ids = rows["customer_id"]
    if ids.isna().any():
        # Missing ids hash as their text ("nan", "<NA>"), row by row as they always have.
        id_column: Any = ids.astype(str).to_numpy()
    else:
        id_column = categorize_as_text(ids)
    cutoff_texts = pd.Index(np.asarray(cutoffs.strftime("%Y-%m-%d"), dtype=object), dtype=object)
    keys = pd.DataFrame(
        {
            "customer_id": id_column,
            "cutoff": pd.Categorical.from_codes(cutoff_codes, categories=cutoff_texts),
        }
    )
    return pd.util.hash_pandas_object(keys, index=False, hash_key=key).to_numpy()


def categorize_as_text(values: pd.Series) -> pd.Categorical:
    """Return ``values`` as text in a ``Categorical`` whose categories are the distinct texts.

    pandas hashes a categorical column by hashing each category once and taking the hashes by
    code, which it defines to equal hashing the values themselves
    (``pd.util.hash_pandas_object``): at a million customers' training rows (4.8M rows, about
    a million distinct ids) the row hashes took 0.8 s instead of 2.7 s, the same numbers
    (2026-12-07, docs/benchmarks-log.md). The texts are those of
    :func:`churn.domain.categories.code_category_texts`, ``str`` of each value, so values with
    one text (``1`` and ``"1"``) share a category and values with two (``1`` and ``1.0``) do
    not, as the text of each row would have it.

    Args:
        values: Values without missing ones, of any type.
    """
    positions, texts = code_category_texts(values)
    return pd.Categorical.from_codes(positions, categories=pd.Index(texts, dtype=object))


def sample_training_negatives(train: pd.DataFrame, rate: float, seed: int) -> TrainingSample:
    """Keep every churned row and a seeded share ``rate`` of the retained rows of each cutoff.

    Negative downsampling (He et al. 2014, "Practical lessons from predicting clicks on ads at
    Facebook"): churners are rare, so most of the fit's cost is spent on retained rows that
    each carry little information. Within each cutoff, ``k = round(rate * n)`` (at least one)
    of its ``n`` retained rows are kept and weigh ``n / k`` (the inverse of their exact
    inclusion probability, about ``1 / rate``), so every cutoff keeps its share of the loss
    and the weighted loss is an unbiased estimate of the full one.

    The kept rows are the ``k`` with the smallest hash of (customer id as text, cutoff, seed):
    the same rows whatever the frame's order or the other cutoffs present (a backtest refit on
    fewer cutoffs draws the same rows at the cutoffs it shares), and a customer retained at
    many cutoffs is not kept at all of them together.
    The hash is pandas' ``hash_pandas_object``, whose output has changed across dependency
    versions (seen on the simulator's content hashes): another pandas may draw other rows, with
    the same rate and weights; ``constraints.txt`` pins the versions.

    Args:
        train: Training rows (``customer_id``, ``cutoff``, ``label``).
        rate: Share of retained rows to keep, in (0, 1]; 1 returns ``train`` itself, unweighted.
        seed: ``train.seed``.

    Returns:
        The kept rows (original order), their weights and ``rate``.
    """
    if not 0.0 < rate <= 1.0:
        raise ModelError(f"the negative sampling rate must be in (0, 1], got {rate}")
    if rate == 1.0:
        return TrainingSample(source=train, positions=None, weights=None, rate=1.0)
    labels = label_array(train)
    cutoff_codes, cutoffs = pd.factorize(pd.DatetimeIndex(train["cutoff"]))
    hashes = hash_row_keys(train, str(seed), (cutoff_codes, cutoffs))
    negatives = np.flatnonzero(labels == 0)
    # Retained rows ordered by cutoff, then hash: a row's position within its cutoff's run
    # tells whether it is among that cutoff's k smallest hashes.
    order = order_by_group_then_key(negatives, cutoff_codes[negatives], hashes[negatives])
    codes = cutoff_codes[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    quotas = np.minimum(sizes, np.maximum(1, np.rint(rate * sizes).astype(int)))
    position = np.arange(len(order)) - np.repeat(starts, sizes)
    chosen = position < np.repeat(quotas, sizes)
    keep = labels == 1
    keep[order[chosen]] = True
    weights = np.ones(len(train))
    weights[order[chosen]] = np.repeat(sizes / quotas, sizes)[chosen]
    kept = np.flatnonzero(keep)
    return TrainingSample(source=train, positions=kept, weights=weights[keep], rate=rate)


def order_by_group_then_key(rows: np.ndarray, groups: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Return ``rows`` ordered by group, then key, then their given order: ``np.lexsort``'s order.

    Grouped by a stable sort of the small group codes, then each group sorted by key with
    NumPy's default (unstable, vectorised) sort; a group whose keys repeat (equal 64-bit
    hashes: next to never) is sorted stably instead, so ties keep the given order exactly as
    ``np.lexsort((keys, groups))`` keeps them. At a million customers (4.3M retained rows of
    eight cutoffs) 0.45 s against lexsort's 0.86 s (2026-12-07).

    Args:
        rows: What is ordered (e.g. positions).
        groups: Each row's group code.
        keys: Each row's sort key within its group.
    """
    by_group = np.argsort(groups, kind="stable")
    ordered_groups = groups[by_group]
    starts = np.flatnonzero(np.r_[True, ordered_groups[1:] != ordered_groups[:-1]])
    ends = np.r_[starts[1:], len(by_group)]
    order = np.empty(len(rows), dtype=np.int64)
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        members = by_group[start:end]
        group_keys = keys[members]
        within = np.argsort(group_keys)
        sorted_keys = group_keys[within]
        if np.any(sorted_keys[1:] == sorted_keys[:-1]):
            within = np.argsort(group_keys, kind="stable")
        order[start:end] = members[within]
    return np.asarray(rows)[order]


def sample_training_rows(train: pd.DataFrame, cfg: TrainConfig) -> TrainingSample:
    """Sample ``train`` as ``train.negative_sample_rate`` and ``train.max_training_rows`` say.

    The one entry point of every fit on training rows (the classifier, the logistic baseline,
    their backtest refits), so all of them see the same rows with the same weights.
    """
    labels = label_array(train)
    positives = int(labels.sum())
    rate = choose_negative_rate(positives, len(labels) - positives, cfg)
    return sample_training_negatives(train, rate, cfg.seed)


def sample_customer_ids(customer_ids: pd.Series, limit: int | None, seed: int) -> np.ndarray | None:
    """Return at most ``limit`` of the distinct ``customer_ids``: a seeded hash sample.

    The kept customers are the ``limit`` with the smallest hash of (customer id as text,
    seed), so the sample depends only on the set of ids and the seed, not on row order or on
    how many rows a customer has; a customer is kept or left out with all its rows. Used to
    bound what a diagnostic fits on (the evaluate stage's model-form comparison,
    ``evaluate.model_form_max_customers``).

    Args:
        customer_ids: Ids, repeated or not, of any type (integers, text).
        limit: Customers to keep at most; ``None`` keeps every customer.
        seed: ``train.seed``.

    Returns:
        The kept ids, in the order they first appear in ``customer_ids`` and of their type, or
        ``None`` when there are no more than ``limit`` (nothing to sample).
    """
    distinct = pd.Series(pd.unique(customer_ids))
    if limit is None or len(distinct) <= limit:
        return None
    if limit < 1:
        raise ModelError(f"a customer sample needs a limit of at least 1, got {limit}")
    key = hashlib.blake2b(f"customers-{seed}".encode(), digest_size=8).hexdigest()
    hashes = pd.util.hash_pandas_object(
        distinct.astype(str), index=False, hash_key=key
    ).to_numpy()
    # Ties (equal hashes of different ids) are broken by first appearance: stable sort.
    kept = np.sort(np.argsort(hashes, kind="stable")[:limit])
    return distinct.to_numpy()[kept]
