"""Simplification: exact hoists keep every score, root hoists keep every ranking."""

import numpy as np
import pytest
from deap import gp
from synthetic import planted_tasks

from gp_proxy.fitness import kendall
from gp_proxy.primitives import build_pset
from gp_proxy.program import Evaluator, parse
from gp_proxy.simplification import hoists, simplify


@pytest.fixture(scope="module")
def setup():
    tasks = planted_tasks()
    bundle = tasks[0].bundle
    return tasks, build_pset(bundle.names, list(bundle.groups)), [Evaluator(bundle)]


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("agg_sum_mlp(fro(sign(sign(gW))))", "agg_sum_mlp(fro(sign(gW)))"),
        ("agg_sum_mlp(fro(abs(abs(square(gW)))))", "agg_sum_mlp(fro(square(gW)))"),
        ("agg_sum_mlp(u_abs(fro(gW)))", "agg_sum_mlp(fro(gW))"),
        ("agg_sum_mlp(fro(maximum(gW, gW)))", "agg_sum_mlp(fro(gW))"),
    ],
)
def test_exact_rewrites_keep_every_score(setup, expression, expected):
    _, pset, evaluators = setup
    tree = parse(expression, pset)
    result = simplify(tree, evaluators, rank=False)
    assert result.expression == expected and result.original == expression and result.exact
    assert result.proved == [True] * len(result.exact)
    np.testing.assert_allclose(evaluators[0](result.tree), evaluators[0](tree), rtol=1e-5)


@pytest.mark.parametrize(
    "expression",
    [
        "s_mul(agg_sum_mlp(fro(gW)), agg_sum_mlp(fro(gW)))",
        "s_add(agg_sum_mlp(fro(gW)), agg_sum_mlp(fro(gW)))",
    ],
)
def test_rank_rewrites_drop_increasing_functions_at_the_root_and_keep_kendall(setup, expression):
    tasks, pset, evaluators = setup
    tree = parse(expression, pset)
    result = simplify(tree, evaluators)
    assert result.expression == "agg_sum_mlp(fro(gW))" and result.rank and not result.exact
    before, after = evaluators[0](tree), evaluators[0](result.tree)
    assert not np.allclose(before, after)
    for task in tasks:
        assert kendall(after, task.accuracy) == kendall(before, task.accuracy)


@pytest.mark.parametrize("expression", ["agg_sum_mlp(fro(gW))", "s_sub(agg_sum_mlp(fro(gW)), agg_mean_msa(l1(X)))"])
def test_programs_with_nothing_to_drop_stay(setup, expression):
    _, pset, evaluators = setup
    result = simplify(parse(expression, pset), evaluators)
    assert result.expression == expression and not result.exact and not result.rank


def test_every_hoist_is_a_valid_smaller_program(setup):
    _, pset, _ = setup
    tree = parse("s_div(agg_sum_msa(fro(mul(W, gW))), agg_mean_mlp(u_add(std(X), l1(gW))))", pset)
    candidates = list(hoists(tree))
    assert len(candidates) > 5
    for hoist in candidates:
        assert len(hoist.tree) < len(tree) and str(hoist) == f"{hoist.old} -> {hoist.new}"
        assert str(parse(str(hoist.tree), pset)) == str(hoist.tree)
    assert all(h.tree[0].ret is tree[0].ret for h in hoists(tree, root_only=True))
    assert isinstance(candidates[0].tree, gp.PrimitiveTree)
