"""Held-out rank correlation of proxies across several benchmarks at once (generalisation report).

For each proxy: JCM (mean Kendall tau over a benchmark's fields) on the held-out half of
every benchmark (split seed 0, the half discovery never saw), and the mean over all fields.

    python experiments/joint_report.py --cache DIR --bench autoformer,pit,af-tiny \
        --proxy params,results/discovery_joint/seed0/proxies/rank01.json --out results/discovery_joint.md
"""
from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from gp_proxy.atomic import write_text
from vit_space.bench import load_bench
from vit_space.cache import ProbeSpec, StatsCache
from vit_space.data import BatchSpec
from vit_space.proxies import resolve_proxy
from vit_space.rank import bench_fields, rank


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True)
    parser.add_argument("--bench", default="autoformer,pit,af-tiny")
    parser.add_argument("--proxy", required=True, help="comma-separated names or PROXY.json files")
    parser.add_argument("--out", required=True)
    parser.add_argument("--title", default="Held-out rank correlation across benchmarks")
    args = parser.parse_args()
    benches = [load_bench(b) for b in args.bench.split(",")]
    spec, cache = ProbeSpec(BatchSpec("c100", image_size=None)), StatsCache(args.cache)
    lines = [f"# {args.title}", "",
             f"Command: `python experiments/joint_report.py --cache CACHE --bench {args.bench} --proxy {args.proxy} "
             f"--out {args.out}`", "",
             "Held-out JCM per benchmark (mean Kendall tau over its fields on the half of its architectures "
             "that discovery never saw; split seed 0) and the mean over all held-out fields. Programs are "
             "measured on each benchmark's own batches (`auto` source: scikit-image crops for ViT-Bench-101, "
             "the training images for af-tiny) at its networks' input size.", "",
             "| proxy | " + " | ".join(b.name for b in benches) + " | all fields |", "|---|" + "---|" * (len(benches) + 1)]
    for name in args.proxy.split(","):
        proxy = resolve_proxy(name)
        if not isinstance(proxy, str):  # a program: measured on each benchmark's own batches
            proxy = replace(proxy, probe={**proxy.probe, "source": "auto"})
        rankings = [rank(proxy, b, bench_fields(b, []), spec, cache, compute_missing=False, progress=False)
                    for b in benches]
        taus = [c["kendall"] for r in rankings for c in r.heldout.values()]
        label = name if "/" not in name else f"`{proxy.expression}` ({name.split('/')[-4]}/{name.split('/')[-3]})"
        lines.append(f"| {label} | " + " | ".join(f"{r.jcm_heldout:.3f}" for r in rankings)
                     + f" | {np.mean(taus):.3f} |")
    write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
