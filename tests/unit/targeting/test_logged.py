"""Logged actions matched to the labeled cutoff before them."""

from __future__ import annotations

import pandas as pd

from churn.targeting.logged import attach_outcomes

UTC = "UTC"


def test_actions_get_the_label_of_the_cutoff_before_and_late_rows_are_left_out():
    cut = pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01"], utc=True)
    labels = pd.DataFrame({"customer_id": ["a"] * 3 + ["b"] * 3, "cutoff": list(cut) * 2,
                           "label": pd.array([0, 1, pd.NA, 1, 0, 0], dtype="Int8")})
    actions = pd.DataFrame({
        "customer_id": ["a", "a", "b", "b", "a", "b"],
        "action_at": pd.to_datetime(
            ["2025-01-05T00:00", "2025-02-01T09:00", "2025-01-31T00:00", "2025-02-10T00:00",
             "2025-03-02T00:00", "2025-04-02T00:00"], utc=True),
        "play": ["call", "call", "call", "unknown", "call", "call"],
        "control": [False, True, False, False, False, False],
    })
    out, counts = attach_outcomes(actions, labels, ["call"], pd.Timestamp("2025-04-01",
                                                                          tz=UTC))
    got = out.sort_values("action_at")[["customer_id", "cutoff", "churned", "control"]]
    assert got.values.tolist() == [
        ["a", pd.Timestamp("2025-01-01", tz=UTC), 0, False],
        ["b", pd.Timestamp("2025-01-01", tz=UTC), 1, False],
        ["a", pd.Timestamp("2025-02-01", tz=UTC), 1, True],
    ]
    assert counts == {"rows": 6, "unknown_play": 1, "at_or_after_scoring_cutoff": 1,
                      "without_observable_label": 1, "used": 3}
