"""A saved proxy in other forms: LaTeX (with the ViT statistics' names), Python, sympy, GraphML, DOT, PNG,
JSON; a discovery run's hall of fame as a LaTeX (booktabs) table."""

from __future__ import annotations

from pathlib import Path

import sympy

from gp_proxy import export
from gp_proxy.atomic import write_text
from gp_proxy.errors import AutoproxError
from gp_proxy.store import SavedProxy, load_proxy
from gp_proxy.symbolic import to_latex, to_sympy
from vit_space.probe.conditions import latex_names
from vit_space.proxies.scorer import scorer_source

EXPORTS = ("latex", "python", "sympy", "graphml", "dot", "png", "json", "latex-table")


def export_text(proxy: SavedProxy, fmt: str) -> str:
    """`proxy` as text in `fmt` (every one of `EXPORTS` but png and latex-table). `sympy` is
    `sympy.srepr` of the expression: `sympy.sympify` reads it back without autoprox (the
    primitives become undefined functions of the statistics' symbols)."""
    tree = proxy.tree()
    makers = {
        "latex": lambda: to_latex(tree, latex_names(proxy.names)),
        "python": lambda: export.sealed(export.to_python(tree, proxy.groups, proxy.probe) + scorer_source(proxy.probe)),
        "sympy": lambda: sympy.srepr(to_sympy(tree)),
        "graphml": lambda: export.to_graphml(tree),
        "dot": lambda: export.to_dot(tree),
        "json": proxy.to_json,
    }
    if fmt not in makers:
        raise AutoproxError(
            f"unknown text format {fmt!r}; known: {', '.join(makers)} (png is drawn: export_file; latex-table "
            "is a run's: latex_table)"
        )
    return makers[fmt]()


def export_file(proxy: SavedProxy, fmt: str, path: str | Path) -> Path:
    """Write `proxy` in `fmt` (one of `EXPORTS`) to `path`, atomically; returns the path."""
    if fmt == "png":
        export.draw(proxy.tree(), str(path))
    else:
        text = export_text(proxy, fmt)
        write_text(path, text if text.endswith("\n") else text + "\n")
    return Path(path)


def latex_table(run_dir: str | Path) -> str:
    """A booktabs table of a `discover` run's saved proxies (`proxies/rank*.json`, best first): rank,
    the formula, size, training JCM, held-out JCM and held-out Kendall tau per task."""
    paths = sorted(Path(run_dir).glob("proxies/rank*.json"))
    if not paths:
        raise AutoproxError(f"{run_dir} holds no saved proxies (proxies/rank01.json ...): not a discover --out folder")
    proxies = [load_proxy(p) for p in paths]
    tasks = list(proxies[0].fitness.get("test", {}))
    header = ["Rank", "Proxy", "Size", "JCM train", "JCM held-out"] + [rf"$\tau$ {_escape(t)}" for t in tasks]
    lines = [
        r"\begin{tabular}{rl" + "r" * (len(header) - 2) + "}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
    ]
    for rank, proxy in enumerate(proxies, start=1):
        fitness = proxy.fitness
        taus = [fitness["test"].get(t, {}).get("kendall") for t in tasks]
        cells = [str(rank), f"${to_latex(proxy.tree(), latex_names(proxy.names))}$", str(len(proxy.tree()))]
        cells += [_cell(fitness.get("jcm_train")), _cell(fitness.get("jcm_test"))] + [_cell(t) for t in taus]
        lines.append(" & ".join(cells) + r" \\")
    return "\n".join([*lines, r"\bottomrule", r"\end{tabular}"]) + "\n"


def _cell(value: float | None) -> str:
    return "--" if value is None or value != value else f"{value:.3f}"


def _escape(text: str) -> str:
    return text.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("&", r"\&").replace("%", r"\%")
