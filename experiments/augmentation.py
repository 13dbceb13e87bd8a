"""Why the shipped benchmark trains without augmentation: its recipe with and without random shifts.

Trains `--archs` architectures of the benchmark (seeded sample of its records) on `--dataset`
with the benchmark file's recipe at `--steps` steps, once with `shift` 0 and once with random
translations of up to `--shift` pixels, for each of `--seeds`, on one torch thread; reports
top-1 (% of the whole test split) side by side and the difference.

    python experiments/augmentation.py --archs 3 --steps 600 --out results/augmentation.md
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from dataclasses import replace
from pathlib import Path

import torch

from gp_proxy.markdown import table, write_report
from vit_space.bench.benchmark import load_bench
from vit_space.bench.training import Recipe, train
from vit_space.data.images import load_images
from vit_space.spaces import get_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", default="af-tiny")
    parser.add_argument("--dataset", default="fmnist")
    parser.add_argument("--archs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--shift", type=int, default=1, help="largest random translation, pixels")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--out", default="results/augmentation.md")
    args = parser.parse_args()
    if not all(s.strip().isdigit() for s in args.seeds.split(",")):
        parser.error(f"--seeds must be comma-separated integers >= 0, got {args.seeds!r}")
    if args.steps < 1 or args.shift < 1:
        parser.error(f"--steps and --shift must be at least 1, got {args.steps} and {args.shift}")
    torch.set_num_threads(1)
    bench = load_bench(args.bench)
    payload = json.loads(Path(bench.source).read_text(encoding="utf-8"))
    if not 1 <= args.archs <= len(payload["records"]):
        parser.error(
            f"--archs must be 1 to {len(payload['records'])} (the benchmark's architectures), got {args.archs}"
        )
    space, data = get_space(bench.space), load_images(args.dataset)
    plain = replace(Recipe.from_dict(payload["recipe"]), steps=args.steps, epochs=0.0, shift=0)
    shifted = replace(plain, shift=args.shift)
    seeds = [int(s) for s in args.seeds.split(",")]
    records = random.Random(args.sample_seed).sample(payload["records"], args.archs)
    rows, differences = [], []
    for record in records:
        for seed in seeds:
            without, with_shift = (train(space, record["arch"], data, r, seed=seed).top1 for r in (plain, shifted))
            differences.append(with_shift - without)
            rows.append(
                f"| {record['hash']} | {record['params']} | {seed} | {without:.2f} | {with_shift:.2f} | "
                f"{differences[-1]:+.2f} |"
            )
            print(rows[-1], flush=True)
    write_report(
        args.out,
        f"Random shifts of up to {args.shift} px on `{args.bench}`, {args.dataset}, {args.steps} steps",
        f"python experiments/augmentation.py --bench {args.bench} --dataset {args.dataset} --archs {args.archs} "
        f"--steps {args.steps} --shift {args.shift} --seeds {args.seeds} --sample-seed {args.sample_seed} "
        f"--out {args.out}",
        f"torch {torch.__version__}, one thread; the benchmark's recipe at {args.steps} steps: "
        f"`{json.dumps(plain.as_dict())}`, and the same with `shift` {args.shift}.",
        table(
            ["arch", "params", "seed", "top-1 without", f"top-1 with shift {args.shift}", "difference (points)"], rows
        ),
        f"Difference: mean {statistics.mean(differences):+.2f} points, from {min(differences):+.2f} to "
        f"{max(differences):+.2f}.",
    )


if __name__ == "__main__":
    main()
