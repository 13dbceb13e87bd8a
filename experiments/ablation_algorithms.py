"""Ablation: elitism-preserve vs plain DEAP (mu + lambda) with crossover, at equal evaluations.

Five seeds each on the joint ViT-Bench-101 tasks (search half); best training JCM vs
evaluations is plotted, and each run's best proxy (chosen on training JCM) is scored on the
held-out half. Neither algorithm evaluates or admits a copy of a program already in its
population, so evaluations are programs really scored; the final population's diversity is
reported.

    python experiments/ablation_algorithms.py --cache DIR --evaluations 1000 --seeds 0,1,2,3,4 [--runs DIR]

With `--runs`, each run lives in DIR/ALGO-seedN and an interrupted ablation picks up where it
stopped (a finished run is only re-read, an unfinished one resumed to the same result).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from contextlib import nullcontext

import numpy as np
from common import space_jcm, vitbench_tasks

from gp_proxy import DiscoveryConfig, Objective, discover, table, write_report


def curve(logbook, grid: np.ndarray) -> np.ndarray:
    evals = np.array([r["evals"] for r in logbook])
    best = np.maximum.accumulate(np.array([r["best"] for r in logbook]))
    return np.array([best[evals <= g].max() if (evals <= g).any() else np.nan for g in grid])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True)
    parser.add_argument("--evaluations", type=int, default=1000)
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--population", type=int, default=50)
    parser.add_argument("--out", default="results/ablation_algorithms.md")
    parser.add_argument("--plot", default="results/ablation_algorithms.png")
    parser.add_argument("--runs", help="keep each run's discover folder here and resume them (default: temporary)")
    parser.add_argument("--size-limit", type=int, default=12, help="largest program (nodes)")
    args = parser.parse_args()
    tasks = vitbench_tasks(args.cache)
    objective = Objective(tasks)
    grid = np.linspace(args.population, args.evaluations, 40)
    marks = np.array([m for m in (250, 500, 750) if m < args.evaluations] + [args.evaluations])
    curves, at_marks, rows, load_start = {}, {}, [], _load()
    for algo in ("elitism", "mu+lambda"):
        for seed in [int(s) for s in args.seeds.split(",")]:
            config = DiscoveryConfig(
                algorithm=algo,
                iterations=10**6,
                max_evaluations=args.evaluations,
                population=args.population,
                lambda_=args.population,
                seed=seed,
                size_limit=args.size_limit,
                checkpoint_every=20,
            )
            with nullcontext(f"{args.runs}/{algo}-seed{seed}") if args.runs else tempfile.TemporaryDirectory() as out:
                result = discover(tasks, config, out, resume=bool(args.runs), progress=False)
            rep = objective.report(result.halloffame[0])
            curves.setdefault(algo, []).append(curve(result.logbook, grid))
            at_marks.setdefault(algo, []).append(curve(result.logbook, marks))
            last = result.logbook[-1]
            rows.append(
                f"| {algo} | {seed} | {result.evaluations} | {result.seconds:.0f} | {rep.jcm_train:.3f} | "
                f"{rep.jcm_test:.3f} | {space_jcm(rep, 'autoformer'):.3f} | {space_jcm(rep, 'pit'):.3f} | "
                f"{last['distinct']} / {last['jcms']} | `{result.halloffame[0]}` |"
            )
            print(rows[-1], flush=True)
    summary = []
    for algo, runs in at_marks.items():
        runs = np.array(runs)
        summary.append(f"| {algo} | " + " | ".join(f"{v.mean():.3f} +- {v.std():.3f}" for v in runs.T) + " |")
    _plot(grid, curves, args.plot)
    write_report(
        args.out,
        "Elitism-preserve vs (mu + lambda) at equal evaluations",
        f"python experiments/ablation_algorithms.py --cache {args.cache} --evaluations {args.evaluations} "
        f"--seeds {args.seeds} --population {args.population} --size-limit {args.size_limit}",
        f"Joint ViT-Bench-101 tasks (AutoFormer + PiT x 3 KD data sets), 50/50 split; population {args.population}; "
        f"programs of at most {args.size_limit} nodes; "
        "(mu + lambda): lambda = mu, cxpb = mutpb = 0.5, truncation selection; elitism-preserve: pool 50%, top-5, "
        "margin 0.01, 5 tries; both: a child already in the population is redrawn (up to 20 draws), never scored. "
        "Evaluations count programs really scored. "
        f"Plot: `{args.plot}`. Machine: {os.cpu_count()} cores, load average (1/5/15 min) {load_start} at the start "
        f"and {_load()} at the end.",
        "Best training JCM after a number of evaluations (mean +- std over seeds):",
        table(["algorithm", *(f"{m} evaluations" for m in marks)], summary),
        "Per run: search seconds; the best proxy is each run's highest training JCM; distinct = distinct programs / "
        "distinct training JCMs in the final population.",
        table(
            [
                "algorithm",
                "seed",
                "evaluations",
                "seconds",
                "JCM train",
                "JCM held-out",
                "held-out AutoFormer",
                "held-out PiT",
                "distinct",
                "best proxy",
            ],
            rows,
        ),
    )


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _plot(grid: np.ndarray, curves: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for (algo, runs), color in zip(curves.items(), ("tab:blue", "tab:orange")):
        for run in runs:
            ax.plot(grid, run, color=color, alpha=0.25)
        ax.plot(grid, np.nanmean(runs, axis=0), color=color, label=f"{algo} (mean of {len(runs)})")
    ax.set_xlabel("programs evaluated")
    ax.set_ylabel("best training JCM (mean Kendall tau)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
