import numpy as np
import pytest

from edgedistill.quality.metrics import accuracy_se, mean_cosine, paired_difference_se, pairwise_spearman, probe_fit


def test_mean_cosine_and_spearman():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(100, 16))
    assert mean_cosine(a, 3 * a) == pytest.approx(1.0)
    assert mean_cosine(a, -a) == pytest.approx(-1.0)
    assert pairwise_spearman(a, 2 * a) == pytest.approx(1.0)
    assert abs(pairwise_spearman(a, rng.normal(size=(100, 16)))) < 0.1
    assert pairwise_spearman(a, a + 0.1 * rng.normal(size=a.shape)) > 0.9


def test_probe_picks_c_on_validation_and_learns_a_separable_task():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    y = (x[:, 1] - x[:, 2] > 0).astype(int)
    p = probe_fit(x[:300], y[:300], x[300:350], y[300:350])
    assert p.C in (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
    assert p.accuracy(x[350:], y[350:]) > 0.9


def test_standard_errors():
    assert accuracy_se(0.8, 1949) == pytest.approx(0.00906, abs=1e-4)
    a = np.array([1, 1, 0, 1, 0, 1] * 50, dtype=bool)
    assert paired_difference_se(a, a) == 0.0
    assert paired_difference_se(a, ~a) > 0
