"""Exports: standalone Python equal to the engine on real ViT statistics, graphs, LaTeX, the CLI."""

import ast
import importlib.util
import json
import sys

import networkx as nx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gp_proxy.export import draw, to_dot, to_graph, to_graphml, to_python
from gp_proxy.library import KNOWN_PROXIES
from gp_proxy.primitives import build_pset
from gp_proxy.program import Evaluator, parse
from gp_proxy.stats import stack
from gp_proxy.store import SavedProxy, save_proxy
from gp_proxy.symbolic import to_latex, to_sympy
from vit_space.cli import main
from vit_space.probe.conditions import latex_names
from vit_space.probe.hooks import GROUPS, KINDS, probe
from vit_space.spaces import get_space

ARCHS = [
    {"base_dim": 16, "mlp_ratio": 2, "depth": [1, 6, 6], "num_heads": [2, 2, 4]},
    {"base_dim": 24, "mlp_ratio": 4, "depth": [2, 4, 6], "num_heads": [2, 4, 8]},
    {"base_dim": 32, "mlp_ratio": 8, "depth": [3, 8, 2], "num_heads": [4, 4, 8]},
]
GROUP_NAMES = ["all", *GROUPS]
EXPRESSIONS = [p.expression for p in KNOWN_PROXIES.values()] + [
    "s_div(agg_sum_qkv(fro(sign(minmax(gW)))), agg_mean_ln_out(max(sign(Y))))",
    "s_add(agg_sum_proj(u_square(fro(W))), agg_mean_qkv(fro(sub(softmax(A), gram(W)))))",
    "agg_sum_fc2(u_sqrt(sum(maximum(matmul(transpose(X), gW), zscore(gY)))))",
]


@pytest.fixture(scope="module")
def bundle():
    """Real statistics of three PiT networks (64 px, batch 2, 8x8 sketches), stacked."""
    space, images, labels = get_space("pit"), torch.randn(2, 3, 64, 64), torch.tensor([1, 2])
    stats = []
    for arch in ARCHS:
        torch.manual_seed(0)
        model = space.build(arch, num_classes=10, img_size=64)
        stats.append(probe(model, images, lambda logits: F.cross_entropy(logits, labels), size=8, seed=0))
    return stack(stats)


def load_module(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("index", range(len(EXPRESSIONS)))
def test_generated_python_imports_only_torch_and_scores_like_the_engine(bundle, tmp_path, index):
    tree = parse(EXPRESSIONS[index], build_pset(list(KINDS), GROUP_NAMES))
    source = to_python(tree, GROUP_NAMES, {"sketch_size": 8})
    imported = {
        a.name.split(".")[0]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for a in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])
    }
    assert imported <= {"__future__", "math", "dataclasses", "functools", "torch"}
    path = tmp_path / f"exported_{index}.py"
    path.write_text(source)
    scores = load_module(path).proxy(bundle.tensors, bundle.numel, bundle.groups, bundle.mask)
    np.testing.assert_array_equal(scores.numpy(), Evaluator(bundle, memo_bytes=0)(tree))


def test_generated_python_scores_one_unstacked_network(bundle, tmp_path):
    tree = parse(KNOWN_PROXIES["snip"].expression, build_pset(list(KINDS), GROUP_NAMES))
    path = tmp_path / "snip_export.py"
    path.write_text(to_python(tree, GROUP_NAMES))
    units = int(bundle.groups["all"][0].sum())
    one = {k: v[0, :units] for k, v in bundle.tensors.items()}
    numel = {k: v[0, :units] for k, v in bundle.numel.items()}
    groups = {k: v[0, :units] for k, v in bundle.groups.items()}
    score = load_module(path).proxy(one, numel, groups)
    assert float(score) == pytest.approx(float(Evaluator(bundle)(tree)[0]), rel=1e-12)
    on_meta = [{k: v.to("meta") for k, v in d.items()} for d in (one, numel, groups)]  # a GPU's stand-in
    assert load_module(path).proxy(*on_meta).device.type == "meta"  # no mask made on the CPU


def test_graph_merges_shared_subexpressions():
    pset = build_pset(list(KINDS), GROUP_NAMES)
    tree = parse("s_add(agg_sum_all(fro(mul(W, W))), agg_mean_msa(fro(mul(W, W))))", pset)
    graph = to_graph(tree)
    assert sorted(d["label"] for _, d in graph.nodes(data=True)) == sorted(
        ["W", "mul", "fro", "agg_sum_all", "agg_mean_msa", "s_add"]
    )
    assert graph.number_of_edges("W", "mul(W, W)") == 2 and nx.is_directed_acyclic_graph(graph)
    assert [n for n in graph if graph.out_degree(n) == 0] == [str(tree)]
    parsed = nx.parse_graphml(to_graphml(tree))
    assert parsed.number_of_nodes() == 6 and parsed.number_of_edges() == 7
    dot = to_dot(tree)
    assert dot.startswith("digraph proxy {") and dot.count("->") == 7 and dot.count("shape=box") == 5


def test_png_drawing(tmp_path):
    tree = parse(EXPRESSIONS[-1], build_pset(list(KINDS), GROUP_NAMES))
    draw(tree, str(tmp_path / "proxy.png"))
    assert (tmp_path / "proxy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_latex_names_statistics_and_writes_out_the_aggregation():
    pset = build_pset(list(KINDS) + ["sf.W"], GROUP_NAMES)
    tree = parse("s_add(agg_sum_fc1(fro(gW)), agg_mean_ln_out(l1(sf.W)))", pset)
    text = to_latex(tree, latex_names(["gW", "sf.W"]))
    assert r"\nabla W" in text and r"W^{\text{sf}}" in text
    assert r"\sum_{l \in \text{fc1}}" in text and r"\operatorname*{mean}_{l \in \text{ln\_out}}" in text
    assert text.count("{") == text.count("}")
    assert str(to_sympy(parse("agg_sum_all(fro(div(gW, gW)))", pset))) == "agg_sum_all(fro_(1))"


def test_export_command_writes_every_format(capsys, tmp_path):
    path = save_proxy(tmp_path / "p.json", SavedProxy(EXPRESSIONS[-2], list(KINDS), GROUP_NAMES, {"sketch_size": 8}))
    for fmt in ("latex", "python", "graphml", "dot", "json"):
        assert main(["export", str(path), "--format", fmt, "--out", str(tmp_path / f"out.{fmt}")]) == 0
    assert json.loads((tmp_path / "out.json").read_text())["expression"] == EXPRESSIONS[-2]
    assert "def proxy(" in (tmp_path / "out.python").read_text()
    assert main(["export", str(path), "--format", "png"]) == 0 and (tmp_path / "p.png").is_file()
    capsys.readouterr()
    (tmp_path / "bad.json").write_text(
        json.dumps(
            {
                "format": "autoprox-proxy",
                "version": 1,
                "expression": "agg_sum_all(__import__(W))",
                "statistics": {"names": ["W"], "groups": ["all"]},
            }
        )
    )
    assert main(["export", str(tmp_path / "bad.json"), "--format", "latex"]) == 2
    assert "unknown primitive '__import__'" in capsys.readouterr().err
