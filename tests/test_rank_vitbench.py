"""`experiments/rank_vitbench.py`: the ranking table is sorted by the training half, never by the
held-out one (its full run is `results/vitbench101_ranking.md`)."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from rank_vitbench import HOLDOUT, SPLIT_SEED, ranking_tables, train_jcm  # noqa: E402

from vit_space import Benchmark, Ranking  # noqa: E402

N = 20
FIELD = "c100_kd_acc"


def bench(space: str) -> Benchmark:
    archs = tuple({"depth": i} for i in range(N))
    return Benchmark(name=space, space=space, archs=archs, accuracies={FIELD: np.arange(N, dtype=float)}, source="test")


def ranking(name: str, scores: np.ndarray, b: Benchmark) -> Ranking:
    """A ranking of `scores` whose whole/held-out taus are written by hand below, not computed."""
    return Ranking(name, b.name, {}, {}, {FIELD: 0.001}, {FIELD: scores})


def test_train_jcm_is_kendall_tau_on_the_training_half_only():
    b = bench("autoformer")
    train, test = b.split(HOLDOUT, SPLIT_SEED)
    scores = np.arange(N, dtype=float)
    scores[test] = -scores[test]  # perfect on the training half, reversed on the held-out half
    r = ranking("p", scores, b)
    r.whole[FIELD] = {"kendall": 0.0}
    assert train_jcm(r, b) == pytest.approx(1.0)
    scores[train] = scores[train][::-1]  # now reversed on the training half too
    assert train_jcm(r, b) == pytest.approx(-1.0)


def test_rows_are_sorted_by_the_training_half_not_by_the_whole_benchmark_or_the_held_out_half():
    benches = {s: bench(s) for s in ("autoformer", "pit")}
    train, test = benches["autoformer"].split(HOLDOUT, SPLIT_SEED)
    good_train = np.arange(N, dtype=float)
    good_train[test] = 0.0  # ranks the training half exactly, ties the held-out half
    good_test = np.zeros(N)
    good_test[test] = test  # the other way round
    good_test[train[:3]] = [3, 1, 2]  # some order on the training half, short of exact
    results = {}
    for space, b in benches.items():
        # whole and held-out taus favour `heldout_pick`: a sort by either would put it first
        results["train_pick", space] = ranking("train_pick", good_train, b)
        results["train_pick", space].whole[FIELD] = {"kendall": 0.4}
        results["train_pick", space].heldout[FIELD] = {"kendall": 0.0}
        results["heldout_pick", space] = ranking("heldout_pick", good_test, b)
        results["heldout_pick", space].whole[FIELD] = {"kendall": 0.6}
        results["heldout_pick", space].heldout[FIELD] = {"kendall": 1.0}
    text, order = ranking_tables(["heldout_pick", "train_pick"], results, benches)
    assert order == ["train_pick", "heldout_pick"]
    first = text.splitlines()[2]
    assert first.startswith(
        "| train_pick | discovered | 1.000 | 1.000 | 1.000 | 0.400 | 0.400 | 0.400 | 0.000 | 0.000 |"
    )
