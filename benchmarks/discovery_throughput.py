"""Discovery throughput: candidate programs scored per second on the whole ViT-Bench-101.

Target (issue 3): >= 10 candidates per second, each scored on all 200 architectures and every
KD data set (6 tasks), on a 2-core machine; and the speed-up over re-running the probe for
every candidate (the paper's way), measured side by side on a few architectures.

Three measurements:
  fresh     random programs, memo cleared before each (worst case: every node computed);
  search    the programs an elitism-preserve run evaluates, with its memo (the real workload);
            only programs really scored count: a mutation that gives a program already in the
            population is redrawn, never evaluated (the count of such copies is reported);
  re-probe  the paper's way on K architectures per space: probe + score per candidate, vs.
            scoring the same K architectures from cached statistics.

    python benchmarks/discovery_throughput.py --cache DIR --out results/discovery_throughput.md
"""

from __future__ import annotations

import argparse
import os
import random
import time

import torch

from gp_proxy.discovery import DiscoveryConfig, initial_population, task_pset
from gp_proxy.evolve import Objective, elitism_preserve_step, evaluate_invalid, make_toolbox
from gp_proxy.markdown import table, write_report
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
    pset, objective = task_pset(tasks), Objective(tasks)
    random.seed(0)
    trees = [generate(pset, 1, 3) for _ in range(args.programs)]
    start = time.perf_counter()
    for tree in trees:
        objective.clear()
        objective(tree)
    fresh = args.programs / (time.perf_counter() - start)

    search, evaluations, draws, unchanged = elitism_search(pset, objective, args.steps)

    rows = []
    for name in ("autoformer", "pit"):
        space = get_space(name)
        archs = random.Random(0).sample(list(load_bench(name).archs), args.reprobe_archs)
        start = time.perf_counter()
        stats = [probe_arch(space, a, spec)["data"] for a in archs]
        reprobe = time.perf_counter() - start
        evaluator, tree = Evaluator(stack(stats), memo_bytes=0), trees[0]
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
            ["workload", "candidates per second (each on 200 archs x 3 data sets)"],
            [
                f"| fresh random programs, empty memo (worst case) | {fresh:.1f} |",
                f"| elitism-preserve search, {args.steps} steps, memo | {search:.1f} |",
            ],
        ),
        f"Default configuration (size limit {DiscoveryConfig().size_limit} nodes). The search drew {draws} mutations "
        f"and scored {evaluations} programs: the other {draws - evaluations} ({1 - evaluations / max(draws, 1):.0%}) "
        f"gave a program already in the population (or already drawn in the step), {unchanged} of them the "
        "parent itself; those were redrawn, never scored nor counted.",
        "Re-running the probe per candidate (the paper's way) vs scoring from cached statistics, one data set:",
        table(
            ["space", "archs", "probe + score per candidate (s)", "cached score per candidate (ms)", "speed-up"], rows
        ),
    )


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
