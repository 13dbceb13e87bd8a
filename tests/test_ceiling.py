"""`experiments/ceiling.py`: the architecture-count ceiling (its full run is `results/ceiling.md`)."""

import sys
from itertools import permutations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from ceiling import best_ranking, encoding, fitted_monomial  # noqa: E402

from gp_proxy import kendall  # noqa: E402


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


def test_the_fitted_monomial_finds_half_exponents_on_its_grid():
    rng = np.random.default_rng(4)
    depth, width, noise = rng.integers(2, 20, 60), rng.integers(8, 64, 60), rng.integers(1, 9, 60)
    features = np.log(np.column_stack([depth, width, noise]).astype(float))
    accuracy = depth * np.sqrt(width)  # as the attention output's element count ranks AutoFormer c100
    w, fit = fitted_monomial(features, [accuracy], np.arange(40), directions=0, seed=0)
    np.testing.assert_allclose(w, np.array([1.0, 0.5, 0.0]) / np.sqrt(1.25))
    assert fit > 0.999


def test_the_best_ranking_is_the_best_of_every_order_tried_one_by_one():
    rng = np.random.default_rng(5)
    tasks = [rng.integers(0, 4, 6).astype(float) for _ in range(3)]  # 6 architectures, tied accuracies

    def mean_tau(ranks):
        return np.mean([kendall(np.asarray(ranks, dtype=float), t) for t in tasks])

    brute = max(mean_tau(p) for p in permutations(range(6)))
    ranks = best_ranking(tasks)
    assert sorted(ranks) == list(range(6))  # an order without ties
    assert np.isclose(mean_tau(ranks), brute)


def test_the_best_ranking_of_one_task_is_that_task():
    accuracy = np.array([0.3, 0.9, 0.1, 0.5, 0.7])
    np.testing.assert_array_equal(best_ranking([accuracy]), [1, 4, 0, 2, 3])
