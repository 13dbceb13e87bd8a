"""The evolution steps: copies are redrawn, never evaluated or let in; the worst leaves; the
(mu + lambda) hall of fame sees the offspring. The algorithms: their loop, hooks and resumption."""

import dataclasses
import itertools
import random

import torch
from deap import creator, gp, tools
from synthetic import planted_tasks

from gp_proxy.discovery import DiscoveryConfig, task_pset
from gp_proxy.evolve import (
    ALGORITHMS,
    ea_elitism_preserve,
    ea_mu_plus_lambda,
    elitism_preserve_step,
    evaluate_invalid,
    make_stats,
    make_toolbox,
    mu_plus_lambda_step,
    same_fitness,
)
from gp_proxy.fitness import jcm, kendall, valid_scores
from gp_proxy.objective import INVALID, Objective
from gp_proxy.program import Evaluator, generate, parse

DEFAULTS = DiscoveryConfig()


def default_toolbox(pset, evaluate):
    """`make_toolbox` with the tree shapes of `DiscoveryConfig`'s defaults."""
    return make_toolbox(
        pset, evaluate, DEFAULTS.min_height, DEFAULTS.max_height, DEFAULTS.height_limit, DEFAULTS.size_limit
    )


def counting_toolbox(evaluate=None):
    """A toolbox on the planted tasks whose `evaluate` records every expression it scores."""
    tasks = planted_tasks()
    scored = []
    objective = evaluate or Objective(tasks)

    def recorded(tree):
        scored.append(str(tree))
        return objective(tree)

    return default_toolbox(task_pset(tasks), recorded), scored


def distinct_population(toolbox, n: int) -> list:
    population, seen = [], set()
    while len(population) < n:
        ind = toolbox.individual()
        if str(ind) not in seen:
            seen.add(str(ind))
            population.append(ind)
    evaluate_invalid(population, toolbox)
    return population


def test_a_copy_of_the_parent_is_not_evaluated_and_the_parent_is_mutated_again():
    toolbox, scored = counting_toolbox()
    random.seed(0)
    population = distinct_population(toolbox, 10)
    mutate, inputs = toolbox.mutate, []

    def copy_first(individual):
        inputs.append(str(individual))
        return (individual,) if len(inputs) == 1 else mutate(individual)

    toolbox.register("mutate", copy_first)
    before = {str(i) for i in population}
    scored.clear()
    evaluations, kept = elitism_preserve_step(
        population, toolbox, 0.5, 3, margin=1.0, max_tries=1, batch=1, max_draws=20
    )
    assert len(inputs) >= 2 and len(set(inputs)) == 1 and inputs[0] in before  # the parent, drawn again
    assert evaluations == len(scored) == 1 and scored[0] not in before  # the copy was never scored
    assert kept == 1 and scored[0] in {str(i) for i in population}


def test_a_parent_whose_every_draw_is_a_copy_gives_up_after_max_draws():
    toolbox, scored = counting_toolbox()
    random.seed(1)
    population = distinct_population(toolbox, 10)
    calls = []
    toolbox.register("mutate", lambda ind: calls.append(1) or (ind,))
    before, scored[:] = [str(i) for i in population], []
    assert elitism_preserve_step(population, toolbox, 0.5, 3, 0.01, max_tries=5, batch=1, max_draws=7) == (0, 0)
    assert len(calls) == 7 and scored == [] and [str(i) for i in population] == before


def test_the_worst_individual_leaves_when_a_child_is_kept():
    scores = {}
    toolbox, _ = counting_toolbox(lambda tree: (scores.get(str(tree), 0.9), len(tree)))
    random.seed(2)
    population = distinct_population(toolbox, 10)
    for rank, ind in enumerate(population):  # the last one is the worst
        ind.fitness.values = (0.5 - 0.01 * rank, len(ind))
    worst, others = str(population[-1]), {str(i) for i in population[:-1]}
    evaluations, kept = elitism_preserve_step(
        population, toolbox, 1.0, 3, margin=0.0, max_tries=3, batch=1, max_draws=20
    )
    expressions = {str(i) for i in population}
    assert (evaluations, kept) == (1, 1) and len(population) == 10
    assert worst not in expressions and others < expressions  # the child (JCM 0.9) replaced it


