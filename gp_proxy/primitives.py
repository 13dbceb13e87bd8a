"""Typed values and protected primitives of proxy programs, and the DEAP primitive set.

Types (each is both the runtime value and DEAP's type marker):

- `Mat`:   a sketch-valued quantity per unit, data (A, U, S, S) float32.
- `Unit`:  one scalar per unit, data (A, U) float64.
- `Score`: one score per network, data (A,) float64; what a proxy returns.

Names: ops on `Mat` are bare (`abs`, `mul`, `matmul`); Mat x Mat elementwise extrema are `maximum`
and `minimum`, as in torch, because `max` is the reduction. Reductions Mat -> Unit are bare too
(`mean`, `sum`, `fro`, `l1`, `std`, `max`). Unit ops are prefixed `u_` (`u_log`, `u_add`), Score ops
`s_` (`s_div`), and the aggregation of units into a score is `agg_<mean|sum>_<group>`.

Protection: every primitive maps finite input to finite output and never raises.
- After each op, NaN becomes 0 and +-inf becomes +-BIG (1e30 for float32, 1e300 for float64);
  ops in FINITE cannot make either from finite input, so their output is not scanned.
- sqrt(x) = sqrt(|x|); log(x) = log(|x| + EPS); exp(x) = exp(min(x, 30));
  reciprocal(x) = sign(x) / max(|x|, EPS), so reciprocal(0) = 0; div(a, b) = a * reciprocal(b).
- minmax = (x - min) / (max - min + EPS) and zscore = (x - mean) / (std + EPS), per unit over the
  S x S sketch (population std); softmax runs over the last dim; matmul = A.B / S, gram = X.X^T / S.
- Reductions see the sketch as a sample of the full tensor of `numel` elements: sum = mean * numel,
  fro = sqrt(mean(x^2) * numel), l1 = mean(|x|) * numel; std is the population std of the sketch.
  fro, std and zscore square x / max|x| (per unit), so they neither overflow nor underflow; mean
  and l1 accumulate in float32 and overflow (then become BIG) only past |x| ~ 1e35.
- Masks AND and numels take the max when two values meet. An aggregation keeps the units in the
  value's mask and the group; a network with none left scores NaN, and Score ops pass NaN on, so
  such a proxy gets an invalid fitness. That NaN is the only non-finite value a primitive returns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial, reduce

import torch
from deap import gp

from gp_proxy.errors import AutoproxError

EPS = 1e-12
EXP_MAX = 30.0
BIG = {torch.float32: 1e30, torch.float64: 1e300}
SKETCH = (-2, -1)  # the S x S dims of a Mat

Tensor = torch.Tensor


@dataclass(frozen=True, eq=False)
class Mat:
    """data (A, U, S, S) float32 sketches; numel (A, U) float64 full-tensor sizes; mask (A, U) bool."""

    data: Tensor
    numel: Tensor
    mask: Tensor


@dataclass(frozen=True, eq=False)
class Unit:
    """data (A, U) float64, one scalar per unit; mask (A, U) bool."""

    data: Tensor
    mask: Tensor


@dataclass(frozen=True, eq=False)
class Score:
    """data (A,) float64, one score per network (NaN where undefined)."""

    data: Tensor


Value = Mat | Unit | Score


@dataclass(frozen=True)
class Op:
    """A primitive: `fn(*values)` maps values of types `args` to a value of type `ret`."""

    fn: Callable[..., Value]
    args: tuple[type, ...]
    ret: type


# Kernels on raw tensors. Each returns a fresh tensor (never a view of its input), which the
# typed wrappers below clamp in place.


def _sqrt(x: Tensor) -> Tensor:
    return x.abs().sqrt_()


def _log(x: Tensor) -> Tensor:
    return x.abs().add_(EPS).log_()


def _exp(x: Tensor) -> Tensor:
    return x.clamp(max=EXP_MAX).exp_()


def _reciprocal(x: Tensor) -> Tensor:
    return torch.sign(x).div_(x.abs().clamp_min_(EPS))


def _div(a: Tensor, b: Tensor) -> Tensor:
    return _reciprocal(b).mul_(a)


def _minmax(x: Tensor) -> Tensor:
    low, high = x.amin(SKETCH, keepdim=True), x.amax(SKETCH, keepdim=True)
    return (x - low).div_(high.sub_(low).add_(EPS))


def _area(x: Tensor) -> int:
    return x.shape[-2] * x.shape[-1]


def _scale(x: Tensor) -> Tensor:
    """Per-unit max |x| (A, U, 1, 1), 1 where x is all zero: x / scale lies in [-1, 1], so its sum
    of squares neither overflows nor underflows in float32."""
    scale = torch.maximum(x.amax(SKETCH, keepdim=True), x.amin(SKETCH, keepdim=True).neg_())
    return scale.masked_fill_(scale == 0, 1.0)


def _deviations(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(x - mean) / scale per unit, its root mean square (A, U, 1, 1), and the scale."""
    scale = _scale(x)
    y = x / scale
    y.sub_(y.mean(SKETCH, keepdim=True))
    return y, torch.linalg.vector_norm(y, 2, SKETCH, keepdim=True).div_(math.sqrt(_area(x))), scale


