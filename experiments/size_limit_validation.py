"""Choose discovery's program size limit on validation data inside the training half.

The held-out half of each ViT-Bench-101 space (split seed 0, the half every report keeps
unseen) is not used at all: the training half is split again in two (seed `--validation-seed`),
discovery fits the first half for each size limit and search seed, and the proxy each run gives
(its best by training JCM) is scored on the second half. The size limit with the highest mean
validation JCM over the seeds is the choice; only then is it run on the whole training half.

    python experiments/size_limit_validation.py --cache DIR --sizes 8,12,20,30 --seeds 0,1,2 \
        --iterations 1000 --runs runs/size_limit --out results/size_limit_validation.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import on_validation, space_jcm, vitbench_tasks

from gp_proxy import DiscoveryConfig, Objective, discover, load_proxy, table, write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True)
    parser.add_argument("--sizes", default="8,12,20,30")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--validation-seed", type=int, default=1)
    parser.add_argument("--runs", default="runs/size_limit")
    parser.add_argument("--out", default="results/size_limit_validation.md")
    args = parser.parse_args()
    tasks = on_validation(vitbench_tasks(args.cache), args.validation_seed)
    sizes, seeds = [int(s) for s in args.sizes.split(",")], [int(s) for s in args.seeds.split(",")]
    rows, validation = [], {}
    for size in sizes:
        for seed in seeds:
            out = Path(args.runs) / f"size{size}" / f"seed{seed}"
            config = DiscoveryConfig(iterations=args.iterations, seed=seed, size_limit=size)
            result = discover(tasks, config, out, resume=(out / "checkpoint.json").exists(), progress=False)
            best = load_proxy(result.saved[0])
            rep = Objective(tasks).report(best.tree())
            validation.setdefault(size, []).append(rep.jcm_test)
            rows.append(
                f"| {size} | {seed} | {rep.jcm_train:.3f} | {rep.jcm_test:.3f} | "
                f"{space_jcm(rep, 'autoformer'):.3f} | {space_jcm(rep, 'pit'):.3f} | "
                f"{len(best.tree())} | `{best.expression}` |"
            )
            print(rows[-1], flush=True)
    means = {size: float(np.mean(v)) for size, v in validation.items()}
    chosen = max(sizes, key=lambda s: (means[s], -s))
    summary = [
        f"| {size} | {means[size]:.3f} | {np.std(validation[size]):.3f} | "
        + ("chosen" if size == chosen else "")
        + " |"
        for size in sizes
    ]
    fit, val = len(tasks[0].train), len(tasks[0].test)
    write_report(
        args.out,
        "Discovery's size limit, chosen on validation data",
        f"python experiments/size_limit_validation.py --cache {args.cache} --sizes {args.sizes} --seeds {args.seeds} "
        f"--iterations {args.iterations} --validation-seed {args.validation_seed} --runs {args.runs} --out {args.out}",
        f"The held-out half of each space (split seed 0) is not touched. Its training half (50 architectures per "
        f"space) is split again (seed {args.validation_seed}): discovery fits {fit} architectures per space (6 tasks: "
        f"AutoFormer and PiT x c100/flower/chaoyang KD) and each run's best proxy by training JCM is scored on the "
        f"other {val} (validation). {args.iterations} elitism-preserve steps, population 50. The size limit with the "
        "highest mean validation JCM over the search seeds is chosen (ties: the smaller limit).",
        table(["size limit", "validation JCM, mean over seeds", "std", ""], summary),
        table(
            [
                "size limit",
                "seed",
                "JCM fit",
                "JCM validation",
                "validation AutoFormer",
                "validation PiT",
                "nodes",
                "proxy",
            ],
            rows,
        ),
    )
    print(f"chosen size limit: {chosen}")


if __name__ == "__main__":
    main()
