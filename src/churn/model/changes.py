"""What changed since the previous scoring: probability moves and the features that moved them.

Every ``churn score`` run writes, beside its scores file, a sidecar holding each customer's
contribution (SHAP, log-odds) of *every* feature (``<stem>_contributions.parquet``). Comparing
two runs is then exact and needs no re-scoring: for a customer scored both times, the features
that moved the score most are those with the largest ``|contribution_now - contribution_before|``.
A feature known to only one of the two models counts as contributing 0 to the other.

:func:`compare_scores` is the pure core; :func:`find_previous_scores` and
:func:`read_previous_scores` are the small I/O helpers :func:`churn.stages.score.run_score` uses.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd

from churn.errors import DataContractError
from churn.io import read_frame
from churn.layout import CONTRIBUTIONS_SUFFIX, sidecar_path

logger = logging.getLogger(__name__)

#: Non-feature columns of a contributions sidecar.
SIDECAR_KEYS = ("customer_id", "cutoff", "base_value")
STATUS_CONTINUING, STATUS_NEW, STATUS_GONE = "continuing", "new", "gone"


def _key_frame(scores: pd.DataFrame) -> pd.DataFrame:
    """Return customer_id (text), cutoff (UTC) and probability (float) of a scores frame.

    A CSV scores file reads back as text, so every column is coerced here.
    """
    return pd.DataFrame(
        {
            "customer_id": scores["customer_id"].astype("str").array,
            "cutoff": pd.to_datetime(scores["cutoff"], utc=True).astype("datetime64[us, UTC]"),
            "churn_probability": pd.to_numeric(scores["churn_probability"]).astype("float64"),
        }
    )


def contributions_match(scores: pd.DataFrame, contributions: pd.DataFrame) -> bool:
    """Tell whether a contributions sidecar belongs to a scores file (same customers, cutoffs).

    Guards against a sidecar left over from another run (e.g. a run that crashed between
    writing the sidecar and the scores), which would attribute the change to the wrong features.
    """
    if not set(SIDECAR_KEYS[:2]) <= set(contributions.columns) or len(scores) != len(contributions):
        return False
    left = _key_frame(scores)[["customer_id", "cutoff"]].sort_values("customer_id")
    right = pd.DataFrame(
        {
            "customer_id": contributions["customer_id"].astype("str").array,
            "cutoff": pd.to_datetime(contributions["cutoff"], utc=True).astype(
                "datetime64[us, UTC]"
            ),
        }
    ).sort_values("customer_id")
    return bool(
        (left["customer_id"].to_numpy() == right["customer_id"].to_numpy()).all()
        and (left["cutoff"].to_numpy() == right["cutoff"].to_numpy()).all()
    )


def _contribution_matrix(
    contributions: pd.DataFrame, customer_ids: pd.Series, features: list[str]
) -> np.ndarray:
    """Return contributions of ``features`` for ``customer_ids`` (absent feature -> 0)."""
    frame = contributions.assign(customer_id=contributions["customer_id"].astype("str"))
    frame = frame.set_index("customer_id").reindex(columns=features, fill_value=0.0)
    return frame.reindex(customer_ids.to_numpy()).to_numpy(dtype=np.float64)


def compare_scores(
    current: pd.DataFrame,
    previous: pd.DataFrame,
    current_contributions: pd.DataFrame | None = None,
    previous_contributions: pd.DataFrame | None = None,
    top: int = 3,
    ineligible: Collection[str] = (),
) -> pd.DataFrame:
    """Compare two scorings customer by customer.

    Args:
        current: Scores of this run (customer_id, cutoff, churn_probability at least).
        previous: Scores of the earlier run (same columns; may come from a CSV).
        current_contributions: Contributions sidecar of this run, or ``None``.
        previous_contributions: Contributions sidecar of the earlier run, or ``None``; without
            both sidecars the ``moved_*`` columns are missing values.
        top: How many moving features to report.
        ineligible: Features never named as what moved a score: exposure and contract timing
            (catalog ``reason_eligible`` False), the same rule as the reasons of the scores.

    Returns:
        One row per customer in either run: ``customer_id``, ``status`` (``continuing``,
        ``new``: not in the previous run, ``gone``: not in this run), ``cutoff``,
        ``previous_cutoff``, ``churn_probability``, ``previous_probability``,
        ``probability_change`` (new - old; missing unless continuing), then for i = 1..top
        ``moved_{i}_feature`` and ``moved_{i}_delta`` (contribution now - before, log-odds),
        by decreasing ``|delta|``; rows sorted by decreasing ``|probability_change|``, new and
        gone customers last.
    """
    now = _key_frame(current)
    before = _key_frame(previous).rename(
        columns={"cutoff": "previous_cutoff", "churn_probability": "previous_probability"}
    )
    merged = now.merge(before, on="customer_id", how="outer", indicator=True, sort=True)
    status = merged.pop("_merge").map(
        {"both": STATUS_CONTINUING, "left_only": STATUS_NEW, "right_only": STATUS_GONE}
    )
    merged.insert(1, "status", status.astype("str").array)
    merged["probability_change"] = merged["churn_probability"] - merged["previous_probability"]

    continuing = (merged["status"] == STATUS_CONTINUING).to_numpy()
    n_rows = len(merged)
    moved_features = np.full((n_rows, top), None, dtype=object)
    moved_deltas = np.full((n_rows, top), np.nan)
    if current_contributions is not None and previous_contributions is not None and top > 0:
        features = [c for c in current_contributions.columns if c not in SIDECAR_KEYS]
        features += [
            c
            for c in previous_contributions.columns
            if c not in SIDECAR_KEYS and c not in set(features)
        ]
        features = [c for c in features if c not in set(ineligible)]
        ids = merged.loc[continuing, "customer_id"]
        delta = _contribution_matrix(current_contributions, ids, features) - _contribution_matrix(
            previous_contributions, ids, features
        )
        # NaN (customer absent from a sidecar) sorts last; ties keep the feature order.
        order = np.argsort(-np.nan_to_num(np.abs(delta), nan=-1.0), axis=1, kind="stable")
        order = order[:, :top]
        picked = np.take_along_axis(delta, order, axis=1)
        moved = np.isfinite(picked) & (picked != 0)
        names = np.asarray(features, dtype=object)[order]
        k = picked.shape[1]
        moved_features[continuing, :k] = np.where(moved, names, None)
        moved_deltas[continuing, :k] = np.where(moved, picked, np.nan)
    for i in range(top):
        merged[f"moved_{i + 1}_feature"] = pd.array(moved_features[:, i], dtype="str")
        merged[f"moved_{i + 1}_delta"] = moved_deltas[:, i]

    rank = merged["probability_change"].abs().fillna(-1.0)
    order = np.lexsort((merged["customer_id"].to_numpy(dtype=object), -rank.to_numpy()))
    return merged.iloc[order].reset_index(drop=True)


def find_previous_scores(previous_path: str | Path | None, out_path: str | Path) -> Path | None:
    """Return the earlier scores file to compare with, or ``None``.

    An explicit ``previous_path`` wins (a missing one is logged and skipped, so a first nightly
    run does not fail); otherwise the scores already at ``out_path``, read before they are
    replaced.
    """
    if previous_path is not None:
        if Path(previous_path).exists():
            return Path(previous_path)
        logger.warning("previous scores %s not found: no changes file written", previous_path)
        return None
    return Path(out_path) if Path(out_path).exists() else None


def read_previous_scores(path: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Read an earlier scores file and its contributions sidecar (``None`` if absent or stale).

    Raises:
        DataContractError: If the scores file lacks the columns a comparison needs.
    """
    previous = read_frame(path)
    missing = {"customer_id", "cutoff", "churn_probability"} - set(previous.columns)
    if missing:
        raise DataContractError(f"previous scores {path} lack column(s) {sorted(missing)}")
    contributions_path = sidecar_path(path, CONTRIBUTIONS_SUFFIX)
    if not contributions_path.exists():
        logger.info("no %s: the changes file names no moving features", contributions_path)
        return previous, None
    contributions = read_frame(contributions_path)
    if not contributions_match(previous, contributions):
        logger.warning(
            "%s does not belong to %s: moving features left out", contributions_path, path
        )
        return previous, None
    return previous, contributions
