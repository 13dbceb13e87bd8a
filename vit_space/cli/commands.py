"""The `autoprox` sub-commands: each parses nothing and computes little; it calls the library and prints.

User errors print one line (`autoprox: error: ...`) and exit 2; Ctrl-C exits 130 and keeps
everything already written.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from gp_proxy.atomic import write_text
from gp_proxy.discovery import DiscoveryConfig, discover
from gp_proxy.ensemble import ensemble_of_run, save_ensemble
from gp_proxy.errors import AutoproxError
from gp_proxy.program import Evaluator
from gp_proxy.results import front_proxy, read_front
from gp_proxy.simplification import simplify
from gp_proxy.store import SavedProxy, load_proxy, save_proxy
from vit_space.bench import benchmark as bench_mod
from vit_space.cli.bench_commands import cmd_bench_build, cmd_bench_fetch, cmd_bench_show, cmd_data_fetch
from vit_space.cli.parser import csv_list
from vit_space.cli.runtime import cluster_client, work_device
from vit_space.data.batches import DATASETS, BatchSpec, get_dataset
from vit_space.device import resolve_device
from vit_space.pipeline import default_dataset, run_job
from vit_space.probe.cache import FillReport, ProbeSpec, StatsCache, fill
from vit_space.proxies.export import export_file, export_text, latex_table
from vit_space.proxies.ranking import FORMATS, bench_fields, format_rankings, rank
from vit_space.proxies.scores import catalogue, proxy_label, resolve_proxy, saved_proxy_bundles, with_source
from vit_space.proxies.tasks import tasks_for
from vit_space.search.budget import Budget, parse_range
from vit_space.search.scoring import candidates, score_archs
from vit_space.search.searchers import SearchConfig, Searcher
from vit_space.spaces import Arch, Space, get_space, read_archs


def _data_sources(pairs: Sequence[str]) -> dict[str, str]:
    sources = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or name not in DATASETS:
            raise AutoproxError(f"--data takes NAME=PATH with NAME in {', '.join(DATASETS)}, got {pair!r}")
        sources[name] = path
    return sources


def _targets(args: argparse.Namespace) -> list[tuple[Space, list[Arch], list[str]]]:
    """(space, archs, default datasets) for each --bench, or for --space with --archs/--sample."""
    if args.bench:
        out = []
        for name in csv_list(args.bench):
            bench = bench_mod.load_bench(name)
            space = get_space(bench.space)
            out.append((space, [space.validate(a) for a in bench.archs], bench.datasets(bench.default_kind())))
        return out
    if not args.space:
        raise AutoproxError("give --bench NAME|PATH, or --space with --archs FILE.json or --sample N")
    space = get_space(args.space)
    if args.archs:
        archs = read_archs(args.archs, space)
    elif args.sample:
        rng = random.Random(args.seed)
        archs = [space.sample(rng) for _ in range(args.sample)]
    else:
        raise AutoproxError("--space needs --archs FILE.json or --sample N")
    return [(space, archs, [default_dataset(space)])]


def cmd_stats(args: argparse.Namespace) -> None:
    cache, device = StatsCache(args.cache), work_device(args)
    sources = _data_sources(args.data)
    with cluster_client(args) as client:
        for space, archs, default_datasets in _targets(args):
            archs = archs[: args.limit] if args.limit else archs
            specs = [_probe_spec(args, d, sources.get(d)) for d in csv_list(args.datasets) or default_datasets]
            report = fill(space, archs, specs, cache, progress=not args.quiet, device=device, client=client)
            _print_fill(space, report)
    print(f"cache {cache.root}: {cache.size_bytes() / 2**20:.1f} MiB")


def _print_fill(space: Space, report: FillReport) -> None:
    per_probe = f", {np.mean(report.probe_seconds):.2f} s per probe" if report.probe_seconds else ""
    print(
        f"{space.name}: {report.computed + report.cached} entries "
        f"({report.computed} probed, {report.cached} already cached) in {report.seconds:.1f} s{per_probe}"
    )


def _probe_spec(args: argparse.Namespace, dataset: str = "c100", source: str | None = None) -> ProbeSpec:
    spec = ProbeSpec(
        BatchSpec(dataset, source or args.source or "auto", args.batch, args.seed, args.image_size),
        args.sketch,
        tuple(csv_list(args.conditions)),
        args.minibatches,
    )
    spec.validate()
    return spec


def cmd_discover(args: argparse.Namespace) -> None:
    config = DiscoveryConfig(
        algorithm=args.algo,
        iterations=args.iterations,
        max_evaluations=args.max_evaluations or 0,
        population=args.population,
        seed=args.search_seed,
        jcm=args.jcm,
        seed_proxies=() if args.seed_proxies == "none" else tuple(csv_list(args.seed_proxies)),
        batch=args.parents,
        size_limit=args.size_limit,
        validation=args.validation,
        validation_seed=args.validation_seed,
    )
    config.validate()
    spec, device = _probe_spec(args), work_device(args)
    if args.workers > 1 and (args.cluster or device.type != "cpu"):
        where = f"--cluster {args.cluster}" if args.cluster else f"--device {device}"
        raise AutoproxError(f"--workers {args.workers} evaluates in local CPU processes; with {where} leave it at 1")
    benches = csv_list(args.bench)
    cache = StatsCache(args.cache)
    with cluster_client(args) as client:
        tasks = tasks_for(
            benches,
            csv_list(args.datasets) or None,
            spec,
            cache,
            kind=args.fields,
            test_fraction=args.holdout,
            split_seed=args.split_seed,
            compute_missing=args.compute_missing,
            sources=_data_sources(args.data),
            limit=args.limit or 0,
            device=device,
            client=client,
        )
        provenance = {
            "benchmarks": benches,
            "tasks": [t.name for t in tasks],
            "holdout": args.holdout,
            "split_seed": args.split_seed,
        }
        result = discover(
            tasks,
            config,
            args.out,
            resume=args.resume,
            probe=spec.as_dict(),
            provenance=provenance,
            workers=args.workers,
            progress=not args.quiet,
            client=client,
            device=device,
            share=cache.root,
        )
    best = result.saved[0]
    print(f"{result.evaluations} programs evaluated in {result.seconds:.0f} s; best proxy: {best}")
    print_front(args.out)
    print(f"summary: {Path(args.out) / 'summary.md'}")


def print_front(run_dir: str) -> None:
    """Print a run's Pareto front: size, training JCM and, where the run kept one, validation JCM."""
    front = read_front(run_dir)
    checked = any(math.isfinite(r.jcm_validation) for r in front)
    print("Pareto front (size, training JCM" + (", validation JCM" if checked else "") + "): pick the knee")
    for r in front:
        print(
            f"  {r.size:>3}  {r.jcm_train:6.3f}"
            + (f"  {r.jcm_validation:6.3f}" if checked else "")
            + f"  {r.expression}"
        )


