"""Programs: random trees and DEAP's variation operators stay typed and evaluable, the parser
rejects everything malformed, and the evaluator is exact and memoises."""

import random
import time
from functools import partial

import numpy as np
import pytest
import torch
from deap import gp, tools

from gp_proxy.errors import AutoproxError
from gp_proxy.primitives import Mat, Score, Unit, build_pset
from gp_proxy.program import MAX_PROGRAM_DEPTH, MAX_PROGRAM_NODES, Evaluator, generate, mut_insert, parse
from gp_proxy.stats import UnitStats, concat, stack

NAMES = ["W", "X", "gW", "noise.gW"]
GROUPS = ["all", "mlp", "msa"]


def unit_stats(units: int, g: torch.Generator, mlp: bool = True) -> UnitStats:
    """One network of `units` units alternating attention and MLP (all attention if not `mlp`);
    "X" is absent from its first unit."""
    tensors = {
        n: torch.randn(units, 4, 4, generator=g) * 10.0 ** torch.randint(-3, 3, (1,), generator=g) for n in NAMES
    }
    numel = {n: torch.randint(16, 10_000, (units,), generator=g).double() for n in NAMES}
    tensors["X"][0], numel["X"][0] = 0.0, 0.0
    msa = torch.arange(units) % 2 == 0 if mlp else torch.ones(units, dtype=torch.bool)
    return UnitStats(tensors, numel, {"msa": msa, "mlp": ~msa}, torch.arange(units) // 2)


@pytest.fixture(scope="module")
def bundle():
    g = torch.Generator().manual_seed(0)
    return stack([unit_stats(2 + a % 5, g, mlp=a != 3) for a in range(7)])


@pytest.fixture(scope="module")
def pset():
    return build_pset(NAMES, GROUPS)


def assert_typed(tree, pset, ret=Score) -> None:
    """Every node is the pset's own and gets the type its parent expects."""
    expected = [ret]
    for node in tree:
        assert expected, "node after the end of the tree"
        assert pset.mapping[node.name] is node
        assert issubclass(node.ret, expected.pop())
        expected.extend(reversed(getattr(node, "args", [])))
    assert not expected, "tree ends early"


def assert_scores(scores: np.ndarray, bundle) -> None:
    assert isinstance(scores, np.ndarray) and scores.dtype == np.float64 and scores.shape == (bundle.num_archs,)
    assert not np.isinf(scores).any()


def test_generated_trees_are_typed_and_evaluate(bundle, pset):
    random.seed(0)
    evaluate = Evaluator(bundle)
    for i in range(500):
        tree = tools.initIterate(gp.PrimitiveTree, partial(generate, pset, 1, 4))
        assert_typed(tree, pset)
        assert tree.height <= 4 + 3  # a due leaf of type Score still needs three levels
        assert str(parse(str(tree), pset)) == str(tree)
        assert_scores(evaluate(tree), bundle)
    assert evaluate.hits > 0


@pytest.mark.parametrize("type_", [Mat, Unit, Score])
def test_generate_any_type_even_at_height_zero(pset, type_):
    random.seed(1)
    for _ in range(50):
        assert_typed(generate(pset, 0, random.choice([0, 2]), type_), pset, type_)


def test_variation_keeps_trees_typed_and_evaluable(bundle, pset):
    random.seed(2)
    evaluate = Evaluator(bundle)
    fresh = partial(generate, pset, 1, 3)
    population = [gp.PrimitiveTree(fresh()) for _ in range(20)]
    mutations = [
        partial(gp.mutUniform, expr=partial(generate, min_=0, max_=2), pset=pset),
        partial(gp.mutNodeReplacement, pset=pset),
        gp.mutShrink,
        partial(mut_insert, pset=pset),
    ]
    for step in range(400):
        i, j = random.sample(range(len(population)), 2)
        if step % 5 == 4:
            changed = gp.cxOnePoint(population[i], population[j])
        else:
            changed = mutations[step % 5](population[i])
        for tree in changed:
            assert_typed(tree, pset)
            assert parse(str(tree), pset) == tree
            assert_scores(evaluate(tree), bundle)
        for k in (i, j):  # keep trees small so the test stays fast
            if len(population[k]) > 40:
                population[k] = gp.PrimitiveTree(fresh())


def test_mut_insert_wraps_nodes_of_types_without_terminals(pset):
    random.seed(3)
    tree = parse("agg_sum_all(fro(W))", pset)
    for _ in range(30):
        mut_insert(tree, pset)
        assert_typed(tree, pset)
    assert {n.name for n in tree} & {"s_add", "s_sub", "s_mul", "s_div", "u_add", "u_sub", "u_mul", "u_div"}


@pytest.mark.parametrize(
    "text",
    [
        "agg_sum_all(l1(mul(W, gW)))",
        "s_div(agg_mean_msa(u_log(fro(gram(noise.gW)))), agg_sum_mlp(max(minimum(X, transpose(W)))))",
    ],
)
def test_parse_round_trips_canonical_strings(pset, text):
    tree = parse(text, pset)
    assert str(tree) == text
    assert_typed(tree, pset)
    assert parse(" \n" + text.replace(", ", " ,\t") + " ", pset) == tree


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        (" \t\n", "empty"),
        ("agg_sum_all(l1(mul(W, gW))", "unexpected end"),
        ("agg_sum_all(l1(mul(W, gW)", "unexpected end"),
        ("agg_sum_all(l1(mul(W,", "unexpected end"),
        ("agg_sum_all(l1(frob(W)))", "unknown primitive 'frob'"),
        ("agg_sum_all(l1(mul(W, Q)))", "unknown statistic 'Q'"),
        ("agg_sum_none(l1(W))", "unknown primitive 'agg_sum_none'"),
        ("agg_sum_all(l1(mul(W)))", "expected 2, got 1"),
        ("agg_sum_all(l1(abs(W, gW)))", "expected 1, got 2"),
        ("agg_sum_all(l1())", "expected 1, got 0"),
        ("agg_sum_all(l1)", "expected 1, got 0"),
        ("agg_sum_all(l1(W()))", "statistic 'W' at position 15 takes no arguments"),
        ("agg_sum_all(W)", "type mismatch for 'W' at position 12: expected Unit, got Mat"),
        ("l1(W)", "expected Score, got Unit"),
        ("W", "expected Score, got Mat"),
        ("agg_sum_all(l1(W)) x", "trailing text at position 19"),
        ("agg_sum_all(l1(W)))", "trailing text"),
        ("agg_sum_all(l1(W)) agg_sum_all(l1(W))", "trailing text"),
        ("agg_sum_all(l1(mul(W,, gW)))", "expected a name at position 21"),
        ("agg_sum_all(l1(mul(W gW)))", "expected ',' or ')'"),
        ("(W)", "expected a name"),
        ("agg_sum_all(l1(mul(W, gW))) + 1", "unexpected character '+'"),
        ("__import__('os').system('x')", "unexpected character"),
        ("agg_sum_all(l1(W)); import os", "unexpected character ';'"),
        ("agg_sum_all(lambda: 0)", "unexpected character ':'"),
        ("1" + "0" * 5000, "unexpected character '1'"),
        ("agg_sum_all(u_mul(fro(W), 1e308))", "unexpected character '1'"),
        ("agg_sum_all(l1(W\u00e9))", "unexpected character"),
        ("agg_sum_all(l1(" + "abs(" * 10_000 + "W" + ")" * 10_002, f"more than {MAX_PROGRAM_NODES} nodes"),
        ("agg_sum_all(l1(" + "abs(" * 100 + "W" + ")" * 102, f"deeper than {MAX_PROGRAM_DEPTH}"),
        ("s_add(" * 10_000, f"more than {MAX_PROGRAM_NODES} nodes"),
    ],
)
def test_parse_rejects_malformed_expressions(pset, text, message):
    with pytest.raises(AutoproxError) as error:
        parse(text, pset)
    assert message in str(error.value)
    assert len(str(error.value)) < 200


