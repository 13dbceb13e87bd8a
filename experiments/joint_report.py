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

from gp_proxy import kendall, write_text
from vit_space import (
    BatchSpec,
    Benchmark,
    ProbeSpec,
    Ranking,
    StatsCache,
    bench_fields,
    load_bench,
    rank,
    resolve_proxy,
)


def training_jcm(rankings: list[Ranking], benches: list[Benchmark]) -> float:
    """Mean Kendall tau over every field on the training half of each benchmark (split seed 0)."""
    taus = [
        kendall(r.scores[f][train], b.accuracy(f)[train])
        for r, b in zip(rankings, benches)
        for f in r.whole
        for train in [b.split(0.5, 0)[0]]
    ]
    return float(np.mean(taus))


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
    lines = [
        f"# {args.title}",
        "",
        f"Command: `python experiments/joint_report.py --cache CACHE --bench {args.bench} --proxy {args.proxy} "
        f"--title {args.title!r} --out {args.out}`",
        "",
        "Held-out JCM per benchmark (mean Kendall tau over its fields on the half of its architectures "
        "that discovery never saw; split seed 0) and the mean over all held-out fields. Programs are "
        "measured on each benchmark's own batches (`auto` source: scikit-image crops for ViT-Bench-101, "
        "the training images for af-tiny) at its networks' input size. Sorted by the mean Kendall tau over "
        "all fields on the training halves (the architectures discovery saw), never by a held-out column.",
        "",
        "| proxy | " + " | ".join(b.name for b in benches) + " | all fields | all fields, training half |",
        "|---|" + "---|" * (len(benches) + 2),
    ]
    rows = []
    for name in args.proxy.split(","):
        proxy = resolve_proxy(name)
        if not isinstance(proxy, str):  # a program: measured on each benchmark's own batches
            proxy = replace(proxy, probe={**proxy.probe, "source": "auto"})
        rankings = [
            rank(proxy, b, bench_fields(b, []), spec, cache, compute_missing=False, progress=False) for b in benches
        ]
        taus = [c["kendall"] for r in rankings for c in r.heldout.values()]
        label = name if "/" not in name else f"`{proxy.expression}` ({name.split('/')[-4]}/{name.split('/')[-3]})"
        train = training_jcm(rankings, benches)
        rows.append(
            (
                train,
                f"| {label} | "
                + " | ".join(f"{r.jcm_heldout:.3f}" for r in rankings)
                + f" | {np.mean(taus):.3f} | {train:.3f} |",
            )
        )
    lines += [row for _, row in sorted(rows, key=lambda r: -r[0] if np.isfinite(r[0]) else np.inf)]
    write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
