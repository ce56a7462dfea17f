"""Tests for churn.layout: the names of files inside output directories."""

from __future__ import annotations

import ast
from pathlib import Path

from churn import layout


def test_sidecars_sit_beside_the_scores_as_parquet_whatever_the_scores_format(tmp_path):
    scores = tmp_path / "nightly" / "scores.csv"
    assert layout.sidecar_path(scores, layout.CHANGES_SUFFIX) == (
        tmp_path / "nightly" / "scores_changes.parquet"
    )
    assert layout.sidecar_path(str(tmp_path / "s.parquet"), layout.CONTRIBUTIONS_SUFFIX) == (
        tmp_path / "s_contributions.parquet"
    )


def test_file_names_follow_the_names():
    assert layout.table_file_name("customer_months") == "customer_months.parquet"
    assert layout.plot_file_name("precision_recall") == "precision_recall.csv"
    assert layout.explain_table_file_name("phase_importance") == "phase_importance.csv"


def test_layout_is_a_leaf_of_the_bottom_layer():
    tree = ast.parse(Path(layout.__file__).read_text())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert imported and not [name for name in imported if name and name.startswith("churn")]
