"""Tests for churn.report: a self-contained, escaped HTML report that survives missing inputs."""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from support.report_fakes import EVIL_ID, EVIL_REASON, write_fake_outputs
from typer.testing import CliRunner

from churn.cli import app
from churn.config import Params, ReportConfig
from churn.report.data import gate_decision, reason_texts
from churn.report.inputs import ReportPaths, find_changes_file, load_report_inputs
from churn.report.render import render_report
from churn.stages.report import run_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Tags(HTMLParser):
    """Collects every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(document: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(document)
    return parser.tags


def _section(document: str, anchor: str) -> str:
    start = document.index(f'<section id="{anchor}">')
    return document[start : document.index("</section>", start)]


@pytest.fixture
def fake(tmp_path) -> dict[str, Path]:
    """Fake pipeline outputs a test may change."""
    return write_fake_outputs(tmp_path / "project")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Inputs loaded once from read-only fake outputs (rendering draws charts: not free)."""
    paths = write_fake_outputs(tmp_path_factory.mktemp("report"))
    return load_report_inputs(paths["inputs_paths"])


@pytest.fixture(scope="module")
def document(inputs) -> str:
    return render_report(inputs, ReportConfig(top_customers=20))


def test_report_is_self_contained(document):
    assert 'src="http' not in document and "src='http" not in document
    assert 'href="http' not in document
    assert "<link" not in document
    assert "@import" not in document and "url(" not in document
    tags = _tags(document)
    scripts = [attrs for tag, attrs in tags if tag == "script"]
    assert scripts and all("src" not in attrs for attrs in scripts)
    images = [attrs["src"] for tag, attrs in tags if tag == "img"]
    assert len(images) >= 10  # 5 explain PNGs, churn rate, 4 model charts, 2 risk shares
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    # Only in-page anchors: the file must work offline and never call home.
    links = [attrs.get("href") for tag, attrs in tags if tag == "a"]
    assert links and all(href.startswith("#") for href in links)
    csp = next(attrs["content"] for tag, attrs in tags if attrs.get("http-equiv"))
    assert "default-src 'none'" in csp and "img-src data:" in csp


def test_every_section_renders_without_errors(document):
    for anchor in ("data", "churn-rate", "model", "explain", "customers", "segments", "changes",
                   "targeting"):
        assert f'<section id="{anchor}">' in document
    assert "Not available" not in document
    assert "could not render" not in document


def test_hostile_customer_data_is_escaped(document):
    assert EVIL_ID not in document and EVIL_REASON not in document
    assert html.escape(EVIL_ID) in document
    assert html.escape(EVIL_REASON) in document
    assert [tag for tag, _ in _tags(document)].count("script") == 1  # ours only
    assert not any(tag == "img" and attrs.get("onerror") for tag, attrs in _tags(document))


def test_top_customers_are_ranked_by_revenue_at_risk_with_reasons(inputs):
    document = render_report(inputs, ReportConfig(top_customers=5))
    customers = _section(document, "customers")
    ranked = inputs.scores.sort_values("expected_revenue_at_risk", ascending=False)
    ids = re.findall(r'<td class="w">(.*?)</td>', customers)
    assert ids == [html.escape(i) for i in ranked["customer_id"].head(5)]
    assert customers.count('<ol class="reasons">') == 5
    assert "2 support tickets in the last 30 days; typical is 0" in customers


def test_sections_show_the_pipeline_facts(document):
    data = _section(document, "data")
    assert "2025-01-01" in data and "6: 4 labeled, 2 for scoring only" in data
    assert "customer_id:unique (6)" in data and "table absent" in data
    model = _section(document, "model")
    assert "0.810" in model and "0.660" in model and "0.860" in model  # model, baseline, oracle
    assert "Lift in the riskiest 5%" in model and "Lift in the riskiest 500%" not in model
    assert "promoted to champion" in model and "beats champion v2" in model
    assert "2025-01-01 – 2025-02-01 (2 cutoffs)" in model  # training cutoffs
    assert "the validation cutoff holds a single class" in model  # backtest skip reason
    assert "support tickets opened in the last 30 days" in _section(document, "explain")


