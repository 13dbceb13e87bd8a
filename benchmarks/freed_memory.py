"""Freed memory kept for reuse while programs are scored (`gp_proxy.memory`) vs glibc's own
settings, side by side in one run, on ViT-Bench-101's six search tasks (AutoFormer and PiT x three
KD data sets, the 50% search split of `experiments/discover_vitbench.py`).

  one process  `discover` (`--iterations` elitism steps, `--parents` programs per step), each
               run in a fresh process, kept and not alternated `--repeats` times (not kept: with
               `discover`'s `freed_memory_kept` replaced by a block that does nothing): seconds,
               programs scored per second, minor page faults, system CPU seconds and peak
               resident memory of the run (the hall of fame checked equal);
  Dask worker  the same `--programs` random programs scored as a task on the worker of a 1-worker
               `LocalCluster` (whose nanny sets `MALLOC_TRIM_THRESHOLD_=65536`), within
               `freed_memory_kept` and not, alternated `--repeats` times after a warm-up each.

    python benchmarks/freed_memory.py --cache DIR --out results/freed_memory.md
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import resource
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from unittest import mock

import torch
from deap import gp

from gp_proxy import DiscoveryConfig, Objective, discover, freed_memory_kept, table, write_report
from gp_proxy.objective import task_pset
from gp_proxy.program import generate, parse
from vit_space import BatchSpec, ProbeSpec, StatsCache, tasks_for
from vit_space.cluster import connect


def search_tasks(cache: str) -> list:
    spec = ProbeSpec(BatchSpec("c100"), 32)
    return tasks_for(["autoformer", "pit"], None, spec, StatsCache(cache), test_fraction=0.5, split_seed=0)


def one_process(cache: str, iterations: int, parents: int, kept: bool) -> dict:
    """One `discover` run in this (fresh) process: seconds, programs, faults, system CPU, peak MB, hall of fame."""
    torch.set_num_threads(1)
    tasks, config = search_tasks(cache), DiscoveryConfig(iterations=iterations, batch=parents, seed=0)
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with nullcontext() if kept else mock.patch("gp_proxy.discovery.freed_memory_kept", nullcontext):
        result = discover(tasks, config, tempfile.mkdtemp(prefix="freed_memory_"), progress=False)
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": seconds,
        "rate": result.evaluations / seconds,
        "faults": after.ru_minflt - before.ru_minflt,
        "system": after.ru_stime - before.ru_stime,
        "peak": after.ru_maxrss / 1024,  # KiB on Linux
        "found": [str(p) for p in result.halloffame],
    }


def scored_seconds(objective: Objective, expressions: list[str], kept: bool) -> float:
    """Seconds to score `expressions` by `objective` (memo cleared first), within `freed_memory_kept` or not."""
    objective.clear()
    pset = task_pset(objective.tasks)
    with freed_memory_kept() if kept else nullcontext():
        start = time.perf_counter()
        for expression in expressions:
            objective(parse(expression, pset))
        return time.perf_counter() - start


def worker_rows(tasks: list, programs: int, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds per batch of `programs` on a 1-worker cluster's worker: (not kept, kept), `repeats` each."""
    random.seed(0)
    expressions = [str(gp.PrimitiveTree(generate(task_pset(tasks), 1, 5))) for _ in range(programs)]
    seconds = {False: [], True: []}
    with connect("local:1") as client:
        objective = client.scatter(Objective(tasks).training_only(), broadcast=True)
        for kept in (False, True):  # warm-up
            client.submit(scored_seconds, objective, expressions, kept, pure=False).result()
        for _ in range(repeats):
            for kept in (False, True):
                seconds[kept].append(client.submit(scored_seconds, objective, expressions, kept, pure=False).result())
    return seconds[False], seconds[True]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, help="ViT-Bench-101's statistics (batch 16, sketch 32)")
    parser.add_argument("--iterations", type=int, default=100, help="elitism steps per one-process run")
    parser.add_argument("--parents", type=int, default=4, help="programs per elitism step")
    parser.add_argument("--programs", type=int, default=40, help="random programs per Dask worker batch")
    parser.add_argument("--repeats", type=int, default=3, help="runs each way, alternated")
    parser.add_argument("--out", default="results/freed_memory.md")
    args = parser.parse_args()
    runs = {False: [], True: []}
    spawn = multiprocessing.get_context("spawn")  # a fresh malloc each run: the settings hold for a whole process
    for repeat in range(args.repeats):
        for kept in (False, True):
            with ProcessPoolExecutor(1, mp_context=spawn) as fresh:
                run = fresh.submit(one_process, args.cache, args.iterations, args.parents, kept).result()
            runs[kept].append(run)
            print(f"one process, run {repeat + 1}, kept={kept}: {run['seconds']:.1f} s, {run['faults']} faults")
    assert len({tuple(r["found"]) for rs in runs.values() for r in rs}) == 1, "the runs found different programs"
    loose, kept = worker_rows(search_tasks(args.cache), args.programs, args.repeats)

    def cells(measure: str, form: str) -> tuple[str, str, str]:
        values = {k: statistics.mean(r[measure] for r in rs) for k, rs in runs.items()}
        return f"{values[False]:{form}}", f"{values[True]:{form}}", f"{values[False] / values[True]:.2f}"

    rows = [
        "| {} | {} | {} | {} |".format(name, *cells(measure, form))
        for name, measure, form in [
            ("seconds per run", "seconds", ".1f"),
            ("programs scored per second", "rate", ".1f"),
            ("minor page faults", "faults", ",d"),
            ("system CPU seconds", "system", ".1f"),
            ("peak resident memory (MB)", "peak", ",.0f"),
        ]
    ]
    rows.append(
        f"| Dask worker task: seconds for {args.programs} programs | {statistics.mean(loose):.2f} | "
        f"{statistics.mean(kept):.2f} | {statistics.mean(loose) / statistics.mean(kept):.2f} |"
    )
    listed = lambda values, unit: ", ".join(f"{v:.2f}" for v in values) + unit  # noqa: E731
    each = (
        f"one-process runs {listed([r['seconds'] for r in runs[False]], ' s')} not kept and "
        f"{listed([r['seconds'] for r in runs[True]], ' s')} kept; worker batches {listed(loose, ' s')} not kept "
        f"and {listed(kept, ' s')} kept"
    )
    write_report(
        args.out,
        "Freed memory kept for reuse while programs are scored",
        f"python benchmarks/freed_memory.py --cache {args.cache} --iterations {args.iterations} "
        f"--parents {args.parents} --programs {args.programs} --repeats {args.repeats}",
        f"(CPU, torch {torch.__version__}, one thread per process; means of {args.repeats} runs each way, "
        f"alternated; the one-process runs each in a fresh process, all with the same hall of fame; {each})",
        table(["measure", "glibc's settings", "freed memory kept", "ratio"], rows),
    )


if __name__ == "__main__":
    main()
