"""Levers on proxy quality, chosen on validation data and judged on architectures the search never saw.

Each lever is a discovery setting (search options, or the statistics it reads: probe conditions
and proxy batch), a way to combine a run's proxies, or one search per task instead of one for
all (`per_task`: a proxy per data set, and those proxies rank-averaged into one for every
task); each runs with three search seeds. Two
phases, one split each, the held-out half (split seed 0) never used to choose:

1. validation: every lever searches one seeded half of each space's training half and its runs'
   proxies are scored on the other half; the lever with the highest mean validation JCM (mean
   over seeds, then over both spaces) is the configuration to use;
2. held out: every lever searches the whole training half (the same 50/50 split as
   `discover_vitbench.py`). A lever's proxy is the best of its runs by their own rule
   (`gp_proxy.best_of_runs`); it is reported on the held-out half with a paired bootstrap over the
   held-out architectures (1000 resamples) of the Kendall-tau difference to parameter count, and
   on af-tiny (transfer, all 100 networks).

    python experiments/quality.py --cache DIR --seeds 0,1,2 --iterations 1000 --runs results/quality \
        --out results/quality.md
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from itertools import groupby
from pathlib import Path

import numpy as np
from common import SPACES, depth_width, on_validation, param_scores, program_scores, space_tau, versus, vitbench_tasks

from gp_proxy import (
    KNOWN_PROXIES,
    AutoproxError,
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
from vit_space import BatchSpec, ProbeSpec, StatsCache, field_dataset, get_space, load_bench, proxy_scores, tasks_for

Scorer = Callable[[Task], np.ndarray]

LEVERS = {  # options of DiscoveryConfig, of the statistics (PROBE_OPTIONS), or per_task: one search per task
    "training JCM (random start, the old default)": {},
    "validation share 0.3": {"validation": 0.3},
    "JCM = min over tasks": {"jcm": "min"},
    "JCM = mean - std": {"jcm": "mean-std"},
    "seeded with depth x width and weight L2": {"seed_proxies": ("depth_width", "weight_l2")},
    "conditions data + minibatch": {"conditions": ("data", "minibatch")},
    "conditions data + init2": {"conditions": ("data", "init2")},
    "conditions data + heads": {"conditions": ("data", "heads")},
    "seeded and conditions data + heads": {
        "seed_proxies": ("depth_width", "weight_l2"),
        "conditions": ("data", "heads"),
    },
    "batches matched to each data set": {"source": "matched"},
    "one proxy per data set": {"per_task": True},
    "one proxy per data set with data + minibatch + heads": {
        "per_task": True,
        "conditions": ("data", "minibatch", "heads"),
    },
}
PROBE_OPTIONS = ("conditions", "source")
PASS_BASELINES = {"ZiCo": "zico", "NASWOT": "naswot"}
ENSEMBLE = "rank average of the random-start run's top 5"
VALIDATION_SEED = 1  # as in size_limit_validation.py


def slug(lever: str) -> str:
    """A lever's run folder, e.g. "training-JCM", "JCM-eq-min-over-tasks"."""
    return lever.split(" (")[0].replace(" ", "-").replace("=", "eq")


def program(expression: str) -> Scorer:
    """Scores of a program on a task's statistics."""
    return partial(program_scores, expression)


def ensemble(expressions: list[str]) -> Scorer:
    """Mean rank (over the task's architectures) of several programs' scores (`gp_proxy.mean_rank`)."""
    return lambda task: mean_rank([program(e)(task) for e in expressions])


BASELINES: dict[str, Scorer] = {
    "parameter count": param_scores,
    "depth x width": depth_width,
    "weight L2": program(KNOWN_PROXIES["weight_l2"].expression),
}


def pass_proxy(name: str, cache: StatsCache) -> Scorer:
    """Cached scores of a pass proxy (ZiCo, NASWOT: one forward/backward of the network per score)
    on the task's batch, ViT-Bench-101's skimage batch or af-tiny's own images; NaN for ViT-Bench-101
    architectures whose score is not cached (af-tiny's are computed)."""

    def score(task: Task) -> np.ndarray:
        space_name, field = task.name.split("/")
        bench = load_bench(space_name)
        space, values = get_space(bench.space), np.full(len(bench.archs), np.nan)
        if space_name == "af-tiny":
            spec = ProbeSpec(BatchSpec("fmnist", image_size=None))
            values[:] = proxy_scores(name, space, bench.archs, spec, cache, progress=False).values
            return values
        spec = ProbeSpec(BatchSpec(field_dataset(field), "skimage"))
        for part in (task.test, task.train):
            archs = [bench.archs[i] for i in part]
            try:
                values[part] = proxy_scores(
                    name, space, archs, spec, cache, compute_missing=False, progress=False
                ).values
            except AutoproxError as e:  # not cached: left NaN, shown as n/a
                if "no cached" not in str(e):
                    raise
        return values

    return score


