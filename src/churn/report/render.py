"""The analyst report: one self-contained HTML file from the pipeline's outputs.

* :func:`load_report_inputs` reads whatever the other stages wrote (JSON reports, plot CSVs,
  explanation PNGs and tables, labels, scores and the optional score changes) into
  :class:`ReportInputs`. A missing or unreadable input is recorded with the reason instead of
  raising: the report is read by people deciding whom to call, so a partial report that says
  what is missing beats no report.
* :func:`render_report` is the pure core: inputs and config in, an HTML string out. Sections
  are drawn by :mod:`churn.report.sections`, charts by :mod:`churn.report.charts`, and all
  escaping and layout by :mod:`churn.report.html`.
* :func:`run_report` is the runner the CLI calls; it writes the file atomically.

Decisions: every image is a ``data:`` URI and the page carries a Content-Security-Policy that
forbids any other load, so the file can be mailed or archived and never calls home. Segment
attributes the scores lack are joined by customer: plan and billing period from the labels
at the score cutoff (else the customer's latest label row), the acquisition channel from the
validated customers table when the runner is given one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from churn.config import ReportConfig
from churn.report.inputs import ReportInputs

logger = logging.getLogger(__name__)


def render_report(inputs: ReportInputs, cfg: ReportConfig) -> str:
    """Render the report as one self-contained HTML document.

    Args:
        inputs: What the pipeline produced (any part may be missing).
        cfg: Report knobs (``top_customers``).

    Returns:
        The HTML document. Every value taken from the inputs is escaped.
    """
    # Imported here so that importing churn.report (for ReportInputs) stays light.
    from churn.report.cards import cards_section
    from churn.report.data import (
        gate_decision,
        is_snapshot,
        model_identity,
        model_version,
        per_cutoff,
        score_cutoff_text,
        with_segments,
    )
    from churn.report.health import health_section
    from churn.report.horizons import horizons_section
    from churn.report.html import not_available, page, section
    from churn.report.risk import (
        changes_section,
        customers_section,
        explain_section,
        segments_section,
    )
    from churn.report.sections import (
        churn_rate_section,
        data_check_section,
        data_section,
        model_section,
        summary,
    )
    from churn.report.targeting import targeting_section

    if inputs.scores is not None and inputs.segmented_scores is None:
        try:
            inputs = replace(inputs, segmented_scores=with_segments(inputs))
        except Exception as exc:
            # Left unjoined: the sections that read the join compute it again and show the
            # failure in place, like any other section failure (see ``guarded``).
            logger.warning("joining segment attributes to the scores failed: %s", exc)
    labels = inputs.labels
    keyed = labels is not None and {"cutoff", "customer_id"} <= set(labels.columns)
    if keyed and inputs.labels_per_cutoff is None:
        try:
            inputs = replace(inputs, labels_per_cutoff=per_cutoff(labels))
        except Exception as exc:  # as above: the two sections compute it and show the failure
            logger.warning("counting the labels per cutoff failed: %s", exc)
    snapshot = is_snapshot(inputs)
    sections = (
        ("data", "Data" if snapshot else "Data window and population", data_section),
        ("data-check", "Data check", data_check_section),
        ("churn-rate", "Churn rate" if snapshot else "Churn rate over time", churn_rate_section),
        ("model", "Model card", model_section),
        ("explain", "What drives churn risk", explain_section),
        ("customers", "Top customers at risk", customers_section),
        ("cards", "Customer cards", cards_section),
        ("segments", "Segments", segments_section),
        ("horizons", "Risk over 30, 60 and 90 days", horizons_section),
        ("changes", "What changed since the last score", changes_section),
        ("health", "Model health", health_section),
        ("targeting", "Who to contact this week", targeting_section),
    )

    def guarded(title: str, draw: Callable[[], Any]) -> Any:
        try:
            return draw()
        except Exception as exc:
            # Input shapes come from other stages and may drift; one odd input must cost
            # one section, not the whole report. The reason is shown in place and logged.
            logger.warning("report section %r failed: %s: %s", title, type(exc).__name__, exc)
            return None, not_available(
                title.lower(), f"could not render this section ({type(exc).__name__}: {exc})"
            )

    parts = [guarded("Summary", lambda: (None, summary(inputs)))[1]]
    nav = []
    for anchor, title, draw in sections:
        lead, body = guarded(title, lambda draw=draw: draw(inputs, cfg))
        parts.append(section(anchor, title, body, lead))
        nav.append((anchor, title))
    facts = [f"Score cutoff {score_cutoff_text(inputs)}"]
    described, trained, promoted_record = model_identity(inputs)
    version = model_version(inputs)
    if described:
        refused = f" (champion; {trained} not promoted)" if promoted_record is False else ""
        facts.append(f"model {described}{refused}")
    elif version:
        promoted = gate_decision(inputs)[2]
        facts.append(f"model {version}" + (" (not promoted)" if promoted is False else ""))
    if inputs.generated_at:
        facts.append(f"generated {inputs.generated_at}")
    return page("Churn risk report", " · ".join(facts), nav, "".join(parts))
