"""Freed memory kept for reuse while programs are scored (`gp_proxy.memory`), measured side by
side in one run on ViT-Bench-101's six search tasks (AutoFormer and PiT x three KD data sets, the
training rows of the 50% search split of `experiments/discover_vitbench.py`).

  worker      the same `--programs` random programs (memo cleared before each batch) scored as a
              task on the worker of a 1-worker `LocalCluster`, within `freed_memory_kept` (what a
              discovery's workers do) and with the malloc settings Dask's nanny gives it,
              alternated `--repeats` times after a warm-up each; next to them the same batches in
              this process, whose malloc keeps glibc's own settings: seconds and minor page faults;
  discovery   `discover` in one process, `--steps` elitism steps of 4 programs, each run in a
              fresh process: as it runs (freed memory kept for the run) and with glibc's own
              settings (`freed_memory_kept` replaced by a no-op), `--runs` runs each way,
              alternated; the hall of fame checked equal.

    python benchmarks/freed_memory.py --cache DIR --out results/freed_memory.md
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import resource
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext

import torch
from deap import gp

from gp_proxy import DiscoveryConfig, Objective, discover, freed_memory_kept, table, write_report
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


def discovery_run(cache: str, steps: int, kept: bool) -> tuple[float, int, list[str]]:
    """In a fresh process: (seconds, minor page faults, hall of fame) of `discover` on the six
    tasks, `steps` elitism steps of 4 programs, freed memory kept as `discover` does or not."""
    import gp_proxy.discovery

    torch.set_num_threads(1)
    if not kept:
        gp_proxy.discovery.freed_memory_kept = nullcontext
    tasks = search_tasks(cache)
    faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    found = discover(tasks, DiscoveryConfig(iterations=steps, batch=4, seed=0), tempfile.mkdtemp(), progress=False)
    seconds = time.perf_counter() - start
    return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults, [str(p) for p in found.halloffame]


def search_tasks(cache: str) -> list:
    """ViT-Bench-101's six search tasks from the statistics in `cache`: AutoFormer and PiT x three KD
    data sets, each with the 50% search split (seed 0) of `experiments/discover_vitbench.py`."""
    spec = ProbeSpec(BatchSpec("c100"), 32)
    return tasks_for(["autoformer", "pit"], None, spec, StatsCache(cache), test_fraction=0.5, split_seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, help="ViT-Bench-101's statistics (batch 16, sketch 32)")
    parser.add_argument("--programs", type=int, default=40, help="random programs per batch")
    parser.add_argument("--repeats", type=int, default=5, help="batches each way, alternated")
    parser.add_argument("--steps", type=int, default=200, help="elitism steps of each one-process discovery")
    parser.add_argument("--runs", type=int, default=2, help="one-process discoveries each way, alternated")
    parser.add_argument("--out", default="results/freed_memory.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tasks = search_tasks(args.cache)
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

    searches: dict[bool, list] = {True: [], False: []}
    for run in range(args.runs):
        for kept in (True, False):
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh:
                searches[kept].append(fresh.submit(discovery_run, args.cache, args.steps, kept).result())
            print(f"discovery {run + 1}, kept {kept}: {searches[kept][-1][0]:.1f} s", flush=True)
    assert len({tuple(r[2]) for rs in searches.values() for r in rs}) == 1, "the runs found different proxies"

    def row(name: str, results: list, baseline: list, digits: int = 2) -> str:
        seconds, faults = (statistics.mean(r[i] for r in results) for i in (0, 1))
        each = ", ".join(f"{r[0]:.{digits}f}" for r in results)
        ratio = seconds / statistics.mean(r[0] for r in baseline)
        return f"| {name} | {seconds:.{digits}f} ({each}) | {faults:,.0f} | {ratio:.2f} |"

    write_report(
        args.out,
        "Scoring programs with freed memory kept for reuse: on a Dask worker, and a discovery in one process",
        f"python benchmarks/freed_memory.py --cache {args.cache} --programs {args.programs} --repeats {args.repeats} "
        f"--steps {args.steps} --runs {args.runs} --out {args.out}",
        f"(CPU, torch {torch.__version__}, one thread per process; {len(tasks)} tasks, the training rows "
        f"of the 50% split; {args.programs} random programs per batch, memo cleared before each; the "
        f"worker's nanny set MALLOC_TRIM_THRESHOLD_={trim}; {args.repeats} batches each way, alternated)",
        table(
            ["where", "seconds per batch: mean (each)", "minor page faults per batch", "time / kept worker's"],
            [
                row("worker, Dask's malloc settings", runs[False], runs[True]),
                row("worker, freed memory kept (what discovery's workers do)", runs[True], runs[True]),
                row("this process, glibc's own settings", runs["here"], runs[True]),
            ],
        ),
        f"`discover` in one process: {args.steps} elitism steps of 4 programs (`--parents 4`, seed 0), each "
        f"run in a fresh process, {args.runs} runs each way, alternated; the same hall of fame every run.",
        table(
            ["malloc", "seconds per run: mean (each)", "minor page faults per run", "time / kept's"],
            [
                row("freed memory kept for the run (what `discover` does)", searches[True], searches[True], 1),
                row("glibc's own settings", searches[False], searches[True], 1),
            ],
        ),
    )


if __name__ == "__main__":
    main()