def test_segments_join_plan_from_labels_and_channel_from_customers(inputs, document):
    segments = _section(document, "segments")
    for title in ("Plan", "Acquisition channel", "Billing period"):
        assert f"<h3>{title}</h3>" in segments
    assert "paid_search" in segments and "annual" in segments
    plans = inputs.labels.loc[inputs.labels["cutoff"] == inputs.labels["cutoff"].max(), "plan"]
    for plan, count in plans.value_counts().items():
        assert re.search(rf"<td>{plan}</td><td class=\"n\" data-sort=\"{count}.0\">", segments)
    assert "0.800" in segments  # segment ROC AUC from metrics.json


def test_segment_without_a_source_is_marked_not_available(inputs):
    document = render_report(dataclasses.replace(inputs, customers=None), ReportConfig())
    segments = _section(document, "segments")
    assert "Not available: acquisition channel" in segments
    assert "<h3>Plan</h3>" in segments and "Not available: plan" not in segments


def test_changes_section_lists_risers_fallers_and_counts(document):
    changes = _section(document, "changes")
    assert "Biggest increases" in changes and "Biggest decreases" in changes
    assert "raised risk: days with product activity in the last 30 days" in changes
    assert re.search(r"New customers</div><div class=\"kval\">1<", changes)
    assert re.search(r"No longer scored</div><div class=\"kval\">1<", changes)


def test_missing_inputs_give_not_available_sections(tmp_path):
    reports = tmp_path / "reports"
    absent = ReportPaths(
        ingest_report=reports / "ingest.json",
        train_report=reports / "train.json",
        model_record=reports / "model.json",
        metrics=reports / "metrics.json",
        plots_dir=reports / "plots",
        explain_dir=reports / "explain",
        catalog=reports / "feature_catalog.csv",
        labels=tmp_path / "labels.parquet",
        scores=tmp_path / "scores.parquet",
    )
    run_report(Params(), absent, tmp_path / "out" / "index.html")
    document = (tmp_path / "out" / "index.html").read_text()
    for anchor in ("data", "churn-rate", "model", "explain", "customers", "segments", "changes",
                   "targeting"):
        assert "Not available" in _section(document, anchor), anchor
    assert "does not exist" in document
    assert "could not render" not in document
    assert "<img" not in document


def test_some_inputs_missing_or_broken(fake):
    paths = dataclasses.replace(fake["inputs_paths"], customers=None)
    paths.metrics.write_text("{not json")
    shutil.rmtree(paths.explain_dir)
    (paths.scores.with_name("scores_changes.parquet")).unlink()
    inputs = load_report_inputs(paths)
    assert "could not read" in inputs.missing["metrics"]
    document = render_report(inputs, ReportConfig())
    model = _section(document, "model")
    assert "Not available: test metrics" in model and "could not read" in model
    assert "Not available: backtest" in model
    assert "promoted to champion" in model  # train.json is still there
    assert "Not available: global explanations" in _section(document, "explain")
    assert "no earlier scores to compare with" in _section(document, "changes")
    assert "Not available" not in _section(document, "customers")


def test_a_png_name_must_hold_a_png(fake):
    paths = dataclasses.replace(fake["inputs_paths"], customers=None)
    (paths.explain_dir / "evil.png").write_text("<svg onload=alert(1)>")
    inputs = load_report_inputs(paths)
    assert "evil.png" not in inputs.explain_images
    assert "not a PNG file" in inputs.missing["evil.png"]
    assert len(inputs.explain_images) == 5


def test_unexpected_shapes_do_not_crash(inputs):
    odd = dataclasses.replace(
        inputs,
        metrics={"test": {"roc_auc": "n/a", "lift_at": [1, 2]}, "backtest": "none"},
        train={"split": ["train"], "registry": {"gate": "kept the champion"}},
        ingest={"tables": ["customers"]},
        catalog=pd.DataFrame({"name": ["x"]}),
        scores=inputs.scores.drop(columns=["expected_revenue_at_risk", "mrr"]),
        changes=pd.DataFrame({"customer_id": ["a"]}),
    )
    document = render_report(odd, ReportConfig())
    assert "could not render" not in document
    assert "kept the champion" in document


