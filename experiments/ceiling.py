"""How far a task-blind ranking can go on ViT-Bench-101: the trained accuracies themselves as proxies.

A zero-cost proxy scores an architecture once, for every data set of a space. So no proxy can
beat the best single ranking for all of a space's tasks, and the tasks disagree. This script
measures, on the training and the held-out half of each space (split seed 0), how well
each KD task is ranked by rankings no zero-cost proxy could ever have:

* the other KD tasks' trained accuracies (their mean rank): a proxy that knew every other data
  set's trained result;
* the same data set's accuracy without distillation (`base`);
* parameter count, for reference.

It also finds the best any single ranking can do on a space's tasks: the order of the architectures
(without ties) with the highest mean Kendall tau-b over the tasks (Kemeny's consensus, an integer
programme over the pairs solved exactly by `scipy.optimize.milp`). Its tau is the ceiling of any proxy
that gives distinct scores; the mean rank of the tasks' accuracies (Borda) is shown beside it. Both
are oracles: they know the answers.

Last, what counting the architecture can reach: a proxy that counts weights (depth x width,
parameter count, the discovered `agg_sum_qkv(fro(sign(W)))`) is a product of powers of the
architecture's description (scalars, and lists summed). The script fits such a monomial on the
training half, choosing its exponents (a unit direction in log space: every vector of exponents
in {-1, -1/2, 0, 1/2, 1}, and `--directions` seeded random ones) by training mean Kendall
tau, and reports it held out: once for all of a space's tasks, and once for each task alone (what a
proxy per data set could reach by counting); beside it, the best of the same candidates chosen on the
held-out half itself, an oracle that bounds every count of the grid and the random directions. A
last table repeats the joint figures on `--other-splits` seeded splits: 50 held-out architectures
are few, and the split moves the held-out figures by a few hundredths.

    python experiments/ceiling.py --out results/ceiling.md
"""

from __future__ import annotations

import argparse
from itertools import combinations, product

import numpy as np
from common import SPACES
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

from gp_proxy import kendall, mean_rank, table, write_report
from vit_space import field_name, get_space, load_bench


def encoding(archs: list[dict]) -> tuple[list[str], np.ndarray]:
    """Names and (n_archs, n_features) log values of an architecture description: each scalar, and each
    list summed (``sum_<key>``)."""
    names = [key if np.isscalar(value) else f"sum_{key}" for key, value in archs[0].items()]
    values = [[float(np.sum(a[key])) for key in archs[0]] for a in archs]
    return names, np.log(np.array(values, dtype=np.float64))


def best_ranking(tasks: list[np.ndarray]) -> np.ndarray:
    """(A,) ranks (0 = lowest) of the order of A architectures without ties with the highest mean Kendall
    tau-b over `tasks` ((A,) accuracies each). A binary x_ij per pair i < j (1: i above j) gains
    c_ij = mean_t sign(t_i - t_j) / sqrt(n0 (n0 - ties_t)) when 1 and loses it when 0 (tau-b's
    denominator for a ranking without ties, n0 = A (A - 1) / 2); every triple is kept transitive."""
    count = len(tasks[0])
    pairs = np.array(list(combinations(range(count), 2)))
    gain = np.zeros(len(pairs))
    for t in tasks:
        _, sizes = np.unique(t, return_counts=True)
        n0, ties = count * (count - 1) / 2, float(np.sum(sizes * (sizes - 1) / 2))
        gain += np.sign(t[pairs[:, 0]] - t[pairs[:, 1]]) / np.sqrt(n0 * (n0 - ties)) / len(tasks)
    column = {(int(i), int(j)): k for k, (i, j) in enumerate(pairs)}
    triples = list(combinations(range(count), 3))
    rows = np.repeat(np.arange(len(triples)), 3)
    cols = [column[p] for i, j, k in triples for p in ((i, j), (j, k), (i, k))]
    signs = np.tile([1.0, 1.0, -1.0], len(triples))  # 0 <= x_ij + x_jk - x_ik <= 1
    transitive = coo_matrix((signs, (rows, cols)), shape=(len(triples), len(pairs)))
    result = milp(-gain, constraints=LinearConstraint(transitive, 0, 1), integrality=1, bounds=Bounds(0, 1))
    if not result.success:
        raise RuntimeError(f"best_ranking: the integer programme over {count} architectures failed: {result.message}")
    above = np.round(result.x).astype(bool)
    return np.bincount(np.where(above, pairs[:, 0], pairs[:, 1]), minlength=count)  # pairs won = rank


