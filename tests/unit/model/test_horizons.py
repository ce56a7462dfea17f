"""Per-horizon Platt calibration of the survival head."""

from __future__ import annotations

import numpy as np
import pytest

from churn.errors import ModelError
from churn.model.horizons import HorizonCalibration, probability_column


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 3000
    first = rng.uniform(0.01, 0.3, n)
    raw = np.column_stack([first, first * 1.6, first * 2.0]).clip(0, 0.99)
    raw[:300] = 0.0  # no decision inside any horizon
    truth = np.clip(raw * 0.5, 0, 1)  # the raw scores are twice too high
    labels = (rng.uniform(size=raw.shape) < truth).astype(float)
    labels[:, 1] = np.maximum(labels[:, 1], labels[:, 0])
    labels[:, 2] = np.maximum(labels[:, 2], labels[:, 1])
    labels[-100:, 2] = np.nan  # unobserved at 90 days
    return raw, labels


def test_calibration_fixes_overconfidence_keeps_zero_and_order() -> None:
    raw, labels = _data()
    calibration = HorizonCalibration.fit(raw, labels, (30, 60, 90))
    calibrated = calibration.transform(raw)
    assert (calibrated[:300] == 0).all()
    assert (np.diff(calibrated, axis=1) >= -1e-15).all()
    observed = np.isfinite(labels[:, 0])
    # Mean calibrated risk close to the churn rate; the raw mean is about twice it.
    assert calibrated[observed, 0].mean() == pytest.approx(labels[observed, 0].mean(), rel=0.15)
    assert raw[observed, 0].mean() > 1.5 * labels[observed, 0].mean()


def test_crossing_curves_are_made_monotone() -> None:
    calibration = HorizonCalibration((30, 60), (1.0, 1.0), (0.0, -3.0))
    out = calibration.transform(np.array([[0.2, 0.25]]))
    assert out[0, 1] == out[0, 0] == pytest.approx(0.2)


def test_single_class_fails_naming_the_horizon() -> None:
    raw = np.full((10, 1), 0.2)
    with pytest.raises(ModelError, match="30-day"):
        HorizonCalibration.fit(raw, np.zeros((10, 1)), (30,))


def test_round_trip_and_column_name() -> None:
    calibration = HorizonCalibration((30, 60), (1.5, 0.5), (0.1, -0.2))
    assert HorizonCalibration.from_dict(calibration.to_dict()) == calibration
    with pytest.raises(ModelError):
        HorizonCalibration.from_dict({"horizons": [60, 30], "slopes": [1, 1], "intercepts": [0, 0]})
    assert probability_column(60) == "churn_probability_60d"
