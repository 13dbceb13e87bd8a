"""Retrain the shipped benchmark's quickest runs from its recorded recipe and compare.

For the `--runs` quickest runs of `--dataset` in the benchmark's journal (its recorded seconds),
train the same architecture with the file's recipe and the run's seed on one torch thread, and
report the recorded and the new top-1 (% of the test split) and final training loss (mean of the
last 10% of steps) side by side. A retrain on another machine or torch build is not bit-equal:
this measures how far from the file it lands.

    python benchmarks/retrain_check.py --runs 6 --out results/retrain_check.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from gp_proxy.markdown import table, write_report
from vit_space.bench.benchmark import load_bench
from vit_space.bench.build import journal_path, read_journal
from vit_space.bench.training import Recipe, train
from vit_space.data.images import load_images
from vit_space.spaces import get_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", default="af-tiny")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--runs", type=int, default=6, help="how many of the quickest recorded runs to retrain")
    parser.add_argument("--out", default="results/retrain_check.md")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")
    torch.set_num_threads(1)
    bench = load_bench(args.bench)
    payload = json.loads(Path(bench.source).read_text(encoding="utf-8"))
    if args.dataset not in payload["datasets"]:
        parser.error(
            f"--dataset must be one of {', '.join(payload['datasets'])} (the benchmark's), got {args.dataset!r}"
        )
    space, recipe, data = get_space(bench.space), Recipe.from_dict(payload["recipe"]), load_images(args.dataset)
    archs = {r["hash"]: r["arch"] for r in payload["records"]}
    _, runs = read_journal(journal_path(bench.source))
    quickest = sorted((r for r in runs if r["dataset"] == args.dataset), key=lambda r: r["seconds"])[: args.runs]
    rows, same = [], 0
    for run in quickest:
        result = train(space, archs[run["arch"]], data, recipe, seed=run["seed"])
        same += result.top1 == run["top1"]
        rows.append(
            f"| {run['arch']} | {run['seed']} | {run['top1']:.2f} | {result.top1:.2f} | "
            f"{result.top1 - run['top1']:+.2f} | {run['final_loss']:.6f} | {result.final_loss:.6f} | "
            f"{abs(result.final_loss / run['final_loss'] - 1):.1e} | {result.seconds:.1f} |"
        )
        print(rows[-1], flush=True)
    write_report(
        args.out,
        f"Retraining `{args.bench}`'s {len(quickest)} quickest {args.dataset} runs",
        f"python benchmarks/retrain_check.py --bench {args.bench} --dataset {args.dataset} --runs {args.runs} "
        f"--out {args.out}",
        f"torch {torch.__version__}, one thread; recipe from the benchmark file: `{json.dumps(payload['recipe'])}`.",
        table(
            [
                "arch",
                "seed",
                "top-1 recorded",
                "top-1 retrained",
                "difference (points)",
                "loss recorded",
                "loss retrained",
                "loss relative difference",
                "retrain s",
            ],
            rows,
        ),
        f"Same top-1 in {same} of {len(quickest)} runs ({data.test_images.shape[0]} test images: one image is "
        f"{100 / data.test_images.shape[0]:.2f} points).",
    )


if __name__ == "__main__":
    main()
