"""Primitives: finite and well-shaped on any finite input, exact on small hand-made inputs; the pset."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gp_proxy.errors import AutoproxError
from gp_proxy.primitives import (
    AGGREGATIONS,
    BIG,
    EPS,
    PRIMITIVES,
    Mat,
    Score,
    Unit,
    agg_name,
    aggregate,
    build_pset,
)

KINDS = ("random", "zeros", "huge", "tiny", "mixed")
SHAPES = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5))  # (A, U, S)
SEEDS = st.integers(0, 2**31 - 1)


def fill(kind: str, shape: tuple, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Finite values of one kind: random, zeros, huge (+-BIG), tiny (+-1/BIG) or a mix of all,
    including the largest finite value of `dtype`."""
    g = torch.Generator().manual_seed(seed)
    big = BIG[dtype]
    sign = torch.randn(shape, generator=g, dtype=dtype).sign()
    if kind == "random":
        return torch.randn(shape, generator=g, dtype=dtype) * 3
    if kind == "zeros":
        return torch.zeros(shape, dtype=dtype)
    if kind in ("huge", "tiny"):
        return sign * (big if kind == "huge" else 1 / big)
    palette = torch.tensor([0.0, 1 / big, 1.0, big, torch.finfo(dtype).max], dtype=dtype)
    pick = palette[torch.randint(len(palette), shape, generator=g)] * sign
    return torch.where(torch.rand(shape, generator=g) < 0.3, torch.randn(shape, generator=g, dtype=dtype), pick)