def test_no_duplicate_enters_and_only_real_evaluations_count():
    toolbox, scored = counting_toolbox()
    random.seed(3)
    population = distinct_population(toolbox, 10)
    for step in range(24):
        before, scored[:] = {str(i) for i in population}, []
        if step % 6 == 5:  # cxpb + mutpb < 1: varOr also draws plain copies
            evaluations, _ = mu_plus_lambda_step(population, toolbox, 10, cxpb=0.3, mutpb=0.3, max_draws=20)
        else:
            evaluations, _ = elitism_preserve_step(population, toolbox, 0.5, 3, 0.01, 3, batch=2, max_draws=20)
        assert evaluations == len(scored) and len(set(scored)) == len(scored) and not before & set(scored)
        assert len({str(i) for i in population}) == len(population) == 10
    assert make_stats().compile(population)["distinct"] == 10


def test_mu_plus_lambda_hall_of_fame_is_updated_from_the_offspring():
    unique = itertools.count()
    toolbox, scored = counting_toolbox(lambda tree: (next(unique) / 1000, len(tree)))
    random.seed(4)
    population = distinct_population(toolbox, 5)
    halloffame = tools.HallOfFame(100, similar=same_fitness)
    halloffame.update(population)
    scored.clear()
    evaluations, entered = mu_plus_lambda_step(population, toolbox, 10, 0.5, 0.5, max_draws=20, halloffame=halloffame)
    famous = {str(i) for i in halloffame}
    assert evaluations == 10 and entered == 5  # later offspring score higher: they replace the population
    assert set(scored) <= famous and len(famous) == 15  # the offspring that did not survive too


def test_stats_count_distinct_programs_and_jcms():
    pset = task_pset(planted_tasks())
    population = [
        creator.Proxy(parse(e, pset))
        for e in ("agg_sum_mlp(fro(gW))", "agg_sum_mlp(fro(gW))", "agg_sum_msa(fro(W))", "agg_sum_mlp(l1(W))")
    ]
    for ind, fit in zip(population, [0.5, 0.5, 0.2, 0.2]):
        ind.fitness.values = (fit, len(ind))
    record = make_stats().compile(population)
    assert (record["distinct"], record["jcms"], record["best"], record["median"]) == (3, 2, 0.5, 0.35)


OPTIONS = {
    ea_elitism_preserve: dict(pool_ratio=0.5, top_k=3, margin=0.01, max_tries=3, batch=2, max_draws=20),
    ea_mu_plus_lambda: dict(lambda_=6, cxpb=0.5, mutpb=0.5, max_draws=20),
}


def fresh_population(toolbox, n: int, seed: int) -> list:
    random.seed(seed)
    population, seen = [], set()
    while len(population) < n:
        ind = toolbox.individual()
        if str(ind) not in seen:
            seen.add(str(ind))
            population.append(ind)
    return population


def test_the_algorithms_record_every_step_and_call_their_hooks():
    assert ALGORITHMS == {"elitism": ea_elitism_preserve, "mu+lambda": ea_mu_plus_lambda}
    for algorithm, every in [(ea_elitism_preserve, 5), (ea_mu_plus_lambda, 1)]:
        toolbox, scored = counting_toolbox()
        steps, ends = [], []
        toolbox.register("end_generation", lambda: ends.append(len(steps) + 1))  # noqa: B023
        halloffame = tools.HallOfFame(3, similar=same_fitness)
        population, logbook = algorithm(
            fresh_population(toolbox, 5, seed=6),
            toolbox,
            12,
            **OPTIONS[algorithm],
            stats=make_stats(),
            halloffame=halloffame,
            on_step=lambda i, pop, hof, log: steps.append((i, log[-1]["evals"])),
        )
        assert [r["iteration"] for r in logbook] == list(range(13)) and logbook[-1]["evals"] == len(scored)
        assert logbook.header == ["iteration", "evals", "kept", *make_stats().fields]
        assert steps == [(r["iteration"], r["evals"]) for r in logbook[1:]]
        assert ends == list(range(every, 13, every))  # the memo's cadence: a generation
        assert len(population) == 5 and str(halloffame[0]) in set(scored)


