"""A Dask worker scoring programs with freed memory kept for reuse (`gp_proxy.memory`, as
discovery's workers do) and with the malloc settings Dask's nanny gives it, side by side in one
run, on ViT-Bench-101's six search tasks (AutoFormer and PiT x three KD data sets, the training
rows of the 50% search split of `experiments/discover_vitbench.py`, as discovery sends them).

The same `--programs` random programs (memo cleared before each batch) are scored as a task on
the worker of a 1-worker `LocalCluster`, within `freed_memory_kept` and not, alternated
`--repeats` times after a warm-up each: seconds and the worker's minor page faults per batch;
next to them the same batches in this process, whose malloc keeps glibc's own settings.

    python benchmarks/freed_memory.py --cache DIR --out results/freed_memory.md
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import time
from contextlib import nullcontext

import torch
from deap import gp

from gp_proxy import Objective, freed_memory_kept, table, write_report
from gp_proxy.objective import task_pset
from gp_proxy.program import generate, parse
from vit_space import BatchSpec, ProbeSpec, StatsCache, tasks_for
from vit_space.cluster import connect


def scored(objective: Objective, expressions: list[str], kept: bool) -> tuple[float, int, str]:
    """(seconds, minor page faults) to score `expressions` by `objective` (memo cleared first),
    within `freed_memory_kept` or not, and this process's `MALLOC_TRIM_THRESHOLD_`."""
    objective.clear()
    pset = task_pset(objective.tasks)
    with freed_memory_kept() if kept else nullcontext():
        faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        for expression in expressions:
            objective(parse(expression, pset))
        seconds = time.perf_counter() - start
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return seconds, faults, os.environ.get("MALLOC_TRIM_THRESHOLD_")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, help="ViT-Bench-101's statistics (batch 16, sketch 32)")
    parser.add_argument("--programs", type=int, default=40, help="random programs per batch")
    parser.add_argument("--repeats", type=int, default=5, help="batches each way, alternated")
    parser.add_argument("--out", default="results/freed_memory.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = ProbeSpec(BatchSpec("c100"), 32)
    tasks = tasks_for(["autoformer", "pit"], None, spec, StatsCache(args.cache), test_fraction=0.5, split_seed=0)
    objective = Objective(tasks).training_only()
    random.seed(0)
    expressions = [str(gp.PrimitiveTree(generate(task_pset(tasks), 1, 5))) for _ in range(args.programs)]
    runs = {"here": [], False: [], True: []}
    with connect("local:1") as client:
        on_worker = client.scatter(objective, broadcast=True)
        for kept in (False, True):  # warm-up
            client.submit(scored, on_worker, expressions, kept, pure=False).result()
        scored(objective, expressions, False)
        for repeat in range(args.repeats):
            for kept in (False, True):
                seconds, faults, trim = client.submit(scored, on_worker, expressions, kept, pure=False).result()
                runs[kept].append((seconds, faults))
            runs["here"].append(scored(objective, expressions, False)[:2])
            print(f"batch {repeat + 1}: " + ", ".join(f"{k}: {v[-1][0]:.2f} s" for k, v in runs.items()), flush=True)

    def row(name: str, key) -> str:
        seconds, faults = (statistics.mean(r[i] for r in runs[key]) for i in (0, 1))
        each, ratio = ", ".join(f"{r[0]:.2f}" for r in runs[key]), seconds / statistics.mean(r[0] for r in runs[True])
        return f"| {name} | {seconds:.2f} ({each}) | {faults:,.0f} | {ratio:.2f} |"

    write_report(
        args.out,
        "A Dask worker scoring programs with freed memory kept for reuse",
        f"python benchmarks/freed_memory.py --cache {args.cache} --programs {args.programs} --repeats {args.repeats}",
        f"(CPU, torch {torch.__version__}, one thread per process; {len(tasks)} tasks, the training rows "
        f"of the 50% split; {args.programs} random programs per batch, memo cleared before each; the "
        f"worker's nanny set MALLOC_TRIM_THRESHOLD_={trim}; {args.repeats} batches each way, alternated)",
        table(
            ["where", "seconds per batch: mean (each)", "minor page faults per batch", "time / kept worker's"],
            [
                row("worker, Dask's malloc settings", False),
                row("worker, freed memory kept (what discovery's workers do)", True),
                row("this process, glibc's own settings", "here"),
            ],
        ),
    )


if __name__ == "__main__":
    main()
