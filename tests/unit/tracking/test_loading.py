"""Tests for churn.tracking.loading: artifacts are read from this project's own store folder."""

from __future__ import annotations

import pytest

from churn.tracking.loading import MODEL_URI_PATTERN, relocate_artifact_uri

OLD_ROOT = "file:///old/project/mlartifacts"


@pytest.mark.parametrize(
    ("uri", "root", "store", "expected"),
    [
        # A copied project: the recorded root is another folder's mlartifacts/.
        (
            f"{OLD_ROOT}/models/m-1/artifacts",
            OLD_ROOT,
            "sqlite:////new/place/mlflow.db",
            "file:///new/place/mlartifacts/models/m-1/artifacts",
        ),
        # Already this project's root: unchanged.
        (
            "file:///new/place/mlartifacts/models/m-1/artifacts",
            "file:///new/place/mlartifacts",
            "sqlite:////new/place/mlflow.db",
            "file:///new/place/mlartifacts/models/m-1/artifacts",
        ),
        # A root the user chose (not churn's mlartifacts/ convention): used as recorded.
        (
            "file:///shared/artifacts/models/m-1",
            "file:///shared/artifacts",
            "sqlite:////new/place/mlflow.db",
            "file:///shared/artifacts/models/m-1",
        ),
        ("s3://bucket/mlartifacts/m-1", "s3://bucket/mlartifacts", "sqlite:////p/mlflow.db", None),
        # Another store kind: no sibling folder to re-root at.
        (f"{OLD_ROOT}/m-1", OLD_ROOT, "http://127.0.0.1:5000", None),
        # Only whole path components match: mlartifacts2/ is not under mlartifacts/.
        ("file:///old/project/mlartifacts2/m-1", OLD_ROOT, "sqlite:////p/mlflow.db", None),
    ],
)
def test_relocate_artifact_uri(uri, root, store, expected):
    assert relocate_artifact_uri(uri, root, store) == (uri if expected is None else expected)


def test_relocate_resolves_a_relative_store_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    moved = relocate_artifact_uri(f"{OLD_ROOT}/m-1/x", OLD_ROOT, "sqlite:///mlflow.db")
    assert moved == f"{(tmp_path / 'mlartifacts').as_uri()}/m-1/x"


@pytest.mark.parametrize(
    ("uri", "parts"),
    [
        ("models:/churn@champion", ("churn", "champion", None, None)),
        ("models:/churn/12", ("churn", None, "12", None)),
        ("models:/churn/12/artifacts/churn_model", ("churn", None, "12", "/artifacts/churn_model")),
    ],
)
def test_model_uri_pattern(uri, parts):
    match = MODEL_URI_PATTERN.match(uri)
    assert (match["name"], match["alias"], match["version"], match["rest"]) == parts


def test_model_uri_pattern_leaves_stage_uris_to_mlflow():
    assert MODEL_URI_PATTERN.match("models:/churn/Production") is None
