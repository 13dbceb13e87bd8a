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

Last, what counting the architecture can reach: a proxy that counts weights (depth x width,
parameter count, the discovered `agg_sum_qkv(fro(sign(W)))`) is a product of powers of the
architecture's description (scalars, and lists summed). The script fits such a monomial on the
training half, choosing its exponents (a unit direction in log space: every subset of the
features with equal exponents, and `--directions` seeded random ones) by training mean Kendall
tau, and reports it held out; and it shows, per task, the best single feature on the training half.

    python experiments/ceiling.py --out results/ceiling.md
"""

from __future__ import annotations

import argparse
from itertools import combinations

import numpy as np
from common import SPACES

from gp_proxy import kendall, mean_rank, table, write_report
from vit_space import field_name, get_space, load_bench


def encoding(archs: list[dict]) -> tuple[list[str], np.ndarray]:
    """Names and (n_archs, n_features) log values of an architecture description: each scalar, and each
    list summed (``sum_<key>``)."""
    names = [key if np.isscalar(value) else f"sum_{key}" for key, value in archs[0].items()]
    values = [[float(np.sum(a[key])) for key in archs[0]] for a in archs]
    return names, np.log(np.array(values, dtype=np.float64))


def fitted_monomial(
    features: np.ndarray, tasks: list[np.ndarray], train: np.ndarray, directions: int, seed: int
) -> tuple[np.ndarray, float]:
    """The unit exponent vector w (over log features) whose score ``features @ w`` has the highest mean
    Kendall tau over `tasks` on `train`: candidates are every subset of features with equal exponents
    and `directions` seeded random unit vectors. Returns (w, training mean tau)."""
    width = features.shape[1]
    subsets = [
        np.isin(np.arange(width), c).astype(float) for k in range(1, width + 1) for c in combinations(range(width), k)
    ]
    random = np.random.default_rng(seed).normal(size=(directions, width))
    candidates = [w / np.linalg.norm(w) for w in [*subsets, *random]]
    fits = [np.mean([kendall(features[train] @ w, t[train]) for t in tasks]) for w in candidates]
    best = int(np.argmax(fits))
    return candidates[best], fits[best]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--directions", type=int, default=3000, help="random exponent vectors tried (default 3000)")
    parser.add_argument("--out", default="results/ceiling.md")
    args = parser.parse_args()
    rows, pairs, bounds, counts, singles = [], [], [], [], []
    for name in SPACES:
        bench, space = load_bench(name), get_space(name)
        train, held_out = bench.split(0.5, args.split_seed)
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
        features, values = encoding(bench.archs)
        w, fit = fitted_monomial(values, list(kd.values()), train, args.directions, args.split_seed)
        monomial = " x ".join(f"{f}^{e:.2f}" for f, e in zip(features, w) if abs(e) >= 0.005)
        held = np.mean([kendall(values[held_out] @ w, t[held_out]) for t in kd.values()])
        counts.append(f"| {name} | {monomial} | {fit:.3f} | {held:.3f} |")
        for dataset, accuracy in kd.items():
            taus = [kendall(values[train, j], accuracy[train]) for j in range(len(features))]
            j = int(np.argmax(np.abs(taus)))
            singles.append(f"| {name} | {dataset} | {features[j]} | {taus[j]:+.3f} |")
        names = list(kd)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                pairs.append(f"| {name} | {a} | {b} | {kendall(kd[a][held_out], kd[b][held_out]):.3f} |")
    write_report(
        args.out,
        "The ceiling of a task-blind ranking on ViT-Bench-101",
        f"python experiments/ceiling.py --split-seed {args.split_seed} --directions {args.directions} --out {args.out}",
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
        "What counting the architecture can reach: the product of powers of the architecture description with the "
        f"best training mean Kendall tau (every subset of features with equal exponents and {args.directions} seeded "
        "random exponent vectors, unit length), fitted on the training half and reported on the held-out half:",
        table(["space", "monomial", "training half", "held-out half"], counts),
        "The architecture feature that best ranks each task on the training half (largest |Kendall tau|):",
        table(["space", "task", "feature", "Kendall tau"], singles),
    )


if __name__ == "__main__":
    main()
