"""Shared set-up of the ViT-Bench-101 experiments: tasks from the cache and baseline scores."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from gp_proxy import KNOWN_PROXIES, Evaluator, Report, Task, bootstrap_difference, build_pset, kendall, parse, report
from vit_space import BatchSpec, ProbeSpec, StatsCache, bench_tasks, field_dataset, get_dataset, get_space, load_bench

SPACES = ("autoformer", "pit")
HOLDOUT, SPLIT_SEED = 0.5, 0  # the held-out share and split seed of every ViT-Bench-101 discovery


def vitbench_spec(
    conditions: tuple[str, ...] = ("data",), source: str = "skimage", batch: int = 16, sketch: int = 32, seed: int = 0
) -> ProbeSpec:
    """The experiments' probe spec (on c100; tasks switch the data set)."""
    return ProbeSpec(BatchSpec("c100", source, batch, seed), sketch, conditions)


def vitbench_tasks(
    cache_dir: str,
    spaces=SPACES,
    datasets=None,
    holdout: float = HOLDOUT,
    split_seed: int = SPLIT_SEED,
    batch: int = 16,
    sketch: int = 32,
    source: str = "skimage",
    conditions: tuple[str, ...] = ("data",),
    fold: tuple[int, int] | None = None,
) -> list[Task]:
    """The ViT-Bench-101 tasks; `fold` = (k, i) uses fold i of a seeded k-fold split instead of `holdout`."""
    spec = vitbench_spec(conditions, source, batch, sketch)
    tasks = []
    for name in spaces:
        bench = load_bench(name)
        tasks += bench_tasks(
            bench,
            datasets or bench.datasets("kd"),
            spec,
            StatsCache(cache_dir),
            test_fraction=holdout,
            split_seed=split_seed,
            split=bench.kfold(fold[0], split_seed)[fold[1]] if fold else None,
        )
    return tasks


def on_fold(tasks: list[Task], folds: int, fold: int, seed: int = 0) -> list[Task]:
    """The tasks on fold `fold` of a seeded `folds`-fold split of each space (`Benchmark.kfold`): the
    search fits the other folds, the test part is this one. The statistics are shared, not copied."""
    out = []
    for task in tasks:
        train, test = load_bench(task.name.split("/")[0]).kfold(folds, seed)[fold]
        out.append(replace(task, train=train, test=test))
    return out


def on_validation(tasks: list[Task], seed: int) -> list[Task]:
    """The tasks with their held-out part set aside entirely: each training part is split again in
    two seeded halves; the search fits the first and the test part is the second (validation, for
    choosing settings without held-out data). The statistics are shared, not copied."""
    out = []
    for task in tasks:
        fit, validation = load_bench(task.name.split("/")[0]).subset(task.train).split(0.5, seed)
        out.append(replace(task, train=task.train[fit], test=task.train[validation]))
    return out


def depth_width(task: Task) -> np.ndarray:
    """Depth x width per architecture: AutoFormer-style depth x embedding width; PiT, summed over its
    stages, stage depth x stage width (base width x the stage's heads)."""
    archs = load_bench(task.name.split("/")[0]).archs
    return np.array(
        [
            a["depth"] * a["hidden_dim"]
            if "hidden_dim" in a
            else sum(d * a["base_dim"] * h for d, h in zip(a["depth"], a["num_heads"]))
            for a in archs
        ],
        dtype=np.float64,
    )


def param_scores(task: Task) -> np.ndarray:
    """Parameter count of each architecture of the task's benchmark, with the data set's head."""
    space_name, field = task.name.split("/")
    bench, space = load_bench(space_name), get_space(space_name)
    classes = get_dataset(field_dataset(field)).num_classes
    return np.array([space.num_params(a, classes) for a in bench.archs], dtype=np.float64)


def program_scores(expression: str, task: Task) -> np.ndarray:
    pset = build_pset(task.bundle.names, list(task.bundle.groups))
    return Evaluator(task.bundle, memo_bytes=0)(parse(expression, pset))


def baseline_reports(tasks: list[Task]) -> dict[str, Report]:
    """Held-out and train correlations of parameter count and every known program proxy."""
    out = {"params": report({t.name: param_scores(t) for t in tasks}, tasks)}
    for name, proxy in KNOWN_PROXIES.items():
        out[name] = report({t.name: program_scores(proxy.expression, t) for t in tasks}, tasks)
    return out


def space_jcm(rep: Report, space: str, part: str = "test") -> float:
    """Mean Kendall tau over one space's tasks (the issue's per-space JCM)."""
    values = getattr(rep, part)
    taus = [c["kendall"] for name, c in values.items() if name.startswith(space + "/")]
    return float(np.mean(taus)) if taus else float("nan")


def space_tau(scores: dict[str, np.ndarray], tasks: list[Task], space: str, part: str = "test") -> float:
    """Mean Kendall tau over one space's tasks on their training or held-out part."""
    mine = [t for t in tasks if t.name.startswith(space + "/")]
    return float(np.mean([kendall(scores[t.name][getattr(t, part)], t.accuracy[getattr(t, part)]) for t in mine]))


def versus(scores: dict[str, np.ndarray], base: dict[str, np.ndarray], tasks: list[Task], space: str) -> str:
    """Held-out difference to `base` with its 95% paired-bootstrap interval."""
    mine = [t for t in tasks if t.name.startswith(space + "/")]
    return interval(
        bootstrap_difference(
            [scores[t.name] for t in mine], [base[t.name] for t in mine], [t.accuracy for t in mine], mine[0].test
        )
    )


def interval(difference: dict[str, float]) -> str:
    """A `bootstrap_difference` as "+0.046 [+0.017, +0.084]"."""
    return f"{difference['difference']:+.3f} [{difference['low']:+.3f}, {difference['high']:+.3f}]"
