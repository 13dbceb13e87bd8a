"""Evolving proxy programs: Auto-Prox's elitism-preserve search and DEAP's (mu + lambda).

Both loops follow DEAP's `algorithms.py`: they only talk to a `toolbox` (`evaluate`, `mutate`,
`mate`, `select`, `map`, `clone`) and fill a `tools.Logbook` and a `tools.HallOfFame`.
Fitness is lexicographic: (training JCM rounded to `Objective.decimals`, tree size), the first
maximised and the second minimised, so of two proxies that rank alike the smaller one wins.
Invalid programs (NaN/inf or constant scores) get JCM = -inf.
"""
from __future__ import annotations

import random
from typing import Callable, Sequence

import numpy as np
from deap import algorithms, base, creator, gp, tools

from gp_proxy.fitness import Report, Task, jcm, kendall, report, valid_scores
from gp_proxy.program import Evaluator, generate, mut_insert

INVALID = float("-inf")

if not hasattr(creator, "ProxyFitness"):
    creator.create("ProxyFitness", base.Fitness, weights=(1.0, -1.0))
    creator.create("Proxy", gp.PrimitiveTree, fitness=creator.ProxyFitness)


class Objective:
    """Scores trees on tasks: `objective(tree)` -> (rounded training JCM, size).

    The search sees only the training architectures of each task; `report(tree)` gives the
    train and held-out correlations on every task. One memoising `Evaluator` per task.
    """

    def __init__(self, tasks: Sequence[Task], mode: str = "mean", decimals: int = 3, memo_bytes: int = 1 << 29):
        self.tasks, self.mode, self.decimals = list(tasks), mode, decimals
        self._fit = [(Evaluator(t.bundle.subset(t.train), memo_bytes), t.accuracy[t.train]) for t in self.tasks]

    def __call__(self, tree: gp.PrimitiveTree) -> tuple[float, int]:
        taus = []
        for evaluator, accuracy in self._fit:
            scores = evaluator(tree)
            if not valid_scores(scores):
                return INVALID, len(tree)
            taus.append(kendall(scores, accuracy))
        value = jcm(taus, self.mode)
        return (round(value, self.decimals) if np.isfinite(value) else INVALID), len(tree)

    def report(self, tree: gp.PrimitiveTree) -> Report:
        return report({t.name: Evaluator(t.bundle, memo_bytes=0)(tree) for t in self.tasks}, self.tasks, self.mode)

    def clear(self) -> None:
        """Forget memoised subtrees (call once per generation)."""
        for evaluator, _ in self._fit:
            evaluator.clear()


def mutate(individual: gp.PrimitiveTree, pset: gp.PrimitiveSetTyped, expr: Callable) -> tuple[gp.PrimitiveTree]:
    """One of DEAP's mutations, drawn uniformly: subtree (uniform), node replacement, shrink, insert."""
    choice = random.randrange(4)
    if choice == 0:
        return gp.mutUniform(individual, expr=expr, pset=pset)
    if choice == 1:
        return gp.mutNodeReplacement(individual, pset=pset)
    if choice == 2:
        return gp.mutShrink(individual)
    return mut_insert(individual, pset)


def make_toolbox(pset: gp.PrimitiveSetTyped, evaluate: Callable, min_height: int = 1, max_height: int = 3,
                 height_limit: int = 10, size_limit: int = 30, map_fn: Callable = map) -> base.Toolbox:
    """A DEAP toolbox for proxies: `population`, `evaluate`, `mutate`, `mate` (one-point), `select`
    (best), `map`; mutation and crossover are bounded by `height_limit` and `size_limit`."""
    toolbox = base.Toolbox()
    toolbox.register("expr", generate, pset=pset, min_=min_height, max_=max_height)
    toolbox.register("individual", tools.initIterate, creator.Proxy, toolbox.expr)
    toolbox.register("population", tools.initRepeat, list, toolbox.individual)
    toolbox.register("evaluate", evaluate)
    toolbox.register("mutate", mutate, pset=pset, expr=toolbox.expr)
    toolbox.register("mate", gp.cxOnePoint)
    toolbox.register("select", tools.selBest)
    toolbox.register("map", map_fn)
    for name in ("mutate", "mate"):
        toolbox.decorate(name, gp.staticLimit(key=lambda ind: ind.height, max_value=height_limit))
        toolbox.decorate(name, gp.staticLimit(key=len, max_value=size_limit))
    return toolbox


def evaluate_invalid(individuals: Sequence, toolbox: base.Toolbox) -> int:
    """Evaluate the individuals without a valid fitness through `toolbox.map`; return how many."""
    invalid = [ind for ind in individuals if not ind.fitness.valid]
    for ind, fit in zip(invalid, toolbox.map(toolbox.evaluate, invalid)):
        ind.fitness.values = fit
    return len(invalid)


def jcm_of(individual) -> float:
    return individual.fitness.values[0]


def same_fitness(a, b) -> bool:
    """Hall-of-fame similarity: the same (rounded) JCM, i.e. in practice the same ranking. Keeps
    the hall of fame from filling up with `neg`/`abs`/`transpose` variants of one proxy; of
    equal proxies the first found stays (the smallest, when found together)."""
    return jcm_of(a) == jcm_of(b)


def make_stats() -> tools.Statistics:
    """Best, median and share of valid programs of a population's JCM."""
    stats = tools.Statistics(jcm_of)
    stats.register("best", np.max)
    stats.register("median", lambda v: float(np.median([x for x in v if np.isfinite(x)] or [np.nan])))
    stats.register("valid", lambda v: float(np.isfinite(v).mean()))
    return stats


def elitism_preserve_step(population: list, toolbox: base.Toolbox, pool_ratio: float, top_k: int,
                          margin: float, max_tries: int, batch: int = 1) -> tuple[int, int]:
    """One step of elitism-preserve evolution, for `batch` parents at once.

    Each parent is drawn at random from the top-k of a random pool of `pool_ratio`·|P|
    individuals and mutated; a child is kept if its JCM >= the parent's - `margin`, else the
    parent is mutated again (at most `max_tries` times). Kept children join the population and
    as many of the worst leave. Children are evaluated together through `toolbox.map`.
    Returns (evaluations, children kept).
    """
    pool_size = max(top_k, min(len(population), round(pool_ratio * len(population))))
    parents = [random.choice(tools.selBest(random.sample(population, pool_size), top_k)) for _ in range(batch)]
    evaluations, kept = 0, []
    for _ in range(max_tries):
        children = [toolbox.mutate(toolbox.clone(p))[0] for p in parents]
        for child in children:
            del child.fitness.values
        evaluations += evaluate_invalid(children, toolbox)
        pending = []
        for parent, child in zip(parents, children):
            accept = np.isfinite(jcm_of(child)) and jcm_of(child) >= jcm_of(parent) - margin
            (kept if accept else pending).append(child if accept else parent)
        parents = pending
        if not parents:
            break
    population.extend(kept)
    for worst in tools.selWorst(population, len(kept)):
        population.remove(worst)
    return evaluations, len(kept)


def mu_plus_lambda_step(population: list, toolbox: base.Toolbox, lambda_: int, cxpb: float, mutpb: float) -> int:
    """One generation of DEAP's (mu + lambda): `varOr` offspring, then the best mu of both survive."""
    offspring = algorithms.varOr(population, toolbox, lambda_, cxpb, mutpb)
    evaluations = evaluate_invalid(offspring, toolbox)
    population[:] = toolbox.select(population + offspring, len(population))
    return evaluations
