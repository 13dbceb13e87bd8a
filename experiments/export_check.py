"""Exported proxies on the whole benchmark: the generated Python module against the engine.

For each saved proxy: export it as a standalone module, import that module, score every
ViT-Bench-101 architecture on every KD data set's cached statistics with it and with the
engine, and report the largest difference; also the simplified form and its LaTeX.

    python experiments/export_check.py --cache DIR --proxies results/discovery/*/proxies/rank01.json
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np

from gp_proxy import Evaluator, load_proxy, simplify, table, to_latex, to_python, write_report
from vit_space import StatsCache, latex_names, saved_proxy_bundles


def import_module(source: str, name: str):
    path = Path(tempfile.mkdtemp()) / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True)
    parser.add_argument("--proxies", nargs="+", required=True)
    parser.add_argument("--bench", default="autoformer,pit")
    parser.add_argument("--out", default="results/export_check.md")
    args = parser.parse_args()
    rows, formulas = [], []
    for i, path in enumerate(args.proxies):
        proxy = load_proxy(path)
        tree = proxy.tree()
        bundles = saved_proxy_bundles(proxy, args.bench.split(","), StatsCache(args.cache), progress=False)
        module = import_module(to_python(tree, proxy.groups, proxy.probe), f"exported_{i}")
        worst, networks = 0.0, 0
        evaluators = []
        for bundle in bundles:
            engine = Evaluator(bundle, memo_bytes=1 << 28)
            evaluators.append(engine)
            exported = module.proxy(bundle.tensors, bundle.numel, bundle.groups, bundle.mask).numpy()
            expected = engine(tree)
            worst = max(worst, float(np.nanmax(np.abs(exported - expected) / np.maximum(np.abs(expected), 1e-300))))
            networks += bundle.num_archs
        simple = simplify(tree, evaluators)
        rows.append(
            f"| `{path}` | {networks} | {worst:.1e} | `{simple.expression}` | {len(tree)} -> {len(simple.tree)} |"
        )
        formulas.append(f"- `{simple.expression}`:\n\n  $${to_latex(simple.tree, latex_names(proxy.names))}$$")
    write_report(
        args.out,
        "Exported proxies against the engine on ViT-Bench-101",
        f"python experiments/export_check.py --cache {args.cache} --bench {args.bench} "
        f"--proxies {' '.join(args.proxies)}",
        "Each proxy is exported as a standalone module (`autoprox export --format python`), imported, and run on "
        "the cached statistics of every architecture of both spaces on each KD data set (one network = one "
        "architecture on one data set's batch); 'largest relative difference' compares it with the engine. "
        "The simplified form is checked on the same statistics (`autoprox simplify`).",
        table(["proxy file", "networks scored", "largest relative difference", "simplified", "size"], rows),
        "LaTeX of the simplified forms (`autoprox export --format latex`):\n\n" + "\n".join(formulas),
    )


if __name__ == "__main__":
    main()
