"""The fitness of a proxy program: its training JCM over tasks (Kendall tau per task), and its size.

    objective = Objective(tasks)
    jcm, size = objective(tree)  # jcm is -inf for an invalid program

`objective.report(tree)` gives the train and held-out correlations per task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
from deap import gp

from gp_proxy.errors import AutoproxError
from gp_proxy.fitness import Report, Task, jcm, kendall, report, valid_scores
from gp_proxy.primitives import build_pset
from gp_proxy.program import Evaluator
from gp_proxy.stats import StatsBundle, concat

INVALID = float("-inf")


def task_pset(tasks: Sequence[Task]) -> gp.PrimitiveSetTyped:
    """The primitive set over the statistics and groups that every task's bundle has."""
    if not tasks:
        raise AutoproxError("no tasks to discover proxies on")
    names = set.intersection(*(set(t.bundle.names) for t in tasks))
    groups = set.intersection(*(set(t.bundle.groups) for t in tasks))
    return build_pset(sorted(names), sorted(groups))


def tasks_on(tasks: Sequence[Task], device: torch.device | str) -> list[Task]:
    """The tasks with their statistics on `device`; tasks that share a bundle still share its one copy."""
    moved: dict[int, StatsBundle] = {}
    for t in tasks:
        if id(t.bundle) not in moved:
            moved[id(t.bundle)] = t.bundle.to(device)
    return [replace(t, bundle=moved[id(t.bundle)]) for t in tasks]


class Objective:
    """Scores trees on tasks: `objective(tree)` -> (training JCM rounded to `decimals`, size in
    nodes); the JCM (`mode` of the per-task Kendall taus, in [-1, 1]) is -inf for an invalid
    program (NaN/inf or constant scores on some task).

    The search sees only the training architectures of each task; `report(tree)` gives the
    train and held-out correlations on every task (a `gp_proxy.fitness.Report`). One memoising
    `Evaluator` per task, holding at most `memo_bytes` of tensors; `clear()` empties them. With
    `stack` (default: when the statistics are on a GPU) the tasks whose statistics share a layout
    (names, unit count, sketch size, groups; e.g. one space's data sets) are scored together
    instead, by one evaluator on their training architectures concatenated (a task sharing
    another's statistics and split adds none): each program node is one op for all of them, which
    saves a GPU's per-op overhead; on a CPU the smaller per-task tensors run faster (cache locality;
    `benchmarks/discovery_throughput.py`). The fitness is the same to the bit either way.
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        mode: str = "mean",
        decimals: int = 3,
        memo_bytes: int = 1 << 29,
        stack: bool | None = None,
    ):
        self.tasks, self.mode, self.decimals, self.memo_bytes = list(tasks), mode, decimals, memo_bytes
        self.stack, self.clears = stack, 0
        self._training: dict[tuple, StatsBundle] = {}  # training rows an evaluator holds alone, for `training_only`
        if stack is None:
            stack = any(t.bundle.block.device.type != "cpu" for t in self.tasks)
        by_layout: dict[tuple, list[int]] = {}
        for i, t in enumerate(self.tasks):
            key = (t.bundle.layout, str(t.bundle.block.device)) if stack else i
            by_layout.setdefault(key, []).append(i)
        self._fit = [self._stacked(members) for members in by_layout.values()]

    def _stacked(self, members: list[int]) -> tuple[Evaluator, list[tuple[int, slice, np.ndarray]]]:
        """One evaluator for the tasks at `members`, and each one's (position, rows, training accuracies)."""
        parts: dict[tuple, slice] = {}
        bundles, rows, start = [], [], 0
        for i in members:
            task = self.tasks[i]
            key = (id(task.bundle), task.train.tobytes())
            if key not in parts:
                bundles.append(task.bundle.subset(task.train))
                parts[key], start = slice(start, start + len(task.train)), start + len(task.train)
            rows.append((i, parts[key], task.accuracy[task.train]))
        if len(bundles) == 1:  # one task's training rows, or tasks sharing them: held as they are
            self._training[next(iter(parts))] = bundles[0]
        return Evaluator(bundles[0] if len(bundles) == 1 else concat(bundles), self.memo_bytes * len(bundles)), rows

    def __call__(self, tree: gp.PrimitiveTree) -> tuple[float, int]:
        taus = [0.0] * len(self.tasks)
        for evaluator, rows in self._fit:
            scores = evaluator(tree)
            for i, where, accuracy in rows:
                if not valid_scores(scores[where]):
                    return INVALID, len(tree)
                taus[i] = kendall(scores[where], accuracy)
        value = jcm(taus, self.mode)
        return (round(value, self.decimals) if np.isfinite(value) else INVALID), len(tree)

    def report(self, tree: gp.PrimitiveTree) -> Report:
        return report({t.name: Evaluator(t.bundle, memo_bytes=0)(tree) for t in self.tasks}, self.tasks, self.mode)

    def to(self, device: torch.device | str) -> Objective:
        """The same objective with every task's statistics on `device` (programs are then evaluated there)."""
        return Objective(tasks_on(self.tasks, device), self.mode, self.decimals, self.memo_bytes, self.stack)

    def training_only(self) -> Objective:
        """The same fitness from the training architectures alone (the held-out rows dropped; tasks
        that shared statistics and a split still share one copy): what a Dask worker, which only
        scores programs, is sent. Its `report` has no held-out correlations. The training rows an
        evaluator of this objective holds are shared, not copied."""
        kept = dict(self._training)
        tasks = []
        for t in self.tasks:
            key = (id(t.bundle), t.train.tobytes())
            if key not in kept:
                kept[key] = t.bundle.subset(t.train)
            rows = np.arange(len(t.train))
            tasks.append(replace(t, bundle=kept[key], accuracy=t.accuracy[t.train], train=rows, test=rows[:0]))
        return Objective(tasks, self.mode, self.decimals, self.memo_bytes, self.stack)

    def __reduce__(self) -> tuple:
        """Pickled as its tasks and settings: the training subsets and the memo are rebuilt, not sent."""
        return Objective, (self.tasks, self.mode, self.decimals, self.memo_bytes, self.stack)

    def clear(self) -> None:
        """Forget memoised subtrees (call once per generation)."""
        self.clears += 1
        for evaluator, _ in self._fit:
            evaluator.clear()