def tau(scores: dict[str, np.ndarray], tasks: list[Task], space: str, part: str = "test") -> str:
    """`space_tau` formatted; n/a where a score of that part is missing."""
    mine = [t for t in tasks if t.name.startswith(space + "/")]
    if any(np.isnan(scores[t.name][getattr(t, part)]).any() for t in mine):
        return "n/a"
    return f"{space_tau(scores, tasks, space, part):.3f}"


def row(name: str, what: str, score: Scorer, tasks: list[Task], tiny: list[Task], params: dict) -> tuple[float, str]:
    """A held-out row: training and held-out tau per space, the difference to params, af-tiny; and
    its sort key, the mean training tau over both spaces (-inf where missing)."""
    scores = {t.name: score(t) for t in tasks}
    transfer = np.mean([kendall(score(t), t.accuracy) for t in tiny])  # all 100 networks: none was searched on
    train = [tau(scores, tasks, s, "train") for s in SPACES]
    key = -np.inf if "n/a" in train else float(np.mean([float(v) for v in train]))
    return key, (
        f"| {name} | {what} | "
        + " | ".join(train)
        + " | "
        + " | ".join(tau(scores, tasks, s) for s in SPACES)
        + " | "
        + " | ".join("n/a" if "nan" in (v := versus(scores, params, tasks, s)) else v for s in SPACES)
        + (" | n/a |" if np.isnan(transfer) else f" | {transfer:.3f} |")
    )


def validation_row(
    name: str, scorers: list[Scorer], validation: list[Task], baseline: bool = False
) -> tuple[tuple[bool, float], str, str]:
    """Mean validation tau per space over the runs' proxies (`scorers`, one per search seed): the sort
    key (levers before baselines, then by the mean over spaces), the name and the table row."""
    means = [np.mean([space_tau({t.name: f(t) for t in validation}, validation, s) for f in scorers]) for s in SPACES]
    label = f"{name} (baseline)" if baseline else name
    text = f"| {label} | " + " | ".join(f"{m:.3f}" for m in means) + f" | {np.mean(means):.3f} |"
    return (not baseline, float(np.mean(means))), name, text


def load_tasks(cache: str, options: dict) -> tuple[list[Task], list[Task]]:
    """The ViT-Bench-101 tasks and the af-tiny tasks (all 100 networks) with a lever's statistics."""
    conditions = options.get("conditions", ("data",))
    tiny_spec = ProbeSpec(BatchSpec("fmnist", image_size=None), conditions=conditions)
    return (
        vitbench_tasks(cache, conditions=conditions, source=options.get("source", "skimage")),
        tasks_for(["af-tiny"], None, tiny_spec, StatsCache(cache), test_fraction=0),
    )


def run_lever(tasks: list[Task], options: dict, seeds: list[int], folder: Path, iterations: int, size: int) -> list:
    """Discovery runs of one lever (resumed where a checkpoint is there): per seed, each task's run
    folder (the same folder for every task, or with `per_task` one run per task)."""
    search = {k: v for k, v in options.items() if k not in (*PROBE_OPTIONS, "per_task")}
    groups = [[t] for t in tasks] if options.get("per_task") else [tasks]
    out = []
    for seed in seeds:
        config = DiscoveryConfig(iterations=iterations, seed=seed, size_limit=size, **search)
        dirs = {}
        for group in groups:
            run = folder / group[0].name if options.get("per_task") else folder
            discover(group, config, run / f"seed{seed}", resume=(run / f"seed{seed}" / "checkpoint.json").exists())
            dirs |= {t.name: run / f"seed{seed}" for t in group}
        out.append(dirs)
    return out


def seed_proxies(run: dict[str, Path]) -> dict[str, str]:
    """Per task, the best proxy of one seed's run(s)."""
    return {name: top(folder, 1)[0] for name, folder in run.items()}


