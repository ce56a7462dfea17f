"""Tests for churn.model.artifact: inputs by name, immutability, calibration, verification."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re

import numpy as np
import pandas as pd
import pytest

from churn.errors import DataContractError, ModelError
from churn.model.artifact import (
    CATALOG_FILE,
    META_FILE,
    MODEL_FILE,
    Calibrator,
    ChurnModel,
    check_lightgbm_text,
    encode_categories,
    prepare_features,
    write_manifest,
)
from churn.model.verification import MANIFEST_FILE


def _parts(model: ChurnModel) -> dict:
    """Return the constructor arguments of ``model`` (to build variants of it)."""
    return {f.name: getattr(model, f.name) for f in dataclasses.fields(ChurnModel)}


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(ChurnModel)])
def test_assigning_any_attribute_raises(tiny_model, name):
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(tiny_model, name, getattr(tiny_model, name))


def test_mappings_are_read_only(tiny_model):
    with pytest.raises(TypeError):
        tiny_model.metadata["n_train"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        tiny_model.typical_values["plan"] = "pro"  # type: ignore[index]
    with pytest.raises(TypeError):
        tiny_model.categorical_levels["plan"] = ("x",)  # type: ignore[index]


def test_the_model_keeps_its_own_copies(tiny_model):
    typical = {"plan": "pro"}
    metadata = {"lgb_params": {"num_leaves": 7}}
    levels = dict(tiny_model.categorical_levels)
    model = ChurnModel(
        **{**_parts(tiny_model), "typical_values": typical, "metadata": metadata},
    )
    typical["plan"] = "starter"
    metadata["lgb_params"]["num_leaves"] = 99
    levels["plan"] = ("changed",)
    assert model.typical_values["plan"] == "pro"
    assert model.metadata["lgb_params"]["num_leaves"] == 7
    assert model.categorical_levels == tiny_model.categorical_levels


def test_replace_makes_a_new_model_and_leaves_the_old_one(tiny_model):
    changed = dataclasses.replace(tiny_model, metadata={"n_test": 5})
    assert changed.metadata == {"n_test": 5}
    assert "n_test" not in tiny_model.metadata
    assert changed.booster is tiny_model.booster


def test_a_model_without_booster_cannot_be_built(tiny_model):
    with pytest.raises(ModelError, match="trained LightGBM booster"):
        ChurnModel(**{**_parts(tiny_model), "booster": None})


def test_feature_names_must_match_the_booster(tiny_model):
    with pytest.raises(ModelError, match="7 features but 6 feature names"):
        ChurnModel(**{**_parts(tiny_model), "feature_names": tiny_model.feature_names[:-1]})


def test_levels_of_an_unknown_feature_are_refused(tiny_model):
    levels = {**tiny_model.categorical_levels, "colour": ("red",)}
    with pytest.raises(ModelError, match=r"unknown features: \['colour'\]"):
        ChurnModel(**{**_parts(tiny_model), "categorical_levels": levels})


def test_an_invalid_catalog_is_refused(tiny_model):
    catalog = tiny_model.catalog.copy()
    catalog.loc[0, "kind"] = "integer"
    with pytest.raises(DataContractError, match="row 1: support_tickets_last_30d: kind"):
        ChurnModel(**{**_parts(tiny_model), "catalog": catalog})


def test_the_catalog_is_a_validated_copy(tiny_model):
    catalog = tiny_model.catalog.copy()
    model = ChurnModel(**{**_parts(tiny_model), "catalog": catalog})
    catalog.loc[0, "family"] = "billing"
    assert model.catalog.loc[0, "family"] == "support"


def test_prepare_features_is_what_the_model_uses(tiny_model, feature_frame):
    expected = prepare_features(
        feature_frame, tiny_model.feature_names, tiny_model.categorical_levels
    )
    np.testing.assert_array_equal(tiny_model.prepare(feature_frame), expected)


def test_prepare_features_at_positions_is_the_matrix_of_those_rows(tiny_model, feature_frame):
    names, levels = tiny_model.feature_names, tiny_model.categorical_levels
    positions = np.array([0, 3, 4, 17, len(feature_frame) - 1])
    np.testing.assert_array_equal(
        prepare_features(feature_frame, names, levels, positions),
        prepare_features(feature_frame.iloc[positions], names, levels),
    )
    assert prepare_features(feature_frame, names, levels, positions[:0]).shape == (0, len(names))


def test_prepare_features_reads_every_dtype_as_its_own_conversion(monkeypatch):
    """Naive reference: each column through pandas' ``to_numeric`` (or the category codes),
    across several chunks of rows, whole and at positions."""
    from churn.model import matrix

    monkeypatch.setattr(matrix, "CHUNK_ROWS", 8)
    monkeypatch.setattr(matrix, "BLOCK_ROWS", 3)
    rng = np.random.default_rng(9)
    n = 30
    ints = rng.integers(-5, 2**40, n)
    frame = pd.DataFrame(
        {
            "int64": ints,
            "uint8": rng.integers(0, 255, n).astype("uint8"),
            "flag": rng.random(n) < 0.5,
            "float32": rng.normal(size=n).astype("float32"),
            "float64": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
            "nullable": pd.array(np.where(rng.random(n) < 0.2, None, ints), dtype="Int64"),
            "arrow": pd.Series(rng.normal(size=n), dtype="float64[pyarrow]"),
            "text_numbers": pd.Series([str(v) for v in ints], dtype=object),
            "plan": rng.choice(["basic", "pro", None], n),
        }
    )
    names = tuple(frame.columns)
    levels = {"plan": ("basic", "pro")}

    def by_hand(rows: pd.DataFrame) -> np.ndarray:
        columns = [
            encode_categories(rows[name], levels[name])
            if name in levels
            else pd.to_numeric(rows[name]).to_numpy(dtype=np.float64, na_value=np.nan)
            for name in names
        ]
        return np.column_stack(columns)

    np.testing.assert_array_equal(prepare_features(frame, names, levels), by_hand(frame))
    positions = rng.integers(0, n, 41)
    np.testing.assert_array_equal(
        prepare_features(frame, names, levels, positions), by_hand(frame.iloc[positions])
    )
    frame.loc[5, "text_numbers"] = "twelve"
    with pytest.raises(ModelError, match="feature 'text_numbers' must be numeric"):
        prepare_features(frame, names, levels)


def test_saved_json_holds_plain_values_and_loads_back_equal(tiny_model, tmp_path):
    model = dataclasses.replace(tiny_model, metadata={"lgb_params": {"num_leaves": 7}, "n": 3})
    model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / META_FILE).read_text())
    assert meta["metadata"] == {"lgb_params": {"num_leaves": 7}, "n": 3}
    assert meta["typical_values"] == dict(tiny_model.typical_values)
    loaded = ChurnModel.load(tmp_path / "m")
    assert loaded.metadata == model.metadata
    assert loaded.typical_values == model.typical_values
    pd.testing.assert_frame_equal(loaded.catalog, model.catalog)


def test_reordered_columns_score_identically(tiny_model, feature_frame):
    shuffled = feature_frame[list(reversed(feature_frame.columns))]
    np.testing.assert_array_equal(
        tiny_model.predict_proba(feature_frame), tiny_model.predict_proba(shuffled)
    )


def test_missing_feature_is_a_clear_error(tiny_model, feature_frame):
    with pytest.raises(ModelError, match="last_nps_score"):
        tiny_model.predict_proba(feature_frame.drop(columns=["last_nps_score"]))


def test_unseen_category_is_scored_as_missing(tiny_model, feature_frame):
    rows = feature_frame.head(50).copy()
    unseen = rows.copy()
    unseen["acquisition_channel"] = "a_channel_never_seen"
    missing = rows.copy()
    missing["acquisition_channel"] = pd.NA
    np.testing.assert_allclose(tiny_model.predict_raw(unseen), tiny_model.predict_raw(missing))


def test_encode_categories_matches_naive_reference():
    values = pd.Series(["b", "a", None, "zz", "c"], dtype="object")
    levels = ("a", "b", "c")
    expected = [1.0, 0.0, np.nan, np.nan, 2.0]
    np.testing.assert_array_equal(encode_categories(values, levels), expected)


def test_contributions_add_up_to_raw_score(tiny_model, feature_frame):
    contributions, base = tiny_model.contributions(feature_frame)
    np.testing.assert_allclose(
        contributions.sum(axis=1) + base, tiny_model.predict_raw(feature_frame), atol=1e-9
    )


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibrator_is_monotone_and_bounded(method):
    rng = np.random.default_rng(3)
    raw = rng.normal(size=2000)
    labels = (rng.random(2000) < 1 / (1 + np.exp(-(2 * raw - 1)))).astype(int)
    calibrator = Calibrator.fit(raw, labels, method)
    grid = np.linspace(-5, 5, 101)
    probabilities = calibrator.transform(grid)
    assert np.all(np.diff(probabilities) >= -1e-12)
    assert probabilities.min() >= 0 and probabilities.max() <= 1
    assert Calibrator.from_dict(calibrator.to_dict()) == calibrator


def test_calibrator_refuses_single_class():
    with pytest.raises(ModelError, match="single class"):
        Calibrator.fit(np.zeros(10), np.zeros(10), "isotonic")


def test_save_load_round_trip(tiny_model, feature_frame, tmp_path):
    tiny_model.save(tmp_path / "m")
    loaded = ChurnModel.load(tmp_path / "m")
    np.testing.assert_array_equal(
        loaded.predict_proba(feature_frame), tiny_model.predict_proba(feature_frame)
    )
    assert loaded.categorical_levels == tiny_model.categorical_levels
    assert list(loaded.catalog["name"]) == list(tiny_model.catalog["name"])


def test_corrupt_model_file_is_refused_before_parsing(tiny_model, tmp_path):
    tiny_model.save(tmp_path / "m")
    path = tmp_path / "m" / MODEL_FILE
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ModelError, match="checksum mismatch"):
        ChurnModel.load(tmp_path / "m")


def test_contributions_equal_lightgbm_reference(tiny_model, feature_frame):
    fast, fast_base = tiny_model.contributions(feature_frame)
    reference, reference_base = tiny_model.contributions_reference(feature_frame)
    np.testing.assert_allclose(fast, reference, atol=1e-9, rtol=0)
    np.testing.assert_allclose(fast_base, reference_base, atol=1e-12, rtol=0)


def test_encode_categories_keeps_missing_apart_from_text_lookalikes():
    values = pd.Series(["nan", None, "<NA>", np.nan], dtype="object")
    codes = encode_categories(values, ("<NA>", "nan"))
    np.testing.assert_array_equal(codes, [1.0, np.nan, 0.0, np.nan])


# --------------------------------------------------------------------------------------------
# Verification before parsing: manifest, metadata schema, LightGBM text structure
# --------------------------------------------------------------------------------------------


def _saved(tiny_model, tmp_path):
    directory = tmp_path / "m"
    tiny_model.save(directory)
    return directory


def _edit_meta(directory, change) -> None:
    """Change churn_model.json and re-sign it, as an attacker who also rewrites the manifest."""
    meta = json.loads((directory / META_FILE).read_text())
    change(meta)
    (directory / META_FILE).write_text(json.dumps(meta))
    write_manifest(directory)


def test_save_writes_a_manifest_of_every_file(tiny_model, tmp_path):
    directory = _saved(tiny_model, tmp_path)
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    assert manifest["algorithm"] == "sha256"
    assert manifest["files"] == {
        name: hashlib.sha256((directory / name).read_bytes()).hexdigest()
        for name in (CATALOG_FILE, META_FILE, MODEL_FILE)
    }


def test_a_changed_metadata_file_is_refused_by_its_checksum(tiny_model, tmp_path):
    directory = _saved(tiny_model, tmp_path)
    meta = json.loads((directory / META_FILE).read_text())
    meta["feature_names"] = meta["feature_names"][::-1]
    (directory / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=f"checksum mismatch for .*{META_FILE}"):
        ChurnModel.load(directory)


def test_a_directory_without_manifest_is_refused(tiny_model, tmp_path):
    directory = _saved(tiny_model, tmp_path)
    (directory / MANIFEST_FILE).unlink()
    with pytest.raises(ModelError, match=f"{MANIFEST_FILE} is missing"):
        ChurnModel.load(directory)


def test_a_manifest_entry_leaving_the_directory_is_refused(tiny_model, tmp_path):
    directory = _saved(tiny_model, tmp_path)
    (tmp_path / "elsewhere.txt").write_text("x")
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    manifest["files"]["../elsewhere.txt"] = hashlib.sha256(b"x").hexdigest()
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="outside"):
        ChurnModel.load(directory)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda m: m.__setitem__("feature_names", m["feature_names"][::-1]), "do not match"),
        (lambda m: m["feature_names"].pop(0), "do not match"),
        (lambda m: m.pop("calibrator"), "'calibrator' is missing"),
        (lambda m: m["calibrator"].__setitem__("method", "magic"), "method 'magic'"),
        (lambda m: m["calibrator"].__setitem__("x", []), "knots 'x' and values 'y'"),
        (lambda m: m["calibrator"]["y"].reverse(), "must be increasing"),
        (lambda m: m["categorical_levels"].pop("plan"), "the categorical levels"),
        (lambda m: m["categorical_levels"].__setitem__("nope", ["a"]), "'nope' is not in"),
        (lambda m: m.__setitem__("format_version", 1), "format_version 1"),
    ],
)
def test_metadata_that_does_not_fit_the_schema_is_refused(tiny_model, tmp_path, change, problem):
    directory = _saved(tiny_model, tmp_path)
    _edit_meta(directory, change)
    with pytest.raises(ModelError, match=problem) as caught:
        ChurnModel.load(directory)
    assert str(directory) in str(caught.value)


def _lightgbm_text(tiny_model) -> str:
    return tiny_model.booster.model_to_string()


def test_a_well_formed_lightgbm_text_passes_the_structural_check(tiny_model):
    check_lightgbm_text(_lightgbm_text(tiny_model), "model.txt", tiny_model.feature_names)


@pytest.mark.parametrize(
    ("corrupt", "problem"),
    [
        (lambda t: t.replace("tree_sizes=", "tree_sizes=1 ", 1), "tree_sizes"),
        (lambda t: t.replace("Tree=1\n", "Tree=7\n", 1), "tree_sizes"),
        (lambda t: t.replace("end of trees", "end of forest", 1), "end of trees"),
        (lambda t: t.replace("max_feature_idx=", "max_feature_idx=9", 1), "do not match"),
        (lambda t: "garbage\n\n" + t, "'tree' header"),
        (lambda t: re.sub(r"left_child=-?\d+", "left_child=999", t, count=1), "tree_sizes|range"),
    ],
)
def test_a_malformed_lightgbm_text_is_refused_before_lightgbm_parses_it(
    tiny_model, corrupt, problem
):
    text = corrupt(_lightgbm_text(tiny_model))
    with pytest.raises(ModelError, match=problem):
        check_lightgbm_text(text, "model.txt", tiny_model.feature_names)


def test_tree_arrays_are_checked_even_when_the_sizes_fit(tiny_model, tmp_path):
    """A child index out of range, with tree_sizes recomputed, is still refused (no abort)."""
    directory = _saved(tiny_model, tmp_path)
    text = (directory / MODEL_FILE).read_text()
    head, _, rest = text.partition("\n\n")
    section, _, tail = rest.partition("end of trees")
    blocks = re.split(r"(?=^Tree=\d+\n)", section, flags=re.MULTILINE)
    blocks = [b for b in blocks if b]
    blocks[0] = re.sub(r"left_child=(-?\d+)", "left_child=4000", blocks[0], count=1)
    sizes = " ".join(str(len(b.encode())) for b in blocks)
    head = re.sub(r"tree_sizes=[\d ]+", f"tree_sizes={sizes}", head)
    (directory / MODEL_FILE).write_text(head + "\n\n" + "".join(blocks) + "end of trees" + tail)
    write_manifest(directory)
    with pytest.raises(ModelError, match="left_child index 4000 is out of range"):
        ChurnModel.load(directory)
