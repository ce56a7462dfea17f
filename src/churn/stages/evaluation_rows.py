"""What the evaluate stage's own process reads of the features and labels files.

:func:`read_evaluation_rows` reads every row's keys, then only the model's test rows and, apart,
the model-form comparison's rows (on a seeded sample of its customers past
``evaluate.model_form_max_customers``); the backtest's refits read their own rows
(:mod:`churn.stages.fit_workers`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from churn.config import Params
from churn.domain.catalog import CUTOFF, KEY_COLUMNS
from churn.errors import ModelError
from churn.model.horizon_evaluation import read_churn_times
from churn.model.split import Split, take_rows
from churn.model.survival import CHURN_TIME_COLUMNS
from churn.stages.fit_workers import list_model_form_columns

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationRows:
    """What the evaluate stage's own process reads of the features (and labels) file.

    Attributes:
        keys: Every row's ``customer_id``, ``cutoff`` and ``label``, in file order (range
            index): the splits (the model's, the backtest's, the comparison's) are made on them.
        split: The model's split (:func:`churn.model.split.split_by_time`) of ``keys``.
        frame: The split's test rows (the rows the stage scores), indexed by file position.
        churn_times: The labels' churn-time columns of every row, in file order (``None``
            without a comparison).
        comparison: The model-form comparison's frame: the rows of its split's cutoffs (of a
            seeded sample of the customers past ``evaluate.model_form_max_customers``) with
            their churn times, on a range index. Its fits plan and fit on exactly this frame,
            here or in the workers it is handed to
            (:func:`churn.stages.fit_workers.write_model_form_rows`). ``None`` without a
            comparison.
        comparison_note: Why the forms are not compared, when the comparison cannot be planned;
            or, when they are compared on a sample of the customers, which.
    """

    keys: pd.DataFrame
    split: Split
    frame: pd.DataFrame
    churn_times: pd.DataFrame | None = None
    comparison: pd.DataFrame | None = None
    comparison_note: str | None = None

    def without_comparison(self) -> EvaluationRows:
        """Return these rows without ``comparison`` (for the memory)."""
        return replace(self, comparison=None)

    def without_test_rows(self) -> EvaluationRows:
        """Return these rows with an empty ``frame`` (its columns, none of its arrays)."""
        return replace(self, frame=self.frame.iloc[:0].copy())


def read_evaluation_rows(
    features_path: Path, labels_path: Path | None, catalog: pd.DataFrame, params: Params
) -> EvaluationRows:
    """Read the rows the evaluate stage itself uses: every row's keys, then only the rows
    of the model's test slice and, apart, those of the model-form comparison's cutoffs.

    The splits need only each row's cutoff and label (and, for the comparison, its churn
    times), so they are made on the keys; the rows that only the backtest's refits use are
    read by the refits themselves (:func:`churn.stages.fit_workers.refit_backtest_from_file`),
    in the workers or here one cutoff at a time. The comparison's fits get their rows from
    the stage (:attr:`EvaluationRows.comparison`), so the stage and its workers plan on the
    same frame.

    Args:
        features_path: Features Parquet.
        labels_path: Labels with churn times: with it, the model-form comparison's rows are
            read too (``None``: no comparison).
        catalog: The model's feature catalog (the comparison's columns).
        params: All parameters.
    """
    from churn.io import read_parquet_frame
    from churn.model.horizon_evaluation import attach_churn_times, split_for_horizons
    from churn.model.split import split_by_time

    keys = read_parquet_frame(features_path, columns=list(KEY_COLUMNS)).reset_index(drop=True)
    split = split_by_time(keys, params.train, params.label, mode=params.ingest.mode)
    test = np.unique(np.asarray(split.test, dtype=np.int64))  # a file is read in order
    if labels_path is None:
        return EvaluationRows(keys, split, read_file_rows(features_path, test))
    # Read before the comparison is planned: a stage given labels depends on it whenever
    # the comparison runs (dvc.yaml declares it).
    limit = params.evaluate.model_form_max_customers
    keyed = attach_churn_times(keys, read_churn_times(labels_path))
    churn_times = keyed[list(CHURN_TIME_COLUMNS)]
    try:
        horizon_split = split_for_horizons(keyed, params)
    except ModelError as exc:  # e.g. too few cutoffs for the longest horizon's purge window
        note = f"model forms not compared: {exc}"
        logger.warning(note)
        frame = read_file_rows(features_path, test)
        return EvaluationRows(keys, split, frame, churn_times, comparison_note=note)
    del keyed
    if horizon_split.mode == "time":
        # Every slice of an out-of-time split is whole cutoffs, and the split of just those
        # cutoffs' rows is the same split: the unlabeled and purged cutoffs left out are
        # exactly those it drops (split_by_time's rules only ever look at labeled cutoffs).
        at_cutoffs = pd.DatetimeIndex(keys[CUTOFF]).isin(horizon_split.used_cutoffs())
        compared = np.flatnonzero(at_cutoffs)
    else:  # a random split draws from row positions: its fits read every row
        compared = np.arange(len(keys), dtype=np.int64)
    ids = keys["customer_id"].iloc[compared]
    customers, note = sample_comparison_customers(ids, limit, params.train.seed)
    if customers is not None:
        compared = compared[ids.isin(customers).to_numpy()]
    frame = read_file_rows(features_path, test)
    # Read on its own, not taken from a frame of both: taking rows that are not one run
    # copies them, and the test rows the two may share are few.
    columns = list_model_form_columns(list(frame.columns), catalog)
    comparison = attach_file_churn_times(
        read_file_rows(features_path, compared, columns), churn_times
    )
    return EvaluationRows(keys, split, frame, churn_times, comparison.reset_index(drop=True), note)


def sample_comparison_customers(
    customer_ids: pd.Series, limit: int | None, seed: int
) -> tuple[np.ndarray | None, str | None]:
    """Return the customers the model-form comparison is limited to, and a note saying so.

    The comparison is a diagnostic beside the exported model: four fits (the survival head and
    a classifier per horizon) on the rows of its own split. Past
    ``evaluate.model_form_max_customers`` customers it fits and measures on a seeded hash
    sample of them, each with all its rows (:func:`churn.model.sampling.sample_customer_ids`),
    so its cost stops growing with the data; below the limit nothing changes.

    Args:
        customer_ids: The customer id of each row at the comparison's cutoffs.
        limit: ``evaluate.model_form_max_customers``.
        seed: ``train.seed``.

    Returns:
        ``(None, None)`` when every customer is used, else the kept ids and the note that the
        metrics carry.
    """
    from churn.model.sampling import sample_customer_ids

    customers = sample_customer_ids(customer_ids, limit, seed)
    if customers is None:
        return None, None
    note = (
        f"model forms compared on a seeded sample of {len(customers):,} of the "
        f"{customer_ids.nunique():,} customers at the comparison's cutoffs "
        "(evaluate.model_form_max_customers)"
    )
    logger.info(note)
    return customers, note


def read_file_rows(
    features_path: Path, positions: np.ndarray, columns: list[str] | None = None
) -> pd.DataFrame:
    """Return the rows at ``positions`` (increasing) of the features file, indexed by those
    positions: all columns, or ``columns``."""
    from churn.io import read_frame_positions

    frame = read_frame_positions(features_path, positions, columns)
    frame.index = pd.Index(positions)
    return frame


def attach_file_churn_times(frame: pd.DataFrame, churn_times: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` (rows indexed by file position) with their churn times, taken from
    ``churn_times`` (every row of the file, in file order) at the same positions."""
    times = take_rows(churn_times, frame.index.to_numpy()).set_axis(frame.index)
    kept = frame.drop(columns=list(churn_times.columns), errors="ignore")
    return pd.concat([kept, times], axis=1)
