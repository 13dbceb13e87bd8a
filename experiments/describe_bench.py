"""Describe a built benchmark: recipe, command, accuracy spread, seed-to-seed noise, cost.

    python experiments/describe_bench.py af-tiny --out results/af-tiny_benchmark.md

Noise is Kendall tau between two seeds' accuracy rankings of the same architectures; the
"seed-mean reliability" is the Spearman-Brown estimate of how well the mean over all seeds
would rank against a fresh mean over as many seeds (from the mean pairwise rank correlation).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

from gp_proxy import write_text
from vit_space import load_bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    bench = load_bench(args.bench)
    payload = json.loads(Path(bench.source).read_text())
    records, seeds = payload["records"], payload["seeds"]
    params = np.array([r["params"] for r in records], dtype=float)
    names = list(payload["datasets"])
    lines = [
        f"# Benchmark `{bench.name}`: {len(bench)} `{bench.space}` architectures",
        "",
        f"Built with: `{payload['command']}`",
        "",
        f"Recipe: `{json.dumps(payload['recipe'])}`; seeds {seeds}.",
        "",
        f"Parameters (10 classes): {params.min():.0f} to {params.max():.0f} (median {np.median(params):.0f}).",
        "",
        "| data set | images (train / test) | mean | std | min | max | tau vs params | seed-to-seed tau "
        "(mean over pairs) | mean abs diff between seeds (points) | seed-mean reliability (Spearman) | "
        "train s per run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        info, acc = payload["datasets"][name], bench.accuracy(name, "base")
        noise = payload["noise"][name]
        per_seed = np.array([[r[f"{name}_base_seeds"][str(s)] for s in seeds] for r in records])
        rho = np.mean(
            [spearmanr(per_seed[:, i], per_seed[:, j])[0] for i in range(len(seeds)) for j in range(i + 1, len(seeds))]
        )
        k = len(seeds)
        reliability = k * rho / (1 + (k - 1) * rho)
        seconds = np.array([r[f"{name}_seconds"] for r in records]) / len(seeds)
        lines.append(
            f"| {name} | {info['train_images']} / {info['test_images']} | {acc.mean():.2f} | {acc.std():.2f} "
            f"| {acc.min():.2f} | {acc.max():.2f} | {kendalltau(params, acc)[0]:.3f} | {noise['kendall']:.3f} "
            f"| {noise['mean_abs_diff']:.2f} | {reliability:.3f} | {seconds.mean():.1f} |"
        )
    lines += ["", "Seed pairs:", ""]
    lines += [
        f"- {name} seeds {p['seeds']}: tau {p['kendall']:.3f}, mean abs diff {p['mean_abs_diff']:.2f} points "
        f"(n={p['n']})"
        for name in names
        for p in payload["noise"][name]["pairs"]
    ]
    total = sum(r[f"{n}_seconds"] for r in records for n in names)
    lines += [
        "",
        f"Total training time: {total / 3600:.2f} CPU-hours on one torch thread per run "
        "(two runs in parallel on the 2-core machine).",
    ]
    write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
