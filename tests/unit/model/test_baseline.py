"""Tests for churn.model.baseline: the JSON logistic baseline equals the scikit-learn pipeline."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from support.tiny import TINY_CATALOG

from churn.errors import ModelError
from churn.model.baseline import (
    LogisticBaseline,
    fit_baseline,
    load_baseline,
    predict_baseline,
    save_baseline,
)


def reference_pipeline(
    train: pd.DataFrame, catalog: pd.DataFrame, solver: str = "newton-cholesky"
):
    """The scikit-learn pipeline the baseline stands for, fitted the textbook way."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    is_cat = catalog["kind"] == "categorical"
    numeric, categorical = list(catalog.loc[~is_cat, "name"]), list(catalog.loc[is_cat, "name"])
    prepare = ColumnTransformer(
        [
            (
                "n",
                make_pipeline(
                    SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()
                ),
                numeric,
            ),
            (
                "c",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                categorical,
            ),
        ]
    )
    model = LogisticRegression(solver=solver, max_iter=2000, random_state=0)
    pipeline = Pipeline([("p", prepare), ("m", model)])
    inputs = train[numeric + categorical].copy()
    for name in categorical:
        inputs[name] = inputs[name].astype("object").map(str).where(inputs[name].notna(), np.nan)
    pipeline.fit(inputs, train["label"].astype(int))
    return pipeline, inputs.columns


def as_text(frame: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    out = frame.copy()
    for name in categorical:
        out[name] = out[name].astype("object").map(str).where(out[name].notna(), np.nan)
    return out


def test_numpy_baseline_equals_the_sklearn_pipeline(feature_frame):
    train, test = feature_frame.iloc[:1000], feature_frame.iloc[1000:].copy()
    test.loc[test.index[:5], "plan"] = "a_plan_never_seen"
    test.loc[test.index[5:10], "plan"] = pd.NA
    test.loc[test.index[10:15], "last_nps_score"] = np.nan
    baseline = fit_baseline(train, TINY_CATALOG)
    pipeline, columns = reference_pipeline(train, TINY_CATALOG)
    categorical = ["acquisition_channel", "plan"]
    want = pipeline.predict_proba(as_text(test, categorical)[list(columns)])[:, 1]
    # The same solver on the same numbers; the encodings' arithmetic differs in the last bits.
    np.testing.assert_allclose(predict_baseline(baseline, test), want, rtol=0, atol=1e-9)


def test_a_wide_design_is_fitted_sparse_by_lbfgs_to_the_same_optimum(feature_frame, monkeypatch):
    """Past :data:`NEWTON_MAX_COLUMNS` the fit switches solver and matrix, not the model."""
    import churn.model.baseline as baseline_module

    train, test = feature_frame.iloc[:1000], feature_frame.iloc[1000:]
    newton = fit_baseline(train, TINY_CATALOG)
    monkeypatch.setattr(baseline_module, "NEWTON_MAX_COLUMNS", len(newton.coefficients) - 1)
    seen = []
    original = LogisticBaseline.design_matrix

    def spy(self, frame, *, sparse=False, positions=None):
        seen.append(sparse)
        return original(self, frame, sparse=sparse, positions=positions)

    monkeypatch.setattr(LogisticBaseline, "design_matrix", spy)
    wide = fit_baseline(train, TINY_CATALOG)
    assert seen == [True]
    pipeline, columns = reference_pipeline(train, TINY_CATALOG, solver="lbfgs")
    want = pipeline.predict_proba(as_text(test, ["acquisition_channel", "plan"])[list(columns)])
    # The same solver on a dense matrix of the same cells: equal up to L-BFGS's tolerance.
    np.testing.assert_allclose(predict_baseline(wide, test), want[:, 1], rtol=0, atol=1e-3)
    # L-BFGS stops at its tolerance, Newton at the optimum: close, not equal.
    np.testing.assert_allclose(
        predict_baseline(wide, test), predict_baseline(newton, test), rtol=0, atol=5e-3
    )


def test_sparse_and_dense_designs_hold_the_same_cells(feature_frame):
    baseline = fit_baseline(feature_frame.iloc[:1000], TINY_CATALOG)
    rows = feature_frame.iloc[1000:].copy()
    rows.loc[rows.index[:5], "plan"] = "a_plan_never_seen"
    dense = baseline.design_matrix(rows)
    np.testing.assert_array_equal(baseline.design_matrix(rows, sparse=True).toarray(), dense)
    # The unseen level sets no column; every other row has exactly one level per category.
    one_hot = dense[:, len(baseline.numeric) :]
    assert (one_hot[:5].sum(axis=1) == 1).all()  # acquisition_channel only
    assert (one_hot[5:].sum(axis=1) == 2).all()


def test_probabilities_equal_the_design_matrix_times_the_coefficients(feature_frame):
    """The level look-up of ``predict_proba`` is the one-hot product, without the matrix."""
    baseline = fit_baseline(feature_frame.iloc[:1000], TINY_CATALOG)
    rows = feature_frame.iloc[1000:].copy()
    rows.loc[rows.index[:5], "plan"] = "a_plan_never_seen"
    logits = baseline.design_matrix(rows) @ np.asarray(baseline.coefficients) + baseline.intercept
    np.testing.assert_allclose(
        predict_baseline(baseline, rows), 1 / (1 + np.exp(-logits)), rtol=0, atol=1e-12
    )


def test_third_party_integer_codes_work_like_text(feature_frame):
    """An export with integer category codes and integer counts fits and scores the same."""
    codes = {level: code for code, level in enumerate(sorted(feature_frame["plan"].unique()))}
    export = feature_frame.assign(plan=feature_frame["plan"].map(codes).astype("int64"))
    baseline = fit_baseline(export.iloc[:1000], TINY_CATALOG)
    assert baseline.levels[baseline.categorical.index("plan")] == tuple(
        str(code) for code in sorted(codes.values())
    )
    pipeline, columns = reference_pipeline(export.iloc[:1000], TINY_CATALOG)
    test = export.iloc[1000:]
    want = pipeline.predict_proba(as_text(test, ["acquisition_channel", "plan"])[list(columns)])
    np.testing.assert_allclose(predict_baseline(baseline, test), want[:, 1], rtol=0, atol=1e-9)


def test_an_all_missing_category_column_keeps_one_level_and_scores(feature_frame):
    """An optional column absent from the user's files arrives all missing (e.g. ``country``)."""
    export = feature_frame.assign(plan=pd.Series(pd.NA, index=feature_frame.index, dtype="str"))

    baseline = fit_baseline(export.iloc[:1000], TINY_CATALOG)
    probabilities = predict_baseline(baseline, export.iloc[1000:])

    assert baseline.levels[baseline.categorical.index("plan")] == ("missing",)
    # A constant column carries nothing: as if it were not there (up to the L2 penalty).
    catalog = TINY_CATALOG[TINY_CATALOG["name"] != "plan"]
    without = fit_baseline(export.iloc[:1000], catalog)
    np.testing.assert_allclose(
        probabilities, predict_baseline(without, export.iloc[1000:]), atol=5e-3
    )


def test_json_round_trip_scores_identically(feature_frame, tmp_path):
    baseline = fit_baseline(feature_frame.iloc[:1000], TINY_CATALOG)
    save_baseline(baseline, tmp_path / "baseline.json")
    loaded = load_baseline(tmp_path / "baseline.json")
    assert loaded == baseline
    np.testing.assert_array_equal(
        predict_baseline(loaded, feature_frame), predict_baseline(baseline, feature_frame)
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.pop("coefficients"), "'coefficients' must be a list of"),
        (lambda d: d["coefficients"].pop(), "'coefficients' must be a list of"),
        (lambda d: d.__setitem__("intercept", "1"), "'intercept' must be a finite number"),
        (lambda d: d["scales"].__setitem__(0, 0.0), "'scales' must be positive"),
        (lambda d: d["medians"].__setitem__(0, None), "not a finite number"),
        (lambda d: d.__setitem__("format", "sklearn-pickle"), "'format' must be"),
        (lambda d: d["levels"].pop(), "one list of level names per categorical feature"),
    ],
)
def test_a_malformed_baseline_is_refused_naming_the_file(feature_frame, tmp_path, change, problem):
    payload = fit_baseline(feature_frame.iloc[:1000], TINY_CATALOG).to_dict()
    change(payload)
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(ModelError, match=problem) as caught:
        load_baseline(path)
    assert str(path) in str(caught.value)


