"""A whole discovery run: seeded, checkpointed, resumable, with a progress bar and saved results.

    result = discover(tasks, DiscoveryConfig(iterations=300, seed=0), out_dir)

runs `ALGORITHMS[config.algorithm]` (`gp_proxy.evolve`) with hooks: after each step the progress
bar, and every `checkpoint_every` iterations `out_dir/checkpoint.json` (`gp_proxy.checkpoint`);
before each step the `max_evaluations` budget; once per generation the objective forgets its
memoised subtrees (`toolbox.end_generation`). At the end it saves `proxies/rank01.json ...`,
`logbook.csv`, `progress.png` and `summary.md` (`gp_proxy.results`).
"""

from __future__ import annotations

import itertools
import multiprocessing
import random
import signal
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from deap import base, creator, gp, tools
from tqdm.auto import tqdm

from gp_proxy.checkpoint import load_checkpoint, save_checkpoint
from gp_proxy.config import DiscoveryConfig
from gp_proxy.device import resolve_device
from gp_proxy.errors import AutoproxError, IdleWorkersWarning
from gp_proxy.evolve import ALGORITHMS, StopHook, jcm_of, make_stats, make_toolbox
from gp_proxy.fitness import Task, split_for_validation
from gp_proxy.halloffame import HallOfFame
from gp_proxy.library import known_proxy
from gp_proxy.memory import freed_memory_kept
from gp_proxy.objective import Objective, task_pset, tasks_on
from gp_proxy.program import parse
from gp_proxy.results import DiscoveryResult, save_results

__all__ = ["ALGORITHMS", "DiscoveryConfig", "DiscoveryResult", "discover", "initial_population", "task_pset"]


def initial_population(toolbox, pset: gp.PrimitiveSetTyped, config: DiscoveryConfig) -> list:
    """The seed proxies, then random programs: `config.population` distinct expressions."""
    seeded = [creator.Proxy(parse(known_proxy(n).expression, pset)) for n in config.seed_proxies]
    drawn = (toolbox.individual() for _ in range(100 * config.population))
    population, seen = [], set()
    for ind in itertools.chain(seeded, drawn):
        if str(ind) not in seen:
            seen.add(str(ind))
            population.append(ind)
        if len(population) == config.population:
            return population
    raise AutoproxError(f"could not draw {config.population} distinct programs; use a smaller --population")


def discover(
    tasks: Sequence[Task],
    config: DiscoveryConfig,
    out_dir: str | Path,
    resume: bool = False,
    probe: dict | None = None,
    provenance: dict | None = None,
    workers: int = 1,
    progress: bool = True,
    client=None,
    device: str | torch.device | None = None,
    share: str | Path | None = None,
) -> DiscoveryResult:
    """Evolve proxies on `tasks` and save the hall of fame, the logbook and a summary in `out_dir`.

    The search sees only each task's training architectures; the saved proxies report train and
    held-out correlations. With `config.validation` > 0 a seeded share of the training
    architectures is kept from the search, and the saved proxies are the hall of fame and the
    Pareto front ranked by their JCM there (validation JCM), not by the search's own fitness.
    `probe` (how the statistics were measured) and `provenance` go into every saved proxy.
    `workers` > 1 evaluates through a process pool (the (mu + lambda) offspring, or the `batch`
    children of an elitism step); a Dask `client` evaluates them on its workers instead, each
    holding one copy of the tasks' statistics (read from a file this process writes to `share`,
    e.g. a cache folder, when every worker sees that folder; else sent to them through the
    scheduler). Results depend on neither. `device` (`auto`, `cpu`,
    `cuda`, `cuda:N`; None: where the statistics are) is where programs are evaluated: the tasks'
    statistics are moved there, or with a `client` each worker moves its copy to its own `device`
    (a worker's `auto` is its own first GPU). With `resume`, continues from
    `out_dir/checkpoint.json` to the same result as an uninterrupted run with the same
    configuration. `progress` shows a bar (best training JCM, evaluations so far).
    """
    config.validate()
    if device is not None and client is None:
        tasks = tasks_on(tasks, resolve_device(device))
    off_cpu = sorted({str(t.bundle.block.device) for t in tasks} - {"cpu"})
    if workers > 1 and off_cpu:
        raise AutoproxError(
            f"workers={workers} evaluates in forked CPU processes, which cannot use statistics on {off_cpu[0]}; "
            "use workers=1 on a GPU, or move the tasks' statistics to the CPU"
        )
    _warn_of_idle_workers(config, workers, client)
    pset, out_dir = task_pset(tasks), Path(out_dir)
    checkpoint = out_dir / "checkpoint.json"
    if checkpoint.exists() and not resume:
        raise AutoproxError(f"{checkpoint} exists: pass --resume to continue that run, or use a new --out folder")
    fit_tasks, validation_tasks = (
        split_for_validation(tasks, config.validation, config.validation_seed) if config.validation else (tasks, [])
    )
    objective = Objective(fit_tasks, config.jcm)
    halloffame = HallOfFame(config.hall_of_fame)
    with _evaluation_map(objective, workers, client, device, share) as map_fn:
        toolbox = make_toolbox(
            pset, objective, config.min_height, config.max_height, config.height_limit, config.size_limit, map_fn
        )
        toolbox.register("end_generation", objective.clear)  # memoised subtrees: kept for one generation
        started = time.perf_counter()
        population, logbook, earlier = _start(toolbox, pset, config, checkpoint if resume else None, halloffame)

        def seconds() -> float:
            """The whole run's search time: earlier sessions plus this one."""
            return earlier + time.perf_counter() - started

        with tqdm(
            total=config.iterations,
            initial=logbook[-1]["iteration"] if logbook else 0,
            desc=f"discover ({config.algorithm})",
            disable=not progress,
        ) as bar:

            def on_step(iteration: int, population: list, halloffame: tools.HallOfFame, logbook: tools.Logbook) -> None:
                bar.update()
                bar.set_postfix(best_jcm=f"{jcm_of(halloffame[0]):.4f}", evals=logbook[-1]["evals"], refresh=False)
                if iteration % config.checkpoint_every == 0:
                    save_checkpoint(checkpoint, config.as_dict(), population, halloffame, logbook, seconds())

            population, logbook = ALGORITHMS[config.algorithm](
                population,
                toolbox,
                config.iterations,
                **config.algorithm_options(),
                stats=make_stats(),
                halloffame=halloffame,
                logbook=logbook,
                on_step=on_step,
                should_stop=_budget(config.max_evaluations),
            )
        result = DiscoveryResult(
            list(halloffame), logbook, logbook[-1]["evals"], seconds(), sorted(halloffame.front, key=len)
        )
        save_checkpoint(checkpoint, config.as_dict(), population, halloffame, logbook, result.seconds)
    validation = Objective(validation_tasks, config.jcm) if validation_tasks else None
    result.saved = save_results(result, tasks, config, out_dir, probe or {}, provenance or {}, validation)
    return result


