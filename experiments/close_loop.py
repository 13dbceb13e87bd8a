"""Close the loop on the shipped benchmark: discover, search with it, then train what was found.

1. Discover a proxy on the benchmark's training half (JCM over its data sets).
2. Search the benchmark's space under a parameter budget with each guide: the discovered
   proxy, the parameter count, the hand-designed proxy with the best training-half JCM (size
   counts excluded, and the best one with them), and the ViT-Bench-101-discovered proxy with
   the best training-half JCM here (transfer).
3. Train each guide's pick and `--random` random architectures of the same budget with the
   benchmark's own recipe and seeds, on every data set of the benchmark (a resumable build).
4. Rank the ViT-Bench-101-discovered proxies on this benchmark (transfer across data and scale).

    python experiments/close_loop.py --cache /tmp/autoprox-cache --out results/close_loop
writes results/close_loop.md (and the trained runs in results/close_loop/).
"""

from __future__ import annotations

import argparse
import glob
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from gp_proxy import DiscoveryConfig, correlations, discover, load_proxy, write_text
from vit_space import (
    BatchSpec,
    Budget,
    BuildPlan,
    ProbeSpec,
    Recipe,
    SearchConfig,
    Searcher,
    StatsCache,
    bench_fields,
    bench_tasks,
    build_bench,
    catalogue,
    get_dataset,
    get_space,
    load_bench,
    parse_range,
    rank,
    sample_within,
)