def test_parse_accepts_nesting_up_to_the_limit(pset):
    depth = MAX_PROGRAM_DEPTH - 3
    tree = parse("agg_sum_all(l1(" + "abs(" * depth + "W" + ")" * (depth + 2), pset)
    assert tree.height == depth + 2
    with pytest.raises(AutoproxError, match="deeper"):
        parse("agg_sum_all(l1(" + "abs(" * (depth + 1) + "W" + ")" * (depth + 3), pset)


def _wide(leaves: int) -> str:
    """A shallow expression: a balanced s_add tree over `leaves` copies of agg_sum_all(fro(W))."""
    parts = ["agg_sum_all(fro(W))"] * leaves
    while len(parts) > 1:
        parts = [f"s_add({a}, {b})" for a, b in zip(parts[::2], parts[1::2])] + parts[len(parts) // 2 * 2 :]
    return parts[0]


def test_parse_limits_the_number_of_nodes(pset):
    fits = _wide(MAX_PROGRAM_NODES // 4)  # 3 nodes per leaf and one s_add per join: under the limit
    assert len(parse(fits, pset)) <= MAX_PROGRAM_NODES
    with pytest.raises(AutoproxError, match=f"more than {MAX_PROGRAM_NODES} nodes"):
        parse(_wide(MAX_PROGRAM_NODES // 4 + 1), pset)


def test_a_huge_expression_is_refused_quickly(pset):
    huge = _wide(1 << 16)  # ~260k nodes, ~2.6 MB, 18 levels deep
    start = time.perf_counter()
    with pytest.raises(AutoproxError, match="more than"):
        parse(huge, pset)
    assert time.perf_counter() - start < 0.1


def test_evaluation_matches_numpy(bundle, pset):
    w, gw = (bundle.tensors[n].double().numpy() for n in ("W", "gW"))
    numel = np.maximum(bundle.numel["W"].numpy(), bundle.numel["gW"].numpy())
    keep = (bundle.mask["W"] & bundle.mask["gW"] & bundle.groups["all"]).numpy()
    expected = np.where(keep, np.abs(w * gw).mean((-2, -1)) * numel, 0).sum(-1)
    scores = Evaluator(bundle)(parse("agg_sum_all(l1(mul(W, gW)))", pset))
    np.testing.assert_allclose(scores, expected, rtol=1e-5)


def test_empty_groups_give_nan_and_score_ops_pass_it_on(bundle, pset):
    evaluate = Evaluator(bundle)
    mlp = evaluate(parse("agg_mean_mlp(fro(W))", pset))
    assert np.isnan(mlp).tolist() == [a == 3 for a in range(7)]
    both = evaluate(parse("s_add(agg_mean_mlp(fro(W)), agg_mean_msa(fro(W)))", pset))
    assert np.array_equal(np.isnan(both), np.isnan(mlp))


def test_memo_counts_hits_and_returns_identical_results(bundle, pset):
    evaluate, plain = Evaluator(bundle), Evaluator(bundle, memo_bytes=0)
    tree = parse("agg_sum_all(l1(mul(W, gW)))", pset)
    first = evaluate(tree)
    assert (evaluate.hits, evaluate.misses) == (0, 3)
    first[:] = 0  # results are copies: changing one leaves the memo alone
    np.testing.assert_array_equal(evaluate(tree), plain(tree))
    assert (evaluate.hits, evaluate.misses) == (1, 3)
    np.testing.assert_array_equal(
        evaluate(parse("agg_mean_msa(l1(mul(W, gW)))", pset)), plain(parse("agg_mean_msa(l1(mul(W, gW)))", pset))
    )
    assert (evaluate.hits, evaluate.misses) == (2, 4)
    twice = parse("s_add(agg_sum_all(fro(X)), agg_sum_all(fro(X)))", pset)
    np.testing.assert_array_equal(evaluate(twice), plain(twice))
    assert (evaluate.hits, evaluate.misses) == (4, 7)  # the repeated subtree is computed once
    assert plain.hits == 0
    evaluate.clear()
    evaluate(tree)
    assert (evaluate.hits, evaluate.misses) == (4, 10)


def test_memo_stays_within_its_byte_budget(bundle, pset):
    one_mat = bundle.tensors["W"].nbytes + bundle.numel["W"].nbytes + bundle.mask["W"].nbytes
    evaluate = Evaluator(bundle, memo_bytes=2 * one_mat)
    random.seed(4)
    for _ in range(50):
        evaluate(gp.PrimitiveTree(generate(pset, 2, 4)))
        assert evaluate._memo_size <= 2 * one_mat
    tree = parse("agg_sum_all(fro(abs(W)))", pset)
    evaluate(tree)
    evaluate(tree)
    assert evaluate._memo_size == sum(t.nbytes for value, _ in evaluate._memo.values() for t in vars(value).values())


def test_trees_that_do_not_fit_the_bundle(bundle, pset):
    evaluate = Evaluator(bundle)
    with pytest.raises(AutoproxError, match="unknown statistic 'Z'"):
        evaluate(parse("agg_sum_all(fro(Z))", build_pset(["Z"], ["all"])))
    with pytest.raises(AutoproxError, match="unknown primitive 'agg_sum_attn'"):
        evaluate(parse("agg_sum_attn(fro(W))", build_pset(["W"], ["attn"])))
    with pytest.raises(AutoproxError, match="returns Unit"):
        evaluate(gp.PrimitiveTree([pset.mapping["fro"], pset.mapping["W"]]))


def test_concatenated_bundles_score_each_network_as_alone(pset):
    g = torch.Generator().manual_seed(3)
    first = stack([unit_stats(2 + a % 5, g) for a in range(7)], [f"a{a}" for a in range(7)])  # 6 units
    second = stack([unit_stats(6 - a % 3, g) for a in range(4)], [f"b{a}" for a in range(4)])  # 6 units
    both = concat([first, second])
    assert both.num_archs == 11 and both.ids == first.ids + second.ids
    random.seed(4)
    for _ in range(40):
        tree = gp.PrimitiveTree(generate(pset, 1, 4))
        alone = np.concatenate([Evaluator(first)(tree), Evaluator(second)(tree)])
        assert np.array_equal(Evaluator(both)(tree), alone, equal_nan=True), str(tree)
    narrower = stack([unit_stats(3, g) for _ in range(2)])  # 3 units: another layout
    with pytest.raises(AutoproxError, match="cannot concatenate 2 bundles of 2 different layouts"):
        concat([first, narrower])
