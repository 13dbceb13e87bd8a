"""A whole discovery run: seeded, checkpointed, resumable, with a progress bar and saved results.

    result = discover(tasks, pset, DiscoveryConfig(iterations=300, seed=0), out_dir)

writes `out_dir/checkpoint.json` every `checkpoint_every` iterations (JSON: expressions,
fitnesses, logbook, the search time so far and the random state; a resume parses the
expressions, it never unpickles), and at the end `proxies/rank01.json ...` (the hall of fame,
each with train and held-out correlations on every task), `logbook.csv` (per step: evaluations
so far, children kept, best/median JCM, share valid, and the population's diversity: distinct
programs and distinct JCMs), `progress.png` (those curves) and `summary.md`.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import math
import multiprocessing
import random
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from deap import creator, gp, tools
from tqdm.auto import tqdm

from gp_proxy.atomic import atomic_path, write_text
from gp_proxy.errors import AutoproxError
from gp_proxy.evolve import (
    Objective,
    elitism_preserve_step,
    evaluate_invalid,
    jcm_of,
    make_stats,
    make_toolbox,
    mu_plus_lambda_step,
    same_fitness,
)
from gp_proxy.fitness import JCM_MODES, Task
from gp_proxy.library import known_proxy
from gp_proxy.primitives import build_pset
from gp_proxy.program import Evaluator, parse
from gp_proxy.simplify import simplify
from gp_proxy.store import SavedProxy, save_proxy

ALGORITHMS = ("elitism", "mu+lambda")
CHECKPOINT_VERSION = 2  # 2: no duplicates in the population, cumulative search seconds


@dataclass(frozen=True)
class DiscoveryConfig:
    """Everything that decides a run's result (a resume must use the same, bar `iterations`)."""

    algorithm: str = "elitism"
    iterations: int = 1000        # elitism-preserve steps, or (mu + lambda) generations
    max_evaluations: int = 0      # stop once this many programs were evaluated (0: no limit)
    population: int = 50
    seed: int = 0
    jcm: str = "mean"
    pool_ratio: float = 0.5       # elitism: pool size as a share of the population
    top_k: int = 5                # elitism: parent drawn from the pool's top k
    margin: float = 0.01          # elitism: child kept if JCM >= parent's - margin
    max_tries: int = 5            # elitism: evaluated mutations of a parent before giving up
    max_draws: int = 20           # draws of copies (programs already in the population) before giving up:
                                  # elitism, per parent and try; (mu + lambda), rounds of varOr
    batch: int = 1                # elitism: parents per step (evaluated together through toolbox.map)
    lambda_: int = 50             # (mu + lambda): offspring per generation
    cxpb: float = 0.5
    mutpb: float = 0.5
    seed_proxies: tuple[str, ...] = ()
    hall_of_fame: int = 10
    min_height: int = 1
    max_height: int = 3
    height_limit: int = 10
    size_limit: int = 12        # largest program in nodes: 12 generalised better than 30 (README)
    checkpoint_every: int = 100

    def validate(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise AutoproxError(f"unknown algorithm {self.algorithm!r}; known: {', '.join(ALGORITHMS)}")
        if self.jcm not in JCM_MODES:
            raise AutoproxError(f"unknown JCM mode {self.jcm!r}; known: {', '.join(JCM_MODES)}")
        if self.population < max(2, self.top_k):
            raise AutoproxError(f"population (--population) must be >= max(2, top_k) = {max(2, self.top_k)}; "
                                f"got {self.population}")
        if self.iterations < 1:
            raise AutoproxError(f"iterations (--iterations) must be >= 1; got {self.iterations}")
        for name in self.seed_proxies:
            known_proxy(name)

    def comparable(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("iterations", "max_evaluations", "checkpoint_every")}


@dataclass
class DiscoveryResult:
    halloffame: list
    logbook: tools.Logbook
    evaluations: int
    seconds: float
    saved: list[Path] = field(default_factory=list)


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


def _checkpoint(path: Path, config: DiscoveryConfig, iteration: int, evaluations: int, seconds: float, population,
                halloffame, logbook: tools.Logbook) -> None:
    state = random.getstate()
    dump = lambda inds: [{"expression": str(i), "fitness": list(i.fitness.values)} for i in inds]  # noqa: E731
    write_text(path, json.dumps({
        "version": CHECKPOINT_VERSION, "config": config.comparable(), "iteration": iteration,
        "evaluations": evaluations, "seconds": seconds, "random_state": [state[0], list(state[1]), state[2]],
        "population": dump(population), "halloffame": dump(halloffame.items), "logbook": list(logbook),
    }))


def _restore(path: Path, pset: gp.PrimitiveSetTyped, config: DiscoveryConfig, halloffame) -> tuple:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if state.get("version") != CHECKPOINT_VERSION:
            raise AutoproxError(f"checkpoint {path} has version {state.get('version')!r}, expected {CHECKPOINT_VERSION}")
        if state["config"] != json.loads(json.dumps(config.comparable())):
            raise AutoproxError(f"checkpoint {path} comes from another configuration; use a new --out folder "
                                "or the same options")

        def load(items):
            out = []
            for item in items:
                ind = creator.Proxy(parse(item["expression"], pset))
                ind.fitness.values = tuple(float(v) for v in item["fitness"])
                out.append(ind)
            return out

        population = load(state["population"])
        halloffame.update(load(state["halloffame"]))
        logbook = _new_logbook()
        logbook.extend(state["logbook"])
        version, internal, gauss = state["random_state"]
        random.setstate((version, tuple(internal), gauss))
        return population, logbook, int(state["iteration"]), int(state["evaluations"]), float(state["seconds"])
    except AutoproxError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AutoproxError(f"checkpoint {path} is corrupt ({type(e).__name__}: {e}); delete it to start over") from e


def _new_logbook() -> tools.Logbook:
    logbook = tools.Logbook()
    logbook.header = ["iteration", "evals", "kept", *make_stats().fields]  # fields: see evolve.make_stats
    return logbook


def task_pset(tasks: Sequence[Task]) -> gp.PrimitiveSetTyped:
    """The primitive set over the statistics and groups that every task's bundle has."""
    if not tasks:
        raise AutoproxError("no tasks to discover proxies on")
    names = set.intersection(*(set(t.bundle.names) for t in tasks))
    groups = set.intersection(*(set(t.bundle.groups) for t in tasks))
    return build_pset(sorted(names), sorted(groups))


def discover(tasks: Sequence[Task], config: DiscoveryConfig, out_dir: str | Path,
             resume: bool = False, probe: dict | None = None, provenance: dict | None = None,
             workers: int = 1, progress: bool = True) -> DiscoveryResult:
    """Evolve proxies on `tasks` and save the hall of fame, the logbook and a summary in `out_dir`.

    `probe` (how the statistics were measured) and `provenance` go into every saved proxy.
    `workers` > 1 evaluates through a process pool (the (mu + lambda) offspring, or the
    `batch` children of an elitism step); results do not depend on it.
    With `resume`, continues from `out_dir/checkpoint.json` to the same result as an
    uninterrupted run with the same configuration.
    """
    config.validate()
    pset, out_dir = task_pset(tasks), Path(out_dir)
    checkpoint = out_dir / "checkpoint.json"
    if checkpoint.exists() and not resume:
        raise AutoproxError(f"{checkpoint} exists: pass --resume to continue that run, or use a new --out folder")
    objective = Objective(tasks, config.jcm)
    with _evaluation_map(objective, workers) as map_fn:
        toolbox = make_toolbox(pset, objective, config.min_height, config.max_height, config.height_limit,
                               config.size_limit, map_fn)
        return _run(toolbox, objective, pset, config, out_dir, checkpoint, resume, probe, provenance, progress)


_WORKER_OBJECTIVE: Objective | None = None


def _evaluate_in_worker(tree: gp.PrimitiveTree) -> tuple[float, int]:
    return _WORKER_OBJECTIVE(tree)


def _single_threaded() -> None:
    """Worker start-up: one torch thread each (the workers are the parallelism, and OpenMP's
    thread pool does not survive a fork)."""
    torch.set_num_threads(1)


@contextmanager
def _evaluation_map(objective: Objective, workers: int) -> Iterator[Callable]:
    """`map` for `workers` <= 1, else a forked process pool whose workers share the objective's
    statistics copy-on-write (only trees and fitnesses cross the process boundary)."""
    global _WORKER_OBJECTIVE
    if workers <= 1:
        yield map
        return
    _WORKER_OBJECTIVE = objective
    with multiprocessing.get_context("fork").Pool(workers, initializer=_single_threaded) as pool:
        yield lambda _evaluate, trees: pool.map(_evaluate_in_worker, list(trees))
    _WORKER_OBJECTIVE = None


def _run(toolbox, objective: Objective, pset: gp.PrimitiveSetTyped, config: DiscoveryConfig, out_dir: Path,
         checkpoint: Path, resume: bool, probe: dict | None, provenance: dict | None, progress: bool) -> DiscoveryResult:
    halloffame, stats = tools.HallOfFame(config.hall_of_fame, similar=same_fitness), make_stats()
    started = time.perf_counter()
    if resume and checkpoint.exists():
        population, logbook, start, evaluations, earlier = _restore(checkpoint, pset, config, halloffame)
    else:
        random.seed(config.seed)
        population, logbook, start, earlier = initial_population(toolbox, pset, config), _new_logbook(), 0, 0.0
        evaluations = evaluate_invalid(population, toolbox)
        halloffame.update(population)
        logbook.record(iteration=0, evals=evaluations, kept=len(population), **stats.compile(population))

    def seconds() -> float:
        """The whole run's search time: earlier sessions plus this one."""
        return earlier + time.perf_counter() - started

    bar = tqdm(total=config.iterations, initial=start, desc=f"discover ({config.algorithm})", disable=not progress)
    iteration = start
    while iteration < config.iterations and not (config.max_evaluations and evaluations >= config.max_evaluations):
        if config.algorithm == "elitism":
            evals, kept = elitism_preserve_step(population, toolbox, config.pool_ratio, config.top_k, config.margin,
                                                config.max_tries, config.batch, config.max_draws, halloffame)
            if (iteration + 1) % config.population == 0:
                objective.clear()
        else:
            evals, kept = mu_plus_lambda_step(population, toolbox, config.lambda_, config.cxpb, config.mutpb,
                                              config.max_draws, halloffame)
            objective.clear()
        iteration, evaluations = iteration + 1, evaluations + evals
        logbook.record(iteration=iteration, evals=evaluations, kept=kept, **stats.compile(population))
        bar.update()
        bar.set_postfix(best_jcm=f"{jcm_of(halloffame[0]):.4f}", evals=evaluations, refresh=False)
        if iteration % config.checkpoint_every == 0:
            _checkpoint(checkpoint, config, iteration, evaluations, seconds(), population, halloffame, logbook)
    bar.close()
    result = DiscoveryResult(list(halloffame), logbook, evaluations, seconds())
    _checkpoint(checkpoint, config, iteration, evaluations, result.seconds, population, halloffame, logbook)
    result.saved = _save_results(result, objective, pset, config, out_dir, probe or {}, provenance or {})
    _plot_progress(logbook, out_dir / "progress.png", f"{config.algorithm}, seed {config.seed}")
    return result


def _save_results(result: DiscoveryResult, objective: Objective, pset: gp.PrimitiveSetTyped,
                  config: DiscoveryConfig, out_dir: Path, probe: dict, provenance: dict) -> list[Path]:
    names = sorted(set.intersection(*(set(t.bundle.names) for t in objective.tasks)))
    groups = sorted(set.intersection(*(set(t.bundle.groups) for t in objective.tasks)))
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows, paths = [], []
    bundles = {id(t.bundle): t.bundle for t in objective.tasks}
    evaluators = [Evaluator(b, memo_bytes=1 << 28) for b in bundles.values()]
    for rank, ind in enumerate(result.halloffame, start=1):
        simple = simplify(ind, evaluators)
        report = objective.report(simple.tree)
        proxy = SavedProxy(simple.expression, names, groups, probe, {"jcm_mode": config.jcm, **report.as_dict()},
                           {**provenance, "seed": config.seed, "algorithm": config.algorithm, "date": date,
                            "evaluations": result.evaluations, "rank": rank, "size": len(simple.tree)},
                           simple.as_dict())
        paths.append(save_proxy(out_dir / "proxies" / f"rank{rank:02d}.json", proxy))
        shown = f"`{simple.expression}`" + (f" (found as `{ind}`)" if simple.expression != str(ind) else "")
        rows.append(f"| {rank} | {shown} | {len(simple.tree)} | {report.jcm_train:.4f} | {report.jcm_test:.4f} | "
                    + " | ".join(f"{report.test.get(t.name, {}).get('kendall', float('nan')):.3f}" for t in objective.tasks)
                    + " |")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=result.logbook.header)
    writer.writeheader()
    writer.writerows({k: r.get(k) for k in result.logbook.header} for r in result.logbook)
    write_text(out_dir / "logbook.csv", buffer.getvalue())
    tasks, last = objective.tasks, result.logbook[-1]
    write_text(out_dir / "summary.md", "\n".join([
        f"# Discovered proxies ({config.algorithm}, seed {config.seed})", "",
        f"{result.evaluations} programs evaluated in {result.seconds:.0f} s of search "
        f"({result.evaluations / max(result.seconds, 1e-9):.1f} per second; the whole run, resumed sessions "
        f"included) on {len(tasks)} tasks: "
        + ", ".join(f"{t.name} ({len(t.train)} train / {len(t.test)} held-out archs)" for t in tasks) + ".",
        f"JCM = {config.jcm} of Kendall tau over the tasks; held-out = architectures never seen by the search.",
        (f"Final population: {last['distinct']} distinct programs, {last['jcms']} distinct training JCMs "
         "(curves: `progress.png`, `logbook.csv`)."), "",
        "| rank | expression | size | JCM train | JCM held-out | " + " | ".join(f"tau held-out {t.name}" for t in tasks) + " |",
        "|---|---|---|---|---|" + "---|" * len(tasks), *rows, ""]))
    return paths


def _plot_progress(logbook: tools.Logbook, path: Path, title: str) -> None:
    """Best and median training JCM against evaluations, with the population's diversity
    (distinct programs, distinct JCMs) on a twin axis; drawn with Agg, no pyplot state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def column(key: str) -> list[float]:
        return [r[key] if math.isfinite(r[key]) else math.nan for r in logbook]

    evals = column("evals")
    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(evals, column("best"), color="tab:blue", label="best JCM")
    ax.plot(evals, column("median"), color="tab:cyan", label="median JCM")
    ax.set(xlabel="programs evaluated", ylabel="training JCM", title=f"discover ({title})")
    twin = ax.twinx()
    twin.plot(evals, column("distinct"), "--", color="tab:green", label="distinct programs")
    twin.plot(evals, column("jcms"), ":", color="tab:red", label="distinct JCMs")
    twin.set(ylabel="in the population", ylim=(0, None))
    lines = ax.get_legend_handles_labels(), twin.get_legend_handles_labels()
    ax.legend(lines[0][0] + lines[1][0], lines[0][1] + lines[1][1], loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.1, right=0.9, bottom=0.12, top=0.92)  # fixed: tight_layout costs 0.3 s
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