def chosen(runs: list[dict[str, Path]]) -> dict[str, tuple[str, str]]:
    """Per task, the best of its runs by their own rule (`gp_proxy.best_of_runs`): the expression and the
    run's folder name (its seed)."""
    picks = {name: best_of_runs([r[name] for r in runs]) for name in runs[0]}
    return {name: (proxy.expression, folder.name) for name, (folder, proxy) in picks.items()}


def scorer(expressions: dict[str, str], joint: bool) -> Scorer:
    """Scores of a lever's proxies: with `joint` the one program every task shares, on any task (af-tiny's
    too); else each task's own program, NaN for a task without one (af-tiny's)."""
    if joint:
        return program(next(iter(expressions.values())))

    def score(task: Task) -> np.ndarray:
        if task.name not in expressions:
            return np.full(len(task.accuracy), np.nan)
        return program(expressions[task.name])(task)

    return score


def shown(proxies: dict[str, str]) -> str:
    """One proxy (the same for every task) as itself, else `space data set: proxy` per task."""
    if len(set(proxies.values())) == 1:
        return next(iter(proxies.values()))
    return "; ".join(
        f"{name.split('/')[0]} {field_dataset(name.split('/')[1])}: {text}" for name, text in proxies.items()
    )


def top(run_dir: Path, count: int = 5) -> list[str]:  # rank01.json first
    """The expressions of a run's `count` best saved proxies."""
    return [load_proxy(p).expression for p in sorted((run_dir / "proxies").glob("rank*.json"))[:count]]


@dataclass
class Rows:
    """The report's rows: validation (sort key, name, row), held out (sort key, row), one per run."""

    checked: list = field(default_factory=list)
    held_out: list = field(default_factory=list)
    per_seed: list = field(default_factory=list)


