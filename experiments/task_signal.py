"""Do the statistics rank one task better than counting the architecture? A search per ViT-Bench-101 task.

`ceiling.py` shows that no single ranking serves a space's tasks at once, and fits the best product
of powers of the architecture description (a count) for each task alone. This script asks whether,
with one task at a time so that the tasks' disagreement no longer binds, the probe's statistics
hold signal beyond such a count that generalises. For every (space, task) it runs discovery on
that task alone (training half, split seed 0 or `--split-seed`; random start, so the search is not
handed a size count), `--seeds` runs each, and gives the proxy of the run with the best training tau
(`gp_proxy.best_of_runs`), scored on the held-out half next to the task's own count (the monomial
`ceiling.fitted_monomial` fits on the same training half), depth x width and parameter count, with
the paired bootstrap interval (1000 resamples) of the held-out difference between search and count,
per task and over a space's three tasks.

    python experiments/task_signal.py --cache DIR --seeds 0,1,2 --iterations 1000 \
        --conditions data,minibatch,heads --out results/task_signal.md

The default `--runs` folder is that of `quality.py`'s lever "one proxy per data set with data +
minibatch + heads", the same searches: where they are there, they are read, not rerun.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ceiling import encoding, fitted_monomial, monomial
from common import SPACES, depth_width, interval, param_scores, program_scores, vitbench_tasks
from quality import chosen, run_lever

from gp_proxy import Task, bootstrap_difference, kendall, table, write_report
from vit_space import load_bench


def searched(task: Task, seeds: list[int], folder: Path, iterations: int, size: int) -> tuple[str, np.ndarray]:
    """The chosen proxy of `seeds` random-start runs on `task` alone, in `folder / task.name / seed<N>`
    (resumed where checkpointed; the layout of `quality.py`'s per-task levers): its expression and its
    scores of every architecture."""
    runs = run_lever([task], {"per_task": True}, seeds, folder, iterations, size)
    expression = chosen(runs)[task.name][0]
    return expression, program_scores(expression, task)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--size-limit", type=int, default=12)
    parser.add_argument("--conditions", default="data,minibatch,heads", help="probe conditions the programs read")
    parser.add_argument(
        "--runs",
        default="results/quality/one-proxy-per-data-set-with-data-+-minibatch-+-heads",
        help="run folders (default: those of quality.py's lever with the same setting, reused)",
    )
    parser.add_argument("--directions", type=int, default=3000, help="random exponent vectors of the count")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the 50/50 split (default 0)")
    parser.add_argument("--out", default="results/task_signal.md")
    args = parser.parse_args()
    seeds, conditions = [int(s) for s in args.seeds.split(",")], tuple(args.conditions.split(","))
    if args.runs == parser.get_default("runs") and (
        args.conditions != parser.get_default("conditions") or args.split_seed != 0
    ):
        parser.error(
            "--runs: the default folder holds searches on data,minibatch,heads with split seed 0; "
            f"name a new one for --conditions {args.conditions} --split-seed {args.split_seed}"
        )
    rows, means = [], []
    for space in SPACES:
        held, found, counted, accuracies = [], [], [], []
        features, values = encoding(load_bench(space).archs)
        for dataset in load_bench(space).datasets("kd"):
            (task,) = vitbench_tasks(
                args.cache, spaces=(space,), datasets=[dataset], conditions=conditions, split_seed=args.split_seed
            )
            expression, scores = searched(task, seeds, Path(args.runs), args.iterations, args.size_limit)
            w, _ = fitted_monomial(values, [task.accuracy], task.train, args.directions, args.split_seed)
            count = values @ w
            found, counted, accuracies = [*found, scores], [*counted, count], [*accuracies, task.accuracy]
            cells = [kendall(s[part], task.accuracy[part]) for part in (task.train, task.test) for s in (scores, count)]
            cells += [kendall(s(task)[task.test], task.accuracy[task.test]) for s in (depth_width, param_scores)]
            gain = interval(bootstrap_difference([scores], [count], [task.accuracy], task.test))
            rows.append(
                f"| {space} | {dataset} | "
                + " | ".join(f"{c:.3f}" for c in cells)
                + f" | {gain} | {monomial(features, w)} | `{expression}` |"
            )
            held.append(cells[2:])
            test = task.test
            del task  # one task's statistics at a time
        gain = interval(bootstrap_difference(found, counted, accuracies, test))
        means.append(f"| {space} | " + " | ".join(f"{m:.3f}" for m in np.mean(held, axis=0)) + f" | {gain} |")
    write_report(
        args.out,
        "Signal beyond size: one discovery per ViT-Bench-101 task",
        f"python experiments/task_signal.py --cache {args.cache} --seeds {args.seeds} --iterations {args.iterations} "
        f"--size-limit {args.size_limit} --conditions {args.conditions} --runs {args.runs} "
        f"--directions {args.directions} --split-seed {args.split_seed} --out {args.out}",
        "Each row: discovery on that task alone (its training half, 50 architectures, split seed "
        f"{args.split_seed}; conditions {', '.join(conditions)}; scikit-image crops, batch 16, sketch 32; "
        f"random start, {args.iterations} elitism steps, size limit {args.size_limit}, search seeds "
        f"{args.seeds}), the proxy of the run with the best "
        "training Kendall tau; the task's count, the product of powers of the architecture description with the "
        "best training tau (`ceiling.py`'s fit: every exponent vector in {-1, -1/2, 0, 1/2, 1} and "
        f"{args.directions} seeded random ones); Kendall tau of both on the training and held-out halves, and of "
        "depth x width and parameter count held out; 'search vs count' = the held-out difference with the 95% "
        "interval of a paired bootstrap over the held-out architectures (1000 resamples). Nothing here was chosen "
        "by held-out numbers.",
        table(
            [
                "space",
                "task",
                "search train",
                "count train",
                "search held out",
                "count held out",
                "depth x width held out",
                "params held out",
                "search vs count (held out)",
                "count",
                "proxy",
            ],
            rows,
        ),
        "Mean held-out Kendall tau over a space's three tasks, each ranked by its own search's proxy or its own "
        "count, and the paired bootstrap of the difference (the same draw for the three tasks):",
        table(
            ["space", "per-task searches", "per-task counts", "depth x width", "params", "searches vs counts"], means
        ),
    )


if __name__ == "__main__":
    main()
