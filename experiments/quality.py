"""Levers on proxy quality, judged on ViT-Bench-101 architectures the search never saw.

Each lever is a discovery setting (or a way to combine a run's proxies); each runs with three
search seeds on the same 50/50 split as `discover_vitbench.py`. A run's proxy is its `rank01`
(chosen by the run's own rule: training JCM, or validation JCM with a validation share); the
proxy a lever gives is the best of its runs by that rule (`gp_proxy.best_of_runs`). Held-out
numbers are reported with a paired bootstrap over the held-out architectures (1000 resamples)
of the Kendall-tau difference to parameter count, and on af-tiny (transfer, all 100 networks).

    python experiments/quality.py --cache DIR --seeds 0,1,2 --iterations 1000 --runs results/quality \
        --out results/quality.md
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from common import SPACES, param_scores, program_scores, space_tau, versus, vitbench_tasks

from gp_proxy import (
    KNOWN_PROXIES,
    DiscoveryConfig,
    Task,
    best_of_runs,
    discover,
    kendall,
    load_proxy,
    mean_rank,
    table,
    write_report,
)
from vit_space import BatchSpec, ProbeSpec, StatsCache, load_bench, tasks_for

Scorer = Callable[[Task], np.ndarray]

LEVERS = {
    "training JCM (default)": {},
    "validation share 0.3": {"validation": 0.3},
    "JCM = min over tasks": {"jcm": "min"},
    "JCM = mean - std": {"jcm": "mean-std"},
}
ENSEMBLE = "rank average of the default run's top 5"


def slug(lever: str) -> str:
    """A lever's run folder, e.g. "training-JCM", "JCM-eq-min-over-tasks"."""
    return lever.split(" (")[0].replace(" ", "-").replace("=", "eq")


def depth_width(task: Task) -> np.ndarray:
    """Depth x width per architecture: AutoFormer-style depth x embedding width; PiT, summed over its
    stages, stage depth x stage width (base width x the stage's heads)."""
    archs = load_bench(task.name.split("/")[0]).archs
    return np.array(
        [
            a["depth"] * a["hidden_dim"]
            if "hidden_dim" in a
            else sum(d * a["base_dim"] * h for d, h in zip(a["depth"], a["num_heads"]))
            for a in archs
        ],
        dtype=np.float64,
    )


def program(expression: str) -> Scorer:
    """Scores of a program on a task's statistics."""
    return partial(program_scores, expression)


def ensemble(expressions: list[str]) -> Scorer:
    """Mean rank (over the task's architectures) of several programs' scores (`gp_proxy.mean_rank`)."""
    return lambda task: mean_rank([program(e)(task) for e in expressions])


def row(name: str, what: str, score: Scorer, tasks: list[Task], tiny: list[Task], params: dict) -> str:
    scores = {t.name: score(t) for t in tasks}
    transfer = np.mean([kendall(score(t), t.accuracy) for t in tiny])  # all 100 networks: none was searched on
    return (
        f"| {name} | {what} | "
        + " | ".join(f"{space_tau(scores, tasks, s, 'train'):.3f}" for s in SPACES)
        + " | "
        + " | ".join(f"{space_tau(scores, tasks, s):.3f}" for s in SPACES)
        + " | "
        + " | ".join(versus(scores, params, tasks, s) for s in SPACES)
        + f" | {transfer:.3f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--size-limit", type=int, default=12)
    parser.add_argument("--runs", default="results/quality")
    parser.add_argument("--out", default="results/quality.md")
    parser.add_argument("--levers", default="all", help="comma-separated run folders of LEVERS (default: all)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = vitbench_tasks(args.cache)
    tiny = tasks_for(
        ["af-tiny"], None, ProbeSpec(BatchSpec("fmnist", image_size=None)), StatsCache(args.cache), test_fraction=0
    )
    params = {t.name: param_scores(t) for t in tasks}
    rows, per_seed = [], []
    chosen = [slug(lever) for lever in LEVERS] if args.levers == "all" else args.levers.split(",")
    unknown = sorted(set(chosen) - {slug(lever) for lever in LEVERS})
    if unknown:
        parser.error(f"--levers: unknown {unknown}; known: {', '.join(slug(lever) for lever in LEVERS)}")
    for lever, options in ((k, v) for k, v in LEVERS.items() if slug(k) in chosen):
        run_dirs = []
        for seed in seeds:
            out = Path(args.runs) / slug(lever) / f"seed{seed}"
            config = DiscoveryConfig(iterations=args.iterations, seed=seed, size_limit=args.size_limit, **options)
            discover(tasks, config, out, resume=(out / "checkpoint.json").exists(), progress=True)
            run_dirs.append(out)
            expression = load_proxy(out / "proxies" / "rank01.json").expression
            scores = {t.name: program(expression)(t) for t in tasks}
            per_seed.append(
                f"| {lever} | {seed} | `{expression}` | "
                + " | ".join(f"{space_tau(scores, tasks, s):.3f}" for s in SPACES)
                + " |"
            )
        run_dir, proxy = best_of_runs(run_dirs)
        rows.append(
            row(lever, f"`{proxy.expression}` ({run_dir.name})", program(proxy.expression), tasks, tiny, params)
        )
        if not options:
            top = [load_proxy(p).expression for p in sorted((run_dir / "proxies").glob("rank0[1-5].json"))]
            rows.append(row(ENSEMBLE, f"top 5 of {run_dir.name}", ensemble(top), tasks, tiny, params))
    rows.append(row("parameter count", "", param_scores, tasks, tiny, params))
    rows.append(row("depth x width", "", depth_width, tasks, tiny, params))
    rows.append(row("weight L2", "", program(KNOWN_PROXIES["weight_l2"].expression), tasks, tiny, params))
    write_report(
        args.out,
        "Proxy quality levers on ViT-Bench-101, held out",
        f"python experiments/quality.py --cache {args.cache} --seeds {args.seeds} --iterations {args.iterations} "
        f"--size-limit {args.size_limit} --runs {args.runs} --out {args.out} --levers {args.levers}",
        "Tasks: AutoFormer and PiT x c100/flower/chaoyang KD accuracies; each space split 50/50 (seed 0); the"
        " search sees the first half only. Statistics: skimage crops, batch 16, seed 0, sketch 32, condition "
        f"data. Each lever's proxy is the best of its {len(seeds)} runs by the run's own rule (training JCM, or "
        "validation JCM with a validation share); held-out numbers are reported, never used to choose. "
        "Columns: mean Kendall tau over a space's three tasks on the training half and on the held-out half; "
        "'vs params' = held-out difference to parameter count with the 95% interval of a paired bootstrap "
        "over the held-out architectures (1000 resamples, the same draw for all three tasks); af-tiny = mean "
        "Kendall tau over its two fields on all 100 networks (transfer: never searched on; its own training "
        "images as the batch). Rows in the order the levers are listed, then the baselines.",
        table(
            [
                "lever",
                "proxy",
                "train AutoFormer",
                "train PiT",
                "held-out AutoFormer",
                "held-out PiT",
                "vs params AutoFormer",
                "vs params PiT",
                "af-tiny",
            ],
            rows,
        ),
        "Every run's proxy (held-out mean Kendall tau per space):",
        table(["lever", "seed", "proxy", "held-out AutoFormer", "held-out PiT"], per_seed),
    )


if __name__ == "__main__":
    main()
