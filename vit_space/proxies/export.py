"""A saved proxy in other forms: LaTeX (with the ViT statistics' names), Python, GraphML, DOT, PNG, JSON."""

from __future__ import annotations

from pathlib import Path

from gp_proxy import export
from gp_proxy.atomic import write_text
from gp_proxy.errors import AutoproxError
from gp_proxy.store import SavedProxy
from gp_proxy.symbolic import to_latex
from vit_space.probe.cache import latex_names

EXPORTS = ("latex", "python", "graphml", "dot", "png", "json")


def export_text(proxy: SavedProxy, fmt: str) -> str:
    """`proxy` as text in `fmt` (every one of `EXPORTS` but png)."""
    tree = proxy.tree()
    makers = {
        "latex": lambda: to_latex(tree, latex_names(proxy.names)),
        "python": lambda: export.to_python(tree, proxy.groups, proxy.probe),
        "graphml": lambda: export.to_graphml(tree),
        "dot": lambda: export.to_dot(tree),
        "json": proxy.to_json,
    }
    if fmt not in makers:
        raise AutoproxError(f"unknown text format {fmt!r}; known: {', '.join(makers)} (png is drawn: export_file)")
    return makers[fmt]()


def export_file(proxy: SavedProxy, fmt: str, path: str | Path) -> Path:
    """Write `proxy` in `fmt` (one of `EXPORTS`) to `path`, atomically; returns the path."""
    if fmt == "png":
        export.draw(proxy.tree(), str(path))
    else:
        text = export_text(proxy, fmt)
        write_text(path, text if text.endswith("\n") else text + "\n")
    return Path(path)