def test_reason_texts_fall_back_to_the_catalog_description():
    row = pd.Series(
        {
            "reason_1_feature": "support_tickets_last_30d",
            "reason_1_value": 4.0,
            "reason_1_text": None,
            "reason_2_feature": None,
            "reason_2_text": None,
        }
    )
    texts = reason_texts(row, {"support_tickets_last_30d": "support tickets in the last 30 days"})
    assert texts == ["support tickets in the last 30 days: 4.00"]


@pytest.mark.parametrize(
    ("gate", "promoted", "headline"),
    [
        ({"outcome": "rejected", "alias": "challenger", "reason": "worse"}, False, "not promoted"),
        ({"outcome": "first_model", "alias": "champion"}, True, "first model"),
        ({"alias": "champion"}, True, "promoted to champion"),
        ({}, None, "not recorded"),
    ],
)
def test_gate_decision_reads_the_registry_record(inputs, gate, promoted, headline):
    train = {"registry": {"gate": gate}} if gate else {}
    text, _, flag, _ = gate_decision(dataclasses.replace(inputs, train=train))
    assert flag is promoted and headline in text


def test_model_card_warns_when_the_new_model_was_not_promoted(inputs):
    # Outputs of a pipeline without model.json: the card described the refused model.
    gate = {"alias": "challenger", "outcome": "rejected", "champion_version": "1"}
    train = {**inputs.train, "registry": {**inputs.train["registry"], "gate": gate}}
    model = _section(
        render_report(dataclasses.replace(inputs, train=train, model=None), ReportConfig()),
        "model",
    )
    assert "did not promote" in model and "the champion (version 1)" in model
    assert "did not promote" not in _section(render_report(inputs, ReportConfig()), "model")


def test_report_says_which_champion_the_figures_describe_after_a_refused_gate(inputs):
    gate = {"alias": "challenger", "outcome": "rejected", "champion_version": "5"}
    train = {**inputs.train, "registry": {**inputs.train["registry"], "gate": gate}}
    record = {**inputs.model, "version": "5", "trained_version": "7", "promoted": False}
    document = render_report(dataclasses.replace(inputs, train=train, model=record), ReportConfig())
    model = _section(document, "model")
    assert "The model trained in this run (v7) was not promoted; figures describe champion v5." in (
        model
    )
    assert "describes the newly trained model" not in model
    header = document[: document.index("<section")]
    assert "model v5 (champion; v7 not promoted)" in header


def test_report_has_no_champion_note_when_the_new_model_was_promoted(inputs, document):
    assert inputs.model["promoted"] is True
    model = _section(document, "model")
    assert "was not promoted" not in model and "did not promote" not in model
    header = document[: document.index("<section")]
    assert "model v3" in header and "not promoted" not in header


def test_render_is_deterministic(inputs, document):
    assert render_report(inputs, ReportConfig(top_customers=20)) == document


def test_scores_as_csv_keep_identifiers_and_find_the_changes(fake):
    paths = fake["inputs_paths"]
    scores = pd.read_parquet(paths.scores)
    scores["customer_id"] = "00" + scores["customer_id"].str.slice(0, 8)
    csv_path = paths.scores.with_suffix(".csv")
    scores.to_csv(csv_path, index=False)
    assert find_changes_file(csv_path).name == "scores_changes.parquet"
    inputs = load_report_inputs(dataclasses.replace(paths, scores=csv_path, customers=None))
    assert inputs.scores["customer_id"].str.startswith("00").all()
    assert "00c0" in render_report(inputs, ReportConfig())


