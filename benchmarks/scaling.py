"""Dask scaling on this machine: `stats` and `bench build` on af-tiny in one process and on 1 and 2
workers, the scheduler's overhead per task, and a paper estimate of a ViT-Bench-101-sized build.

  stats       `--archs` af-tiny networks probed on digits (one task each), into an empty cache;
  build       `--runs` af-tiny networks trained `--steps` steps on digits (one task per run);
  discover    `--iterations` elitism steps on af-tiny's two tasks (statistics probed beforehand),
              scoring `--parents` 1 and 4 programs per step (one batch per worker per step; the
              hall of fame checked equal across one process and the clusters); with
              `--vitbench-cache DIR` (the cache `benchmarks/cache_full.py` fills), also on
              ViT-Bench-101's six search tasks (AutoFormer and PiT x three KD data sets, the
              50% search split of `experiments/discover_vitbench.py`), at 1, 4 and 16 programs per
              step: statistics large enough that a program takes tens of milliseconds (read, as
              `discover --cache` does, from the cache folder, which the local workers see); and the
              seconds a cluster takes, once per run, to hold each objective on its workers, sent
              through the scheduler and read from the cache folder;
  scoring     with `--vitbench-cache`: what a worker is sent to discover on ViT-Bench-101 (the
              training rows; MB pickled, next to the whole objective), the seconds to send it to
              1 worker and to send its statistic tensors alone as torch pickles them, and the
              seconds to score the same 40 programs in this process, as a task on that worker (a
              thread beside its event loop) and on its main thread (`Client.run`), on a cleared memo;
  overhead    `--tasks` empty tasks through `run_all` on 2 workers: wall time per task;
  estimate    100 architectures x 3 data sets x 300 epochs (the issue's scale: one space's runs,
              each epoch CIFAR-100's 50,000 training images), from a measured AutoFormer-Ti step
              (224 px, batch `--batch`, this CPU, one thread): CPU-days in one process, and on N
              workers, each run one task (`vitbench_scale.days_on`) at the measured 2-worker
              efficiency of `build` (GPU workers: `benchmarks/device_check.py`).

Speed-up = one process's time / the cluster's; efficiency = speed-up / workers. Every worker runs
one torch thread, and so does the one process.

    python benchmarks/scaling.py --out results/scaling.md
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from deap import gp
from vitbench_scale import EPOCH_IMAGES, EPOCHS, RUNS, autoformer_step, days_on, steps_per_run  # sibling script

from gp_proxy import DiscoveryConfig, discover, table, write_report
from gp_proxy.dask_map import dask_map
from gp_proxy.objective import Objective, task_pset
from gp_proxy.program import generate, parse
from vit_space import BatchSpec, BuildPlan, ProbeSpec, Recipe, StatsCache, build_bench, fill, get_space, tasks_for
from vit_space.cluster import connect, run_all


def small_archs(count: int) -> list[dict]:
    space, rng, archs = get_space("af-tiny"), random.Random(0), []
    while len(archs) < count:
        arch = space.sample(rng)
        if arch not in archs:
            archs.append(arch)
    return archs


def timed_stats(archs: list[dict], client) -> float:
    cache = StatsCache(tempfile.mkdtemp(prefix="scaling_stats_"))
    spec = ProbeSpec(BatchSpec("digits", image_size=None))
    start = time.perf_counter()
    fill(get_space("af-tiny"), archs, [spec], cache, progress=False, client=client)
    return time.perf_counter() - start


def timed_build(archs: list[dict], steps: int, client) -> float:
    plan = BuildPlan(get_space("af-tiny"), tuple(archs), ("digits",), Recipe(steps=steps, test_size=500), (0,))
    out = Path(tempfile.mkdtemp(prefix="scaling_build_")) / "bench.json"
    start = time.perf_counter()
    build_bench(plan, out, progress=False, client=client)
    return time.perf_counter() - start


def timed_discover(tasks: list, iterations: int, parents: int, client, share: str) -> tuple[float, list[str]]:
    """Seconds of a discovery on `client` (None: in one process) reading statistics from `share`
    where its workers see it (as `discover --cache` does), and its hall of fame."""
    config = DiscoveryConfig(iterations=iterations, batch=parents, seed=0)
    out = tempfile.mkdtemp(prefix="scaling_discover_")
    start = time.perf_counter()
    found = discover(tasks, config, out, progress=False, client=client, share=share)
    return time.perf_counter() - start, [str(p) for p in found.halloffame]


def _score_each(expressions: list[str], dask_worker=None) -> None:
    for name, plugin in dask_worker.plugins.items():
        if name.startswith("autoprox-objective-"):
            plugin.evaluate(expressions, 0)


def _kept_by_scheduler(dask_scheduler=None) -> int:
    return sum(len(p) for name, p in dask_scheduler.worker_plugins.items() if name.startswith("autoprox-objective-"))


def timed_hold(tasks: list, client, share: str | None) -> tuple[float, int]:
    """Seconds until every worker holds discovery's objective and has scored one program per
    statistic with it, so has read every statistic (the training rows picked and sent through the
    scheduler, or with `share` written there and read by each worker, memory-mapped; once per run),
    and the bytes the scheduler keeps of it meanwhile."""
    objective = Objective(tasks)
    expressions = [f"agg_sum_all(fro({name}))" for name in tasks[0].bundle.names]
    start = time.perf_counter()
    with dask_map(objective, client, share=share):
        client.run(_score_each, expressions)
        seconds = time.perf_counter() - start
        kept = client.run_on_scheduler(_kept_by_scheduler)
    return seconds, kept


def _score(objective: Objective, expressions: list[str]) -> float:
    """Seconds to score `expressions` by `objective`, its memo cleared first."""
    objective.clear()
    pset = task_pset(objective.tasks)
    start = time.perf_counter()
    for expression in expressions:
        objective(parse(expression, pset))
    return time.perf_counter() - start


def _score_on_main_thread(key: str, expressions: list[str], dask_worker=None) -> float:
    return _score(dask_worker.data[key], expressions)


def scoring(tasks: list, client, programs: int = 40) -> dict[str, float]:
    """What discovery sends a worker (MB pickled: `sent`, `whole`), the seconds to send it (`send`)
    and its statistic tensors as torch pickles them (`send_torch`), and the seconds to score the same
    `programs` random programs `here`, in a worker's task `thread` and on its `main` thread (after
    one warm-up batch each)."""
    objective = Objective(tasks)
    pset, rng_state = task_pset(tasks), random.getstate()
    random.seed(0)
    warm, timed = ([str(gp.PrimitiveTree(generate(pset, 1, 5))) for _ in range(programs)] for _ in range(2))
    random.setstate(rng_state)
    sent = objective.training_only()
    out = {"whole": len(pickle.dumps(objective)) / 1e6, "sent": len(pickle.dumps(sent)) / 1e6}
    start = time.perf_counter()
    bundles = {id(t.bundle): t.bundle for t in sent.tasks}.values()
    as_torch = client.scatter([b.tensors for b in bundles], broadcast=True)
    out["send_torch"] = time.perf_counter() - start
    del as_torch
    start = time.perf_counter()
    on_worker = client.scatter(sent, broadcast=True)
    out["send"] = time.perf_counter() - start
    _score(objective, warm)
    out["here"] = _score(objective, timed)
    client.submit(_score, on_worker, warm, pure=False).result()
    out["thread"] = client.submit(_score, on_worker, timed, pure=False).result()
    out["main"] = min(client.run(_score_on_main_thread, on_worker.key, timed).values())
    del on_worker
    return out


def _nothing(index: int) -> int:
    return index


def overhead(client, tasks: int) -> float:
    start = time.perf_counter()
    for _ in run_all(client, _nothing, [(i,) for i in range(tasks)], "empty", progress=False):
        pass
    return (time.perf_counter() - start) / tasks


def hold_text(bench: str, way: str, by: dict[int, tuple[float, int]]) -> str:
    """One benchmark's `timed_hold` results, `way` "sent" (through the scheduler) or "shared" (a file)."""
    how = "sent through the scheduler" if way == "sent" else "read from the shared cache folder"
    seconds = ", ".join(f"{s:.1f} s on {n} worker{'s' * (n > 1)}" for n, (s, _) in by.items())
    kept = max(k for _, k in by.values())
    size = f"{kept / 1e6:,.1f} MB" if kept >= 1e6 else f"{kept / 1e3:,.1f} kB"
    return f"{bench} {how}: {seconds} (the scheduler keeping {size} of it)"


