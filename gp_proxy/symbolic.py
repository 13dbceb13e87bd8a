"""Proxy programs as sympy expressions, for printing them as formulas.

Every primitive maps to sympy: elementwise and arithmetic ops to sympy's own (`Abs`, `Max`,
`tanh`, `+`, `*`, ...), the rest (min-max normalisation, reductions, aggregations over units)
to named sympy functions that print as LaTeX operators. The formula shows the mathematics;
the engine's protections (`log(|x| + 1e-12)`, clamping) are left out, as papers write them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache

import sympy
from deap import gp

from gp_proxy.errors import AutoproxError


def _named(name: str, template: str, arity: int = 1, nonnegative: bool = False) -> type[sympy.Function]:
    """A real-valued sympy function `name` printed in LaTeX by `template` ({0}, {1}: the printed
    arguments); `nonnegative` lets sympy drop |.| around it."""

    def _latex(self, printer, exp=None):
        text = template.format(*(printer._print(a) for a in self.args))
        return rf"\left({text}\right)^{{{exp}}}" if exp else text

    return type(
        name,
        (sympy.Function,),
        {
            "nargs": arity,
            "_latex": _latex,
            "is_real": True,
            "_eval_is_nonnegative": lambda self: True if nonnegative else None,
        },
    )


_OPERATORS = {
    "sigmoid": r"\sigma\left({0}\right)",
    "relu": r"\operatorname{{relu}}\left({0}\right)",
    "minmax": r"\operatorname{{minmax}}\left({0}\right)",
    "zscore": r"\operatorname{{zscore}}\left({0}\right)",
    "softmax": r"\operatorname{{softmax}}\left({0}\right)",
    "transpose": r"\left({0}\right)^{{\top}}",
    "gram": r"\frac{{1}}{{S}}\left({0}\right)\left({0}\right)^{{\top}}",
    "mean": r"\operatorname{{mean}}\left({0}\right)",
    "sum": r"\Sigma\left({0}\right)",
    "fro": r"\left\lVert {0} \right\rVert_F",
    "l1": r"\left\lVert {0} \right\rVert_1",
    "std": r"\operatorname{{std}}\left({0}\right)",
    "max": r"\max\left({0}\right)",
}
_NONNEGATIVE = frozenset({"sigmoid", "relu", "minmax", "softmax", "fro", "l1", "std"})
_FUNCTIONS = {
    name: _named(f"{name}_", template, nonnegative=name in _NONNEGATIVE) for name, template in _OPERATORS.items()
}
_MATMUL = _named("matmul_", r"\frac{{1}}{{S}}\left({0}\right)\left({1}\right)", 2)

_ELEMENTWISE: dict[str, Callable[..., sympy.Expr]] = {
    "abs": sympy.Abs,
    "square": lambda x: x**2,
    "sqrt": lambda x: sympy.sqrt(sympy.Abs(x)),
    "log": lambda x: sympy.log(sympy.Abs(x)),
    "neg": lambda x: -x,
    "exp": sympy.exp,
    "tanh": sympy.tanh,
    "sign": sympy.sign,
    "reciprocal": lambda x: 1 / x,
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "maximum": sympy.Max,
    "minimum": sympy.Min,
}


@cache
def _aggregation(name: str) -> type[sympy.Function]:
    _, kind, group = name.split("_", 2)
    operator = r"\sum" if kind == "sum" else r"\operatorname*{{mean}}"
    group = group.replace("_", r"\_")
    return _named(name, operator + r"_{{l \in \text{{" + group + r"}}}} \left[{0}\right]_l")


def _function(name: str) -> Callable[..., sympy.Expr]:
    bare = name[2:] if name[:2] in ("u_", "s_") else name
    if bare in _ELEMENTWISE:
        return _ELEMENTWISE[bare]
    if bare in _FUNCTIONS:
        return _FUNCTIONS[bare]
    if bare == "matmul":
        return _MATMUL
    if name.startswith("agg_"):
        return _aggregation(name)
    raise AutoproxError(f"primitive {name!r} has no sympy form")


def to_sympy(tree: gp.PrimitiveTree) -> sympy.Expr:
    """The sympy expression of `tree`; statistics become real symbols named as in the program,
    non-elementwise primitives named sympy functions (the engine's protections left out)."""
    stack: list[sympy.Expr] = []
    for node in reversed(tree):
        if isinstance(node, gp.Primitive):
            args = [stack.pop() for _ in range(node.arity)]
            stack.append(_function(node.name)(*args))
        else:
            stack.append(sympy.Symbol(node.name, real=True))
    return stack[0]


def to_latex(tree: gp.PrimitiveTree, symbol_latex: Mapping[str, str] | None = None) -> str:
    """LaTeX of `tree`; `symbol_latex` maps statistic names to their LaTeX (e.g. gW -> \\nabla W)."""
    expr = to_sympy(tree)
    names = {s: (symbol_latex or {}).get(s.name, rf"\mathrm{{{s.name}}}") for s in expr.free_symbols}
    return sympy.latex(expr, symbol_names=names)
