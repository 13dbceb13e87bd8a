"""Evolving proxy programs: Auto-Prox's elitism-preserve search and DEAP's (mu + lambda).

Each algorithm is one function with its whole loop, shaped like DEAP's `algorithms.py`
(`ea_elitism_preserve`, `ea_mu_plus_lambda`; `ALGORITHMS` names them): it only talks to a
`toolbox` (`evaluate`, `mutate`, `mate`, `select`, `map`, `clone`, and optionally
`end_generation`, called once per generation, e.g. to clear the objective's memo), records a
`tools.Logbook`, updates a `tools.HallOfFame` with every program it evaluates, and calls the
hooks `on_step` (after each step: progress, checkpoints) and `should_stop` (before each step: a
budget). Neither lets a duplicate in: a child whose expression is already in the population (its
parent's included) or among the step's other children is never evaluated; a new one is drawn
instead. Fitness is lexicographic, as `gp_proxy.objective.Objective` (the usual `evaluate`) gives
it: (training JCM rounded to its `decimals`, tree size), the first maximised and the second
minimised, so of two proxies that rank alike the smaller one wins.
Invalid programs (NaN/inf or constant scores) get JCM = -inf.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np
from deap import algorithms, base, creator, gp, tools

from gp_proxy.program import cx_one_point, generate, mut_insert

if not hasattr(creator, "ProxyFitness"):
    creator.create("ProxyFitness", base.Fitness, weights=(1.0, -1.0))
    creator.create("Proxy", gp.PrimitiveTree, fitness=creator.ProxyFitness)


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


def make_toolbox(
    pset: gp.PrimitiveSetTyped,
    evaluate: Callable,
    min_height: int,
    max_height: int,
    height_limit: int,
    size_limit: int,
    map_fn: Callable = map,
) -> base.Toolbox:
    """A DEAP toolbox for proxies: `population`, `evaluate`, `mutate`, `mate` (one-point), `select`
    (best), `map`; new trees are `min_height`..`max_height` high, and mutation and crossover are
    bounded by `height_limit` (levels) and `size_limit` (nodes). The values come from
    `DiscoveryConfig`, whose defaults are the only ones."""
    toolbox = base.Toolbox()
    toolbox.register("expr", generate, pset=pset, min_=min_height, max_=max_height)
    toolbox.register("individual", tools.initIterate, creator.Proxy, toolbox.expr)
    toolbox.register("population", tools.initRepeat, list, toolbox.individual)
    toolbox.register("evaluate", evaluate)
    toolbox.register("mutate", mutate, pset=pset, expr=toolbox.expr)
    toolbox.register("mate", cx_one_point)
    toolbox.register("select", tools.selBest)
    toolbox.register("map", map_fn)
    for name in ("mutate", "mate"):
        toolbox.decorate(name, gp.staticLimit(key=lambda ind: ind.height, max_value=height_limit))
        toolbox.decorate(name, gp.staticLimit(key=len, max_value=size_limit))
    return toolbox


def evaluate_invalid(individuals: Sequence, toolbox: base.Toolbox) -> int:
    """Evaluate the individuals without a valid fitness through `toolbox.map`; return how many
    (each one really scored: callers pass only programs they want scored)."""
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


def _median(values: Sequence[float]) -> float:
    return float(np.median([x for x in values if np.isfinite(x)] or [np.nan]))


def make_stats() -> tools.Statistics:
    """Per population: best, median and share of valid JCMs, and its diversity: `distinct`
    programs (expressions) and `jcms`, distinct training JCMs (rounded as in the fitness), i.e.
    distinct score vectors up to the fitness's resolution: variants that rank the architectures
    alike (a `neg`, an `abs`, a rescaling) count once."""
    stats = tools.Statistics()
    stats.register("best", lambda pop: max(jcm_of(i) for i in pop))
    stats.register("median", lambda pop: _median([jcm_of(i) for i in pop]))
    stats.register("valid", lambda pop: float(np.mean([np.isfinite(jcm_of(i)) for i in pop])))
    stats.register("distinct", lambda pop: len({str(i) for i in pop}))
    stats.register("jcms", lambda pop: len({jcm_of(i) for i in pop}))
    return stats


def new_logbook(stats: tools.Statistics | None) -> tools.Logbook:
    """An empty logbook with the algorithms' columns: iteration, evals (so far), kept, then `stats`'s."""
    logbook = tools.Logbook()
    logbook.header = ["iteration", "evals", "kept", *(stats.fields if stats else [])]
    return logbook


def fresh_mutant(parent, toolbox: base.Toolbox, seen: set[str], max_draws: int):
    """A mutation of `parent` whose expression is not in `seen` (added to it), with its fitness
    invalidated; None if `max_draws` draws in a row were all already seen (a `staticLimit`
    rejection returns the parent's copy, which counts as seen)."""
    for _ in range(max_draws):
        (child,) = toolbox.mutate(toolbox.clone(parent))
        if str(child) not in seen:
            seen.add(str(child))
            del child.fitness.values
            return child
    return None


def elitism_preserve_step(
    population: list,
    toolbox: base.Toolbox,
    pool_ratio: float,
    top_k: int,
    margin: float,
    max_tries: int,
    batch: int,
    max_draws: int,
    halloffame: tools.HallOfFame | None = None,
) -> tuple[int, int]:
    """One step of elitism-preserve evolution, for `batch` parents at once::

        parents <- batch x random choice of the top-k of a random pool of pool_ratio*|P|
        repeat at most max_tries times, while some parents are pending:
            child <- a mutation of each pending parent that is new to P and to this step
                     (at most max_draws draws; a parent whose draws are all seen gives up)
            evaluate the children together; halloffame.update(children)
            keep a child if its JCM >= its parent's - margin, else its parent stays pending
        P <- P + kept, less the |kept| worst of them all

    `max_tries` counts evaluations only, so an identical child costs a draw, not a try.
    Returns (evaluations, children kept).
    """
    pool_size = max(top_k, min(len(population), round(pool_ratio * len(population))))
    parents = [random.choice(tools.selBest(random.sample(population, pool_size), top_k)) for _ in range(batch)]
    seen, evaluations, kept = {str(ind) for ind in population}, 0, []
    for _ in range(max_tries):
        pairs = [(p, fresh_mutant(p, toolbox, seen, max_draws)) for p in parents]
        pairs = [(p, c) for p, c in pairs if c is not None]
        evaluations += evaluate_invalid([c for _, c in pairs], toolbox)
        if halloffame is not None:
            halloffame.update([c for _, c in pairs])
        pending = []
        for parent, child in pairs:
            if _accept(child, parent, margin):
                kept.append(child)
            else:
                pending.append(parent)
        parents = pending
        if not parents:
            break
    population.extend(kept)
    for worst in tools.selWorst(population, len(kept)):
        population.remove(worst)
    return evaluations, len(kept)


def _accept(child, parent, margin: float) -> bool:
    return bool(np.isfinite(jcm_of(child)) and jcm_of(child) >= jcm_of(parent) - margin)


def fresh_offspring(
    population: list, toolbox: base.Toolbox, lambda_: int, cxpb: float, mutpb: float, max_draws: int
) -> list:
    """`lambda_` offspring by DEAP's `varOr`, each new to the population and to the others: the
    ones already seen are dropped and as many redrawn, in at most `max_draws` rounds (so fewer
    may come back when nearly every draw is a copy)."""
    seen, offspring = {str(ind) for ind in population}, []
    for _ in range(max_draws):
        for child in algorithms.varOr(population, toolbox, lambda_ - len(offspring), cxpb, mutpb):
            if str(child) not in seen:
                seen.add(str(child))
                offspring.append(child)
        if len(offspring) == lambda_:
            break
    return offspring


def mu_plus_lambda_step(
    population: list,
    toolbox: base.Toolbox,
    lambda_: int,
    cxpb: float,
    mutpb: float,
    max_draws: int,
    halloffame: tools.HallOfFame | None = None,
) -> tuple[int, int]:
    """One generation of DEAP's (mu + lambda), without copies::

        offspring <- lambda new programs by varOr (see `fresh_offspring`)
        evaluate offspring; halloffame.update(offspring)
        P <- select(P + offspring, mu)

    Returns (evaluations, offspring that entered the population).
    """
    offspring = fresh_offspring(population, toolbox, lambda_, cxpb, mutpb, max_draws)
    evaluations = evaluate_invalid(offspring, toolbox)
    if halloffame is not None:
        halloffame.update(offspring)
    population[:] = toolbox.select(population + offspring, len(population))
    born = {id(child) for child in offspring}
    return evaluations, sum(id(ind) in born for ind in population)


# Hooks of the algorithms, called with (iteration, population, halloffame, logbook): `on_step` after
# each step, `should_stop` before each (True ends the run).
StepHook = Callable[[int, list, tools.HallOfFame | None, tools.Logbook], None]
StopHook = Callable[[int, list, tools.HallOfFame | None, tools.Logbook], bool]


def _begin(
    population: list,
    toolbox: base.Toolbox,
    stats: tools.Statistics | None,
    halloffame: tools.HallOfFame | None,
    logbook: tools.Logbook | None,
) -> tools.Logbook:
    """The logbook to go on with: `logbook` if it has records (a resumed run), else a new one whose
    iteration 0 is the population, evaluated (what has no valid fitness) and given to `halloffame`."""
    if logbook is not None and len(logbook):
        return logbook
    logbook = logbook if logbook is not None else new_logbook(stats)
    evaluations = evaluate_invalid(population, toolbox)
    if halloffame is not None:
        halloffame.update(population)
    logbook.record(iteration=0, evals=evaluations, kept=len(population), **_compile(stats, population))
    return logbook


def _compile(stats: tools.Statistics | None, population: list) -> dict:
    return stats.compile(population) if stats else {}


def ea_elitism_preserve(
    population: list,
    toolbox: base.Toolbox,
    iterations: int,
    pool_ratio: float,
    top_k: int,
    margin: float,
    max_tries: int,
    batch: int,
    max_draws: int,
    stats: tools.Statistics | None = None,
    halloffame: tools.HallOfFame | None = None,
    logbook: tools.Logbook | None = None,
    on_step: StepHook | None = None,
    should_stop: StopHook | None = None,
) -> tuple[list, tools.Logbook]:
    """Auto-Prox's elitism-preserve evolution of `population` (in place), up to step `iterations`::

        if logbook has no records:
            evaluate P; halloffame.update(P); record iteration 0
        for iteration = (logbook's last) + 1 .. iterations, unless should_stop(...) before it:
            parents <- batch x random choice of the top-k of a random pool of pool_ratio*|P|
            repeat at most max_tries times, while some parents are pending:
                child <- a mutation of each pending parent that is new to P and to this step
                         (at most max_draws draws; a parent whose draws are all seen gives up)
                evaluate the children together; halloffame.update(children)
                keep a child if its JCM >= its parent's - margin, else its parent stays pending
            P <- P + kept, less the |kept| worst of them all
            every |P| iterations (a generation): toolbox.end_generation()
            record iteration (evaluations so far, |kept|, stats of P)
            on_step(iteration, P, halloffame, logbook)

    One step is `elitism_preserve_step`. A `logbook` with records is a resumed run: it goes on
    after its last iteration, with its evaluation count. The hooks take (iteration, population,
    halloffame, logbook). Returns (population, logbook).
    """
    logbook = _begin(population, toolbox, stats, halloffame, logbook)
    end_generation = getattr(toolbox, "end_generation", None)
    iteration, evaluations = logbook[-1]["iteration"], logbook[-1]["evals"]
    while iteration < iterations and not (should_stop and should_stop(iteration, population, halloffame, logbook)):
        evals, kept = elitism_preserve_step(
            population, toolbox, pool_ratio, top_k, margin, max_tries, batch, max_draws, halloffame
        )
        iteration, evaluations = iteration + 1, evaluations + evals
        if end_generation is not None and iteration % len(population) == 0:
            end_generation()
        logbook.record(iteration=iteration, evals=evaluations, kept=kept, **_compile(stats, population))
        if on_step is not None:
            on_step(iteration, population, halloffame, logbook)
    return population, logbook


def ea_mu_plus_lambda(
    population: list,
    toolbox: base.Toolbox,
    iterations: int,
    lambda_: int,
    cxpb: float,
    mutpb: float,
    max_draws: int,
    stats: tools.Statistics | None = None,
    halloffame: tools.HallOfFame | None = None,
    logbook: tools.Logbook | None = None,
    on_step: StepHook | None = None,
    should_stop: StopHook | None = None,
) -> tuple[list, tools.Logbook]:
    """DEAP's (mu + lambda) evolution of `population` (in place, mu = |P|), without copies, up to
    generation `iterations`::

        if logbook has no records:
            evaluate P; halloffame.update(P); record iteration 0
        for iteration = (logbook's last) + 1 .. iterations, unless should_stop(...) before it:
            offspring <- lambda programs by varOr (crossover with cxpb, mutation with mutpb),
                         each new to P and to the others (copies redrawn, at most max_draws rounds)
            evaluate offspring; halloffame.update(offspring)
            P <- select(P + offspring, mu)
            toolbox.end_generation()
            record iteration (evaluations so far, offspring that entered P, stats of P)
            on_step(iteration, P, halloffame, logbook)

    One generation is `mu_plus_lambda_step`; `logbook` and the hooks as in `ea_elitism_preserve`.
    Returns (population, logbook).
    """
    logbook = _begin(population, toolbox, stats, halloffame, logbook)
    end_generation = getattr(toolbox, "end_generation", None)
    iteration, evaluations = logbook[-1]["iteration"], logbook[-1]["evals"]
    while iteration < iterations and not (should_stop and should_stop(iteration, population, halloffame, logbook)):
        evals, entered = mu_plus_lambda_step(population, toolbox, lambda_, cxpb, mutpb, max_draws, halloffame)
        iteration, evaluations = iteration + 1, evaluations + evals
        if end_generation is not None:
            end_generation()
        logbook.record(iteration=iteration, evals=evaluations, kept=entered, **_compile(stats, population))
        if on_step is not None:
            on_step(iteration, population, halloffame, logbook)
    return population, logbook


# The algorithms by name (`DiscoveryConfig.algorithm`); each takes the population, the toolbox,
# `iterations`, its own parameters (named as the `DiscoveryConfig` fields), and the keywords
# stats, halloffame, logbook, on_step, should_stop.
ALGORITHMS: dict[str, Callable[..., tuple[list, tools.Logbook]]] = {
    "elitism": ea_elitism_preserve,
    "mu+lambda": ea_mu_plus_lambda,
}