def test_missing_input_column_is_named(feature_frame):
    baseline = LogisticBaseline(("a",), (0.0,), (0.0,), (1.0,), (), (), (1.0,), 0.0)
    with pytest.raises(ModelError, match=r"\['a'\]"):
        predict_baseline(baseline, feature_frame)


def test_a_fit_on_positions_of_a_frame_is_the_fit_on_those_rows(feature_frame):
    """A training sample's positions give the baseline of the copied rows: the same numbers,
    in the dense and the sparse design."""
    rng = np.random.default_rng(3)
    positions = np.sort(rng.choice(len(feature_frame), size=900, replace=False))
    weights = rng.uniform(1.0, 4.0, size=900)
    rows = feature_frame.iloc[positions]
    copied = fit_baseline(rows, TINY_CATALOG, sample_weight=weights)
    taken = fit_baseline(feature_frame, TINY_CATALOG, sample_weight=weights, positions=positions)
    assert taken == copied
    for sparse in (False, True):
        at = copied.design_matrix(feature_frame, sparse=sparse, positions=positions)
        whole = copied.design_matrix(rows, sparse=sparse)
        if sparse:
            at, whole = at.toarray(), whole.toarray()
        np.testing.assert_array_equal(at, whole)


def test_read_numbers_reads_every_numeric_dtype_as_pandas_converts_it(monkeypatch) -> None:
    from churn.model import matrix
    from churn.model.baseline import read_numbers

    monkeypatch.setattr(matrix, "CHUNK_ROWS", 4)
    monkeypatch.setattr(matrix, "BLOCK_ROWS", 2)
    frame = pd.DataFrame(
        {
            "int64": [3, -1, 2**53 + 1, 0, 7, 9, 11],
            "flag": [True, False, True, True, False, False, True],
            "nullable": pd.array([1, None, 3, 4, None, 6, 7], dtype="Int64"),
            "text": ["1.5", "2", "-3", "4", "5", "6", "7e3"],
        }
    )
    names = tuple(frame.columns)

    def by_hand(rows: pd.DataFrame) -> np.ndarray:
        return np.column_stack(
            [pd.to_numeric(rows[n]).to_numpy(dtype=np.float64, na_value=np.nan) for n in names]
        )

    np.testing.assert_array_equal(read_numbers(frame, names), by_hand(frame))
    positions = np.array([6, 0, 0, 3, 5])
    design = np.zeros((5, 6))  # a row-major block of a wider design matrix
    read_numbers(frame, names, positions, out=design[:, 1:5])
    np.testing.assert_array_equal(design[:, 1:5], by_hand(frame.iloc[positions]))
    assert not design[:, [0, 5]].any()
    frame.loc[2, "text"] = "n/a"
    with pytest.raises(ModelError, match="baseline numeric input is not numeric"):
        read_numbers(frame, names)
