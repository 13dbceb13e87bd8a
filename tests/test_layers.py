"""The packages' import picture: one way, no circle, no module over 400 lines."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# vit_space's layers, lowest first: a module may import its own layer and the ones before it
LAYERS = ["device", "cluster", "data", "spaces", "bench", "probe", "proxies", "search", "pipeline", "cli"]


def modules(package: str) -> dict[str, Path]:
    return {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (ROOT / package).rglob("*.py")
    }


def imports(path: Path) -> set[str]:
    """Every module named by an import statement of the file (top level or inside a function)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def layer(module: str) -> int:
    return LAYERS.index(module.split(".")[1])


def test_gp_proxy_never_imports_vit_space():
    for name, path in modules("gp_proxy").items():
        assert not any(m.startswith("vit_space") for m in imports(path)), name


def test_vit_space_imports_flow_one_way():
    known = modules("vit_space")
    for name, path in known.items():
        if name == "vit_space":
            continue  # the package root re-exports the public API of every layer
        for target in imports(path) & set(known):
            if target != "vit_space":
                assert layer(target) <= layer(name), f"{name} imports {target}, a later layer"


def test_no_import_circle():
    graph = {}
    for package in ("gp_proxy", "vit_space"):
        known = {**modules("gp_proxy"), **modules("vit_space")}
        for name, path in modules(package).items():
            graph[name] = {t for t in imports(path) & set(known) if t != name and t not in ("gp_proxy", "vit_space")}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            assert state.get(nxt) != 1, "import circle: " + " -> ".join([*trail, node, nxt])
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def test_no_module_over_400_lines():
    for package in ("gp_proxy", "vit_space"):
        for name, path in modules(package).items():
            assert len(path.read_text().splitlines()) <= 400, name
