"""Shorter equivalent proxies, checked on the statistics they will be used on.

Two kinds of rewrite, both *hoists* (a node replaced by one of its own subtrees of the same type),
tried smallest result first and repeated until none applies:

- exact: accepted when the scores stay equal on every given bundle (`numpy.allclose` with
  relative tolerance RTOL = 1e-5: programs run in float32, so reassociating a sum moves the
  last digits; NaN where the original is NaN). Removes e.g. sign(sign(x)), abs(square(x)),
  or an s_div whose denominator is constant over the networks.
- rank: at the root only, accepted when the new scores order every bundle's networks exactly
  as the old ones did (same order, same ties), so every Kendall tau is identical. This drops
  strictly increasing functions at the root, e.g. s_mul(x, x) = x^2 for positive x.

Acceptance is measured on the bundles; each exact rewrite also records whether sympy proves it
(`proved`: the symbolic forms of `gp_proxy.symbolic` simplify to the same expression, which
ignores the engine's protections at zero). The original is kept next to the result.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import sympy
from deap import gp
from scipy.stats import rankdata

from gp_proxy.program import Evaluator
from gp_proxy.symbolic import to_sympy

RTOL = 1e-5


@dataclass(frozen=True)
class Simplification:
    """The simplified program and the rewrites that led to it ("old -> new" subtree strings)."""

    original: str
    tree: gp.PrimitiveTree
    exact: list[str] = field(default_factory=list)
    rank: list[str] = field(default_factory=list)
    proved: list[bool] = field(default_factory=list)

    @property
    def expression(self) -> str:
        return str(self.tree)

    def as_dict(self) -> dict:
        return {"original": self.original, "exact": self.exact, "proved": self.proved, "rank": self.rank, "rtol": RTOL}


@dataclass(frozen=True)
class Hoist:
    """`tree` with subtree `old` replaced by its own subtree `new`."""

    tree: gp.PrimitiveTree
    old: gp.PrimitiveTree
    new: gp.PrimitiveTree

    def __str__(self) -> str:
        return f"{self.old} -> {self.new}"


def hoists(tree: gp.PrimitiveTree, root_only: bool = False) -> Iterator[Hoist]:
    """Every tree made by replacing a node with one of its proper subtrees of the same type."""
    for i in range(1 if root_only else len(tree)):
        outer = tree.searchSubtree(i)
        for j in range(i + 1, outer.stop):
            if tree[j].ret is tree[i].ret:
                inner = tree.searchSubtree(j)
                yield Hoist(
                    gp.PrimitiveTree(tree[:i] + tree[inner] + tree[outer.stop :]),
                    gp.PrimitiveTree(tree[outer]),
                    gp.PrimitiveTree(tree[inner]),
                )


def proved(hoist: Hoist) -> bool:
    """Whether sympy shows the replaced subtree equal to its replacement."""
    return sympy.simplify(to_sympy(hoist.old) - to_sympy(hoist.new)) == 0


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.allclose(a, b, rtol=RTOL, atol=0.0, equal_nan=True))


def _same_order(a: np.ndarray, b: np.ndarray) -> bool:
    finite = np.isfinite(a)
    if not np.array_equal(finite, np.isfinite(b)):
        return False
    return bool(np.array_equal(rankdata(a[finite], method="min"), rankdata(b[finite], method="min")))


def simplify(tree: gp.PrimitiveTree, evaluators: Sequence[Evaluator], rank: bool = True) -> Simplification:
    """Greedily shorten `tree` while its scores on every evaluator's bundle stay equal (exact
    rewrites anywhere, relative tolerance RTOL), then, with `rank`, while they keep their order
    (rewrites at the root). Returns a `Simplification`: `.tree`, `.expression`, and the rewrites."""
    target = [ev(tree) for ev in evaluators]
    exact: list[Hoist] = []
    current = tree
    while (step := _first(current, evaluators, lambda new: all(map(_equal, new, target)))) is not None:
        exact.append(step)
        current = step.tree
    ranked: list[Hoist] = []
    reference = [ev(current) for ev in evaluators]
    while (
        rank
        and (step := _first(current, evaluators, lambda new: all(map(_same_order, new, reference)), root_only=True))
        is not None
    ):
        ranked.append(step)
        current = step.tree
    return Simplification(
        str(tree), current, [str(h) for h in exact], [str(h) for h in ranked], [proved(h) for h in exact]
    )


def _first(tree: gp.PrimitiveTree, evaluators: Sequence[Evaluator], accept, root_only: bool = False) -> Hoist | None:
    """The smallest hoist of `tree` whose scores `accept`s, or None."""
    for hoist in sorted(hoists(tree, root_only), key=lambda h: len(h.tree)):
        if accept([ev(hoist.tree) for ev in evaluators]):
            return hoist
    return None
