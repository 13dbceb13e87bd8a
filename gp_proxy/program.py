"""Proxy programs: random typed trees, a parser that never evaluates, and a memoising evaluator."""

from __future__ import annotations

import math
import random
import re
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial

import numpy as np
from deap import gp

from gp_proxy.device import float32_matmul
from gp_proxy.errors import AutoproxError
from gp_proxy.primitives import AGGREGATIONS, PRIMITIVES, Mat, Score, Value, agg_name, aggregate
from gp_proxy.stats import StatsBundle

# The largest program `parse` accepts (saved proxies, checkpoints), checked before any tree is built:
# far beyond what discovery makes (--size-limit, default 12 nodes; height limit 10), small enough
# that scoring and exporting stay quick.
MAX_PROGRAM_NODES = 500  # primitives and statistics
MAX_PROGRAM_DEPTH = 50  # levels of nesting; a lone statistic is 1 level

_SHALLOWEST: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _find_shallowest(pset: gp.PrimitiveSetTyped) -> dict[type, list[gp.Primitive]]:
    levels = {t: 0 for t, terms in pset.terminals.items() if terms}

    def reach(prim: gp.Primitive) -> float:
        if not all(a in levels for a in prim.args):
            return math.inf
        return 1 + max((levels[a] for a in prim.args), default=0)

    changed = True
    while changed:
        changed = False
        for type_, prims in pset.primitives.items():
            best = min(map(reach, prims), default=math.inf)
            if best < levels.get(type_, math.inf):
                levels[type_], changed = best, True
    return {
        t: [p for p in prims if reach(p) == levels[t]] for t, prims in pset.primitives.items() if levels.get(t, 0) > 0
    }


def _shallowest(pset: gp.PrimitiveSetTyped) -> dict[type, list[gp.Primitive]]:
    """For each type without terminals, its primitives that reach terminals in the fewest levels
    (cached per primitive set)."""
    version = (pset.prims_count, pset.terms_count)
    cached = _SHALLOWEST.get(pset)
    if cached is None or cached[0] != version:
        cached = _SHALLOWEST[pset] = version, _find_shallowest(pset)
    return cached[1]


def generate(pset: gp.PrimitiveSetTyped, min_: int, max_: int, type_: type | None = None) -> list:
    """A random type-correct tree (prefix list of nodes) returning `type_` (default `pset.ret`),
    grown or full at random like DEAP's genHalfAndHalf, of height drawn in [min_, max_].

    Where a leaf is due but its type has no terminal, the branch goes on with a primitive of that
    type that reaches terminals soonest, so such trees may be deeper than `max_`.
    """
    shallowest = _shallowest(pset)
    height, grow = random.randint(min_, max_), random.random() < 0.5
    expr, stack = [], [(0, pset.ret if type_ is None else type_)]
    while stack:
        depth, type_ = stack.pop()
        terminals, primitives = pset.terminals.get(type_, []), pset.primitives.get(type_, [])
        leaf = depth >= height or (grow and depth >= min_ and random.random() < pset.terminalRatio)
        if terminals and (leaf or not primitives):
            expr.append(random.choice(terminals))
            continue
        choices = shallowest.get(type_, []) if leaf else primitives
        if not choices:
            raise AutoproxError(f"no tree of type {type_.__name__} can be built from this primitive set")
        prim = random.choice(choices)
        expr.append(prim)
        stack.extend((depth + 1, arg) for arg in reversed(prim.args))
    return expr


def cx_one_point(ind1: gp.PrimitiveTree, ind2: gp.PrimitiveTree) -> tuple[gp.PrimitiveTree, gp.PrimitiveTree]:
    """DEAP's typed one-point crossover, with the shared node types drawn in name order: DEAP's own
    draws from a set of classes, whose order follows their memory addresses, so the same seed
    gave different children in different processes."""
    if len(ind1) < 2 or len(ind2) < 2:
        return ind1, ind2
    positions1: dict[type, list[int]] = {}
    positions2: dict[type, list[int]] = {}
    for tree, positions in ((ind1, positions1), (ind2, positions2)):
        for index, node in enumerate(tree[1:], 1):
            positions.setdefault(node.ret, []).append(index)
    common = sorted(set(positions1) & set(positions2), key=lambda t: t.__name__)
    if common:
        type_ = random.choice(common)
        slice1 = ind1.searchSubtree(random.choice(positions1[type_]))
        slice2 = ind2.searchSubtree(random.choice(positions2[type_]))
        ind1[slice1], ind2[slice2] = ind2[slice2], ind1[slice1]
    return ind1, ind2


