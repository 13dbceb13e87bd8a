"""How a discovery step's split over Dask workers uses their memos: the programs of a real
discovery (`--parents 16`, seed 0) on ViT-Bench-101's six search tasks (AutoFormer and PiT x three
KD data sets, the training rows of the 50% search split), replayed in this process on `--workers`
objectives, one per simulated worker, each with its own memo (cleared when the run's was):

  round-robin   the i-th program of a step to worker i mod N (the split before `batch_of`);
  batch_of      each program to the worker its root's first argument picks (what `dask_map` does);
  one worker    every program on one objective, for reference.

Seconds of scoring summed over the workers, and the slowest worker's per step summed over the
steps (the wall time of the steps on N dedicated cores, without Dask's round trips).

    python benchmarks/worker_memo.py --cache DIR --out results/worker_memo.md
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from deap import gp
from freed_memory import search_tasks  # sibling script: the same six tasks

import gp_proxy.discovery
from gp_proxy import DiscoveryConfig, discover, freed_memory_kept, table, write_report
from gp_proxy.dask_map import batch_of
from gp_proxy.objective import Objective, task_pset
from gp_proxy.program import parse

Step = tuple[list[str], int]  # a map call's expressions, and how often the memo had been cleared


def recorded_steps(tasks: list, iterations: int, parents: int) -> list[Step]:
    """Every `toolbox.map` call of a one-process discovery, in order."""
    steps: list[Step] = []

    @contextmanager
    def recording(objective: Objective, workers: int, client=None, device=None) -> Iterator[Callable]:
        def map_fn(evaluate: Callable, trees) -> list:
            trees = list(trees)
            steps.append(([str(t) for t in trees], objective.clears))
            return [evaluate(t) for t in trees]

        with freed_memory_kept():
            yield map_fn

    plain, gp_proxy.discovery._evaluation_map = gp_proxy.discovery._evaluation_map, recording
    try:
        config = DiscoveryConfig(iterations=iterations, batch=parents, seed=0)
        discover(tasks, config, tempfile.mkdtemp(prefix="worker_memo_"), progress=False)
    finally:
        gp_proxy.discovery._evaluation_map = plain
    return steps


def replay(
    tasks: list, steps: list[Step], workers: int, owner: Callable[[int, gp.PrimitiveTree], int]
) -> tuple[float, float]:
    """(summed seconds, summed slowest worker's seconds per step) of `steps` on `workers` objectives,
    program j of a step on objective `owner(j, tree)`."""
    pset = task_pset(tasks)
    objectives = [Objective(tasks).training_only() for _ in range(workers)]
    cleared = [0] * workers
    total = wall = 0.0
    with freed_memory_kept():
        for expressions, clears in steps:
            seconds = [0.0] * workers
            for j, expression in enumerate(expressions):
                tree = parse(expression, pset)
                w = owner(j, tree)
                if cleared[w] < clears:
                    objectives[w].clear()
                    cleared[w] = clears
                start = time.perf_counter()
                objectives[w](tree)
                seconds[w] += time.perf_counter() - start
            total, wall = total + sum(seconds), wall + max(seconds)
    return total, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, help="ViT-Bench-101's statistics (batch 16, sketch 32)")
    parser.add_argument("--iterations", type=int, default=100, help="elitism steps of the recorded discovery")
    parser.add_argument("--parents", type=int, default=16, help="programs per step of the recorded discovery")
    parser.add_argument("--workers", type=int, default=2, help="simulated workers")
    parser.add_argument("--out", default="results/worker_memo.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tasks = search_tasks(args.cache)
    steps = recorded_steps(tasks, args.iterations, args.parents)
    n = args.workers
    rows = []
    for name, workers, owner in (
        ("round-robin", n, lambda j, tree: j % n),
        ("`batch_of` (what `dask_map` does)", n, lambda j, tree: batch_of(tree, n)),
        ("one worker", 1, lambda j, tree: 0),
    ):
        total, wall = replay(tasks, steps, workers, owner)
        rows.append(f"| {name} | {workers} | {total:.1f} | {wall:.1f} |")
        print(rows[-1], flush=True)
    write_report(
        args.out,
        "A discovery step's split over workers, and their memos",
        f"python benchmarks/worker_memo.py --cache {args.cache} --iterations {args.iterations} "
        f"--parents {args.parents} --workers {args.workers} --out {args.out}",
        f"(CPU, torch {torch.__version__}, one thread; {len(tasks)} tasks; a one-process discovery of "
        f"{args.iterations} elitism steps, `--parents {args.parents}`, seed 0, recorded: {len(steps)} map calls, "
        f"{sum(len(e) for e, _ in steps)} programs, replayed here in turn, freed memory kept)",
        table(["split", "workers", "scoring, summed (s)", "slowest worker per step, summed (s)"], rows),
        "Without Dask: what each split asks of the workers' memos, not the cluster's wall time (`scaling.md`).",
    )


if __name__ == "__main__":
    main()
