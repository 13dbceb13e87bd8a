"""K-fold estimate of how well discovered proxies generalise to unseen ViT-Bench-101 architectures.

For each fold, the search sees the other k-1 folds of each space and its best proxy (by
training JCM) is scored on the fold it never saw, next to parameter count and depth x width on
the same fold.

    python experiments/kfold_discovery.py --cache DIR --folds 5 --iterations 800 \
        [--seed-proxies depth_width,weight_l2] --out results/kfold_discovery.md
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
from common import depth_width, on_fold, param_scores, space_jcm, vitbench_tasks

from gp_proxy import DiscoveryConfig, Objective, discover, report, table, write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--conditions", default="data")
    parser.add_argument("--out", default="results/kfold_discovery.md")
    parser.add_argument("--size-limit", type=int, default=12, help="largest program (nodes)")
    parser.add_argument("--seed-proxies", default="", help="known proxies in the first population")
    args = parser.parse_args()
    seeded = tuple(p for p in args.seed_proxies.split(",") if p)
    rows, scores = [], {"discovered": [], "params": [], "depth x width": []}
    everything = vitbench_tasks(args.cache, conditions=tuple(args.conditions.split(",")))  # loaded once
    for fold in range(args.folds):
        tasks = on_fold(everything, args.folds, fold)
        with tempfile.TemporaryDirectory() as out:
            config = DiscoveryConfig(
                iterations=args.iterations, seed=args.seed, size_limit=args.size_limit, seed_proxies=seeded
            )
            result = discover(tasks, config, out, progress=False)
        reports = {
            "discovered": Objective(tasks).report(result.halloffame[0]),
            "params": report({t.name: param_scores(t) for t in tasks}, tasks),
            "depth x width": report({t.name: depth_width(t) for t in tasks}, tasks),
        }
        for name, rep in reports.items():
            scores[name].append([space_jcm(rep, "autoformer"), space_jcm(rep, "pit"), rep.jcm_test])
        rows.append(
            f"| {fold} | "
            + " | ".join(" / ".join(f"{v:.3f}" for v in scores[name][-1]) for name in reports)
            + f" | `{result.halloffame[0]}` |"
        )
        print(rows[-1], flush=True)
    mean = {k: np.mean(v, axis=0) for k, v in scores.items()}
    std = {k: np.std(v, axis=0) for k, v in scores.items()}
    summary = [f"| {k} | " + " | ".join(f"{m:.3f} +- {s:.3f}" for m, s in zip(mean[k], std[k])) + " |" for k in scores]
    write_report(
        args.out,
        "K-fold generalisation of discovered proxies on ViT-Bench-101",
        f"python experiments/kfold_discovery.py --cache {args.cache} --folds {args.folds} "
        f"--iterations {args.iterations} --seed {args.seed} --conditions {args.conditions} "
        f"--size-limit {args.size_limit}"
        + (f" --seed-proxies {args.seed_proxies}" if seeded else "")
        + f" --out {args.out}",
        f"Each space is cut into {args.folds} seeded folds (20 architectures each); the search sees the other folds "
        "(80 architectures per space, 6 tasks) and the held-out numbers are mean Kendall tau over the fold's tasks."
        + (f" The first population holds {', '.join(seeded)}." if seeded else ""),
        table(["proxy", "held-out AutoFormer", "held-out PiT", "held-out both"], summary),
        "Per fold, held-out AutoFormer / PiT / both:",
        table(["fold", "discovered", "params", "depth x width", "discovered proxy"], rows),
    )


if __name__ == "__main__":
    main()
