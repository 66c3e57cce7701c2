import math

import pytest

from hilnas.server.lut.predict import (Correction, MissingOps, cross_validated_predictions, fidelity, fit_correction,
                                   lut_sum, predict)


def test_sum_counts_repeats_and_names_missing_ops():
    lut = {"a": 1.0, "b": 2.5}
    assert lut_sum(["a", "a", "b"], lut) == 4.5
    with pytest.raises(MissingOps) as err:
        lut_sum(["a", "c", "d", "c"], lut)
    assert err.value.keys == ("c", "d") and "c, d" in str(err.value)


def test_fit_recovers_scale_and_offset():
    sums = [1.0, 2.0, 3.0, 5.0, 8.0]
    measured = [0.8 * s + 0.3 for s in sums]
    corr = fit_correction(sums, measured)
    assert corr.scale == pytest.approx(0.8) and corr.offset_ms == pytest.approx(0.3) and corr.fitted_on == 5
    assert predict(["x"] * 4, {"x": 1.0}, corr) == pytest.approx(3.5)
    with pytest.raises(ValueError):
        fit_correction([1.0], [1.0])
    assert Correction.from_dict(corr.to_dict()) == corr


def test_fidelity_metrics_like_nn_meter():
    f = fidelity([1.0, 1.04, 1.2, 0.5], [1.0, 1.0, 1.0, 1.0])
    assert f.within_10pct == 0.5 and f.within_5pct == 0.5
    assert f.rmspe == pytest.approx(math.sqrt((0 + 16 + 400 + 2500) / 4))
    assert f.max_ape == pytest.approx(50.0)


def test_cross_validation_does_not_see_its_own_point():
    sums = [float(i) for i in range(1, 11)]
    measured = [2 * s for s in sums]
    measured[3] = 100.0  # an outlier: its own prediction must not bend to it
    cv = cross_validated_predictions(sums, measured, folds=5, seed=1)
    assert abs(cv[3] - 8.0) < abs(cv[3] - 100.0)
    clean = cross_validated_predictions(sums, [2 * s for s in sums], folds=5)
    assert clean == pytest.approx([2 * s for s in sums])
