"""Out-of-time train / validation / test split of a features frame (pure).

A row at cutoff ``c`` has a label that is only known at ``c + horizon + grace`` (the churn
window plus the grace period in which a renewal still counts). Training on such a row is only
honest for a later slice whose first cutoff is at or after that date, otherwise the model learns
from outcomes that happen after the slice it is judged on. So, over the *labeled* cutoffs:

1. the last ``test_cutoffs`` are **test**;
2. cutoffs whose label window ends after the first test cutoff are dropped (purge);
3. of the remaining cutoffs the latest ``validation_cutoffs`` are **validation**;
4. earlier cutoffs whose label window ends after the first validation cutoff are dropped;
5. the rest is **train**.

Validation is chosen *after* the purge: with monthly cutoffs and the default 60 + 14 day window,
the cutoff just before test always overlaps it, and choosing it first would leave an empty
validation slice. Every dropped row is counted per rule in :attr:`Split.removed`.

When all labeled rows share one cutoff (or ``ingest.mode`` is ``entity``), there is no time to
split on: the split is a stratified random one, and :attr:`Split.notes` says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from churn.config import LabelConfig, TrainConfig
from churn.domain.modes import Mode
from churn.errors import ModelError


@dataclass(frozen=True)
class Split:
    """Row positions (``iloc``) of each slice, and how they were chosen.

    Attributes:
        mode: ``time`` (out-of-time by cutoff) or ``entity`` (stratified random).
        train: Positions of training rows.
        validation: Positions of validation rows (early stopping, calibration).
        test: Positions of held-out test rows.
        train_cutoffs: Cutoffs in train (time mode).
        validation_cutoffs: Cutoffs in validation (time mode).
        test_cutoffs: Cutoffs in test (time mode).
        removed: Rows left out, per rule.
        notes: Plain-language remarks for the log and the report.
    """

    mode: Literal["time", "entity"]
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    train_cutoffs: tuple[pd.Timestamp, ...] = ()
    validation_cutoffs: tuple[pd.Timestamp, ...] = ()
    test_cutoffs: tuple[pd.Timestamp, ...] = ()
    removed: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def slices(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Return the train, validation and test rows of ``frame`` (:func:`take_rows`)."""
        return (
            take_rows(frame, self.train),
            take_rows(frame, self.validation),
            take_rows(frame, self.test),
        )

    def used_cutoffs(self) -> list[pd.Timestamp]:
        """Return the cutoffs of the train, validation and test slices, sorted, each once.

        Out of time every slice is whole cutoffs, so these cutoffs' rows hold every row the
        split uses (what a reader of only those rows needs); in entity mode every slice has
        the same cutoffs, those of all labeled rows.
        """
        return sorted({*self.train_cutoffs, *self.validation_cutoffs, *self.test_cutoffs})

    def relocate(self, kept: np.ndarray) -> Split:
        """Return this split for a frame holding only the rows at ``kept`` (increasing
        positions in the frame it was made on, covering every slice): same rows, cutoffs,
        removed counts and notes, positions counted in the smaller frame.

        Raises:
            ValueError: If a slice's row is not among ``kept``.
        """
        kept = np.asarray(kept, dtype=np.int64)

        def moved(positions: np.ndarray) -> np.ndarray:
            local = np.searchsorted(kept, positions)
            if local.size and (local.max() >= kept.size or np.any(kept[local] != positions)):
                raise ValueError("a row of the split is not among the kept rows")
            return local

        return replace(
            self,
            train=moved(self.train),
            validation=moved(self.validation),
            test=moved(self.test),
        )

    def describe(self) -> dict[str, Any]:
        """Return a JSON-ready summary: mode, sizes, cutoffs, removed rows, notes."""

        def dates(values: tuple[pd.Timestamp, ...]) -> list[str]:
            return [value.strftime("%Y-%m-%d") for value in values]

        return {
            "mode": self.mode,
            "sizes": {
                "train": int(self.train.size),
                "validation": int(self.validation.size),
                "test": int(self.test.size),
            },
            "cutoffs": {
                "train": dates(self.train_cutoffs),
                "validation": dates(self.validation_cutoffs),
                "test": dates(self.test_cutoffs),
            },
            "removed_rows": dict(self.removed),
            "notes": list(self.notes),
        }