VITBENCH_PROXIES = "results/discovery/seed*/proxies/rank01.json"
SIZE = ("params", "flops", "linear_params", "depth_width")  # size counts: the parameter count is its own guide


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", default="af-tiny")
    parser.add_argument("--cache", required=True)
    parser.add_argument("--out", default="results/close_loop")
    parser.add_argument("--params", default="0.02-0.06", help="search budget LO-HI, millions of parameters")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--search-budget", type=int, default=300)
    parser.add_argument("--random", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start, out, cache = time.time(), Path(args.out), StatsCache(args.cache)
    bench = load_bench(args.bench)
    space, fields = get_space(bench.space), bench_fields(bench, [])
    datasets = bench.datasets(bench.default_kind())
    spec = ProbeSpec(BatchSpec(datasets[0], image_size=None))
    classes = get_dataset(datasets[0]).num_classes
    budget = Budget(*parse_range(args.params), num_classes=classes)

    # 1. discovery on the training half (a finished one is read back from its saved proxy)
    best = out / "discover" / "proxies" / "rank01.json"
    if best.is_file():
        _check_finished(out / "discover" / "checkpoint.json", args.iterations, args.seed)
    else:
        tasks = bench_tasks(bench, datasets, spec, cache, compute_missing=True)
        config = DiscoveryConfig(iterations=args.iterations, seed=args.seed)
        resume = (out / "discover" / "checkpoint.json").is_file()
        discover(
            tasks,
            config,
            out / "discover",
            resume=resume,
            probe=spec.as_dict(),
            provenance={"benchmarks": [bench.name]},
        )
    discovered = load_proxy(best)

    # 2. the best hand-designed proxy by training-half JCM, then one search per guide
    hand = {
        name: rank(name, bench, fields, spec, cache, progress=False)
        for name in catalogue()
        if name not in ("params", "flops")
    }
    train_jcm = {name: _train_jcm(r, bench, fields) for name, r in hand.items()}
    best_hand = max((n for n in train_jcm if n not in SIZE), key=lambda n: train_jcm[n])
    best_any = max(train_jcm, key=lambda n: train_jcm[n])
    vitbench = [replace(load_proxy(p), probe=spec.as_dict()) for p in sorted(glob.glob(VITBENCH_PROXIES))]
    transfer = [rank(p, bench, fields, spec, cache, progress=False) for p in vitbench]
    moved = max(range(len(vitbench)), key=lambda i: _train_jcm(transfer[i], bench, fields))
    guides = {
        "discovered here": ("discovered", discovered),
        "params": ("params", "params"),
        f"best hand-designed ({best_hand})": (best_hand, best_hand),
        f"best incl. size counts ({best_any})": (best_any, best_any),
        "ViT-Bench-101-discovered (transfer)": ("vitbench", vitbench[moved]),
    }
    picks = {}
    for label, (short, guide) in guides.items():
        folder = out / f"search_{short}"
        searcher = Searcher(
            space, [guide], budget, spec, cache, SearchConfig("evolution", args.search_budget, seed=args.seed)
        )
        state = searcher.run(folder, resume=(folder / "checkpoint.json").is_file(), progress=False)
        picks[label] = max(state.evaluated, key=lambda c: (c.fitness, -c.order)).arch
    randoms = sample_within(space, args.random, random.Random(args.seed + 1), budget)

    # 3. train the picks and the random architectures with the benchmark's recipe and seeds
    recipe, seeds = Recipe.from_dict(_payload(bench)["recipe"]), tuple(_payload(bench)["seeds"])
    unique = list({space.arch_hash(a): a for a in [*picks.values(), *randoms]}.values())
    trained = load_bench(
        build_bench(BuildPlan(space, tuple(unique), tuple(datasets), recipe, seeds), out / "trained.json", resume=True)
    )
    index = {space.arch_hash(a): i for i, a in enumerate(trained.archs)}
    per_seed = _per_seed(out / "trained.json")

    # 4. transfer of the ViT-Bench-101 proxies (their programs, measured on this benchmark's batches)
    baseline = [rank(name, bench, fields, spec, cache, progress=False) for name in ("params", best_hand)]
    sizes = [rank("flops", bench, fields, spec, cache, progress=False)]
    own = rank(discovered, bench, fields, spec, cache, progress=False)

    lines = [
        f"# Closing the loop on `{bench.name}` ({len(bench)} {bench.space} architectures, {', '.join(datasets)})",
        "",
        f"Command: `python experiments/close_loop.py --cache CACHE --out {args.out} --params {args.params} "
        f"--iterations {args.iterations} --search-budget {args.search_budget} --random {args.random} "
        f"--seed {args.seed}`; {time.time() - start:.0f} s on this run (cached steps skipped).",
        "",
        f"Discovered on the training half ({args.iterations} elitism steps): `{discovered.expression}`; "
        f"held-out JCM {own.jcm_heldout:.3f} (params {baseline[0].jcm_heldout:.3f}, "
        f"{best_hand} {baseline[1].jcm_heldout:.3f}). Best hand-designed proxy by training-half JCM: "
        f"`{best_hand}` ({train_jcm[best_hand]:.3f}); with size counts allowed: `{best_any}` "
        f"({train_jcm[best_any]:.3f}). Best ViT-Bench-101 proxy by training-half JCM here: "
        f"`{vitbench[moved].expression}`.",
        "",
        f"Each guide searched {args.search_budget} architectures in {budget.describe()} (evolution, seed "
        f"{args.seed}); every pick and {args.random} random architectures of the same budget were then trained "
        f"with the benchmark's recipe ({recipe.steps} steps, batch {recipe.batch_size}, AdamW lr {recipe.lr}) "
        f"and seeds {list(seeds)}. Accuracy: top-1 % on the held-out test split, mean +- std over seeds.",
        "",
        "| guide | params | " + " | ".join(datasets) + " | arch |",
        "|---|---|" + "---|" * len(datasets) + "---|",
    ]
    for label, arch in [*picks.items(), *((f"random {i + 1}", a) for i, a in enumerate(randoms))]:
        h = space.arch_hash(arch)
        cells = [_mean_std(per_seed[(h, d)]) for d in datasets]
        lines.append(
            f"| {label} | {space.num_params(arch, classes)} | " + " | ".join(cells) + f" | `{space.to_json(arch)}` |"
        )
    for d in datasets:
        values = np.array([trained.accuracy(d, "base")[index[space.arch_hash(a)]] for a in randoms])
        lines.append(
            f"\nRandom architectures on {d}: mean {values.mean():.2f} +- {values.std():.2f} (best {values.max():.2f})."
        )
    inside = [i for i, a in enumerate(bench.archs) if budget.fits(space, space.validate(a))]
    for d in datasets:
        acc = bench.accuracy(d, "base")[inside]
        lines.append(
            f"Benchmark architectures inside the budget on {d}: {len(inside)}, accuracy "
            f"{np.nanmean(acc):.2f} +- {np.nanstd(acc):.2f}, best {np.nanmax(acc):.2f}."
        )
    lines += [
        "",
        "## Transfer: ViT-Bench-101-discovered proxies on this benchmark",
        "",
        "Kendall tau per field (all architectures) and JCM; each program is measured on this benchmark's own "
        "batches (its 224-pixel ViT-Bench-101 probe settings do not apply to 28-pixel networks).",
        "",
        "| proxy | " + " | ".join(fields) + " | JCM | JCM held-out |",
        "|---|" + "---|" * (len(fields) + 2),
    ]
    for r in [*transfer, own, *baseline]:
        lines.append(
            f"| `{r.proxy}` | "
            + " | ".join(f"{r.whole[f]['kendall']:.3f}" for f in fields)
            + f" | {r.jcm:.3f} | {r.jcm_heldout:.3f} |"
        )
    everything = [*hand.values(), baseline[0], *sizes, own, *transfer]
    trained_jcm = [_train_jcm(r, bench, fields) for r in everything]
    lines += [
        "",
        "## Every proxy on this benchmark",
        "",
        "Kendall tau per field on all architectures; JCM on all, on the training half and on the held-out half "
        "(split seed 0; discovery saw only the training half); wall time per architecture (programs: from "
        "cached statistics). Sorted by the training half's JCM.",
        "",
        "| proxy | " + " | ".join(fields) + " | JCM | JCM training half | JCM held-out | s/arch |",
        "|---|" + "---|" * (len(fields) + 4),
    ]
    for i in sorted(range(len(everything)), key=lambda i: -np.nan_to_num(trained_jcm[i], nan=-9)):
        r = everything[i]
        lines.append(
            f"| `{r.proxy}` | "
            + " | ".join(f"{r.whole[f]['kendall']:.3f}" for f in fields)
            + f" | {r.jcm:.3f} | {trained_jcm[i]:.3f} | {r.jcm_heldout:.3f} "
            + f"| {np.mean(list(r.seconds_per_arch.values())):.3g} |"
        )
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


def _check_finished(checkpoint: Path, iterations: int, seed: int) -> None:
    """Exit with one line when the finished discovery beside `checkpoint` ran other steps or another seed."""
    state = json.loads(checkpoint.read_text(encoding="utf-8"))
    done = (state["iteration"], state["config"]["seed"])
    if done != (iterations, seed):
        sys.exit(
            f"close_loop: {checkpoint.parent} holds a discovery of {done[0]} steps with seed {done[1]}, not "
            f"--iterations {iterations} --seed {seed}; use those or another --out"
        )


def _train_jcm(ranking, bench, fields) -> float:
    train, _ = bench.split(0.5, 0)
    return float(np.mean([correlations(ranking.scores[f], bench.accuracy(f), train)["kendall"] for f in fields]))


def _payload(bench) -> dict:
    return json.loads(Path(bench.source).read_text())


def _per_seed(path: Path) -> dict[tuple[str, str], list[float]]:
    payload = json.loads(path.read_text())
    return {
        (r["hash"], d): list(r[f"{d}_base_seeds"].values()) for r in payload["records"] for d in payload["datasets"]
    }


def _mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.2f} +- {np.std(values):.2f}" if values else "-"


if __name__ == "__main__":
    main()
