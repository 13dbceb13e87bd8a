"""Ablations on what a proxy generalises to: JCM vs single-data-set fitness, and transfer across spaces.

Each run searches on a subset of the six ViT-Bench-101 tasks (search half of the architectures)
and its best proxy is scored on the held-out half of all six.

    python experiments/ablation_generalisation.py --cache DIR --iterations 800 --seed 0
"""

from __future__ import annotations

import argparse
import tempfile

from common import space_jcm, vitbench_tasks

from gp_proxy import DiscoveryConfig, Objective, discover, table, write_report

RUNS = {
    "JCM over all 6 tasks": lambda name: True,
    "c100 only (both spaces)": lambda name: "c100" in name,
    "flower only (both spaces)": lambda name: "flower" in name,
    "chaoyang only (both spaces)": lambda name: "chaoyang" in name,
    "AutoFormer only (3 data sets)": lambda name: name.startswith("autoformer/"),
    "PiT only (3 data sets)": lambda name: name.startswith("pit/"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True)
    parser.add_argument("--iterations", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/ablation_generalisation.md")
    parser.add_argument("--size-limit", type=int, default=12, help="largest program (nodes)")
    args = parser.parse_args()
    tasks = vitbench_tasks(args.cache)
    everything = Objective(tasks)
    names = [t.name for t in tasks]
    rows = []
    for label, keep in RUNS.items():
        config = DiscoveryConfig(iterations=args.iterations, seed=args.seed, size_limit=args.size_limit)
        with tempfile.TemporaryDirectory() as out:
            result = discover([t for t in tasks if keep(t.name)], config, out, progress=False)
        rep = everything.report(result.halloffame[0])
        cells = " | ".join(f"{rep.test[n]['kendall']:.3f}" for n in names)
        rows.append(
            f"| {label} | {cells} | {space_jcm(rep, 'autoformer'):.3f} | {space_jcm(rep, 'pit'):.3f} | "
            f"{rep.jcm_test:.3f} | `{result.halloffame[0]}` |"
        )
        print(rows[-1], flush=True)
    write_report(
        args.out,
        "What discovered proxies generalise to",
        f"python experiments/ablation_generalisation.py --cache {args.cache} --iterations {args.iterations} "
        f"--seed {args.seed} --size-limit {args.size_limit}",
        "Each row searches on the tasks it names (search half of each space, split seed 0) and reports Kendall "
        "tau on the held-out half of every task. Tasks not searched on measure transfer: to other data sets "
        "(single-data-set rows) or to the other space (single-space rows).",
        table(["searched on", *(f"held-out {n}" for n in names), "AutoFormer JCM", "PiT JCM", "all 6", "proxy"], rows),
    )


if __name__ == "__main__":
    main()
