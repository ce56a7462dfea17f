"""Logged retention actions joined to their outcome: did the customer churn within the horizon.

Each action is matched to the latest labeled cutoff at or before it (the population and label
of ``churn label``), at most ``max_gap_days`` earlier: its features and reasons are those known
at that cutoff, and its outcome is that cutoff's label (churn in ``[cutoff, cutoff +
horizon)``). Actions at or after ``end`` (the scoring cutoff) and actions whose label is not
yet observable are not used; plays outside the playbook are counted and left out.
"""

from __future__ import annotations

from collections.abc import Collection

import pandas as pd

ACTION_COLUMNS = ("customer_id", "action_at", "play", "control")


def attach_outcomes(
    actions: pd.DataFrame,
    labels: pd.DataFrame,
    plays: Collection[str],
    end: pd.Timestamp,
    max_gap_days: int = 31,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Logged actions with their cutoff and churn outcome.

    Args:
        actions: Validated ``retention_actions`` (``customer_id``, ``action_at``, ``play``,
            ``control``).
        labels: ``customer_id``, ``cutoff``, ``label`` (nullable 0/1).
        plays: Play names of the playbook.
        end: Actions at or after this time are not used.
        max_gap_days: Largest gap between the matched cutoff and the action.

    Returns:
        ``customer_id``, ``cutoff``, ``action_at``, ``play``, ``control`` (bool), ``churned``
        (int 0/1), one row per usable action, and counts of the rows left out by reason.
    """
    counts = {"rows": len(actions)}
    frame = actions[list(ACTION_COLUMNS)].copy()
    known = frame["play"].isin(list(plays))
    counts["unknown_play"] = int((~known).sum())
    late = frame["action_at"] >= end
    counts["at_or_after_scoring_cutoff"] = int((known & late).sum())
    frame = frame[known & ~late]
    # Not-yet-observable labels stay in: an action after such a cutoff must not fall back to
    # an older cutoff whose horizon ended before the action.
    keyed = labels[["customer_id", "cutoff", "label"]]
    frame = frame.assign(customer_id=frame["customer_id"].astype(str))
    keyed = keyed.assign(customer_id=keyed["customer_id"].astype(str))
    merged = pd.merge_asof(
        frame.sort_values("action_at", kind="stable"),
        keyed.sort_values("cutoff", kind="stable"),
        left_on="action_at", right_on="cutoff", by="customer_id", direction="backward",
        tolerance=pd.Timedelta(days=max_gap_days),
    )
    usable = merged["label"].notna()
    counts["without_observable_label"] = int((~usable).sum())
    merged = merged[usable]
    out = pd.DataFrame({
        "customer_id": merged["customer_id"].to_numpy(),
        # Arrays as stored: to_numpy() of a zoned column made a Timestamp object per row.
        "cutoff": merged["cutoff"].array,
        "action_at": merged["action_at"].array,
        "play": merged["play"].astype(str).to_numpy(),
        "control": merged["control"].astype(bool).to_numpy(),
        "churned": merged["label"].astype(int).to_numpy(),
    })
    for column in ("cutoff", "action_at"):
        out[column] = pd.to_datetime(out[column], utc=True)
    counts["used"] = len(out)
    return out.reset_index(drop=True), counts