def test_the_algorithms_stop_on_should_stop_and_resume_from_their_logbook():
    for algorithm in ALGORITHMS.values():
        toolbox, _ = counting_toolbox()
        _, straight = algorithm(fresh_population(toolbox, 5, seed=7), toolbox, 10, **OPTIONS[algorithm])
        population = fresh_population(toolbox, 5, seed=7)
        population, first = algorithm(
            population, toolbox, 10, **OPTIONS[algorithm], should_stop=lambda i, pop, hof, log: i == 4
        )
        assert first[-1]["iteration"] == 4
        _, resumed = algorithm(population, toolbox, 10, **OPTIONS[algorithm], logbook=first)
        assert resumed is first and list(resumed) == list(straight)


def test_tasks_of_one_layout_are_scored_in_one_pass_with_the_fitness_of_each_alone(monkeypatch):
    tasks = planted_tasks()
    bundle, g = tasks[0].bundle, torch.Generator().manual_seed(1)
    noisy = {n: t + torch.randn(t.shape, generator=g) for n, t in bundle.tensors.items()}
    cut = lambda d: {n: t[:, :-1] for n, t in d.items()}  # noqa: E731  (one unit fewer: another layout)
    mixed = [
        tasks[0],
        dataclasses.replace(tasks[1], bundle=dataclasses.replace(bundle, tensors=noisy)),
        dataclasses.replace(tasks[1], name="same statistics"),  # tasks[0]'s bundle and split
        dataclasses.replace(
            tasks[1],
            name="fewer units",
            bundle=dataclasses.replace(
                bundle,
                tensors=cut(bundle.tensors),
                numel=cut(bundle.numel),
                mask=cut(bundle.mask),
                groups=cut(bundle.groups),
                block=bundle.block[:, :-1],
            ),
        ),
    ]
    objective, alone, pset = Objective(mixed, stack=True), Objective(mixed), task_pset(mixed)  # CPU: per task
    calls = []
    real_call = Evaluator.__call__
    monkeypatch.setattr(Evaluator, "__call__", lambda self, tree: calls.append(self) or real_call(self, tree))
    random.seed(2)
    trees = [gp.PrimitiveTree(generate(pset, 1, 4)) for _ in range(60)] + [parse("agg_sum_mlp(fro(gW))", pset)]
    for tree in trees:
        calls.clear()
        fitness = objective(tree)
        assert len(calls) == 2  # one pass per layout, not one per task
        calls.clear()
        assert alone(tree) == fitness and len(calls) == 4
        scores = [Evaluator(t.bundle.subset(t.train))(tree) for t in mixed]
        if all(valid_scores(s) for s in scores):
            taus = [kendall(s, t.accuracy[t.train]) for s, t in zip(scores, mixed)]
            assert fitness == (round(jcm(taus, "mean"), 3), len(tree)), str(tree)
        else:
            assert fitness == (INVALID, len(tree)), str(tree)
    assert objective(trees[-1])[0] > 0.3  # the planted signal survives on every task


def test_an_objective_travels_as_its_tasks_and_moves_shared_statistics_once():
    """Pickled (as Dask sends it), an objective is its tasks and settings, not its memo or training
    subsets; moved, tasks that shared statistics still share one copy."""
    import pickle

    tasks = planted_tasks()
    shared = [dataclasses.replace(tasks[0], name="again"), *tasks]  # two tasks, one bundle and split
    objective = Objective(shared, stack=True)
    pset = task_pset(shared)
    random.seed(4)
    trees = [gp.PrimitiveTree(generate(pset, 1, 4)) for _ in range(30)]
    fitness = [objective(t) for t in trees]
    sent = pickle.dumps(objective)
    bundle_bytes = len(pickle.dumps([t.bundle for t in tasks]))
    assert len(sent) < 1.05 * bundle_bytes  # the memo filled above is not sent
    arrived = pickle.loads(sent)
    assert [arrived(t) for t in trees] == fitness
    moved = objective.to("cpu")
    assert moved.tasks[0].bundle is moved.tasks[1].bundle
    assert [moved(t) for t in trees] == fitness
