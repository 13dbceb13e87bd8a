"""Discovery throughput: candidate programs scored per second on the whole ViT-Bench-101.

Target (issue 3): >= 10 candidates per second, each scored on all 200 architectures and every
KD data set (6 tasks), on a 2-core machine; and the speed-up over re-running the probe for
every candidate (the paper's way), measured side by side on a few architectures.

Four measurements, the first three side by side: each space's three data sets scored in one pass
over their stacked statistics (`Objective(stack=True)`, the default on a GPU) and one pass per
task (`stack=False`, the default on a CPU), the first three with freed memory kept for reuse
as `discover` keeps it (`gp_proxy.memory`); the same fitness to the bit, checked here:
  fresh     random programs, memo cleared before each (worst case: every node computed);
  floor     the same on the first 10 architectures of each task: the fixed cost of a candidate
            (Python, primitives' calls, Kendall tau), which a GPU cannot hide; next to it the
            Kendall tau-b of one task, `gp_proxy.fitness.kendall` vs `scipy.stats.kendalltau`;
  search    the programs an elitism-preserve run evaluates, with its memo (the real workload);
            only programs really scored count: a mutation that gives a program already in the
            population is redrawn, never evaluated (the count of such copies is reported). Run
            three times each way, alternated, with the share of the time spent in Kendall tau;
  re-probe  the paper's way on K architectures per space: probe + score per candidate, vs.
            scoring the same K architectures from cached statistics.

    python benchmarks/discovery_throughput.py --cache DIR --out results/discovery_throughput.md
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from unittest import mock

import numpy as np
import torch
from scipy import stats

from gp_proxy.discovery import DiscoveryConfig, initial_population, task_pset
from gp_proxy.evolve import elitism_preserve_step, evaluate_invalid, make_toolbox
from gp_proxy.fitness import Task, kendall
from gp_proxy.markdown import table, write_report
from gp_proxy.memory import freed_memory_kept
from gp_proxy.objective import Objective
from gp_proxy.program import Evaluator, generate
from gp_proxy.stats import stack
from vit_space.bench.benchmark import load_bench
from vit_space.data.batches import BatchSpec
from vit_space.probe.cache import ProbeSpec, StatsCache, probe_arch
from vit_space.proxies.tasks import tasks_for
from vit_space.spaces import get_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, help="a cache filled by `autoprox stats --bench autoformer,pit`")
    parser.add_argument("--programs", type=int, default=100, help="fresh random programs")
    parser.add_argument("--steps", type=int, default=300, help="elitism-preserve steps")
    parser.add_argument("--reprobe-archs", type=int, default=3, help="architectures per space for the re-probe test")
    parser.add_argument("--out", default="results/discovery_throughput.md")
    args = parser.parse_args()
    load_start = _load()
    spec = ProbeSpec(BatchSpec("c100"), 32)
    t0 = time.perf_counter()
    tasks = tasks_for(["autoformer", "pit"], None, spec, StatsCache(args.cache), test_fraction=0.0)
    load_seconds = time.perf_counter() - t0
    pset = task_pset(tasks)
    random.seed(0)
    trees = [generate(pset, 1, 3) for _ in range(args.programs)]
    first = np.arange(10)
    small = [Task(t.name, t.bundle.subset(first), t.accuracy[first], first, first[:0]) for t in tasks]
    with freed_memory_kept():  # as `discover` scores programs
        fresh = {stacked: fresh_rate(tasks, trees, stacked) for stacked in (True, False)}
        floor = {stacked: fresh_rate(small, trees, stacked) for stacked in (True, False)}
    tau_ours, tau_scipy, tau_count = kendall_seconds(tasks[0])
    both = Objective(tasks), Objective(tasks, stack=False)
    assert all(both[0](t) == both[1](t) for t in trees), "stacked and per-task fitness differ"
    del both

    searches, shares, counts = {True: [], False: []}, [], set()
    for stacked in (True, False) * 3:
        timed, seconds = clocked(kendall)
        start = time.perf_counter()
        with mock.patch("gp_proxy.objective.kendall", timed), freed_memory_kept():
            rate, *counted = elitism_search(pset, Objective(tasks, stack=stacked), args.steps)
        searches[stacked].append(rate)
        if stacked:
            shares.append(seconds[0] / (time.perf_counter() - start))
        counts.add(tuple(counted))
    assert len(counts) == 1, f"the six searches differ: {counts}"  # the same bits, so the same programs
    evaluations, draws, unchanged = counts.pop()
    search = {stacked: statistics.mean(rates) for stacked, rates in searches.items()}
    runs = {stacked: ", ".join(f"{r:.1f}" for r in rates) for stacked, rates in searches.items()}

    rows = []
    for name in ("autoformer", "pit"):
        space = get_space(name)
        archs = random.Random(0).sample(list(load_bench(name).archs), args.reprobe_archs)
        start = time.perf_counter()
        probed = [probe_arch(space, a, spec)["data"] for a in archs]
        reprobe = time.perf_counter() - start
        evaluator, tree = Evaluator(stack(probed), memo_bytes=0), trees[0]
        start = time.perf_counter()
        for tree in trees[:20]:
            evaluator(tree)
        cached = (time.perf_counter() - start) / 20
        rows.append(f"| {name} | {len(archs)} | {reprobe:.2f} | {cached * 1e3:.2f} | {reprobe / cached:,.0f} |")
    write_report(
        args.out,
        "Discovery throughput on the whole ViT-Bench-101",
        f"python benchmarks/discovery_throughput.py --cache {args.cache} --programs {args.programs} "
        f"--steps {args.steps} --reprobe-archs {args.reprobe_archs}",
        f"(CPU, torch {torch.__version__}, {torch.get_num_threads()} threads; {len(tasks)} tasks: "
        + ", ".join(t.name for t in tasks)
        + f"; 200 architectures; statistics loaded in {load_seconds:.0f} s; "
        f"load average at the start {load_start}, at the end {_load()}, on {os.cpu_count()} cores)",
        table(
            ["workload", "one pass per space (stacked)", "one pass per task (the CPU's default)", "ratio"],
            [
                f"| fresh random programs, empty memo (worst case) | {fresh[True]:.1f} | {fresh[False]:.1f} | "
                f"{fresh[True] / fresh[False]:.2f} |",
                f"| the same on the first 10 architectures of each task (fixed cost per candidate) | "
                f"{floor[True]:.1f} | {floor[False]:.1f} | {floor[True] / floor[False]:.2f} |",
                f"| elitism-preserve search, {args.steps} steps, memo, three runs each way alternated (means of "
                f"{runs[True]} and {runs[False]}) | {search[True]:.1f} | {search[False]:.1f} | "
                f"{search[True] / search[False]:.2f} |",
            ],
        ),
        f"Candidates per second, each scored on 200 architectures x 3 data sets, with freed memory kept for "
        f"reuse as `discover` keeps it (`gp_proxy.memory`). The {len(trees)} fresh programs "
        "got the same fitness both ways, and the six searches scored the same programs.",
        f"Kendall tau-b of one task's {tau_count} architectures, per call: "
        f"`gp_proxy.fitness.kendall` {tau_ours * 1e6:.0f} us, `scipy.stats.kendalltau` {tau_scipy * 1e6:.0f} us "
        f"({tau_scipy / tau_ours:.1f}x; the same value to the bit). It took {statistics.mean(shares):.1%} of the "
        "stacked searches' time.",
        f"Default configuration (size limit {DiscoveryConfig().size_limit} nodes). The search drew {draws} mutations "
        f"and scored {evaluations} programs: the other {draws - evaluations} ({1 - evaluations / max(draws, 1):.0%}) "
        f"gave a program already in the population (or already drawn in the step), {unchanged} of them the "
        "parent itself; those were redrawn, never scored nor counted.",
        "Re-running the probe per candidate (the paper's way) vs scoring from cached statistics, one data set:",
        table(
            ["space", "archs", "probe + score per candidate (s)", "cached score per candidate (ms)", "speed-up"], rows
        ),
    )


def fresh_rate(tasks: list[Task], trees: list, stacked: bool | None = None) -> float:
    """Programs scored per second on every task, the memo cleared before each (every node computed);
    `stacked`: `Objective`'s `stack`."""
    objective = Objective(tasks, stack=stacked)
    start = time.perf_counter()
    for tree in trees:
        objective.clear()
        objective(tree)
    return len(trees) / (time.perf_counter() - start)