def cmd_front(args: argparse.Namespace) -> None:
    if args.pick is None:
        print_front(args.run)
        return
    if not args.out:
        raise AutoproxError("--pick needs --out PROXY.json (where to save the picked program)")
    proxy = front_proxy(args.run, args.pick)
    path = save_proxy(args.out, proxy)
    print(f"{path}: {proxy.expression} (size {args.pick}, training JCM {proxy.fitness['jcm_train']:.3f})")


def _proxy(name: str, args: argparse.Namespace) -> str | SavedProxy:
    """A known proxy name or a saved proxy; an explicit --source replaces a saved proxy's own batch source."""
    return with_source(resolve_proxy(name), args.source)


def cmd_rank(args: argparse.Namespace) -> None:
    if args.format not in FORMATS:
        raise AutoproxError(f"unknown format {args.format!r}; known: {', '.join(FORMATS)}")
    proxies = [_proxy(p, args) for p in csv_list(args.proxy)]
    if not proxies:
        raise AutoproxError("--proxy needs a proxy name or a saved PROXY.json")
    spec, cache, device = _probe_spec(args), StatsCache(args.cache), resolve_device(args.device)
    rankings = []
    for name in csv_list(args.bench):
        bench = bench_mod.load_bench(name)
        fields = bench_fields(bench, csv_list(args.datasets), args.fields)
        if not fields:
            wanted = f"--fields {args.fields or bench.default_kind()}"
            wanted += f" --datasets {args.datasets}" if args.datasets else ""
            raise AutoproxError(
                f"benchmark {bench.name!r} has no accuracy field for {wanted}; "
                f"it has: {', '.join(bench.fields) or 'none'}"
            )
        rankings += [
            rank(
                p,
                bench,
                fields,
                spec,
                cache,
                args.holdout,
                args.split_seed,
                compute_missing=not args.cached_only,
                progress=not args.quiet,
                device=device,
            )
            for p in proxies
        ]
    print(format_rankings(rankings, args.format))


