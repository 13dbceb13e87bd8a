"""`experiments/ceiling.py`: the architecture-count ceiling (its full run is `results/ceiling.md`)."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from ceiling import encoding, fitted_monomial  # noqa: E402


def test_encoding_logs_scalars_and_sums_lists():
    names, values = encoding([{"depth": 2, "heads": [1, 3]}, {"depth": 4, "heads": [2, 2]}])
    assert names == ["depth", "sum_heads"]
    np.testing.assert_allclose(values, np.log([[2, 4], [4, 4]]))


def test_the_fitted_monomial_recovers_the_exponents_that_made_the_accuracy():
    rng = np.random.default_rng(3)
    depth, width, noise = rng.integers(2, 20, 60), rng.integers(8, 64, 60), rng.integers(1, 9, 60)
    features = np.log(np.column_stack([depth, width, noise]).astype(float))
    accuracy = np.log(depth) + np.log(width)  # depth x width, the third feature irrelevant
    train = np.arange(40)
    w, fit = fitted_monomial(features, [accuracy], train, directions=200, seed=0)
    np.testing.assert_allclose(w, [2**-0.5, 2**-0.5, 0.0])  # the equal-exponent subset {depth, width}
    assert fit > 0.999  # 1 up to float rounding of tied products