def mut_insert(individual: gp.PrimitiveTree, pset: gp.PrimitiveSetTyped) -> tuple[gp.PrimitiveTree]:
    """DEAP's `gp.mutInsert` for sets where some types have no terminals: a random subtree becomes
    an argument of a new primitive whose other arguments are the shallowest trees of their type."""
    index = random.randrange(len(individual))
    ret, where = individual[index].ret, individual.searchSubtree(index)
    primitives = [p for p in pset.primitives[ret] if ret in p.args]
    if not primitives:
        return (individual,)
    prim = random.choice(primitives)
    position = random.choice([i for i, arg in enumerate(prim.args) if arg == ret])
    subtree = [prim]
    for i, arg in enumerate(prim.args):
        subtree += individual[where] if i == position else generate(pset, 0, 0, arg)
    individual[where] = subtree
    return (individual,)


_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_.]*)|([(),])|(\S))")


@dataclass(frozen=True)
class _Call:
    """`name` at character `pos`, with `args` (None: written without parentheses)."""

    name: str
    pos: int
    args: list[_Call] | None


def _quote(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


class _Syntax:
    """Recursive descent over the tokens of `name | name(expr, ...)`, at most MAX_PROGRAM_DEPTH deep;
    tokenizing stops at the first name past MAX_PROGRAM_NODES, so a huge expression costs no more
    than one at the limit."""

    def __init__(self, expr: str):
        self.tokens: list[tuple[str, int]] = []
        names = 0
        for match in _TOKEN.finditer(expr):
            text, pos = match.group(match.lastindex), match.start(match.lastindex)
            if match.lastindex == 3:
                raise AutoproxError(f"unexpected character {text!r} at position {pos}")
            names += match.lastindex == 1
            if names > MAX_PROGRAM_NODES:
                raise AutoproxError(
                    f"expression has more than {MAX_PROGRAM_NODES} nodes, the most a proxy program may have"
                )
            self.tokens.append((text, pos))
        self.index = 0

    def peek(self) -> str:
        return self.tokens[self.index][0] if self.index < len(self.tokens) else ""

    def take(self, what: str) -> tuple[str, int]:
        if self.index >= len(self.tokens):
            raise AutoproxError(f"unexpected end of expression: expected {what}")
        self.index += 1
        return self.tokens[self.index - 1]

    def call(self, depth: int = 0) -> _Call:
        if depth >= MAX_PROGRAM_DEPTH:
            raise AutoproxError(
                f"expression nested deeper than {MAX_PROGRAM_DEPTH} levels, the most a proxy program may have"
            )
        name, pos = self.take("a name")
        if name in ("(", ")", ","):
            raise AutoproxError(f"expected a name at position {pos}, got {name!r}")
        if self.peek() != "(":
            return _Call(name, pos, None)
        self.take("'('")
        if self.peek() == ")":
            self.take("')'")
            return _Call(name, pos, [])
        args = [self.call(depth + 1)]
        while True:
            text, at = self.take("',' or ')'")
            if text == ")":
                return _Call(name, pos, args)
            if text != ",":
                raise AutoproxError(f"expected ',' or ')' at position {at}, got {_quote(text)}")
            args.append(self.call(depth + 1))


def _emit(call: _Call, pset: gp.PrimitiveSetTyped, expected: type, out: list) -> None:
    """Append the nodes of `call` to `out`, checking names, arities and types."""
    node, where = pset.mapping.get(call.name), f"{_quote(call.name)} at position {call.pos}"
    if node is None:
        raise AutoproxError(f"unknown {'statistic' if call.args is None else 'primitive'} {where}")
    if not isinstance(node, gp.Primitive) and call.args is not None:
        raise AutoproxError(f"statistic {where} takes no arguments")
    got = len(call.args or ())
    if got != node.arity:
        raise AutoproxError(f"wrong number of arguments to {where}: expected {node.arity}, got {got}")
    if not issubclass(node.ret, expected):
        raise AutoproxError(f"type mismatch for {where}: expected {expected.__name__}, got {node.ret.__name__}")
    out.append(node)
    for arg, type_ in zip(call.args, node.args) if call.args else ():
        _emit(arg, pset, type_, out)


def parse(expr: str, pset: gp.PrimitiveSetTyped) -> gp.PrimitiveTree:
    """The tree written as the prefix expression `expr` (e.g. "agg_sum_all(l1(mul(W, gW)))"),
    without evaluating anything; raises AutoproxError on any problem, including a program of more
    than MAX_PROGRAM_NODES nodes or MAX_PROGRAM_DEPTH levels."""
    syntax = _Syntax(expr)
    if not syntax.tokens:
        raise AutoproxError("empty expression")
    call = syntax.call()
    if syntax.index < len(syntax.tokens):
        pos = syntax.tokens[syntax.index][1]
        raise AutoproxError(f"trailing text at position {pos}: {_quote(expr[pos:])}")
    nodes: list = []
    _emit(call, pset, pset.ret, nodes)
    return gp.PrimitiveTree(nodes)


def _layout(tree: gp.PrimitiveTree) -> tuple[list[str], list[list[int]]]:
    """Each node's subtree string and its children's indices."""
    keys, children, stack = [""] * len(tree), [[] for _ in tree], []
    for i in reversed(range(len(tree))):
        node = tree[i]
        children[i] = [stack.pop() for _ in range(node.arity)]
        keys[i] = node.format(*(keys[j] for j in children[i]))
        stack.append(i)
    return keys, children


def _nbytes(value: Value) -> int:
    return sum(t.nbytes for t in vars(value).values())


class Evaluator:
    """Scores proxy trees on a StatsBundle: `evaluator(tree)` -> (A,) float64 (NaN where undefined).

    Every subtree's value is memoised under its string in an LRU cache holding at most `memo_bytes`
    of tensors; `clear()` empties it. `hits` and `misses` count primitive nodes found in the cache
    and computed, over the evaluator's life.
    """

    def __init__(self, bundle: StatsBundle, memo_bytes: int = 1 << 30):
        self.memo_bytes = memo_bytes
        self.hits = self.misses = 0
        self._terminals = {n: Mat(t, bundle.numel[n], bundle.mask[n]) for n, t in bundle.tensors.items()}
        self._ops = {name: op.fn for name, op in PRIMITIVES.items()}
        self._ops.update(
            {
                agg_name(kind, group): partial(aggregate, kernel, group=members)
                for kind, kernel in AGGREGATIONS.items()
                for group, members in bundle.groups.items()
            }
        )
        self._memo: OrderedDict[str, tuple[Value, int]] = OrderedDict()
        self._memo_size = 0

    def clear(self) -> None:
        """Forget every memoised value."""
        self._memo.clear()
        self._memo_size = 0

    def __call__(self, tree: gp.PrimitiveTree) -> np.ndarray:
        keys, children = _layout(tree)
        values: list[Value | None] = [None] * len(tree)
        wanted = [False] * len(tree)
        wanted[0] = True
        for i, node in enumerate(tree):  # top-down: descend only below subtrees not memoised
            if not wanted[i]:
                continue
            if isinstance(node, gp.Primitive):
                values[i] = self._recall(keys[i])
                if values[i] is None:
                    for j in children[i]:
                        wanted[j] = True
            else:
                values[i] = self._terminal(node.name)
        with float32_matmul():  # matmuls in float32 (no TF32, no bf16), whatever the process set
            for i in reversed(range(len(tree))):  # bottom-up: compute what is missing
                if wanted[i] and values[i] is None:
                    values[i] = self._recall(keys[i]) or self._compute(
                        tree[i], keys[i], [values[j] for j in children[i]]
                    )
        if not isinstance(values[0], Score):
            raise AutoproxError(f"the tree returns {type(values[0]).__name__}, not Score: {keys[0]}")
        return values[0].data.cpu().numpy().copy()

    def _terminal(self, name: str) -> Mat:
        if name not in self._terminals:
            raise AutoproxError(f"unknown statistic {name!r}: the bundle has {sorted(self._terminals)}")
        return self._terminals[name]

    def _recall(self, key: str) -> Value | None:
        entry = self._memo.get(key)
        if entry is None:
            return None
        self._memo.move_to_end(key)
        self.hits += 1
        return entry[0]

    def _compute(self, node: gp.Primitive, key: str, args: list[Value]) -> Value:
        op = self._ops.get(node.name)
        if op is None:
            raise AutoproxError(f"unknown primitive {node.name!r}: it does not fit this bundle")
        value = op(*args)
        self.misses += 1
        size = _nbytes(value)
        if size <= self.memo_bytes:
            self._memo[key] = value, size
            self._memo_size += size
            while self._memo_size > self.memo_bytes:
                self._memo_size -= self._memo.popitem(last=False)[1][1]
        return value