def row(name: str, alone: float, by_workers: dict[int, float]) -> str:
    cells = [f"{alone:.1f}"]
    for workers, seconds in by_workers.items():
        speed_up = alone / seconds
        cells += [f"{seconds:.1f}", f"{speed_up:.2f}x", f"{speed_up / workers:.0%}"]
    return f"| {name} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=100, help="af-tiny networks for the stats row")
    parser.add_argument("--runs", type=int, default=12, help="training runs for the build row")
    parser.add_argument("--steps", type=int, default=150, help="training steps per run")
    parser.add_argument("--iterations", type=int, default=100, help="discovery steps for the discover rows")
    parser.add_argument("--tasks", type=int, default=500, help="empty tasks for the overhead row")
    parser.add_argument("--batch", type=int, default=32, help="batch of the AutoFormer step in the estimate")
    parser.add_argument("--vitbench-cache", help="ViT-Bench-101's statistics (batch 16, sketch 32): adds discover rows")
    parser.add_argument("--out", default="results/scaling.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    probe_archs, build_archs = small_archs(args.archs), small_archs(args.runs)
    spec = ProbeSpec(BatchSpec("digits", image_size=None))
    cache = StatsCache(tempfile.mkdtemp(prefix="scaling_tasks_"))
    tasks = tasks_for(["af-tiny"], None, spec, cache, compute_missing=True)  # probed here, not timed
    searches = {("af-tiny", 1): tasks, ("af-tiny", 4): tasks}
    shares = {"af-tiny": str(cache.root)}  # the cache folder each benchmark's statistics are read from
    if args.vitbench_cache:
        spec = ProbeSpec(BatchSpec("c100", "skimage", 16, 0), 32)
        large = tasks_for(
            ["autoformer", "pit"], None, spec, StatsCache(args.vitbench_cache), test_fraction=0.5, split_seed=0
        )
        searches |= {("ViT-Bench-101", parents): large for parents in (1, 4, 16)}
        shares["ViT-Bench-101"] = args.vitbench_cache
    stats, build, search, found = {}, {}, {key: {} for key in searches}, set()
    hold: dict[tuple[str, str], dict[int, tuple[float, int]]] = {
        (bench, way): {} for bench in shares for way in ("sent", "shared")
    }
    for workers in (0, 1, 2):  # 0: one process, no cluster
        with connect(f"local:{workers}") if workers else nullcontext() as client:
            timed_stats(probe_archs[:2], client)  # warm-up: imports, the batch, the training data
            timed_build(build_archs[:1], 5, client)
            stats[workers] = timed_stats(probe_archs, client)
            build[workers] = timed_build(build_archs, args.steps, client)
            if workers:
                for (bench, way), by in hold.items():
                    by[workers] = timed_hold(searches[bench, 1], client, shares[bench] if way == "shared" else None)
            for (bench, parents), seconds in search.items():
                seconds[workers], halloffame = timed_discover(
                    searches[bench, parents], args.iterations, parents, client, shares[bench]
                )
                found.add((bench, parents, tuple(halloffame)))
            if workers == 1 and args.vitbench_cache:
                scored = scoring(large, client)
            if workers == 2:
                per_task = overhead(client, args.tasks)
    assert len(found) == len(search), "a cluster's discovery differs from one process's"
    stats_alone, build_alone = stats.pop(0), build.pop(0)
    search_alone = {key: seconds.pop(0) for key, seconds in search.items()}
    step = autoformer_step(args.batch)
    cpu_seconds = RUNS * steps_per_run(args.batch) * step
    efficiency = build_alone / build[2] / 2
    estimate = [f"| {n} | {days_on(n, step / min(efficiency, 1.0), args.batch):,.1f} |" for n in (2, 8, 64, RUNS)]
    write_report(
        args.out,
        "Dask scaling on this machine, and a ViT-Bench-101-sized estimate",
        f"python benchmarks/scaling.py --archs {args.archs} --runs {args.runs} --steps {args.steps} "
        f"--iterations {args.iterations} --tasks {args.tasks} --batch {args.batch} "
        + (f"--vitbench-cache {args.vitbench_cache} " if args.vitbench_cache else "")
        + f"--out {args.out}",
        f"({os.cpu_count()} cores, torch {torch.__version__}, one torch thread per process; load average "
        f"{load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; workers warmed up before timing)",
        table(
            [
                "workload",
                "one process (s)",
                "1 worker (s)",
                "speed-up",
                "efficiency",
                "2 workers (s)",
                "speed-up",
                "efficiency",
            ],
            [
                row(f"`stats`: {args.archs} af-tiny probes on digits", stats_alone, stats),
                row(f"`bench build`: {args.runs} af-tiny runs of {args.steps} steps on digits", build_alone, build),
                *(
                    row(
                        f"`discover`: {args.iterations} elitism steps of {parents} program(s) on {bench}'s "
                        f"{len(searches[bench, parents])} tasks (`--parents {parents}`)",
                        search_alone[bench, parents],
                        seconds,
                    )
                    for (bench, parents), seconds in search.items()
                ),
            ],
        ),
        "Of a cluster's `discover` time, holding the objective on its workers, once per run, until each "
        "has scored one program per statistic with it (so has read every statistic; a file just written is "
        "in this machine's page cache): "
        + "; ".join(hold_text(bench, way, by) for (bench, way), by in hold.items())
        + ". The discover rows above read the statistics from the cache folder, as `discover --cache` does "
        "where every worker sees it; the rest of their time is the steps (each one a round trip to the workers).",
        *(
            [
                f"What a worker is sent to discover on ViT-Bench-101: its training rows, {scored['sent']:,.0f} MB "
                f"pickled (the whole objective: {scored['whole']:,.0f} MB), {scored['send']:.1f} s to send to 1 "
                f"worker (its statistic tensors alone, pickled by torch rather than as numpy arrays: "
                f"{scored['send_torch']:.1f} s). The same 40 programs scored in this process: "
                f"{scored['here']:.2f} s; as a task on that worker (a thread beside its event loop): "
                f"{scored['thread']:.2f} s; on the worker's main thread (`Client.run`): {scored['main']:.2f} s."
            ]
            if args.vitbench_cache
            else []
        ),
        f"Scheduler overhead: {per_task * 1e3:.2f} ms per task ({args.tasks} empty tasks on 2 workers, "
        "submission to result in this process).",
        f"Estimate for ViT-Bench-101's scale ({RUNS} runs of {EPOCHS} epochs of {EPOCH_IMAGES:,} images, "
        f"{steps_per_run(args.batch):,} steps of batch {args.batch} each): an AutoFormer-Ti step takes "
        f"{step:.2f} s on one CPU thread here, so {cpu_seconds / 86400:,.0f} CPU-days in one process; on N such "
        f"workers, each run one task on one worker (ceil({RUNS} / N) runs in turn), each step slowed to the "
        f"2-worker efficiency measured above ({min(efficiency, 1.0):.0%}):",
        table(["workers", "days"], estimate),
        "On GPU workers: `benchmarks/device_check.py` times the same step on a GPU and prices the same build with it.",
    )
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