def _report_options(paths: ReportPaths) -> list[str]:
    """Return ``churn report``'s input options for ``paths`` (each input named explicitly)."""
    return [
        *("--ingest-report", str(paths.ingest_report), "--train-report", str(paths.train_report)),
        *("--model-record", str(paths.model_record)),
        *("--metrics", str(paths.metrics), "--plots-dir", str(paths.plots_dir)),
        *("--explain-dir", str(paths.explain_dir), "--catalog", str(paths.catalog)),
        *("--labels", str(paths.labels), "--scores", str(paths.scores)),
        *("--validated", str(paths.customers.parent)),
    ]


def test_cli_report_writes_the_file(fake, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"report": {"top_customers": 3}}))
    result = CliRunner().invoke(
        app,
        [
            "report",
            "--params",
            str(params),
            *_report_options(fake["inputs_paths"]),
            "--out",
            str(fake["out_path"]),
        ],
    )
    assert result.exit_code == 0, result.output
    customers = _section(fake["out_path"].read_text(), "customers")
    assert customers.count('<ol class="reasons">') == 3
    assert [p.name for p in fake["out_path"].parent.glob(".index.html*")] == []  # no temp left


def test_render_joins_the_segment_attributes_once(inputs, monkeypatch):
    # Four sections read the scores with their segments; the join (a sort and a drop of
    # duplicates over every label row) is made once by render_report and shared.
    import churn.report.cards
    import churn.report.data
    import churn.report.horizons
    import churn.report.risk

    original = churn.report.data.with_segments
    joins = []

    def counting(given):
        if given.segmented_scores is None:
            joins.append(1)
        return original(given)

    for module in (churn.report.data, churn.report.cards, churn.report.horizons, churn.report.risk):
        monkeypatch.setattr(module, "with_segments", counting)
    document = render_report(inputs, ReportConfig(top_customers=20))
    assert len(joins) == 1
    assert document == render_report(inputs, ReportConfig(top_customers=20))
    assert inputs.segmented_scores is None  # the caller's inputs are left as they were


def test_render_counts_the_labels_per_cutoff_once(inputs, monkeypatch):
    # The data and churn-rate sections both show the labels per cutoff (2.3 s each on a
    # million customers' label rows): render_report counts them once and shares the table.
    import churn.report.data

    original = churn.report.data.per_cutoff
    counted = []

    def counting(labels):
        counted.append(len(labels))
        return original(labels)

    monkeypatch.setattr(churn.report.data, "per_cutoff", counting)
    document = render_report(inputs, ReportConfig(top_customers=20))
    assert counted == [len(inputs.labels)]
    assert inputs.labels_per_cutoff is None  # the caller's inputs are left as they were
    # Without the shared table each section counts for itself, to the same page.
    monkeypatch.setattr(churn.report.data, "per_cutoff", original)
    import churn.report.sections

    cfg = ReportConfig(top_customers=20)
    sections = (churn.report.sections.data_section, churn.report.sections.churn_rate_section)
    alone = [section(inputs, cfg) for section in sections]
    shared = dataclasses.replace(inputs, labels_per_cutoff=original(inputs.labels))
    assert alone == [section(shared, cfg) for section in sections]
    assert "could not render" not in document


def test_a_failed_segment_join_costs_only_the_sections_that_need_it(inputs, monkeypatch):
    import churn.report.data

    def failing(given):
        raise ValueError("odd customer ids")

    monkeypatch.setattr(churn.report.data, "with_segments", failing)
    document = render_report(inputs, ReportConfig(top_customers=20))
    # The sections join again on their own (they hold the real function) and render.
    assert "could not render" not in document
    assert '<section id="segments">' in document


def test_failed_label_counts_cost_only_the_two_sections_that_show_them(inputs, monkeypatch, caplog):
    import churn.report.data

    def failing(labels):
        raise ValueError("odd cutoffs")

    monkeypatch.setattr(churn.report.data, "per_cutoff", failing)
    document = render_report(inputs, ReportConfig(top_customers=20))
    assert "counting the labels per cutoff failed: odd cutoffs" in caplog.text
    # Each of the two sections counts again, fails in place, and the others render.
    assert document.count("could not render this section (ValueError: odd cutoffs)") == 2
    assert '<section id="segments">' in document