def clocked(correlation):
    """`correlation` wrapped to add its seconds to the returned one-element list."""
    seconds = [0.0]

    def timed(scores: np.ndarray, accuracy: np.ndarray) -> float:
        start = time.perf_counter()
        value = correlation(scores, accuracy)
        seconds[0] += time.perf_counter() - start
        return value

    return timed, seconds


def scipy_kendall(scores: np.ndarray, accuracy: np.ndarray) -> float:
    """Kendall tau-b from `scipy.stats.kendalltau` over the finite pairs."""
    keep = np.isfinite(scores) & np.isfinite(accuracy)
    return float(stats.kendalltau(scores[keep], accuracy[keep]).statistic)


def kendall_seconds(task: Task, calls: int = 200) -> tuple[float, float, int]:
    """Seconds per Kendall tau-b of `task`'s known training accuracies against a seeded permutation
    of them: gp_proxy's, then scipy's (checked to give the same value), and how many there are."""
    accuracy = task.accuracy[task.train]
    accuracy = accuracy[np.isfinite(accuracy)]
    scores = np.random.default_rng(0).permutation(accuracy)
    seconds, values = [], []
    for fn in (kendall, scipy_kendall):
        start = time.perf_counter()
        for _ in range(calls):
            value = fn(scores, accuracy)
        seconds.append((time.perf_counter() - start) / calls)
        values.append(value)
    assert values[0] == values[1], values
    return seconds[0], seconds[1], len(accuracy)


def elitism_search(pset, objective: Objective, steps: int) -> tuple[float, int, int, int]:
    """`steps` of a default elitism-preserve search (`DiscoveryConfig()`, its memo cleared every
    `population` steps, as in `discover`): (programs scored per second, programs scored, mutations
    drawn, how many of those gave their parent back unchanged)."""
    config = DiscoveryConfig(seed=0)
    toolbox = make_toolbox(
        pset, objective, config.min_height, config.max_height, config.height_limit, config.size_limit
    )
    mutate, outcomes = toolbox.mutate, []

    def counted(individual):
        before = str(individual)
        (child,) = mutate(individual)
        outcomes.append(str(child) == before)
        return (child,)

    random.seed(config.seed)
    population = initial_population(toolbox, pset, config)
    evaluate_invalid(population, toolbox)
    toolbox.register("mutate", counted)
    start, evaluations = time.perf_counter(), 0
    for step in range(steps):
        evaluations += elitism_preserve_step(
            population,
            toolbox,
            config.pool_ratio,
            config.top_k,
            config.margin,
            config.max_tries,
            config.batch,
            config.max_draws,
        )[0]
        if (step + 1) % config.population == 0:
            objective.clear()
    return evaluations / (time.perf_counter() - start), evaluations, len(outcomes), sum(outcomes)


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
