import dataclasses
import json
import random
import re
import warnings

import numpy as np
import pytest
from synthetic import planted_tasks

import gp_proxy.discovery
import gp_proxy.results
from gp_proxy.discovery import DiscoveryConfig, discover, task_pset
from gp_proxy.errors import AutoproxError, AutoproxWarning
from gp_proxy.evolve import elitism_preserve_step, evaluate_invalid, make_toolbox
from gp_proxy.library import known_proxy
from gp_proxy.objective import Objective
from gp_proxy.program import parse
from gp_proxy.store import load_proxy

FAST = dict(population=20, hall_of_fame=5, checkpoint_every=10)


def test_elitism_preserve_finds_the_planted_signal_and_reports_heldout(tmp_path):
    tasks = planted_tasks()
    result = discover(tasks, DiscoveryConfig(iterations=150, seed=1, **FAST), tmp_path, progress=False)
    best = load_proxy(result.saved[0])
    assert best.fitness["jcm_train"] > 0.7 and best.fitness["jcm_test"] > 0.6
    assert set(best.fitness["test"]) == {"data1", "data2"} and best.fitness["test"]["data1"]["n"] == 20
    planted = Objective(tasks)(parse("agg_sum_mlp(fro(gW))", task_pset(tasks)))[0]
    assert best.fitness["jcm_train"] >= planted - 0.05  # about as good as the planted formula
    log = (tmp_path / "logbook.csv").read_text().splitlines()
    assert log[0] == "iteration,evals,kept,best,median,valid,distinct,jcms" and len(log) == 152
    bests = [float(line.split(",")[3]) for line in log[1:]]
    assert bests == sorted(bests)  # elitism never loses the best
    assert all(line.split(",")[6] == "20" for line in log[1:])  # never a duplicate in the population
    assert (tmp_path / "progress.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 1 | `" in (tmp_path / "summary.md").read_text()
    for path in result.saved:  # saved simplified, the found program kept
        saved = load_proxy(path)
        assert saved.simplification["original"] and len(saved.expression) <= len(saved.simplification["original"])


def test_accepted_children_are_within_the_margin_of_their_parent():
    tasks = planted_tasks()
    defaults = DiscoveryConfig()
    toolbox = make_toolbox(
        task_pset(tasks),
        Objective(tasks),
        defaults.min_height,
        defaults.max_height,
        defaults.height_limit,
        defaults.size_limit,
    )
    mutate = toolbox.mutate

    def tracked(individual):
        parent_jcm = individual.fitness.values[0]
        (child,) = mutate(individual)
        child.parent_jcm = parent_jcm
        return (child,)

    toolbox.register("mutate", tracked)
    random.seed(3)
    population = toolbox.population(n=10)
    evaluate_invalid(population, toolbox)
    kept_total = 0
    for _ in range(40):
        before = {id(i) for i in population}
        evals, kept = elitism_preserve_step(
            population, toolbox, 0.5, 3, margin=0.02, max_tries=3, batch=1, max_draws=20
        )
        assert len(population) == 10 and 1 <= evals <= 3 and kept in (0, 1)
        for child in (i for i in population if id(i) not in before):
            assert child.fitness.values[0] >= child.parent_jcm - 0.02
        kept_total += kept
    assert kept_total > 10


def test_resume_continues_to_the_same_result(tmp_path):
    tasks = planted_tasks()
    straight = discover(tasks, DiscoveryConfig(iterations=40, seed=2, **FAST), tmp_path / "a", progress=False)
    discover(tasks, DiscoveryConfig(iterations=25, seed=2, **FAST), tmp_path / "b", progress=False)
    resumed = discover(
        tasks, DiscoveryConfig(iterations=40, seed=2, **FAST), tmp_path / "b", resume=True, progress=False
    )
    assert [str(i) for i in resumed.halloffame] == [str(i) for i in straight.halloffame]
    assert list(resumed.logbook) == list(straight.logbook)
    assert (tmp_path / "a" / "logbook.csv").read_text() == (tmp_path / "b" / "logbook.csv").read_text()


def test_same_seed_same_result_and_mu_plus_lambda_runs(tmp_path):
    tasks = planted_tasks()
    config = DiscoveryConfig(algorithm="mu+lambda", iterations=3, lambda_=20, seed=4, **FAST)
    first = discover(tasks, config, tmp_path / "a", progress=False)
    second = discover(tasks, config, tmp_path / "b", progress=False)
    assert [str(i) for i in first.halloffame] == [str(i) for i in second.halloffame]
    assert first.evaluations > 20 and list(first.logbook) == list(second.logbook)
    budget = discover(
        tasks, DiscoveryConfig(iterations=1000, max_evaluations=60, seed=4, **FAST), tmp_path / "c", progress=False
    )
    assert 60 <= budget.evaluations < 70


def test_seed_proxies_start_the_population(tmp_path):
    tasks = planted_tasks()
    seeds = ("grad_norm", "weight_l2")
    config = DiscoveryConfig(iterations=1, max_evaluations=1, seed_proxies=seeds, **FAST)
    discover(tasks, config, tmp_path, progress=False)  # stops after generation 0: its checkpoint
    state = json.loads((tmp_path / "checkpoint.json").read_text())
    assert state["iteration"] == 0 and state["evaluations"] == 20
    expressions = [i["expression"] for i in state["population"]]
    assert expressions[:2] == [known_proxy(n).expression for n in seeds] and len(set(expressions)) == 20


def test_heldout_accuracies_cannot_change_the_discovered_programs(tmp_path):
    tasks = planted_tasks()
    rng = np.random.default_rng(0)
    noisy = []
    for task in tasks:
        accuracy = task.accuracy.copy()
        accuracy[task.test] = rng.normal(50, 20, len(task.test))
        noisy.append(dataclasses.replace(task, accuracy=accuracy))
    config = DiscoveryConfig(iterations=10, seed=6, **FAST)
    clean = discover(tasks, config, tmp_path / "clean", progress=False)
    poisoned = discover(noisy, config, tmp_path / "noisy", progress=False)
    assert [str(i) for i in poisoned.halloffame] == [str(i) for i in clean.halloffame]
    assert list(poisoned.logbook) == list(clean.logbook)
    clean_report, noisy_report = (load_proxy(r.saved[0]).fitness for r in (clean, poisoned))
    assert clean_report["jcm_train"] == noisy_report["jcm_train"]
    assert clean_report["jcm_test"] != noisy_report["jcm_test"]  # the noise did reach the held-out report


def test_evaluations_count_only_programs_really_scored(tmp_path, monkeypatch):
    scored = []

    class Counting(Objective):
        def __call__(self, tree):
            scored.append(str(tree))
            return super().__call__(tree)

    monkeypatch.setattr(gp_proxy.discovery, "Objective", Counting)
    result = discover(planted_tasks(), DiscoveryConfig(iterations=20, seed=7, **FAST), tmp_path, progress=False)
    assert result.evaluations == len(scored) == result.logbook[-1]["evals"] > 20  # generation 0 included
    assert f"{result.evaluations} programs evaluated" in (tmp_path / "summary.md").read_text()


def test_a_resumed_run_reports_the_whole_runs_time(tmp_path):
    tasks = planted_tasks()
    discover(tasks, DiscoveryConfig(iterations=5, seed=2, **FAST), tmp_path, progress=False)
    checkpoint = tmp_path / "checkpoint.json"
    state = json.loads(checkpoint.read_text())
    state["seconds"] = 1000.0  # as if the first session had searched for 1000 s
    checkpoint.write_text(json.dumps(state))
    result = discover(tasks, DiscoveryConfig(iterations=10, seed=2, **FAST), tmp_path, resume=True, progress=False)
    assert 1000 < result.seconds < 1100 and json.loads(checkpoint.read_text())["seconds"] == result.seconds
    summary = (tmp_path / "summary.md").read_text()
    seconds, rate = re.search(r"evaluated in (\d+) s of search \(([\d.]+) per second", summary).groups()
    assert int(seconds) >= 1000 and abs(float(rate) - result.evaluations / result.seconds) <= 0.05


def test_bad_checkpoints_and_configs(tmp_path):
    tasks = planted_tasks()
    config = DiscoveryConfig(iterations=5, seed=0, **FAST)
    discover(tasks, config, tmp_path, progress=False)
    with pytest.raises(AutoproxError, match="exists: pass --resume"):
        discover(tasks, config, tmp_path, progress=False)
    with pytest.raises(AutoproxError, match="comes from another configuration"):
        discover(tasks, DiscoveryConfig(iterations=5, seed=1, **FAST), tmp_path, resume=True, progress=False)
    checkpoint = tmp_path / "checkpoint.json"
    state = json.loads(checkpoint.read_text())
    state["population"][0]["expression"] = "__import__('os').system('echo hi')"
    checkpoint.write_text(json.dumps(state))
    with pytest.raises(AutoproxError, match="unexpected character"):
        discover(tasks, DiscoveryConfig(iterations=6, seed=0, **FAST), tmp_path, resume=True, progress=False)
    checkpoint.write_text("{not json")
    with pytest.raises(AutoproxError, match="is corrupt"):
        discover(tasks, DiscoveryConfig(iterations=6, seed=0, **FAST), tmp_path, resume=True, progress=False)
    for bad, message in [
        (dict(algorithm="ga"), "unknown algorithm 'ga'"),
        (dict(jcm="max"), "unknown JCM mode"),
        (dict(seed_proxies=("zen",)), "unknown proxy 'zen'"),
        (dict(population=4, hall_of_fame=10, top_k=5), r"--population\) must be >= max\(2, top_k\) = 5; got 4"),
        (dict(iterations=0), r"--iterations\) must be >= 1; got 0"),
    ]:
        with pytest.raises(AutoproxError, match=message):
            DiscoveryConfig(**bad).validate()


def test_a_process_pool_gives_the_same_result(tmp_path):
    tasks = planted_tasks()
    config = DiscoveryConfig(algorithm="mu+lambda", iterations=2, lambda_=20, seed=5, **FAST)
    serial = discover(tasks, config, tmp_path / "a", progress=False)
    pooled = discover(tasks, config, tmp_path / "b", workers=2, progress=False)
    assert [str(i) for i in pooled.halloffame] == [str(i) for i in serial.halloffame]
    assert list(pooled.logbook) == list(serial.logbook)


def test_a_step_scoring_fewer_programs_than_there_are_workers_is_warned_of(tmp_path):
    config = DiscoveryConfig(algorithm="mu+lambda", iterations=1, lambda_=1, seed=5, **FAST)
    idle = r"^mu\+lambda scores 1 program\(s\) per step on 2 workers, so 1 wait through every step; set lambda_ to 2"
    with pytest.warns(AutoproxWarning, match=idle):
        discover(planted_tasks(), config, tmp_path / "a", workers=2, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AutoproxWarning)
        discover(planted_tasks(), dataclasses.replace(config, lambda_=2), tmp_path / "b", workers=2, progress=False)
        discover(planted_tasks(), config, tmp_path / "c", progress=False)  # one worker: none waits


def test_a_process_pool_is_refused_for_statistics_on_another_device(tmp_path):
    tasks = [dataclasses.replace(t, bundle=t.bundle.to("meta")) for t in planted_tasks()]  # a GPU's stand-in
    config = DiscoveryConfig(algorithm="mu+lambda", iterations=2, lambda_=20, seed=5, **FAST)
    with pytest.raises(AutoproxError, match="workers=2 evaluates in forked CPU processes.*statistics on meta"):
        discover(tasks, config, tmp_path, workers=2, progress=False)
    assert not any(tmp_path.iterdir())


MU_PLUS_LAMBDA_RUN = """
import sys
sys.path.insert(0, {tests!r})
from synthetic import planted_tasks
import gp_proxy.discovery
from gp_proxy import DiscoveryConfig, discover
gp_proxy.discovery.save_results = lambda *args: []  # the programs are compared; saving them is tested elsewhere
config = DiscoveryConfig(algorithm="mu+lambda", iterations=4, lambda_=20, seed=4, population=20, hall_of_fame=5)
print(*[str(i) for i in discover(planted_tasks(), config, {out!r}, progress=False).halloffame], sep="\\n")
"""


def test_mu_plus_lambda_gives_the_same_programs_in_another_process(tmp_path):
    """Crossover draws node types in name order, not in the memory order of a set of classes."""
    import os
    import subprocess
    import sys

    tests = os.path.dirname(__file__)
    runs = [  # side by side
        subprocess.Popen(
            [sys.executable, "-c", MU_PLUS_LAMBDA_RUN.format(tests=tests, out=str(tmp_path / str(i)))],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": str(i), "OMP_NUM_THREADS": "1"},
        )
        for i in range(2)
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0]
    assert outputs[0] == outputs[1] and len(outputs[0].splitlines()) == 5


def test_resuming_a_finished_run_keeps_its_saved_results_unless_the_tasks_changed(tmp_path, monkeypatch):
    tasks = planted_tasks()
    config = DiscoveryConfig(iterations=5, seed=3, **FAST)
    first = discover(tasks, config, tmp_path, progress=False)
    first_held_out = load_proxy(first.saved[0]).fitness["jcm_test"]
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file() and p.name != "checkpoint.json"}
    simplified = []
    monkeypatch.setattr(gp_proxy.results, "simplify", lambda *a, **k: simplified.append(1) or None)
    again = discover(tasks, config, tmp_path, resume=True, progress=False)
    assert again.saved == first.saved and not simplified
    assert {p: p.stat().st_mtime_ns for p in before} == before  # nothing rewritten
    relabelled = []  # the held-out accuracies reversed: the same search, another report
    for task in tasks:
        accuracy = task.accuracy.copy()
        accuracy[task.test] = accuracy[task.test[::-1]]
        relabelled.append(dataclasses.replace(task, accuracy=accuracy))
    monkeypatch.undo()
    third = discover(relabelled, config, tmp_path, resume=True, progress=False)
    assert [str(i) for i in third.halloffame] == [str(i) for i in first.halloffame]
    assert load_proxy(third.saved[0]).fitness["jcm_test"] != first_held_out
    (tmp_path / "results.json").write_text("{not json")  # a damaged record: results are saved again
    assert discover(relabelled, config, tmp_path, resume=True, progress=False).saved == third.saved