def cmd_export(args: argparse.Namespace) -> None:
    if args.format == "latex-table":
        text = latex_table(args.proxy)
        if args.out:
            write_text(args.out, text)
        print(args.out or text.rstrip("\n"))
        return
    proxy = load_proxy(args.proxy)
    if args.format == "png" or args.out:
        print(export_file(proxy, args.format, args.out or Path(args.proxy).with_suffix(".png")))
    else:
        print(export_text(proxy, args.format).rstrip("\n"))


def _budget(args: argparse.Namespace) -> Budget:
    return Budget(
        *(parse_range(args.params) if args.params else (0.0, float("inf"))),
        macs_max=args.flops * 1e9 if args.flops is not None else float("inf"),
        num_classes=get_dataset(args.dataset).num_classes,
        img_size=args.image_size,
    )


def cmd_search(args: argparse.Namespace) -> None:
    proxies = [_proxy(p, args) for arg in args.proxy for p in csv_list(arg)]
    config = SearchConfig(
        args.algo, args.budget, args.population, min(args.parents, args.population), seed=args.seed, top_k=args.top_k
    )
    space = get_space(args.space)
    args.dataset = args.dataset or default_dataset(space)
    spec, cache = _probe_spec(args, args.dataset), StatsCache(args.cache)
    with cluster_client(args) as client:
        searcher = Searcher(space, proxies, _budget(args), spec, cache, config, work_device(args), client)
        state = searcher.run(args.out, resume=args.resume, progress=not args.quiet)
    best = max(state.evaluated, key=lambda c: (c.fitness, -c.order))
    print(
        f"{len(state.evaluated)} architectures evaluated; best: {json.dumps(best.arch)} "
        f"({best.params / 1e6:.4g}M parameters, {best.macs / 1e9:.4g} GMACs, fitness {best.fitness:.6g})"
    )
    print(f"written: {Path(args.out) / 'best_arch.json'}, top.md, evaluated.csv, progress.png")


def cmd_score(args: argparse.Namespace) -> None:
    proxy, space = _proxy(args.proxy, args), get_space(args.space)
    args.dataset = args.dataset or default_dataset(space)
    budget = _budget(args)
    archs = candidates(
        space, budget, args.sample or 0, args.seed, read_archs(args.archs, space) if args.archs else None
    )
    spec, cache = _probe_spec(args, args.dataset), StatsCache(args.cache)
    table = score_archs(
        proxy, space, archs, spec, cache, budget, progress=not args.quiet, device=resolve_device(args.device)
    )
    print(
        f"{proxy_label(proxy)} on {len(table.rows)} {space.name} architectures"
        + (f" ({table.skipped} outside {budget.describe()} skipped)" if table.skipped else "")
    )
    print(f"{'rank':>4}  {'score':>12}  {'params':>8}  {'GMACs':>7}  {'hash':16}  arch")
    for r in table.rows:
        print(f"{r.rank:>4}  {r.score:>12.6g}  {r.params / 1e6:>7.4g}M  {r.macs / 1e9:>7.4g}  {r.hash}  {r.arch}")
    if args.out:
        print(f"written: {table.write_csv(args.out)}")


