"""Choosing proxies without held-out data: validation shares, the Pareto front, paired bootstrap intervals."""

import csv
import json

import numpy as np
import pytest
from synthetic import planted_tasks

from gp_proxy import (
    AutoproxError,
    DiscoveryConfig,
    Evaluator,
    SavedProxy,
    best_of_runs,
    bootstrap_difference,
    discover,
    load_proxy,
    split_for_validation,
)

FAST = dict(population=20, hall_of_fame=5, checkpoint_every=10)
PLANTED = "agg_sum_mlp(fro(gW))"


def test_a_validation_share_is_seeded_disjoint_and_shared_by_a_benchmarks_tasks():
    tasks = planted_tasks()
    fit, validation = split_for_validation(tasks, 0.3, seed=2)
    for task, f, v in zip(tasks, fit, validation):
        assert len(v.train) == round(0.3 * len(task.train)) and not set(f.train) & set(v.train)
        assert sorted({*f.train, *v.train}) == sorted(task.train) and np.array_equal(f.test, task.test)
        assert len(v.test) == 0
    assert np.array_equal(validation[0].train, validation[1].train)  # same architectures, same split
    again = split_for_validation(tasks, 0.3, seed=2)[1][0].train
    other = split_for_validation(tasks, 0.3, seed=3)[1][0].train
    assert np.array_equal(again, validation[0].train) and not np.array_equal(other, again)
    with pytest.raises(AutoproxError, match=r"--validation\) must lie in \(0, 1\); got 1"):
        split_for_validation(tasks, 1.0, 0)


def test_discover_ranks_its_proxies_by_validation_and_saves_the_pareto_front(tmp_path):
    config = DiscoveryConfig(iterations=60, seed=5, validation=0.3, **FAST)
    result = discover(planted_tasks(), config, tmp_path, progress=False)
    saved = [load_proxy(p) for p in result.saved]
    checked = [p.fitness["jcm_validation"] for p in saved]
    assert checked == sorted(checked, reverse=True) and -1 <= checked[-1] <= checked[0] <= 1
    assert "JCM validation" in (tmp_path / "summary.md").read_text()
    with open(tmp_path / "pareto.csv") as f:
        front = list(csv.DictReader(f))
    sizes, jcms = [int(r["size"]) for r in front], [float(r["jcm_search"]) for r in front]
    assert front and sizes == sorted(set(sizes)) and jcms == sorted(set(jcms))  # bigger only if better
    assert max(jcms) == result.halloffame[0].fitness.values[0]  # the best program is on the front
    assert [len(i) for i in result.front] == sizes and all(r["jcm_validation"] != "nan" for r in front)


def test_a_resumed_validation_run_reaches_the_same_proxies_and_front(tmp_path):
    tasks = planted_tasks()
    whole = discover(tasks, DiscoveryConfig(iterations=40, seed=6, validation=0.3, **FAST), tmp_path / "a", False)
    discover(tasks, DiscoveryConfig(iterations=20, seed=6, validation=0.3, **FAST), tmp_path / "b", progress=False)
    resumed = discover(tasks, DiscoveryConfig(iterations=40, seed=6, validation=0.3, **FAST), tmp_path / "b", True)
    assert [str(i) for i in resumed.front] == [str(i) for i in whole.front]
    assert (tmp_path / "a" / "pareto.csv").read_text() == (tmp_path / "b" / "pareto.csv").read_text()
    assert [load_proxy(p).expression for p in resumed.saved] == [load_proxy(p).expression for p in whole.saved]
    with pytest.raises(AutoproxError, match="another configuration"):  # the share is part of the run
        discover(tasks, DiscoveryConfig(iterations=50, seed=6, validation=0.2, **FAST), tmp_path / "b", True)


def test_best_of_runs_uses_validation_when_every_run_has_it(tmp_path):
    def run(name: str, train: float, validation: float | None) -> None:
        fitness = {"jcm_train": train, **({} if validation is None else {"jcm_validation": validation})}
        proxy = SavedProxy(PLANTED, ["gW"], ["mlp"], fitness=fitness)
        (tmp_path / name / "proxies").mkdir(parents=True)
        (tmp_path / name / "proxies" / "rank01.json").write_text(proxy.to_json())

    run("a", 0.8, 0.5)
    run("b", 0.7, 0.6)
    assert best_of_runs([tmp_path / "a", tmp_path / "b"])[0].name == "b"
    run("c", 0.9, None)  # a run without a validation share: every run is compared on training JCM
    assert best_of_runs([tmp_path / "a", tmp_path / "b", tmp_path / "c"])[0].name == "c"


def test_paired_bootstrap_of_a_proxy_against_itself_and_against_noise():
    task = planted_tasks(archs=60, noise=0.2)[0]
    planted = SavedProxy(PLANTED, task.bundle.names, sorted(task.bundle.groups)).tree()
    scores = Evaluator(task.bundle)(planted)
    noise = np.random.default_rng(0).normal(size=scores.shape)
    same = bootstrap_difference([scores], [scores], [task.accuracy], task.test, resamples=200)
    assert same == {"difference": 0.0, "low": 0.0, "high": 0.0, "resamples": 200}
    better = bootstrap_difference([scores], [noise], [task.accuracy], task.test, resamples=500, seed=1)
    assert 0 < better["low"] < better["difference"] < better["high"] <= 2
    assert json.dumps(better)  # plain floats and ints, ready for a results file


def test_mean_rank_and_ensembles_of_a_run(tmp_path):
    from gp_proxy import SavedEnsemble, ensemble_of_run, load_ensemble, mean_rank, save_ensemble

    ranks = mean_rank([np.array([3.0, 1.0, 2.0, np.nan]), np.array([10.0, 20.0, 30.0, 5.0])])
    # member 1 ranks its three finite scores 3, 1, 2; member 2 ranks all four 2, 3, 4, 1
    assert np.allclose(ranks[:3], [(3 + 2) / 2, (1 + 3) / 2, (2 + 4) / 2]) and np.isnan(ranks[3])
    discover(planted_tasks(), DiscoveryConfig(iterations=40, seed=3, **FAST), tmp_path / "run", progress=False)
    ensemble = ensemble_of_run(tmp_path / "run", top=3)
    expected = [load_proxy(tmp_path / "run" / "proxies" / f"rank0{i}.json").expression for i in (1, 2, 3)]
    assert [m.expression for m in ensemble.members] == expected
    assert ensemble.expression == "mean_rank(" + "; ".join(expected) + ")"
    again = load_ensemble(save_ensemble(tmp_path / "e.json", ensemble))
    assert isinstance(again, SavedEnsemble) and again.members == ensemble.members
    with pytest.raises(AutoproxError, match="needs 2 or more proxies; asked for 9, found 5"):
        ensemble_of_run(tmp_path / "run", top=9)
    payload = json.loads((tmp_path / "e.json").read_text())
    payload["members"][1]["expression"] = "agg_sum_all(nope(W))"
    (tmp_path / "bad.json").write_text(json.dumps(payload))
    with pytest.raises(AutoproxError, match=r"bad.json member 1: .*nope"):
        load_ensemble(tmp_path / "bad.json")
    (tmp_path / "one.json").write_text(json.dumps({**payload, "members": payload["members"][:1]}))
    with pytest.raises(AutoproxError, match="must list 2 or more saved proxies"):
        load_ensemble(tmp_path / "one.json")
