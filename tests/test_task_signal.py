"""`experiments/task_signal.py`: one discovery per task (its full run is `results/task_signal.md`)."""

import sys
from pathlib import Path

from synthetic import planted_tasks

from gp_proxy import kendall, load_proxy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from task_signal import searched  # noqa: E402


def test_one_task_search_finds_the_planted_signal_and_keeps_the_best_training_run(tmp_path):
    task = planted_tasks(archs=60)[0]
    expression, scores = searched(task, [0, 1], tmp_path, iterations=40, size=12)
    assert kendall(scores[task.test], task.accuracy[task.test]) > 0.5  # the planted gW signal, held out
    trains = {s: load_proxy(tmp_path / task.name / f"seed{s}" / "proxies" / "rank01.json") for s in (0, 1)}
    best = max(trains.values(), key=lambda p: p.fitness["jcm_train"])
    assert expression == best.expression
    assert searched(task, [0, 1], tmp_path, iterations=40, size=12)[0] == expression  # resumed, same answer