def numels(shape: tuple, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    palette = torch.tensor([0.0, 1.0, 16.0, 1e6, 1e9], dtype=torch.float64)
    return palette[torch.randint(len(palette), shape, generator=g)]


@st.composite
def values(draw, type_: type, shape: tuple):
    """A random value of `type_` for A networks, U units and S x S sketches."""
    archs, units, size = shape
    kind, seed = draw(st.sampled_from(KINDS)), draw(SEEDS)
    if type_ is Score:
        return Score(fill(kind, (archs,), torch.float64, seed))
    if type_ is Unit:
        return Unit(fill(kind, (archs, units), torch.float64, seed), numels((archs, units), seed) > 0)
    numel = numels((archs, units), seed)
    return Mat(fill(kind, (archs, units, size, size), torch.float32, seed), numel, numel > 0)


def check_value(value, type_: type, shape: tuple) -> None:
    """`value` is a `type_` of the promised shapes and dtypes, and finite."""
    archs, units, size = shape
    assert type(value) is type_
    expected = {
        Mat: ((archs, units, size, size), torch.float32),
        Unit: ((archs, units), torch.float64),
        Score: ((archs,), torch.float64),
    }[type_]
    assert (tuple(value.data.shape), value.data.dtype) == expected
    assert torch.isfinite(value.data).all(), value.data
    if type_ is not Score:
        assert value.mask.shape == (archs, units) and value.mask.dtype == torch.bool
    if type_ is Mat:
        assert value.numel.shape == (archs, units) and value.numel.dtype == torch.float64


def snapshot(args) -> list[torch.Tensor]:
    return [t.clone() for a in args for t in vars(a).values()]


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_primitive_is_finite_and_well_shaped(name, data):
    op, shape = PRIMITIVES[name], data.draw(SHAPES)
    args = [data.draw(values(t, shape)) for t in op.args]
    before = snapshot(args)
    check_value(op.fn(*args), op.ret, shape)
    assert all(torch.equal(a, b) for a, b in zip(before, snapshot(args))), "an input was modified"


@pytest.mark.parametrize("kind", sorted(AGGREGATIONS))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_aggregations_are_finite_except_for_empty_networks(kind, data):
    shape = data.draw(SHAPES)
    x = data.draw(values(Unit, shape))
    group = fill("random", shape[:2], torch.float64, data.draw(SEEDS)) > 0
    out = aggregate(AGGREGATIONS[kind], x, group)
    empty = ~(x.mask & group).any(-1)
    assert out.data.shape == shape[:1] and out.data.dtype == torch.float64
    assert torch.equal(out.data.isnan(), empty)
    assert torch.isfinite(out.data[~empty]).all()


def mat(data, numel=None, mask=None) -> Mat:
    data = torch.as_tensor(data, dtype=torch.float32)
    numel = torch.full(data.shape[:2], float(data.shape[-1] ** 2), dtype=torch.float64) if numel is None else numel
    return Mat(data, numel, numel > 0 if mask is None else mask)


def call(name: str, *args):
    return PRIMITIVES[name].fn(*args)


def test_reductions_match_the_full_tensor_when_the_sketch_is_it():
    x = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    m = mat(x)
    expect = {
        "sum": x.sum((-2, -1)),
        "mean": x.mean((-2, -1)),
        "l1": x.abs().sum((-2, -1)),
        "fro": torch.linalg.norm(x, dim=(-2, -1)),
        "std": x.std((-2, -1), correction=0),
        "max": x.amax((-2, -1)),
    }
    for name, value in expect.items():
        torch.testing.assert_close(call(name, m).data, value.double(), rtol=1e-5, atol=1e-6, msg=name)


def test_reductions_scale_to_the_full_tensor_size():
    x = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    small, full = mat(x), mat(x, numel=torch.full((1, 2), 16.0 * 100, dtype=torch.float64))
    torch.testing.assert_close(call("sum", full).data, call("sum", small).data * 100)
    torch.testing.assert_close(call("l1", full).data, call("l1", small).data * 100)
    torch.testing.assert_close(call("fro", full).data, call("fro", small).data * 10)
    torch.testing.assert_close(call("mean", full).data, call("mean", small).data)


@pytest.mark.parametrize("value", [1e-30, 1e30])
def test_fro_and_std_neither_overflow_nor_underflow(value):
    x = mat(torch.tensor([value, -value]).repeat(8).view(1, 1, 4, 4))
    assert call("fro", x).data.item() == pytest.approx(4 * value, rel=1e-6)
    assert call("std", x).data.item() == pytest.approx(value, rel=1e-6)
    expected = value / (value + EPS)  # zscore divides by std + EPS
    assert call("zscore", x).data.abs().flatten().tolist() == pytest.approx([expected] * 16, rel=1e-5)


def test_per_unit_normalisations():
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(2)) * 50 + 7
    minmax = call("minmax", mat(x)).data
    assert minmax.min() >= 0 and minmax.max() <= 1
    torch.testing.assert_close(minmax.amax((-2, -1)), torch.ones(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(minmax.amin((-2, -1)), torch.zeros(2, 3))
    z = call("zscore", mat(x)).data
    torch.testing.assert_close(z.mean((-2, -1)), torch.zeros(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std((-2, -1), correction=0), torch.ones(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(call("softmax", mat(x)).data.sum(-1), torch.ones(2, 3, 6))
    assert call("minmax", mat(torch.full((1, 1, 3, 3), 5.0))).data.abs().max() == 0


def test_matrix_products_and_transpose():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    torch.testing.assert_close(call("matmul", mat(a), mat(b)).data, a @ b / 4)
    torch.testing.assert_close(call("gram", mat(a)).data, a @ a.mT / 4)
    assert torch.equal(call("transpose", mat(a)).data, a.mT)


def test_protected_elementwise_ops():
    x = mat(torch.tensor([0.0, 1e-30, -1e-30, 4.0, -100.0, 100.0]).view(1, 1, 1, 6).expand(1, 1, 6, 6))
    row = lambda name, *args: call(name, *args).data[0, 0, 0].tolist()  # noqa: E731
    assert row("reciprocal", x) == pytest.approx([0.0, 1 / EPS, -1 / EPS, 0.25, -0.01, 0.01])
    assert row("div", x, x) == pytest.approx([0.0, 1e-30 / EPS, 1e-30 / EPS, 1.0, 1.0, 1.0])  # b clamped to EPS
    assert row("log", x)[0] == pytest.approx(math.log(EPS))
    assert row("sqrt", x)[3:] == pytest.approx([2.0, 10.0, 10.0])
    assert row("exp", x)[5] == pytest.approx(math.exp(30), rel=1e-6)
    assert row("sign", x) == [0.0, 1.0, -1.0, 1.0, -1.0, 1.0]


def test_overflow_becomes_big_and_nan_becomes_zero():
    huge = mat(torch.full((1, 1, 2, 2), 1e30))
    assert call("square", huge).data.max().item() == pytest.approx(BIG[torch.float32])
    assert call("mul", huge, call("neg", huge)).data.min().item() == pytest.approx(-BIG[torch.float32])
    top = mat(torch.tensor([[[[torch.finfo(torch.float32).max, -torch.finfo(torch.float32).max]]]]))
    assert call("minmax", top).data.tolist() == [[[[0.0, 0.0]]]]  # inf / inf
    u = Unit(torch.tensor([[1e300]], dtype=torch.float64), torch.tensor([[True]]))
    assert call("u_square", u).data.item() == BIG[torch.float64]


def test_binary_ops_and_masks_and_take_max_numel():
    x = mat(torch.ones(1, 3, 2, 2), numel=torch.tensor([[4.0, 0.0, 9.0]], dtype=torch.float64))
    y = mat(torch.ones(1, 3, 2, 2), numel=torch.tensor([[8.0, 5.0, 0.0]], dtype=torch.float64))
    out = call("add", x, y)
    assert out.mask.tolist() == [[True, False, False]] and out.numel.tolist() == [[8.0, 5.0, 9.0]]
    reduced = call("fro", x)
    assert torch.equal(reduced.mask, x.mask)
    assert call("u_mul", reduced, call("fro", y)).mask.tolist() == [[True, False, False]]


def test_aggregation_ignores_other_groups_and_padding():
    data = torch.tensor([[1.0, 2.0, 4.0, 1e300], [8.0, 16.0, 1e300, 1e300], [3.0, 5.0, 0.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False], [True, False, False, False]])
    group = torch.tensor([[True, False, True, True], [True, True, True, True], [False, True, True, True]])
    x = Unit(data, mask)
    assert aggregate(AGGREGATIONS["sum"], x, group).data[:2].tolist() == [5.0, 24.0]
    assert aggregate(AGGREGATIONS["mean"], x, group).data[:2].tolist() == [2.5, 12.0]
    assert math.isnan(aggregate(AGGREGATIONS["sum"], x, group).data[2])  # its one unit is outside the group


def test_score_ops_pass_nan_on():
    a = Score(torch.tensor([math.nan, 2.0, 3.0], dtype=torch.float64))
    b = Score(torch.tensor([1.0, math.nan, 0.0], dtype=torch.float64))
    for name in ("s_add", "s_sub", "s_mul", "s_div"):
        out = call(name, a, b).data
        assert out[:2].isnan().all() and torch.isfinite(out[2])
    assert call("s_div", a, b).data[2].item() == 0.0


def test_build_pset():
    pset = build_pset(["W", "gW", "noise.gW"], ["all", "msa"])
    assert pset.ret is Score and pset.ins == []
    assert sorted(t.name for t in pset.terminals[Mat]) == ["W", "gW", "noise.gW"]
    for name, op in PRIMITIVES.items():
        prim = pset.mapping[name]
        assert (tuple(prim.args), prim.ret) == (op.args, op.ret)
    for kind in AGGREGATIONS:
        for group in ("all", "msa"):
            prim = pset.mapping[agg_name(kind, group)]
            assert (prim.args, prim.ret) == ([Unit], Score)
    assert not pset.terminals[Unit] and not pset.terminals[Score]


@pytest.mark.parametrize(
    "stats, groups",
    [
        ([], ["all"]),
        (["W"], []),
        (["1W"], ["all"]),
        (["W-x"], ["all"]),
        (["W gW"], ["all"]),
        ([""], ["all"]),
        ([".W"], ["all"]),
        (["W"], ["a b"]),
        (["W", "W"], ["all"]),
        (["W"], ["all", "all"]),
        (["abs"], ["all"]),
        (["agg_sum_all"], ["all"]),
        (["__builtins__"], ["all"]),
        ([3], ["all"]),
    ],
)
def test_build_pset_rejects_bad_names(stats, groups):
    with pytest.raises(AutoproxError):
        build_pset(stats, groups)