def _zscore(x: Tensor) -> Tensor:
    deviations, rms, scale = _deviations(x)  # (x - mean) / (std + EPS), computed scaled
    return deviations.div_(rms.add_(EPS / scale))


def _softmax(x: Tensor) -> Tensor:
    return torch.softmax(x, -1)


def _transpose(x: Tensor) -> Tensor:
    return x.mT.clone(memory_format=torch.contiguous_format)


def _matmul(a: Tensor, b: Tensor) -> Tensor:
    size = a.shape[-1]
    batch = (-1, size, size)
    product = torch.baddbmm(a.new_zeros(()), a.reshape(batch), b.reshape(batch), beta=0, alpha=1 / size)
    return product.view(a.shape)


def _gram(x: Tensor) -> Tensor:
    return _matmul(x, x.mT)


def _mean(x: Tensor, numel: Tensor) -> Tensor:
    return x.mean(SKETCH).double()


def _sum(x: Tensor, numel: Tensor) -> Tensor:
    return _mean(x, numel).mul_(numel)


def _fro(x: Tensor, numel: Tensor) -> Tensor:
    scale = _scale(x)
    norm = torch.linalg.vector_norm(x / scale, 2, SKETCH).double().mul_(scale[..., 0, 0])
    return norm.mul_((numel / _area(x)).sqrt_())


def _l1(x: Tensor, numel: Tensor) -> Tensor:
    return torch.linalg.vector_norm(x, 1, SKETCH).double().mul_(numel / _area(x))


def _std(x: Tensor, numel: Tensor) -> Tensor:
    _, rms, scale = _deviations(x)
    return rms[..., 0, 0].double().mul_(scale[..., 0, 0])


def _max(x: Tensor, numel: Tensor) -> Tensor:
    return x.amax(SKETCH).double()


def _agg_sum(x: Tensor, keep: Tensor) -> Tensor:
    return torch.where(keep, x, 0.0).sum(-1)


def _agg_mean(x: Tensor, keep: Tensor) -> Tensor:
    return _agg_sum(x, keep).div_(keep.sum(-1).clamp_min(1))


ARITHMETIC: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": _div,
}
"""Binary kernels shared by Mat, Unit (`u_`) and Score (`s_`)."""

ELEMENTWISE: dict[str, Callable[[Tensor], Tensor]] = {
    "abs": torch.abs,
    "square": torch.square,
    "sqrt": _sqrt,
    "log": _log,
    "neg": torch.neg,
}
"""Unary kernels shared by Mat and Unit (`u_`)."""

MAT_UNARY: dict[str, Callable[[Tensor], Tensor]] = {
    **ELEMENTWISE,
    "exp": _exp,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sign": torch.sign,
    "reciprocal": _reciprocal,
    "minmax": _minmax,
    "zscore": _zscore,
    "softmax": _softmax,
    "transpose": _transpose,
    "gram": _gram,
}
"""Mat -> Mat kernels on (A, U, S, S) data."""

MAT_BINARY: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    **ARITHMETIC,
    "maximum": torch.maximum,
    "minimum": torch.minimum,
    "matmul": _matmul,
}
"""Mat x Mat -> Mat kernels on (A, U, S, S) data."""

FINITE = frozenset(
    {
        "abs",
        "neg",
        "sign",
        "relu",
        "sigmoid",
        "tanh",
        "softmax",
        "transpose",
        "sqrt",
        "log",
        "exp",
        "reciprocal",
        "maximum",
        "minimum",
    }
)
"""Mat kernels whose output is finite for any finite input, so it is not scanned for NaN/inf."""

REDUCTIONS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mean": _mean,
    "sum": _sum,
    "fro": _fro,
    "l1": _l1,
    "std": _std,
    "max": _max,
}
"""Mat -> Unit kernels: (data (A, U, S, S), numel (A, U)) -> (A, U) float64."""

