"""Export proxy programs: a standalone Python module, and a graph (networkx, GraphML, DOT, PNG).

The Python module is stitched from the engine's own kernel source (`gp_proxy.primitives`,
copied by `ast` at export time), so it computes exactly what the engine computes and needs
nothing but torch. Graphs merge shared subexpressions: every distinct subtree is one node.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import textwrap
from collections.abc import Callable, Iterator
from functools import partial

import networkx as nx
import torch
from deap import gp

from gp_proxy import __version__, primitives
from gp_proxy.primitives import PRIMITIVES, Mat, Score, Unit

_NOT_EXPORTED = frozenset({"agg_name", "_check_names", "build_pset", "Op"})
_CONSTANTS = frozenset({"EPS", "EXP_MAX", "BIG", "SKETCH", "Tensor"})
_HEADER = '''"""Zero-cost proxy exported by autoprox {version}.

    {expression}

Call `proxy(tensors, numel, groups, mask=None)` with the statistics of one network or of a stack
of networks (the probe's sketches):
    tensors: name -> (..., U, S, S) float32 sketch of each unit's statistic
    numel:   name -> (..., U) number of elements of the full tensor each sketch samples
    groups:  group -> (..., U) bool, the units of each group ({groups})
    mask:    name -> (..., U) bool, the units that exist (default: all)
It returns the (...) float64 scores; higher means higher predicted accuracy. Statistics read:
{names}; measured as: {spec}. Generated code: only torch is needed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import reduce

import torch

'''


def source_of(module, keep: Callable[[ast.stmt], bool]) -> str:
    """The top-level statements of `module` that `keep` accepts (decorators included), as source text."""
    source = inspect.getsource(module)
    lines = source.splitlines()
    chunks = []
    for stmt in ast.parse(source).body:
        if keep(stmt):
            start = min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", []))])
            chunks.append("\n".join(lines[start - 1 : stmt.end_lineno]))
    return "\n\n\n".join(chunks)


def defined_names(stmt: ast.stmt) -> set[str]:
    """The names a top-level function, class or assignment defines."""
    if isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
        return {stmt.name}
    if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        return {t.id for t in targets if isinstance(t, ast.Name)}
    return set()


def _engine_source() -> str:
    """The constants, value types and kernels of `gp_proxy.primitives`, as source text."""

    def keep(stmt: ast.stmt) -> bool:
        if isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
            return stmt.name not in _NOT_EXPORTED
        return isinstance(stmt, ast.Assign) and bool(defined_names(stmt)) and defined_names(stmt) <= _CONSTANTS

    return source_of(primitives, keep)


def _kernel(fn) -> str:
    """How the generated module names a kernel: `torch.add` or the copied `_div`."""
    return f"torch.{fn.__name__}" if getattr(torch, fn.__name__, None) is fn else fn.__name__


def _call(node: gp.Primitive, args: list[str]) -> str:
    """The wrapper call the engine makes for `node`, read from its partial in PRIMITIVES."""
    if node.name.startswith("agg_"):
        _, kind, group = node.name.split("_", 2)
        return f"aggregate({_kernel(primitives.AGGREGATIONS[kind])}, {args[0]}, groups[{group!r}])"
    fn: partial = PRIMITIVES[node.name].fn
    extra = [f"{k}={v!r}" for k, v in fn.keywords.items()]
    return f"{fn.func.__name__}({', '.join([_kernel(fn.args[0]), *args, *extra])})"


def _nodes(tree: gp.PrimitiveTree) -> Iterator[tuple[str, gp.Primitive | gp.Terminal, list[str]]]:
    """(subtree string, node, children's subtree strings) in post-order, each subtree once."""
    seen: set[str] = set()
    stack: list[str] = []
    for node in reversed(tree):
        children = [stack.pop() for _ in range(node.arity)]
        key = node.format(*children) if node.arity else node.name
        stack.append(key)
        if key not in seen:
            seen.add(key)
            yield key, node, children


def to_python(tree: gp.PrimitiveTree, groups: list[str], spec: dict | None = None) -> str:
    """Source of a standalone module whose `proxy(tensors, numel, groups, mask=None)` scores
    networks like the engine does: (..., U, S, S) sketches, (..., U) element counts and
    group/mask booleans in, (...) float64 scores out (see the generated docstring). `groups` are
    the unit groups listed there; `spec` (how the statistics were measured) goes into it too."""
    names = sorted({n.name for n in tree if isinstance(n, gp.Terminal)})
    variables: dict[str, str] = {}
    body = []
    for key, node, children in _nodes(tree):
        var = variables[key] = f"v{len(variables)}"
        if isinstance(node, gp.Primitive):
            body.append(f"    {var} = {_call(node, [variables[c] for c in children])}  # {node.name}")
        else:
            body.append(f"    {var} = _statistic({node.name!r}, tensors, numel, mask)")
    header = _HEADER.format(
        version=__version__,
        expression=str(tree),
        groups=", ".join(groups),
        names=", ".join(names),
        spec=json.dumps(spec or {}, sort_keys=True),
    )
    return (
        header
        + _engine_source()
        + "\n\n\n"
        + "def _statistic(name, tensors, numel, mask):\n"
        + "    valid = mask[name] if mask is not None else torch.ones_like(numel[name], dtype=torch.bool)\n"
        + "    return Mat(tensors[name].float(), numel[name].double(), valid.bool())\n\n\n"
        + "def proxy(tensors, numel, groups, mask=None):\n"
        + f'    """Scores of `{tree}` (see the module docstring)."""\n'
        + "\n".join(body)
        + f"\n    return {variables[str(tree)]}.data\n"
    )


_TYPE_NAMES = {Mat: "Mat", Unit: "Unit", Score: "Score"}


CHECKSUM_PREFIX = "# sha256 of the rest of this file, written by autoprox: "
_SELF_CHECK = '''


def _unedited() -> None:
    """Refuse to load this file if it was changed after autoprox wrote it (its first line's checksum)."""
    import hashlib

    if not globals().get("__file__"):
        return
    with open(__file__, encoding="utf-8", newline="") as f:
        first, _, rest = f.read().partition("\\n")
    if hashlib.sha256(rest.encode()).hexdigest() != first.rpartition(" ")[2]:
        raise ImportError(f"{__file__} was edited after autoprox exported it (its checksum line no longer matches)")


_unedited()
'''


def sealed(source: str) -> str:
    """`source` (a module) with a first line holding the sha256 of the rest and, at its end, code that
    refuses to import the file once it is edited."""
    body = source.rstrip("\n") + "\n" + _SELF_CHECK
    return CHECKSUM_PREFIX + hashlib.sha256(body.encode()).hexdigest() + "\n" + body


def to_graph(tree: gp.PrimitiveTree) -> nx.MultiDiGraph:
    """A DAG of the program: one node per distinct subtree (attributes: label, kind, type,
    expression), one edge from each argument to its primitive (attribute: arg position; a
    subtree used twice by the same primitive gives two parallel edges)."""
    graph = nx.MultiDiGraph(expression=str(tree))
    for key, node, children in _nodes(tree):
        kind = "primitive" if isinstance(node, gp.Primitive) else "statistic"
        graph.add_node(key, label=node.name, kind=kind, type=_TYPE_NAMES.get(node.ret, str(node.ret)), expression=key)
        for position, child in enumerate(children):
            graph.add_edge(child, key, arg=position)
    return graph


def to_graphml(tree: gp.PrimitiveTree) -> str:
    return "\n".join(nx.generate_graphml(_numbered(to_graph(tree))))


def _numbered(graph: nx.MultiDiGraph) -> nx.MultiDiGraph:
    """The graph with nodes renamed n0, n1, ... (post-order), the subtree kept as attribute."""
    return nx.relabel_nodes(graph, {key: f"n{i}" for i, key in enumerate(graph.nodes)})


def to_dot(tree: gp.PrimitiveTree) -> str:
    """Graphviz DOT text of the DAG (statistics as ellipses, primitives as boxes, root on top)."""
    graph = _numbered(to_graph(tree))
    lines = ["digraph proxy {", "  rankdir=BT;", f"  label={_dot_quote(str(tree))};"]
    for name, data in graph.nodes(data=True):
        shape = "box" if data["kind"] == "primitive" else "ellipse"
        lines.append(f"  {name} [label={_dot_quote(data['label'])}, shape={shape}];")
    for child, parent, data in graph.edges(data=True):
        lines.append(f'  {child} -> {parent} [label="{data["arg"]}"];')
    return "\n".join([*lines, "}"]) + "\n"


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def draw(tree: gp.PrimitiveTree, path: str, title: str | None = None) -> None:
    """Draw the DAG to an image file (networkx + matplotlib), root at the top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    graph, root = to_graph(tree), str(tree)
    pos: dict[str, tuple[float, float]] = {}
    leaves = 0
    for key, _, children in _nodes(tree):  # post-order: leaves left to right, parents centred
        if children:
            x = sum(pos[c][0] for c in children) / len(children)
        else:
            x, leaves = float(leaves), leaves + 1
        pos[key] = (x, -float(nx.shortest_path_length(graph, key, root)))
    depth = {n: -y for n, (_, y) in pos.items()}
    colours = ["#9ecae1" if graph.nodes[n]["kind"] == "statistic" else "#fdd0a2" for n in graph]
    width = max(4.0, 1.5 * leaves)
    fig, ax = plt.subplots(figsize=(width, 1.2 + 0.9 * (max(depth.values()) + 1)))
    nx.draw_networkx(
        graph,
        pos,
        ax=ax,
        labels={n: graph.nodes[n]["label"] for n in graph},
        node_color=colours,
        node_size=1500,
        node_shape="s",
        font_size=8,
        arrows=True,
        arrowsize=10,
    )
    ax.set_title("\n".join(textwrap.wrap(title or root, int(11 * width))), fontsize=8)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
