import numpy as np
import pytest
from scipy import stats
from synthetic import planted_tasks

from gp_proxy.errors import AutoproxError
from gp_proxy.fitness import PAIRWISE_LIMIT, Task, correlations, jcm, kendall, report, valid_scores


def test_correlations_match_scipy_on_the_finite_entries():
    rng = np.random.default_rng(0)
    scores, acc = rng.normal(size=30), rng.normal(size=30)
    acc[3], scores[7] = np.nan, np.inf
    idx = np.arange(0, 30, 2)
    got = correlations(scores, acc, idx)
    keep = [i for i in idx if np.isfinite(acc[i]) and np.isfinite(scores[i])]
    assert got["n"] == len(keep) == 15
    assert got["kendall"] == pytest.approx(stats.kendalltau(scores[keep], acc[keep]).statistic)
    assert got["spearman"] == pytest.approx(stats.spearmanr(scores[keep], acc[keep]).statistic)
    assert got["pearson"] == pytest.approx(stats.pearsonr(scores[keep], acc[keep]).statistic)
    assert kendall(scores[keep], acc[keep]) == pytest.approx(got["kendall"])


def test_kendall_has_scipys_bits_with_ties_huge_values_and_either_side_of_the_pairwise_limit():
    rng = np.random.default_rng(1)
    for trial in range(400):
        n = int(rng.integers(3, PAIRWISE_LIMIT + 40))
        tied = rng.integers(0, rng.integers(2, 12), n).astype(np.float64)
        x = tied if trial % 2 else rng.normal(size=n) * 10.0 ** rng.integers(-300, 300)
        y = rng.integers(0, 5, n).astype(np.float64) if trial % 3 == 0 else rng.normal(size=n) * 1e307
        if np.ptp(x) > 0 and np.ptp(y) > 0:
            assert kendall(x, y) == stats.kendalltau(x, y).statistic, (trial, n)
    assert kendall(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 1.0, 2.0, 0.0])) == pytest.approx(-1 / np.sqrt(30))
    accuracy = rng.normal(size=100).round(1)  # one accuracy vector, many candidates: its signs are counted once
    for trial in range(50):
        scores = rng.normal(size=100).round(trial % 3)
        scores[rng.integers(0, 100, trial % 4)] = np.nan
        keep = np.isfinite(scores)
        assert kendall(scores, accuracy) == stats.kendalltau(scores[keep], accuracy[keep]).statistic, trial


def test_degenerate_correlations_are_nan():
    assert np.isnan(correlations(np.ones(5), np.arange(5.0), np.arange(5))["kendall"])
    assert np.isnan(kendall(np.arange(2.0), np.arange(2.0)))
    assert not valid_scores(np.ones(4)) and not valid_scores(np.array([1.0, np.nan])) and valid_scores(np.arange(3.0))


def test_jcm_modes():
    taus = [0.2, 0.6, 0.4]
    assert jcm(taus) == pytest.approx(0.4)
    assert jcm(taus, "min") == pytest.approx(0.2)
    assert jcm(taus, "mean-std") == pytest.approx(0.4 - np.std(taus))
    assert np.isnan(jcm([0.1, np.nan]))
    with pytest.raises(AutoproxError, match="unknown JCM mode 'max'; known: mean, min, mean-std"):
        jcm(taus, "max")


def test_report_separates_train_and_heldout():
    tasks = planted_tasks()
    truth = {t.name: t.accuracy for t in tasks}
    rep = report(truth, tasks)
    assert rep.valid and rep.jcm_train == pytest.approx(1.0) and rep.jcm_test == pytest.approx(1.0)
    assert rep.train["data1"]["n"] == 20 and rep.test["data2"]["n"] == 20
    flat = report({t.name: np.ones(40) for t in tasks}, tasks)
    assert not flat.valid and np.isnan(flat.jcm_train)


def test_task_checks():
    task = planted_tasks()[0]
    with pytest.raises(AutoproxError, match="fewer than 3 architectures"):
        Task("t", task.bundle, np.full(40, np.nan), task.train, task.test)
    with pytest.raises(AutoproxError, match="every training accuracy is the same"):
        Task("t", task.bundle, np.full(40, 70.0), task.train, task.test)
    with pytest.raises(AutoproxError, match="39 accuracies for 40 networks"):
        Task("t", task.bundle, np.zeros(39), task.train, task.test)
