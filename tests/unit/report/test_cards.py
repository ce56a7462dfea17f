"""The "Customer cards" report section: horizons, next decision, reasons, what changed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from support.report_fakes import write_fake_outputs

from churn.config import ReportConfig
from churn.report.cards import HIDDEN, cards_section, pick_card_customers
from churn.report.inputs import load_report_inputs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    paths = write_fake_outputs(tmp_path_factory.mktemp("report"))
    return load_report_inputs(paths["inputs_paths"])


def _scores(n: int = 30) -> pd.DataFrame:
    """Scores shaped like a third-party run: integer ids, horizons, reasons, a decision date."""
    rng = np.random.default_rng(3)
    p30 = rng.uniform(0.0, 0.3, n)
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(5001, 5001 + n),
            "cutoff": pd.Timestamp("2026-11-01", tz="UTC"),
            "churn_probability": p30 * 1.5,
            "churn_probability_30d": p30,
            "churn_probability_60d": p30 * 1.5,
            "churn_probability_90d": p30 * 2.0,
            "next_decision_date": pd.Timestamp("2026-11-01", tz="UTC")
            + pd.to_timedelta(np.arange(n), unit="D"),
            "plan": rng.choice(["basic", "pro"], n),
            "reason_1_feature": "tickets_30d",
            "reason_1_text": "4 support tickets opened in the last 30 days; a typical customer "
            "has 0",
            "reason_2_feature": "plan",
            "reason_2_text": "plan is basic: customers with it leave 1.4x as often as average",
        }
    )
    frame.loc[3, "churn_probability"] = frame["churn_probability"].max() + 0.1  # the riskiest
    return frame


def _changes(scores: pd.DataFrame) -> pd.DataFrame:
    top = scores.loc[3]
    return pd.DataFrame(
        {
            "customer_id": [str(top["customer_id"]), str(scores.loc[0, "customer_id"])],
            "status": ["continuing", "new"],
            "cutoff": top["cutoff"],
            "previous_cutoff": [pd.Timestamp("2026-10-01", tz="UTC"), pd.NaT],
            "churn_probability": [top["churn_probability"], scores.loc[0, "churn_probability"]],
            "previous_probability": [0.05, np.nan],
            "probability_change": [top["churn_probability"] - 0.05, np.nan],
            "moved_1_feature": ["tickets_30d", None],
            "moved_1_delta": [0.8, np.nan],
            "moved_1_text": [
                "support tickets opened in the last 30 days rose from 0 to 4",
                None,
            ],
        }
    )


def _cards(body: str) -> list[str]:
    return body.split('<article class="card">')[1:]


def test_cards_show_the_riskiest_customers_first(inputs) -> None:
    scores = _scores()
    case = dataclasses.replace(inputs, scores=scores, changes=_changes(scores), labels=None,
                               customers=None)
    lead, body = cards_section(case, ReportConfig(customer_cards=4))
    cards = _cards(body)
    assert len(cards) == 4
    # Naive reference: sort by probability, highest first.
    expected = scores.sort_values("churn_probability", ascending=False)["customer_id"].head(4)
    for card, customer in zip(cards, expected, strict=True):
        assert f"Customer {customer}</h3>" in card
    first = cards[0]
    row = scores.loc[3]
    for days in (30, 60, 90):
        assert f"Within {days} days" in first
        assert f"{row[f'churn_probability_{days}d']:.1%}" in first
    assert "2026-11-04" in first  # next decision date of row 3
    assert "4 support tickets opened in the last 30 days" in first
    assert "rose from 0 to 4" in first
    assert "5.0% at 2026-10-01" in first
    assert "4 customers most likely to churn" in lead


def test_a_new_customer_and_a_missing_changes_file_are_said(inputs) -> None:
    scores = _scores()
    scores.loc[0, "churn_probability"] = 2.0  # customer 5001, "new" in the changes file
    case = dataclasses.replace(inputs, scores=scores, changes=_changes(scores), labels=None,
                               customers=None)
    _, body = cards_section(case, ReportConfig(customer_cards=2))
    assert "New: not scored the last time." in _cards(body)[0]
    without = dataclasses.replace(case, changes=None, missing={"changes": "no earlier scores"})
    _, body = cards_section(without, ReportConfig(customer_cards=2))
    assert "No comparison: no earlier scores." in _cards(body)[0]


def test_personal_data_never_reaches_a_card(inputs) -> None:
    scores = _scores()
    scores["contact_email"] = [f"person{i}@example.com" for i in range(len(scores))]
    scores["customer_id"] = scores["customer_id"].astype(str)
    scores.loc[3, "customer_id"] = "+49 30 1234567"  # an id that is a phone number
    scores.loc[3, "reason_2_text"] = "owner is jane.doe@example.org"
    case = dataclasses.replace(inputs, scores=scores, changes=None, labels=None, customers=None,
                               segment_columns=("plan", "contact_email"))
    lead, body = cards_section(case, ReportConfig(customer_cards=len(scores)))
    assert "@example" not in body and "1234567" not in body
    assert body.count(HIDDEN) == 2  # the id and the reason
    assert "Left out as personal data: contact_email" in lead
    assert "Plan: " in body


def test_without_horizons_one_probability_is_shown(inputs) -> None:
    scores = _scores().drop(
        columns=["churn_probability_30d", "churn_probability_60d", "churn_probability_90d",
                 "next_decision_date"]
    )
    case = dataclasses.replace(inputs, scores=scores, changes=None, labels=None, customers=None)
    lead, body = cards_section(case, ReportConfig(customer_cards=1))
    assert "Within 30 days" not in body and "Churn probability</div>" in body
    assert "no survival head" in lead


def test_pick_breaks_ties_by_customer_id() -> None:
    frame = pd.DataFrame({"customer_id": ["b", "a", "c"], "churn_probability": [0.5, 0.5, np.nan]})
    assert list(pick_card_customers(frame, 3)["customer_id"]) == ["a", "b", "c"]


def test_zero_cards_is_a_note(inputs) -> None:
    lead, body = cards_section(inputs, ReportConfig(customer_cards=0))
    assert lead is None and "report.customer_cards is 0" in body


def test_the_report_registers_the_cards_section(inputs) -> None:
    from churn.report.render import render_report

    document = render_report(inputs, ReportConfig(top_customers=5, customer_cards=3))
    start = document.index('<section id="cards">')
    section = document[start : document.index("</section>", start)]
    assert section.count('<article class="card">') == 3
    assert 'href="#cards"' in document