def monomial(features: list[str], w: np.ndarray) -> str:
    """An exponent vector as text, e.g. "hidden_dim^0.45 x depth^0.89" (exponents below 0.005 left out)."""
    return " x ".join(f"{f}^{e:.2f}" for f, e in zip(features, w) if abs(e) >= 0.005)


def fitted_monomial(
    features: np.ndarray, tasks: list[np.ndarray], train: np.ndarray, directions: int, seed: int
) -> tuple[np.ndarray, float]:
    """The unit exponent vector w (over log features) whose score ``features @ w`` has the highest mean
    Kendall tau over `tasks` on `train`: candidates are every vector of exponents in {-1, -1/2, 0, 1/2, 1}
    (as depth x sqrt(width)) and `directions` seeded random unit vectors. Returns (w, training mean tau)."""
    width = features.shape[1]
    steps = [w / np.linalg.norm(w) for w in product((-1, -0.5, 0, 0.5, 1), repeat=width) if any(w)]
    grid = np.unique(np.round(steps, 12), axis=0)  # (1, 1) and (1/2, 1/2) are one direction
    random = np.random.default_rng(seed).normal(size=(directions, width))
    candidates = [*grid, *(w / np.linalg.norm(w) for w in random)]
    fits = [np.mean([kendall(features[train] @ w, t[train]) for t in tasks]) for w in candidates]
    best = int(np.argmax(fits))
    return candidates[best], fits[best]