def _start(
    toolbox: base.Toolbox,
    pset: gp.PrimitiveSetTyped,
    config: DiscoveryConfig,
    checkpoint: Path | None,
    halloffame: HallOfFame,
) -> tuple[list, tools.Logbook | None, float]:
    """(population, logbook, seconds searched before): from `checkpoint` when there is one (it fills
    `halloffame` and restores the random state), else seeded and fresh (no logbook yet)."""
    if checkpoint is not None and checkpoint.exists():
        return load_checkpoint(checkpoint, pset, config.as_dict(), halloffame)
    random.seed(config.seed)
    return initial_population(toolbox, pset, config), None, 0.0


def _budget(max_evaluations: int) -> StopHook | None:
    """`should_stop` once `max_evaluations` programs were evaluated (None: no limit)."""
    if not max_evaluations:
        return None
    return lambda iteration, population, halloffame, logbook: logbook[-1]["evals"] >= max_evaluations


def _warn_of_idle_workers(config: DiscoveryConfig, workers: int, client) -> None:
    """An IdleWorkersWarning when a step scores fewer programs than there are workers (the process
    pool's, or the Dask cluster's now): the others would wait through every step."""
    if client is not None:
        from gp_proxy.dask_map import workers as cluster_workers

        workers = cluster_workers(client)
    per_step, option = config.programs_per_step, "batch (--parents)" if config.algorithm == "elitism" else "lambda_"
    if workers > 1 and per_step < workers:
        warnings.warn(
            f"{config.algorithm} scores {per_step} program(s) per step on {workers} workers, so "
            f"{workers - per_step} wait through every step; set {option} to {workers} or more",
            IdleWorkersWarning,
        )


_WORKER_OBJECTIVE: Objective | None = None


def _evaluate_in_worker(tree: gp.PrimitiveTree) -> tuple[float, int]:
    return _WORKER_OBJECTIVE(tree)


def _worker_start() -> None:
    """Worker start-up: one torch thread each (the workers are the parallelism, and OpenMP's
    thread pool does not survive a fork), and SIGTERM's default action back: the pool's `terminate`
    ends its workers with SIGTERM, which a Python handler inherited from the parent can miss while
    the worker waits in C (a worker went on waiting for the pool's queue lock, and `terminate` for it)."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def _evaluation_map(
    objective: Objective,
    workers: int,
    client=None,
    device: str | torch.device | None = None,
    share: str | Path | None = None,
) -> Iterator[Callable]:
    """`map` for `workers` <= 1, else a forked process pool whose workers share the objective's
    statistics copy-on-write (only trees and fitnesses cross the process boundary), both keeping
    freed memory for reuse for the run (`gp_proxy.memory`); with a Dask `client`,
    `gp_proxy.dask_map.dask_map` (each worker holds the objective, moved there to `device`, read
    from a file in `share` where they all see that folder)."""
    global _WORKER_OBJECTIVE
    if client is not None:
        from gp_proxy.dask_map import dask_map

        with dask_map(objective, client, device, share) as on_cluster:
            yield on_cluster
        return
    with freed_memory_kept():  # forked workers inherit it
        if workers <= 1:
            yield map
            return
        _WORKER_OBJECTIVE = objective
        with multiprocessing.get_context("fork").Pool(workers, initializer=_worker_start) as pool:
            yield lambda _evaluate, trees: pool.map(_evaluate_in_worker, list(trees))
        _WORKER_OBJECTIVE = None
