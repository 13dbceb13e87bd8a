"""Hand-designed and discovered proxies ranked on ViT-Bench-101 (the comparison of issue 4).

Writes OUT.md and OUT.csv: Kendall tau of every proxy on every accuracy field of both spaces,
on the training half, the whole benchmark and the held-out half (split seed 0, the split
discovery used), sorted by the training half's JCM (mean Kendall tau over the KD fields) so that
no row's place depends on the architectures discovery never saw; the accuracy of each proxy's
top-ranked architecture next to the best and the mean; the same proxies under two other proxy batches;
and OUT_scatter.png, score vs accuracy for the top proxies.

    python experiments/rank_vitbench.py --cache DIR --discovered results/discovery \
        --out results/vitbench101_ranking
"""

from __future__ import annotations

import argparse
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
from common import HOLDOUT, SPACES, SPLIT_SEED, vitbench_spec

from gp_proxy import jcm, load_proxy, table, write_report, write_text
from gp_proxy.fitness import correlations
from vit_space import (
    Benchmark,
    ProbeSpec,
    Ranking,
    StatsCache,
    bench_fields,
    catalogue,
    field_dataset,
    format_rankings,
    load_bench,
    rank,
)


def kd_jcm(r: Ranking, part: str = "whole") -> float:
    values = getattr(r, part)
    return jcm([c["kendall"] for f, c in values.items() if "_kd_" in f])


def train_jcm(r: Ranking, bench: Benchmark) -> float:
    """KD JCM on the training half of the split discovery used."""
    train = bench.split(HOLDOUT, SPLIT_SEED)[0]
    return jcm([correlations(r.scores[f], bench.accuracy(f), train)["kendall"] for f in r.whole if "_kd_" in f])


def discovered(folders: list[str]) -> dict[str, object]:
    """The best proxy (rank01.json) of each discovery run under `folders` (runs named seedN)."""
    out = {}
    for folder in folders:
        for run in sorted(Path(folder).glob("*/proxies/rank01.json")):
            out[f"discovered ({Path(folder).name}/{run.parent.parent.name})"] = load_proxy(run)
    return out


def ranking_tables(
    names: list[str], results: dict[tuple[str, str], Ranking], benches: dict[str, Benchmark]
) -> tuple[str, list[str]]:
    """Summary across spaces, then one table per space with every field; and the names sorted by
    the training half's JCM (the mean of the two spaces)."""
    train = {n: {s: train_jcm(results[n, s], benches[s]) for s in SPACES} for n in names}
    train_both = {n: np.mean(list(train[n].values())) for n in names}
    order = sorted(names, key=lambda n: -train_both[n] if np.isfinite(train_both[n]) else np.inf)
    rows = [
        f"| {n} | {catalogue().get(n, ('discovered',))[0]} | "
        + " | ".join(f"{train[n][s]:.3f}" for s in SPACES)
        + f" | {train_both[n]:.3f} | "
        + " | ".join(f"{kd_jcm(results[n, s]):.3f}" for s in SPACES)
        + f" | {np.mean([kd_jcm(results[n, s]) for s in SPACES]):.3f} | "
        + " | ".join(f"{kd_jcm(results[n, s], 'heldout'):.3f}" for s in SPACES)
        + f" | {np.mean([np.mean(list(results[n, s].seconds_per_arch.values())) for s in SPACES]):.3g} |"
        for n in order
    ]
    header = [
        "proxy",
        "kind",
        *[f"{s} training" for s in SPACES],
        "training both",
        *[f"{s} JCM" for s in SPACES],
        "both",
        *[f"{s} held-out" for s in SPACES],
        "s/arch",
    ]
    blocks = [table(header, rows)]
    for space in SPACES:
        fields = list(results[order[0], space].whole)
        rows = [
            f"| {n} | "
            + " | ".join(f"{results[n, space].whole[f]['kendall']:.3f}" for f in fields)
            + f" | {kd_jcm(results[n, space]):.3f} |"
            for n in order
        ]
        blocks += [
            f"### {space}: Kendall tau per field, all 100 architectures",
            table(["proxy", *fields, "KD JCM"], rows),
        ]
    return "\n\n".join(blocks), order


def _top_cell(summary: dict) -> str:
    """'top-1 / top-5' accuracy, with the number of architectures tied for first when several are."""
    ties = f" ({summary['top1_ties']} tied)" if summary["top1_ties"] > 1 else ""
    return f"{summary['top1_acc']:.2f}{ties} / {summary['top5_acc']:.2f}"


def selection_table(names: list[str], results: dict[tuple[str, str], Ranking]) -> str:
    """Accuracy of the architecture each proxy ranks first / mean of its top five, per space and KD
    field, under the benchmark's best and mean (the expected accuracy of a random pick). Ties are
    broken at random in expectation: the mean over the group tied for first, and how many tie."""
    columns = [(s, f) for s in SPACES for f in results[names[0], s].whole if "_kd_" in f]
    benches = {s: load_bench(s) for s in SPACES}
    ref = [
        f"| {label} | " + " | ".join(f"{stat(benches[s].accuracy(f)):.2f}" for s, f in columns) + " |"
        for label, stat in (("best in the benchmark", np.nanmax), ("mean = random pick", np.nanmean))
    ]
    rows = [f"| {n} | " + " | ".join(_top_cell(results[n, s].whole[f]) for s, f in columns) + " |" for n in names]
    return table(["proxy", *[f"{s} {f}" for s, f in columns]], ref + rows)


def batch_variants() -> dict[str, ProbeSpec]:
    """The default proxy batch and the two others of the batch-dependence table."""
    base = vitbench_spec()
    return {
        "skimage crops, seed 0": base,
        "Gaussian noise, seed 0": replace(base, batch=replace(base.batch, source="noise")),
        "skimage crops, seed 1": replace(base, batch=replace(base.batch, seed=1)),
    }