def cmd_ensemble(args: argparse.Namespace) -> None:
    ensemble = ensemble_of_run(args.run, args.top)
    print(f"{save_ensemble(args.out, ensemble)}: mean rank of {len(ensemble.members)} proxies")
    for member in ensemble.members:
        print(f"  {member.expression}  (training JCM {member.fitness.get('jcm_train', float('nan')):.3f})")


def cmd_simplify(args: argparse.Namespace) -> None:
    proxy = load_proxy(args.proxy)
    bundles = saved_proxy_bundles(
        proxy,
        csv_list(args.bench),
        StatsCache(args.cache),
        args.compute_missing,
        progress=not args.quiet,
        device=resolve_device(args.device),
    )
    result = simplify(proxy.tree(), [Evaluator(b, memo_bytes=1 << 28) for b in bundles], rank=not args.exact_only)
    print(f"original:   {proxy.expression}\nsimplified: {result.expression}")
    for step, is_proved in zip(result.exact, result.proved):
        print(f"  exact ({'proved by sympy' if is_proved else 'equal on the cached statistics'}): {step}")
    for step in result.rank:
        print(f"  rank-preserving at the root: {step}")
    if args.out:
        save_proxy(
            args.out,
            replace(
                proxy,
                expression=result.expression,
                simplification={**result.as_dict(), "checked_on": csv_list(args.bench)},
            ),
        )
        print(f"written: {args.out}")


def cmd_run(args: argparse.Namespace) -> None:
    """The whole job on one benchmark: statistics, discovery, export, search; each step resumable."""
    with cluster_client(args) as client:
        job = run_job(
            args.bench,
            args.out,
            StatsCache(args.cache),
            args.iterations,
            args.search_budget,
            args.params,
            args.seed,
            progress=not args.quiet,
            on_step=lambda title: print(f"== {title}", flush=True),
            device=work_device(args),
            client=client,
        )
    out = job.out
    print(f"statistics: {job.stats.computed} probed, {job.stats.cached} already cached")
    print(f"discovery: {job.discovery.evaluations} programs evaluated in {job.discovery.seconds:.0f} s")
    print(
        f"results in {out}/:\n  discovered proxies: {out}/discover/proxies/ (summary: {out}/discover/summary.md)\n"
        f"  best proxy exported: {out}/export/proxy.{{tex,py,graphml,png}}\n"
        f"  searched architecture ({job.params}M parameters): {out}/search/best_arch.json "
        "(top.md, evaluated.csv)"
    )


def cmd_proxies(args: argparse.Namespace) -> None:
    for name, (kind, description) in catalogue().items():
        print(f"{name:16s} {kind:9s} {description}")


def cmd_arch(args: argparse.Namespace) -> None:
    for space, archs, _ in _targets(args):
        for arch in archs:
            print(
                json.dumps(
                    {
                        "space": space.name,
                        "hash": space.arch_hash(arch),
                        "arch": arch,
                        "params": space.num_params(arch, args.num_classes, args.image_size),
                        "macs": space.macs(arch, args.num_classes, args.image_size),
                    }
                )
            )


HANDLERS: dict[str, Callable[[argparse.Namespace], None]] = {
    "stats": cmd_stats,
    "discover": cmd_discover,
    "rank": cmd_rank,
    "export": cmd_export,
    "search": cmd_search,
    "score": cmd_score,
    "ensemble": cmd_ensemble,
    "front": cmd_front,
    "simplify": cmd_simplify,
    "run": cmd_run,
    "proxies": cmd_proxies,
    "arch": cmd_arch,
    "bench_fetch": cmd_bench_fetch,
    "bench_build": cmd_bench_build,
    "data_fetch": cmd_data_fetch,
    "bench_show": cmd_bench_show,
}
