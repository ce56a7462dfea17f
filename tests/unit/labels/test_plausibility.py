"""Label plausibility: the churn rates that only broken labels give stop the run."""

from __future__ import annotations

import pytest

from churn.config import LabelConfig
from churn.errors import DataContractError
from churn.labels.plausibility import check_label_plausibility, find_implausible_cutoffs


def _cutoff(day: str, population: int, churners: int) -> dict[str, object]:
    return {
        "cutoff": day,
        "population": population,
        "labeled": True,
        "churners": churners,
        "churn_rate": churners / population,
        "unlabeled_reason": None,
    }


def test_plausible_rates_pass() -> None:
    cutoffs = [_cutoff(f"2024-0{m}-01", 1000, 40 + m) for m in range(1, 8)]
    assert find_implausible_cutoffs(cutoffs, LabelConfig()) == []
    check_label_plausibility(cutoffs, LabelConfig())


def test_rate_above_the_ceiling_is_implausible() -> None:
    cutoffs = [_cutoff("2024-01-01", 100, 60)]

    problems = find_implausible_cutoffs(cutoffs, LabelConfig())

    assert problems == [
        "cutoff 2024-01-01: 60 of 100 churned (60.0%), above label.max_churn_rate = 50%"
    ]
    assert find_implausible_cutoffs(cutoffs, LabelConfig(max_churn_rate=0.7)) == []


def test_rate_far_above_the_other_cutoffs_is_implausible() -> None:
    cutoffs = [_cutoff(f"2024-0{m}-01", 1000, 40) for m in range(1, 5)]
    cutoffs.append(_cutoff("2024-05-01", 1000, 210))  # 21% vs a median of 4%

    problems = find_implausible_cutoffs(cutoffs, LabelConfig())

    assert len(problems) == 1 and problems[0].startswith("cutoff 2024-05-01: 210 of 1,000")
    assert "median rate 4.0%" in problems[0]
    # 5x of 4% is 20%: 190 churners (19%) is not flagged.
    cutoffs[-1] = _cutoff("2024-05-01", 1000, 190)
    assert find_implausible_cutoffs(cutoffs, LabelConfig()) == []


def test_no_churner_where_many_are_expected_is_implausible() -> None:
    cutoffs = [_cutoff(f"2024-0{m}-01", 1000, 50) for m in range(1, 5)]
    cutoffs.append(_cutoff("2024-05-01", 1000, 0))
    cutoffs.append(_cutoff("2024-06-01", 100, 0))  # expects 5: zero is plausible

    problems = find_implausible_cutoffs(cutoffs, LabelConfig())

    assert len(problems) == 1 and problems[0].startswith("cutoff 2024-05-01: 0 of 1,000")
    with pytest.raises(DataContractError, match=r"subscriptions\.ended_at"):
        check_label_plausibility(cutoffs, LabelConfig())


def test_unlabeled_cutoffs_are_never_implausible() -> None:
    cutoffs = [_cutoff(f"2024-0{m}-01", 1000, 50) for m in range(1, 4)]
    cutoffs.append(
        {
            "cutoff": "2024-04-01",
            "population": 1000,
            "labeled": False,
            "churners": None,
            "churn_rate": None,
            "unlabeled_reason": "x",
        }
    )
    assert find_implausible_cutoffs(cutoffs, LabelConfig()) == []