def evaluate(lever: str, options: dict, tasks: list[Task], tiny: list[Task], args, rows: Rows) -> None:
    """Run one lever in both phases (resuming what is there) and add its rows; the random-start lever
    also adds the rank-average ensemble and the baselines."""
    seeds, folder = [int(s) for s in args.seeds.split(",")], Path(args.runs)
    params, validation = {t.name: param_scores(t) for t in tasks}, on_validation(tasks, VALIDATION_SEED)
    joint = not options.get("per_task")
    runs = run_lever(validation, options, seeds, folder / "validation" / slug(lever), args.iterations, args.size_limit)
    rows.checked.append(validation_row(lever, [scorer(seed_proxies(r), joint) for r in runs], validation))
    run_dirs = run_lever(tasks, options, seeds, folder / slug(lever), args.iterations, args.size_limit)
    for seed, run in zip(seeds, run_dirs):
        proxies = seed_proxies(run)
        scores = {t.name: scorer(proxies, joint)(t) for t in tasks}
        label = shown({name: f"`{e}`" for name, e in proxies.items()})
        rows.per_seed.append(
            f"| {lever} | {seed} | {label} | " + " | ".join(tau(scores, tasks, s) for s in SPACES) + " |"
        )
    best = chosen(run_dirs)
    label = shown({name: f"`{e}` ({run})" for name, (e, run) in best.items()})
    rows.held_out.append(row(lever, label, scorer({n: e for n, (e, _) in best.items()}, joint), tasks, tiny, params))
    if not joint:  # the per-task proxies rank-averaged: one proxy again, for every task (af-tiny's too)
        name = f"{lever}, rank-averaged into one"
        rows.checked.append(validation_row(name, [ensemble(list(seed_proxies(r).values())) for r in runs], validation))
        every = ensemble([e for e, _ in best.values()])
        rows.held_out.append(row(name, f"rank average of the {len(best)} above", every, tasks, tiny, params))
    if options:
        return
    run_dir = best_of_runs([r[tasks[0].name] for r in run_dirs])[0]  # one run for all tasks here
    rows.checked.append(validation_row(ENSEMBLE, [ensemble(top(r[tasks[0].name])) for r in runs], validation))
    rows.held_out.append(row(ENSEMBLE, f"top 5 of {run_dir.name}", ensemble(top(run_dir)), tasks, tiny, params))
    cache = StatsCache(args.cache)
    for name, score in {**BASELINES, **{n: pass_proxy(p, cache) for n, p in PASS_BASELINES.items()}}.items():
        rows.held_out.append(row(name, "", score, tasks, tiny, params))
        if name in BASELINES:
            rows.checked.append(validation_row(name, [score], validation, baseline=True))


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
    chosen = [slug(lever) for lever in LEVERS] if args.levers == "all" else args.levers.split(",")
    unknown = sorted(set(chosen) - {slug(lever) for lever in LEVERS})
    if unknown:
        parser.error(f"--levers: unknown {unknown}; known: {', '.join(slug(lever) for lever in LEVERS)}")

    def statistics(item: tuple[str, dict]) -> tuple:
        return tuple((k, item[1][k]) for k in PROBE_OPTIONS if k in item[1])

    chosen_levers = ((k, v) for k, v in LEVERS.items() if slug(k) in chosen)
    levers = sorted(chosen_levers, key=lambda item: (len(statistics(item)), str(statistics(item))))  # default first
    rows = Rows()
    for _, group in groupby(levers, key=statistics):
        group = list(group)
        tasks, tiny = load_tasks(args.cache, group[0][1])  # one load per kind of statistics
        for lever, options in group:
            evaluate(lever, options, tasks, tiny, args, rows)
        del tasks, tiny  # freed before the next load
    checked = sorted(rows.checked, key=lambda c: c[0], reverse=True)  # levers by validation JCM, then baselines
    best = checked[0][1]
    held_out = [text for _, text in sorted(rows.held_out, key=lambda r: -r[0])]
    write_report(
        args.out,
        "Proxy quality levers on ViT-Bench-101: chosen on validation, reported held out",
        f"python experiments/quality.py --cache {args.cache} --seeds {args.seeds} --iterations {args.iterations} "
        f"--size-limit {args.size_limit} --runs {args.runs} --out {args.out} --levers {args.levers}",
        "Tasks: AutoFormer and PiT x c100/flower/chaoyang KD accuracies; each space split 50/50 (seed 0). "
        "Statistics: batch 16, seed 0, sketch 32, condition data, scikit-image crops (the `skimage` source: "
        "the same natural photographs for c100 and flowers, the histology image for chaoyang), unless the lever "
        "changes them: `minibatch` adds the gradient mean and std over 4 slices of the batch; `init2` the "
        "statistics of a second initialisation on the same batch; `heads` per-head attention entropy, stable rank "
        "and head similarity (one forward pass); `matched` gives "
        "c100 crops at CIFAR's 32 px (upsampled) and flowers crops of scikit-learn's flower photograph. "
        "`one proxy per data set` runs one search per task (the proxy a user who targets one data set gets; "
        "no proxy for af-tiny's data sets, so its transfer is n/a); `rank-averaged into one` is the mean rank of "
        "all six per-data-set proxies' scores, one proxy for every task again. "
        f"{args.iterations} elitism-preserve steps, population 50, size limit {args.size_limit}, search seeds "
        f"{args.seeds}.",
        "## 1. Validation: which lever to use (the held-out half untouched)",
        f"The training half of each space is split again (seed {VALIDATION_SEED}): every lever's runs fit 25 "
        "architectures per space and their best proxy (by the run's own rule) is scored on the other 25. Columns: "
        "mean Kendall tau over a space's three tasks on that validation half, mean over the search seeds; "
        "sorted by their mean, levers first, then baselines for reference.",
        table(["lever", "validation AutoFormer", "validation PiT", "mean"], [c[2] for c in checked]),
        f"Chosen on validation: **{best}**.",
        "## 2. Held out: the same levers on the whole training half",
        f"Each lever's proxy is the best of its {len(seeds)} runs by the run's own rule (training JCM, or "
        "validation JCM with a validation share); held-out numbers are reported, never used to choose. "
        "Columns: mean Kendall tau over a space's three tasks on the training half and on the held-out half; "
        "'vs params' = held-out difference to parameter count with the 95% interval of a paired bootstrap "
        "over the held-out architectures (1000 resamples, the same draw for all three tasks); af-tiny = mean "
        "Kendall tau over its two fields on all 100 networks (transfer: never searched on; its own training "
        "images as the batch). ZiCo and NASWOT: one pass each per network on the skimage batch, n/a where not "
        "computed. Sorted by the mean of the two training columns (n/a last).",
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
            held_out,
        ),
        "Every run's proxy (held-out mean Kendall tau per space):",
        table(["lever", "seed", "proxy", "held-out AutoFormer", "held-out PiT"], rows.per_seed),
    )


if __name__ == "__main__":
    main()