def single_rankings(params: np.ndarray, accuracies: list[np.ndarray]) -> list[float]:
    """Mean Kendall tau over `accuracies` (one (A,) array per task) of parameter count, of the mean rank of
    the accuracies (Borda) and of `best_ranking` (Kemeny)."""
    rankings = (params, mean_rank(accuracies), best_ranking(accuracies))
    return [float(np.mean([kendall(x, a) for a in accuracies])) for x in rankings]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--directions", type=int, default=3000, help="random exponent vectors tried (default 3000)")
    parser.add_argument("--other-splits", default="1,2,3,4", help="split seeds of the spread table ('' for none)")
    parser.add_argument("--out", default="results/ceiling.md")
    args = parser.parse_args()
    other_splits = [int(s) for s in args.other_splits.split(",") if s]
    rows, pairs, bounds, counts, splits = [], [], [], [], []
    for name in SPACES:
        bench, space = load_bench(name), get_space(name)
        train, held_out = bench.split(0.5, args.split_seed)
        params = np.array([space.num_params(a, 100) for a in bench.archs], dtype=np.float64)
        kd = {d: bench.accuracy(d, "kd") for d in bench.datasets("kd")}
        means = {}
        for part, index in (("training half", train), ("held-out half", held_out)):
            for dataset, accuracy in kd.items():
                others = mean_rank([kd[o][index] for o in kd if o != dataset])
                base = bench.accuracy(dataset, "base") if field_name(dataset, "base") in bench.fields else None
                cells = [
                    kendall(others, accuracy[index]),
                    kendall(base[index], accuracy[index]) if base is not None else float("nan"),
                    kendall(params[index], accuracy[index]),
                ]
                rows.append(f"| {name} | {part} | {dataset} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
            means[part] = single_rankings(params[index], [kd[d][index] for d in kd])
            bounds.append(f"| {name} | {part} | " + " | ".join(f"{m:.3f}" for m in means[part]) + " |")
        features, values = encoding(bench.archs)
        for fitted, group in [("all three", list(kd.values())), *[(d, [a]) for d, a in kd.items()]]:
            w, fit = fitted_monomial(values, group, train, args.directions, args.split_seed)
            held = np.mean([kendall(values[held_out] @ w, a[held_out]) for a in group])
            _, oracle = fitted_monomial(values, group, held_out, args.directions, args.split_seed)
            counts.append(f"| {name} | {fitted} | {monomial(features, w)} | {fit:.3f} | {held:.3f} | {oracle:.3f} |")
            if fitted == "all three":
                spread = [[*means["held-out half"], held, oracle]]  # this split's row of the spread table
        for seed in other_splits:  # how much the held-out figures move with the split
            fit_on, held_part = bench.split(0.5, seed)
            w, _ = fitted_monomial(values, list(kd.values()), fit_on, args.directions, seed)
            _, oracle = fitted_monomial(values, list(kd.values()), held_part, args.directions, seed)
            fit_held = np.mean([kendall(values[held_part] @ w, a[held_part]) for a in kd.values()])
            spread.append([*single_rankings(params[held_part], [a[held_part] for a in kd.values()]), fit_held, oracle])
        for seed, cells in zip([args.split_seed, *other_splits], spread):
            splits.append(f"| {name} | {seed} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
        splits.append(f"| {name} | mean | " + " | ".join(f"{c:.3f}" for c in np.mean(spread, axis=0)) + " |")
        names = list(kd)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                pairs.append(f"| {name} | {a} | {b} | {kendall(kd[a][held_out], kd[b][held_out]):.3f} |")
    write_report(
        args.out,
        "The ceiling of a task-blind ranking on ViT-Bench-101",
        f"python experiments/ceiling.py --split-seed {args.split_seed} --directions {args.directions} "
        f"--other-splits {args.other_splits} --out {args.out}",
        "Kendall tau of each KD task's accuracy against rankings no zero-cost proxy has: the mean rank of the "
        "space's other KD tasks' trained accuracies, the same data set's trained accuracy without distillation "
        "(base), and parameter count (100 classes). Held-out half = the 50 architectures per space every report "
        f"keeps unseen (split seed {args.split_seed}).",
        table(["space", "architectures", "task", "other tasks' accuracy", "base accuracy", "params"], rows),
        "The best a single ranking can reach (mean Kendall tau over a space's three KD tasks): parameter count, the "
        "mean rank of the tasks' own accuracies (Borda) and the best order without ties (Kemeny, exact); both "
        "oracles know the accuracies of exactly these architectures:",
        table(["space", "architectures", "params", "Borda oracle", "best single ranking"], bounds),
        "Agreement between the tasks themselves (Kendall tau between two data sets' KD accuracies, held-out half):",
        table(["space", "task", "task", "Kendall tau"], pairs),
        "What counting the architecture can reach: the product of powers of the architecture description with the "
        "best training mean Kendall tau (every vector of exponents in {-1, -1/2, 0, 1/2, 1} and "
        f"{args.directions} seeded random exponent vectors, unit length), fitted on the training half, for all "
        "of a space's tasks at once and for each task alone, and reported on the held-out half; last, the best "
        "count among the same candidates chosen on the held-out half itself (an oracle: no count does better there):",
        table(["space", "tasks", "monomial", "training half", "held-out half", "best count held out"], counts),
        "How much these held-out figures move with the split: for the split above and other seeded 50/50 splits, "
        "the held-out mean Kendall tau over a space's three tasks of parameter count, Borda, the best single ranking, "
        "the count fitted on that split's training half (all three tasks) and the best count on the held-out half "
        "itself (an oracle):",
        table(
            ["space", "split seed", "params", "Borda oracle", "best single ranking", "fitted count", "best count"],
            splits,
        ),
    )


if __name__ == "__main__":
    main()
