"""How far a task-blind ranking can go on ViT-Bench-101: the trained accuracies themselves as proxies.

A zero-cost proxy scores an architecture once, for every data set of a space. So no proxy can
beat the best single ranking for all of a space's tasks, and the tasks disagree. This script
measures, on the held-out half (split seed 0) and on all 100 architectures per space, how well
each KD task is ranked by rankings no zero-cost proxy could ever have:

* the other KD tasks' trained accuracies (their mean rank): a proxy that knew every other data
  set's trained result;
* the same data set's accuracy without distillation (`base`);
* parameter count, for reference.

It also bounds the best any single ranking r can do on a space's tasks t_1..t_n. Kendall's
distance d = (1 - tau) / 2 (the share of discordant pairs) is a metric, so for every pair of
tasks d(r, a) + d(r, b) >= d(a, b); summed over the pairs, mean_t tau(r, t) <= 1 - 2 S / (n (n - 1))
with S the sum of the pairwise task distances (exact for rankings without ties). The mean rank
of all the space's tasks' accuracies (Borda, an oracle that knows the answers) shows how close a
real ranking gets to that bound.

    python experiments/ceiling.py --out results/ceiling.md
"""

from __future__ import annotations

import argparse

import numpy as np
from common import SPACES

from gp_proxy import kendall, mean_rank, table, write_report
from vit_space import field_name, get_space, load_bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--out", default="results/ceiling.md")
    args = parser.parse_args()
    rows, pairs, bounds = [], [], []
    for name in SPACES:
        bench, space = load_bench(name), get_space(name)
        held_out = bench.split(0.5, args.split_seed)[1]
        params = np.array([space.num_params(a, 100) for a in bench.archs], dtype=np.float64)
        kd = {d: bench.accuracy(d, "kd") for d in bench.datasets("kd")}
        for part, index in (("held-out half", held_out), ("all", np.arange(len(bench)))):
            for dataset, accuracy in kd.items():
                others = mean_rank([kd[o][index] for o in kd if o != dataset])
                base = bench.accuracy(dataset, "base") if field_name(dataset, "base") in bench.fields else None
                cells = [
                    kendall(others, accuracy[index]),
                    kendall(base[index], accuracy[index]) if base is not None else float("nan"),
                    kendall(params[index], accuracy[index]),
                ]
                rows.append(f"| {name} | {part} | {dataset} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
            n, taus = (
                len(kd),
                [kendall(kd[a][index], kd[b][index]) for i, a in enumerate(kd) for b in list(kd)[i + 1 :]],
            )
            bound = 1 - 2 * sum((1 - t) / 2 for t in taus) / (n * (n - 1))
            borda = mean_rank([kd[d][index] for d in kd])
            means = [np.mean([kendall(x, kd[d][index]) for d in kd]) for x in (params[index], borda)]
            bounds.append(f"| {name} | {part} | {means[0]:.3f} | {means[1]:.3f} | {bound:.3f} |")
        names = list(kd)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                pairs.append(f"| {name} | {a} | {b} | {kendall(kd[a][held_out], kd[b][held_out]):.3f} |")
    write_report(
        args.out,
        "The ceiling of a task-blind ranking on ViT-Bench-101",
        f"python experiments/ceiling.py --split-seed {args.split_seed} --out {args.out}",
        "Kendall tau of each KD task's accuracy against rankings no zero-cost proxy has: the mean rank of the "
        "space's other KD tasks' trained accuracies, the same data set's trained accuracy without distillation "
        "(base), and parameter count (100 classes). Held-out half = the 50 architectures per space every report "
        f"keeps unseen (split seed {args.split_seed}).",
        table(["space", "architectures", "task", "other tasks' accuracy", "base accuracy", "params"], rows),
        "The best a single ranking can reach (mean Kendall tau over a space's three KD tasks): parameter count, the "
        "Borda ranking of the tasks' own accuracies (an oracle), and the upper bound from the tasks' disagreement:",
        table(["space", "architectures", "params", "Borda oracle", "upper bound"], bounds),
        "Agreement between the tasks themselves (Kendall tau between two data sets' KD accuracies, held-out half):",
        table(["space", "task", "task", "Kendall tau"], pairs),
    )


if __name__ == "__main__":
    main()
