"""The training-free searcher: budgets, determinism, resume, several proxies, bad input."""

import csv
import json

import numpy as np
import pytest

from gp_proxy.errors import AutoproxError
from vit_space.data.batches import BatchSpec
from vit_space.probe.cache import ProbeSpec, StatsCache
from vit_space.search.budget import Budget
from vit_space.search.searchers import Candidate, SearchConfig, Searcher, refresh_fitness
from vit_space.spaces import get_space

SPEC = ProbeSpec(BatchSpec("c100", "skimage", 4, 0, 64), 8)
BUDGET = Budget(0.5e6, 3e6, num_classes=100, img_size=64)


def searcher(tmp_path, proxies=("snip",), **config) -> Searcher:
    config = {"count": 10, "population": 4, "parents": 2, "seed": 3} | config
    return Searcher(
        get_space("pit"), list(proxies), BUDGET, SPEC, StatsCache(tmp_path / "cache"), SearchConfig(**config)
    )


def rows(folder):
    with (folder / "evaluated.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("algorithm", ["evolution", "random"])
def test_search_stays_in_budget_evaluates_each_arch_once_and_is_seeded(tmp_path, algorithm):
    first = searcher(tmp_path, algorithm=algorithm).run(tmp_path / "a", progress=False)
    assert len(first.evaluated) == 10 and len({c.hash for c in first.evaluated}) == 10
    assert all(0.5e6 <= c.params <= 3e6 for c in first.evaluated)
    searcher(tmp_path, algorithm=algorithm).run(tmp_path / "b", progress=False)
    assert (tmp_path / "a" / "evaluated.csv").read_text() == (tmp_path / "b" / "evaluated.csv").read_text()
    best = json.loads((tmp_path / "a" / "best_arch.json").read_text())
    assert best["fitness"] == max(float(r["fitness"]) for r in rows(tmp_path / "a"))
    assert (tmp_path / "a" / "progress.png").is_file() and "| 1 |" in (tmp_path / "a" / "top.md").read_text()


def test_evolution_breeds_from_the_best(tmp_path):
    state = searcher(tmp_path, count=12).run(tmp_path / "a", progress=False)
    first_batch = [c.fitness for c in state.evaluated[:4]]
    later = [c.fitness for c in state.evaluated[4:]]
    assert np.median(later) > np.median(first_batch)  # children of the best score above random ones


def test_an_interrupted_search_resumes_to_the_same_result(tmp_path, monkeypatch):
    searcher(tmp_path).run(tmp_path / "full", progress=False)
    interrupted = searcher(tmp_path)
    calls = {"n": 0}
    original = interrupted.evaluate

    def stop_after_two(archs, state):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        original(archs, state)

    monkeypatch.setattr(interrupted, "evaluate", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        interrupted.run(tmp_path / "part", progress=False)
    with pytest.raises(AutoproxError, match="pass --resume"):
        searcher(tmp_path).run(tmp_path / "part", progress=False)
    searcher(tmp_path).run(tmp_path / "part", resume=True, progress=False)
    assert rows(tmp_path / "part") == rows(tmp_path / "full")


def test_resume_refuses_corrupt_or_foreign_checkpoints(tmp_path):
    searcher(tmp_path, count=4).run(tmp_path / "a", progress=False)
    with pytest.raises(AutoproxError, match="another search"):
        searcher(tmp_path, count=4, seed=9).run(tmp_path / "a", resume=True, progress=False)
    wider = Searcher(
        get_space("pit"),
        ["snip"],
        Budget(0.5e6, 4e6, num_classes=100, img_size=64),
        SPEC,
        StatsCache(tmp_path / "cache"),
        SearchConfig(count=4, population=4, parents=2, seed=3),
    )
    with pytest.raises(AutoproxError, match="another search"):
        wider.run(tmp_path / "a", resume=True, progress=False)
    checkpoint = tmp_path / "a" / "checkpoint.json"
    payload = json.loads(checkpoint.read_text())
    payload["evaluated"][1]["arch"]["base_dim"] = 17
    checkpoint.write_text(json.dumps(payload))
    with pytest.raises(AutoproxError, match=r"checkpoint\.json is corrupt .*base_dim=17 is not allowed"):
        searcher(tmp_path, count=4).run(tmp_path / "a", resume=True, progress=False)
    checkpoint.write_text("{oops")
    with pytest.raises(AutoproxError, match=r"checkpoint\.json is corrupt"):
        searcher(tmp_path, count=4).run(tmp_path / "a", resume=True, progress=False)


def test_several_proxies_rank_by_mean_rank():
    cands = [Candidate({}, str(i), list(s), 0, 0, i) for i, s in enumerate([(1.0, 30.0), (2.0, 10.0), (3.0, 20.0)])]
    refresh_fitness(cands)
    assert [round(c.fitness, 4) for c in cands] == [
        round((1 / 3 + 1) / 2, 4),
        round((2 / 3 + 1 / 3) / 2, 4),
        round((1 + 2 / 3) / 2, 4),
    ]
    nan = [Candidate({}, "n", [float("nan")], 0, 0, 0), Candidate({}, "m", [1.0], 0, 0, 1)]
    refresh_fitness(nan)
    assert nan[0].fitness < nan[1].fitness


def test_impossible_budget_and_bad_config(tmp_path):
    impossible = Searcher(
        get_space("pit"),
        ["snip"],
        Budget(500e6, 600e6),
        SPEC,
        StatsCache(tmp_path),
        SearchConfig(count=2, population=2, parents=1),
    )
    with pytest.raises(AutoproxError, match="spans about"):
        impossible.run(tmp_path / "x", progress=False)
    with pytest.raises(AutoproxError, match="unknown search algorithm"):
        searcher(tmp_path, algorithm="annealing")