def take_rows(frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    """Return ``frame.iloc[positions]``, sharing ``frame``'s memory when it can.

    The features file is written in cutoff order, so each slice of a time split is one run of
    consecutive rows: a run is taken as a slice, which pandas' copy-on-write shares instead of
    copying (at 100k customers the training rows alone are 0.5 GB). Any other positions
    (unsorted, with gaps, an entity split) are taken as ``frame.iloc[positions]``. Either way
    the result has the same rows, order, index and dtypes.
    """
    positions = np.asarray(positions)
    n = len(positions)
    consecutive = n > 0 and positions.dtype.kind in "iu" and bool(np.all(np.diff(positions) == 1))
    if consecutive and positions[0] >= 0:
        return frame.iloc[int(positions[0]) : int(positions[-1]) + 1]
    return frame.iloc[positions]


def take_file_rows(frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    """Return the rows of ``frame`` that were at ``positions`` of the file it was read from.

    ``frame`` holds some of a file's rows indexed by their position in the file (a split made
    on the file's keys counts rows that way); the rows come back in the order of ``positions``
    as :func:`take_rows` returns them (a run of consecutive rows is shared, not copied).

    Raises:
        KeyError: If a position is not in ``frame``'s index.
    """
    positions = np.asarray(positions, dtype=np.int64)
    local = frame.index.get_indexer(positions)
    if local.size and local.min() < 0:
        missing = positions[local < 0]
        raise KeyError(f"{missing.size} file row(s) not read, e.g. position {int(missing[0])}")
    return take_rows(frame, local)


def label_array(frame: pd.DataFrame) -> np.ndarray:
    """Return the 0/1 labels of labeled rows as an int array (a missing label is an error)."""
    labels = frame["label"]
    if labels.isna().any():
        raise ModelError(f"{int(labels.isna().sum())} row(s) have no label")
    return labels.to_numpy(dtype="float64").astype(int)


def split_by_time(
    features: pd.DataFrame,
    cfg: TrainConfig,
    label_cfg: LabelConfig,
    *,
    mode: Mode = Mode.EVENTS,
    last_cutoff: pd.Timestamp | None = None,
) -> Split:
    """Split a features frame into train, validation and test (see the module docstring).

    Args:
        features: Features frame with ``cutoff`` and ``label`` (rows with a missing label are
            never used).
        cfg: Train section (``test_cutoffs``, ``validation_cutoffs``, entity shares, seed).
        label_cfg: Label section (``horizon_days``, ``grace_days``).
        mode: ``ingest.mode``; ``entity`` forces the stratified random split.
        last_cutoff: Treat this cutoff as the latest one (rows after it are ignored): the
            rolling backtest replays the split as it would have been at that date.

    Returns:
        The split.

    Raises:
        ModelError: If there are too few labeled cutoffs for the rules to leave a non-empty
            train, validation and test slice.
    """
    labeled = features["label"].notna().to_numpy()
    removed = {"unlabeled": int((~labeled).sum())}
    cutoffs = pd.DatetimeIndex(features["cutoff"])
    if last_cutoff is not None:
        later = labeled & (cutoffs > last_cutoff)
        removed["after_last_cutoff"] = int(later.sum())
        labeled = labeled & ~later
    unique = sorted(pd.unique(cutoffs[labeled]))
    if not unique:
        raise ModelError("no labeled rows: every label is missing, nothing to train on")
    entity = Mode(mode) is Mode.ENTITY
    if entity or len(unique) == 1:
        reason = "ingest.mode is 'entity'" if entity else "one labeled cutoff only"
        return _split_entity(features, labeled, cfg, removed, reason)
    return _split_time(cutoffs, labeled, unique, cfg, label_cfg, removed)


def _split_time(
    cutoffs: pd.DatetimeIndex,
    labeled: np.ndarray,
    unique: list[pd.Timestamp],
    cfg: TrainConfig,
    label_cfg: LabelConfig,
    removed: dict[str, int],
) -> Split:
    window = pd.Timedelta(days=label_cfg.horizon_days + label_cfg.grace_days)
    window_text = f"cutoff + {label_cfg.horizon_days} + {label_cfg.grace_days} days"
    if len(unique) <= cfg.test_cutoffs:
        raise ModelError(
            f"only {len(unique)} labeled cutoff(s) but train.test_cutoffs is {cfg.test_cutoffs}; "
            "label more cutoffs or lower train.test_cutoffs"
        )
    test_cuts = unique[-cfg.test_cutoffs :]
    first_test = test_cuts[0]
    earlier = unique[: -cfg.test_cutoffs]
    eligible = [c for c in earlier if c + window <= first_test]
    purged_test = [c for c in earlier if c + window > first_test]
    if len(eligible) <= cfg.validation_cutoffs:
        raise ModelError(
            f"only {len(eligible)} labeled cutoff(s) have their label window ({window_text}) "
            f"closed by the first test cutoff {first_test:%Y-%m-%d}; train.validation_cutoffs "
            f"is {cfg.validation_cutoffs} and training needs at least one more cutoff. Label "
            "more history, or shorten label.horizon_days / label.grace_days"
        )
    val_cuts = eligible[-cfg.validation_cutoffs :]
    first_val = val_cuts[0]
    before_val = eligible[: -cfg.validation_cutoffs]
    train_cuts = [c for c in before_val if c + window <= first_val]
    purged_val = [c for c in before_val if c + window > first_val]
    if not train_cuts:
        raise ModelError(
            f"no training cutoff has its label window ({window_text}) closed by the first "
            f"validation cutoff {first_val:%Y-%m-%d}; label more history"
        )

    def positions(chosen: list[pd.Timestamp]) -> np.ndarray:
        return np.flatnonzero(labeled & cutoffs.isin(chosen))

    removed["label_window_overlaps_test"] = int(positions(purged_test).size)
    removed["label_window_overlaps_validation"] = int(positions(purged_val).size)
    notes = [
        f"out-of-time split: a row's label is known at {window_text}; rows whose label window "
        f"reaches past the next slice's first cutoff are dropped "
        f"({removed['label_window_overlaps_test']} before test, "
        f"{removed['label_window_overlaps_validation']} before validation)"
    ]
    return Split(
        mode="time",
        train=positions(train_cuts),
        validation=positions(val_cuts),
        test=positions(test_cuts),
        train_cutoffs=tuple(train_cuts),
        validation_cutoffs=tuple(val_cuts),
        test_cutoffs=tuple(test_cuts),
        removed=removed,
        notes=tuple(notes),
    )


def _split_entity(
    features: pd.DataFrame,
    labeled: np.ndarray,
    cfg: TrainConfig,
    removed: dict[str, int],
    reason: str,
) -> Split:
    from sklearn.model_selection import train_test_split

    rows = np.flatnonzero(labeled)
    label = features["label"].to_numpy(dtype="float64", na_value=np.nan)
    # The validation share is of all rows, so it is rescaled to the rows left after test.
    val_share = cfg.entity_validation_share / (1.0 - cfg.entity_test_share)
    try:
        rest, test = train_test_split(
            rows, test_size=cfg.entity_test_share, stratify=label[rows], random_state=cfg.seed
        )
        train, validation = train_test_split(
            rest, test_size=val_share, stratify=label[rest], random_state=cfg.seed
        )
    except ValueError as exc:
        raise ModelError(f"cannot make a stratified split of {rows.size} rows: {exc}") from None
    note = (
        f"entity mode ({reason}): stratified random split, "
        f"{cfg.entity_test_share:.0%} test and {cfg.entity_validation_share:.0%} validation; "
        "there is no out-of-time check"
    )
    cutoff = tuple(pd.unique(pd.DatetimeIndex(features["cutoff"])[rows]))
    return Split(
        mode="entity",
        train=np.sort(train),
        validation=np.sort(validation),
        test=np.sort(test),
        train_cutoffs=cutoff,
        validation_cutoffs=cutoff,
        test_cutoffs=cutoff,
        removed=removed,
        notes=(note,),
    )