def batch_subset(bench: Benchmark, archs: int) -> Benchmark:
    """A seeded subset of `archs` architectures (the same on every run)."""
    return bench.subset(sorted(random.Random(0).sample(range(len(bench)), archs)))


def batch_table(names: list[str], proxies: dict, cache: StatsCache, archs: int, dataset: str) -> str:
    """Kendall tau on one KD field of a seeded subset of each space under three proxy batches."""
    variants, rows = batch_variants(), []
    for n in names:
        cells = []
        for space in SPACES:
            subset = batch_subset(load_bench(space), archs)
            field = bench_fields(subset, [dataset], "kd")
            for spec in variants.values():
                r = rank(proxies[n], subset, field, spec, cache, holdout=0, progress=False)
                cells.append(f"{r.whole[field[0]]['kendall']:.3f}")
        rows.append(f"| {n} | " + " | ".join(cells) + " |")
    return table(["proxy", *[f"{s}: {v}" for s in SPACES for v in variants]], rows)


def scatter(path: Path, names: list[str], results: dict[tuple[str, str], Ranking]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [(s, f) for s in SPACES for f in results[names[0], s].whole if "_kd_" in f]
    fig, axes = plt.subplots(len(names), len(columns), figsize=(2.6 * len(columns), 2.3 * len(names)), squeeze=False)
    for i, n in enumerate(names):
        for j, (space, field) in enumerate(columns):
            r, ax = results[n, space], axes[i][j]
            scores, acc = r.scores[field], load_bench(space).accuracy(field)
            ax.scatter(scores, acc, s=6)
            if np.all(scores > 0) and scores.max() > 100 * scores.min():
                ax.set_xscale("log")
            ax.set_title(f"{space} {field}\ntau {r.whole[field]['kendall']:.3f}", fontsize=7)
            ax.tick_params(labelsize=6)
            if j == 0:
                ax.set_ylabel(n[:28], fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True)
    parser.add_argument("--discovered", default="results/discovery", help="discovery run folders, comma-separated")
    parser.add_argument("--proxies", default=",".join(catalogue()), help="known proxy names, comma-separated")
    parser.add_argument("--datasets", default="c100,flowers,chaoyang,imagenet")
    parser.add_argument("--batch-archs", type=int, default=30, help="architectures per space in the batch table")
    parser.add_argument("--batch-dataset", default="c100")
    parser.add_argument("--plots", type=int, default=4, help="proxies in the scatter plot")
    parser.add_argument("--out", default="results/vitbench101_ranking")
    args = parser.parse_args()
    cache, spec = StatsCache(args.cache), vitbench_spec()
    proxies = {n: n for n in args.proxies.split(",")} | discovered(args.discovered.split(","))
    datasets = args.datasets.split(",")
    results, benches = {}, {space: load_bench(space) for space in SPACES}
    for space, bench in benches.items():
        fields = [f for f in bench.fields if field_dataset(f) in datasets]
        for label, proxy in proxies.items():
            results[label, space] = replace(rank(proxy, bench, fields, spec, cache, HOLDOUT, SPLIT_SEED), proxy=label)
    names = list(proxies)
    ranking, order = ranking_tables(names, results, benches)
    out = Path(args.out)
    write_text(out.with_suffix(".csv"), format_rankings([results[n, s] for n in order for s in SPACES], "csv") + "\n")
    scatter(out.with_name(out.name + "_scatter.png"), order[: args.plots], results)
    expressions = [f"- {n}: `{p.expression}`" for n, p in proxies.items() if not isinstance(p, str)]
    write_report(
        out.with_suffix(".md"),
        "Zero-cost proxies ranked on ViT-Bench-101",
        f"python experiments/rank_vitbench.py --cache {args.cache} --discovered {args.discovered} "
        f"--datasets {args.datasets} --batch-archs {args.batch_archs} --batch-dataset {args.batch_dataset} "
        f"--out {args.out}",
        f"Proxy batch: {spec.batch.batch_size} scikit-image crops per data set (the IHC image for chaoyang), "
        f"random labels, seed {spec.batch.seed} (batch, labels and each architecture's init), 224 px; "
        f"program proxies read {spec.sketch_size}x{spec.sketch_size} sketches of the probe's statistics. "
        "JCM = mean Kendall tau over the KD fields of a space; 'both' = mean of the two spaces. Training = "
        "the 50 architectures per space that discovery fit on, held-out = the other 50 (split seed 0); "
        "rows are sorted by the training columns' 'both', so no row's place depends on the held-out half. "
        "Discovered proxies were fit on the training half, so their training and whole-benchmark numbers "
        "are optimistic and the held-out columns are the fair comparison. s/arch = wall time per "
        "architecture on this 2-core machine: for pass proxies their own passes (measured while two "
        "scoring processes shared the cores), for program "
        "proxies the evaluation from cached statistics only; the probe they share costs about 1 s per "
        "architecture and data set (`cache_full.md`). Fields: " + ", ".join(datasets) + ".",
        "\n".join(expressions),
        ranking,
        "## Selection quality: accuracy of the architecture each proxy ranks first / mean of its top 5 "
        "(all 100 architectures of a space)\n\n" + selection_table(order, results),
        f"## Batch dependence: Kendall tau on {args.batch_dataset} KD, {args.batch_archs} seeded architectures per "
        "space, three proxy batches (seed 1 changes the crops, the labels and the init)\n\n"
        + batch_table(order, proxies, cache, args.batch_archs, args.batch_dataset),
        f"Scatter plots of the top {args.plots} proxies: `{out.name}_scatter.png`; every number: `{out.name}.csv`.",
    )


if __name__ == "__main__":
    main()