AGGREGATIONS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"mean": _agg_mean, "sum": _agg_sum}
"""Unit -> Score kernels: (data (A, U), keep (A, U) bool) -> (A,); named `agg_<kind>_<group>`."""


def _finite(x: Tensor) -> Tensor:
    """`x` with NaN set to 0 and +-inf to +-BIG, in place."""
    big = BIG[x.dtype]
    return torch.nan_to_num_(x, nan=0.0, posinf=big, neginf=-big)


def _mat_op(kernel: Callable[..., Tensor], *xs: Mat, finite: bool = False) -> Mat:
    data = kernel(*(x.data for x in xs))
    data = data if finite else _finite(data)
    return Mat(data, reduce(torch.maximum, (x.numel for x in xs)), reduce(torch.logical_and, (x.mask for x in xs)))


def _reduction(kernel: Callable[[Tensor, Tensor], Tensor], x: Mat) -> Unit:
    return Unit(_finite(kernel(x.data, x.numel)), x.mask)


def _unit_op(kernel: Callable[..., Tensor], *xs: Unit) -> Unit:
    return Unit(_finite(kernel(*(x.data for x in xs))), reduce(torch.logical_and, (x.mask for x in xs)))


def _score_op(kernel: Callable[..., Tensor], *xs: Score) -> Score:
    undefined = reduce(torch.logical_or, (x.data.isnan() for x in xs))
    return Score(_finite(kernel(*(x.data for x in xs))).masked_fill_(undefined, math.nan))


def aggregate(kernel: Callable[[Tensor, Tensor], Tensor], x: Unit, group: Tensor) -> Score:
    """Aggregate the units of `x` in its mask and in `group` (A, U) bool; NaN where none are left."""
    keep = x.mask & group
    return Score(_finite(kernel(x.data, keep)).masked_fill_(~keep.any(-1), math.nan))


def agg_name(kind: str, group: str) -> str:
    """The primitive name of aggregation `kind` (a key of AGGREGATIONS) over `group`."""
    return f"agg_{kind}_{group}"


PRIMITIVES: dict[str, Op] = {
    **{n: Op(partial(_mat_op, k, finite=n in FINITE), (Mat,), Mat) for n, k in MAT_UNARY.items()},
    **{n: Op(partial(_mat_op, k, finite=n in FINITE), (Mat, Mat), Mat) for n, k in MAT_BINARY.items()},
    **{n: Op(partial(_reduction, k), (Mat,), Unit) for n, k in REDUCTIONS.items()},
    **{f"u_{n}": Op(partial(_unit_op, k), (Unit,), Unit) for n, k in ELEMENTWISE.items()},
    **{f"u_{n}": Op(partial(_unit_op, k), (Unit, Unit), Unit) for n, k in ARITHMETIC.items()},
    **{f"s_{n}": Op(partial(_score_op, k), (Score, Score), Score) for n, k in ARITHMETIC.items()},
}
"""Every primitive except the aggregations, which depend on the groups (see `agg_name`)."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def _check_names(kind: str, names: list[str]) -> None:
    if not names:
        raise AutoproxError(f"no {kind} names given: a proxy needs at least one")
    for name in names:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise AutoproxError(
                f"invalid {kind} name {name!r}: use letters, digits, '_' and '.', starting with a letter or '_'"
            )
    if len(set(names)) != len(names):
        raise AutoproxError(f"duplicate {kind} names in {names}")


def build_pset(stat_names: Sequence[str], groups: Sequence[str]) -> gp.PrimitiveSetTyped:
    """The typed primitive set of proxies: no arguments, returns Score, one Mat terminal per
    statistic (named as it), every primitive in PRIMITIVES and `agg_<kind>_<group>` per group.

    In `pset.context` an aggregation takes the group's (A, U) mask as second argument; the
    evaluator binds it from the bundle.
    """
    stat_names, groups = list(stat_names), list(groups)
    _check_names("statistic", stat_names)
    _check_names("group", groups)
    pset = gp.PrimitiveSetTyped("proxy", [], Score)
    for name, op in PRIMITIVES.items():
        pset.addPrimitive(op.fn, list(op.args), op.ret, name=name)
    for kind, kernel in AGGREGATIONS.items():
        for group in groups:
            pset.addPrimitive(partial(aggregate, kernel), [Unit], Score, name=agg_name(kind, group))
    for name in stat_names:
        if name in pset.context:
            raise AutoproxError(f"statistic name {name!r} is taken by a primitive")
        pset.addTerminal(name, Mat, name=name)
    return pset
