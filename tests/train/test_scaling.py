"""The scaling-law fit recovers a known law and predicts a larger budget."""

import numpy as np
import pytest

from lmforge.train.scaling import PowerLaw, fit_power_law, plot_fit


def test_fit_recovers_parameters_and_extrapolates(tmp_path):
    truth = PowerLaw(a=40.0, b=0.12, c=1.7)
    compute = np.logspace(12, 16, 6)
    rng = np.random.default_rng(0)
    loss = truth(compute) * (1 + rng.normal(0, 1e-4, compute.size))
    law = fit_power_law(list(compute), list(loss))
    assert law.b == pytest.approx(truth.b, rel=0.05)
    assert law.c == pytest.approx(truth.c, rel=0.05)
    big = 1e18  # 100x beyond the largest run
    assert law(big) == pytest.approx(truth(big), rel=0.01)
    assert plot_fit(list(compute), list(loss), law, tmp_path / "fit.png", predict_at=big).is_file()


def test_fit_needs_three_runs():
    with pytest.raises(ValueError, match="at least 3"):
        fit_power_law([1e12, 1e13], [3.0, 2.5])
