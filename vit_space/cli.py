"""The `autoprox` command: thin sub-commands over the library.

User errors print one line (`autoprox: error: ...`) and exit 2; Ctrl-C exits 130 and keeps
everything already written.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import random
import warnings
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from gp_proxy import export
from gp_proxy.atomic import write_text
from gp_proxy.discover import ALGORITHMS, DiscoveryConfig, discover
from gp_proxy.errors import AutoproxError, AutoproxWarning
from gp_proxy.fitness import JCM_MODES
from gp_proxy.library import KNOWN_PROXIES
from gp_proxy.program import MAX_PROGRAM_NODES, Evaluator
from gp_proxy.simplify import simplify
from gp_proxy.store import load_proxy, save_proxy
from gp_proxy.symbolic import to_latex as export_latex
from vit_space import bench as bench_mod
from vit_space.budget import Budget, parse_range, sample_within
from vit_space.cache import CONDITIONS, ProbeSpec, StatsCache, fill, latex_names
from vit_space.data import DATASETS, BatchSpec, get_dataset
from vit_space.proxies import (
    catalogue,
    proxy_label,
    proxy_scores,
    resolve_proxy,
    saved_proxy_bundles,
)
from vit_space.rank import FORMATS, bench_fields, format_rankings, rank
from vit_space.search import ALGORITHMS as SEARCH_ALGORITHMS
from vit_space.search import SearchConfig, Searcher
from vit_space.spaces import Arch, Space, TimmSpace, get_space
from vit_space.tasks import tasks_for


def _csv(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def bounded(kind: type, low: float, high: float = math.inf, high_open: bool = False,
            low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a `kind` (int or float) in [low, high] (open ends as told), so a bad value
    exits 2 with one line naming the option, e.g. `argument --limit: expected an integer >= 1, got '0'`."""
    what = "an integer" if kind is int else "a number"
    if high < math.inf:
        allowed = f"{what} in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    else:
        allowed = f"{what} {'>' if low_open else '>='} {low:g}"

    def convert(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        inside = (low < value if low_open else low <= value) and (value < high if high_open else value <= high)
        if not inside:
            raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}")
        return value

    convert.__name__ = allowed  # argparse's fallback message names the type
    return convert


POSITIVE = bounded(int, 1)
NON_NEGATIVE = bounded(int, 0)
SEED = NON_NEGATIVE  # Python's random.seed(-1) is seed 1: negative seeds would silently repeat others
POSITIVE_FLOAT = bounded(float, 0.0, low_open=True)
NON_NEGATIVE_FLOAT = bounded(float, 0.0)
SHARE = bounded(float, 0.0, 1.0, high_open=True)  # a share that may be 0 but not all


def read_archs(path: str, space: Space) -> list[Arch]:
    """A JSON list of architectures, a benchmark's {"records": [{"arch": ...}]} or a search's
    {"arch": ...}, validated against `space`."""
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise AutoproxError(f"cannot read {path}: {e.strerror}") from e
    except json.JSONDecodeError as e:
        raise AutoproxError(f"{path}: malformed JSON ({e.msg} at line {e.lineno})") from e
    if isinstance(payload, dict) and isinstance(payload.get("records"), list):
        payload = [r.get("arch") if isinstance(r, dict) else r for r in payload["records"]]
    elif isinstance(payload, dict) and isinstance(payload.get("arch"), dict):  # a search's best_arch.json
        payload = [payload["arch"]]
    if not isinstance(payload, list) or not payload:
        raise AutoproxError(f"{path}: expected a non-empty JSON list of architectures")
    archs = []
    for i, arch in enumerate(payload):
        try:
            archs.append(space.validate(arch))
        except AutoproxError as e:
            raise AutoproxError(f"{path}: architecture {i}: {e}") from e
    return archs


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
        for name in _csv(args.bench):
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


def default_dataset(space: Space) -> str:
    """The data set a space is probed on when none is named: fmnist for 1-channel spaces, else c100."""
    return "fmnist" if space.in_chans == 1 else "c100"


def cmd_stats(args: argparse.Namespace) -> None:
    cache = StatsCache(args.cache)
    sources = _data_sources(args.data)
    for space, archs, default_datasets in _targets(args):
        archs = archs[: args.limit] if args.limit else archs
        specs = [_probe_spec(args, d, sources.get(d)) for d in _csv(args.datasets) or default_datasets]
        report = fill(space, archs, specs, cache, progress=not args.quiet)
        per_probe = f", {np.mean(report.probe_seconds):.2f} s per probe" if report.probe_seconds else ""
        print(f"{space.name}: {report.computed + report.cached} entries "
              f"({report.computed} probed, {report.cached} already cached) in {report.seconds:.1f} s{per_probe}")
    print(f"cache {cache.root}: {cache.size_bytes() / 2**20:.1f} MiB")


def _probe_spec(args: argparse.Namespace, dataset: str = "c100", source: str | None = None) -> ProbeSpec:
    spec = ProbeSpec(BatchSpec(dataset, source or args.source or "auto", args.batch, args.seed, args.image_size), args.sketch,
                     tuple(_csv(args.conditions)))
    spec.validate()
    return spec


def cmd_discover(args: argparse.Namespace) -> None:
    config = DiscoveryConfig(algorithm=args.algo, iterations=args.iterations, max_evaluations=args.max_evaluations or 0,
                             population=args.population, seed=args.search_seed, jcm=args.jcm,
                             seed_proxies=tuple(_csv(args.seed_proxies)), batch=args.parents,
                             size_limit=args.size_limit)
    config.validate()
    spec = _probe_spec(args)
    benches = _csv(args.bench)
    tasks = tasks_for(benches, _csv(args.datasets) or None, spec, StatsCache(args.cache), kind=args.fields,
                      test_fraction=args.holdout, split_seed=args.split_seed, compute_missing=args.compute_missing,
                      sources=_data_sources(args.data), limit=args.limit or 0)
    provenance = {"benchmarks": benches, "tasks": [t.name for t in tasks], "holdout": args.holdout,
                  "split_seed": args.split_seed}
    result = discover(tasks, config, args.out, resume=args.resume, probe=spec.as_dict(), provenance=provenance,
                      workers=args.workers, progress=not args.quiet)
    best = result.saved[0]
    print(f"{result.evaluations} programs evaluated in {result.seconds:.0f} s; best proxy: {best}")
    print(f"summary: {Path(args.out) / 'summary.md'}")


def _proxy(name: str, args: argparse.Namespace):
    """A known proxy name or a saved proxy; an explicit --source replaces a saved proxy's own batch source."""
    proxy = resolve_proxy(name)
    if args.source and not isinstance(proxy, str):
        proxy = replace(proxy, probe={**proxy.probe, "source": args.source})
    return proxy


def cmd_rank(args: argparse.Namespace) -> None:
    if args.format not in FORMATS:
        raise AutoproxError(f"unknown format {args.format!r}; known: {', '.join(FORMATS)}")
    proxies = [_proxy(p, args) for p in _csv(args.proxy)]
    if not proxies:
        raise AutoproxError("--proxy needs a proxy name or a saved PROXY.json")
    spec, cache = _probe_spec(args), StatsCache(args.cache)
    rankings = []
    for name in _csv(args.bench):
        bench = bench_mod.load_bench(name)
        fields = bench_fields(bench, _csv(args.datasets), args.fields)
        if not fields:
            wanted = f"--fields {args.fields or bench.default_kind()}"
            wanted += f" --datasets {args.datasets}" if args.datasets else ""
            raise AutoproxError(f"benchmark {bench.name!r} has no accuracy field for {wanted}; "
                                f"it has: {', '.join(bench.fields) or 'none'}")
        rankings += [rank(p, bench, fields, spec, cache, args.holdout, args.split_seed,
                          compute_missing=not args.cached_only, progress=not args.quiet) for p in proxies]
    print(format_rankings(rankings, args.format))


EXPORTS = ("latex", "python", "graphml", "dot", "png", "json")


def cmd_export(args: argparse.Namespace) -> None:
    proxy = load_proxy(args.proxy)
    tree = proxy.tree()
    if args.format == "png":
        path = args.out or str(Path(args.proxy).with_suffix(".png"))
        export.draw(tree, path)
        print(path)
        return
    text = {"latex": lambda: export_latex(tree, latex_names(proxy.names)),
            "python": lambda: export.to_python(tree, proxy.groups, proxy.probe),
            "graphml": lambda: export.to_graphml(tree), "dot": lambda: export.to_dot(tree),
            "json": proxy.to_json}[args.format]()
    if args.out:
        write_text(args.out, text if text.endswith("\n") else text + "\n")
        print(args.out)
    else:
        print(text.rstrip("\n"))


def _budget(args: argparse.Namespace) -> Budget:
    return Budget(*(parse_range(args.params) if args.params else (0.0, float("inf"))),
                  macs_max=args.flops * 1e9 if args.flops is not None else float("inf"),
                  num_classes=get_dataset(args.dataset).num_classes, img_size=args.image_size)


def cmd_search(args: argparse.Namespace) -> None:
    proxies = [_proxy(p, args) for arg in args.proxy for p in _csv(arg)]
    config = SearchConfig(args.algo, args.budget, args.population, min(args.parents, args.population),
                          seed=args.seed, top_k=args.top_k)
    space = get_space(args.space)
    args.dataset = args.dataset or default_dataset(space)
    searcher = Searcher(space, proxies, _budget(args), _probe_spec(args, args.dataset),
                        StatsCache(args.cache), config)
    state = searcher.run(args.out, resume=args.resume, progress=not args.quiet)
    best = max(state.evaluated, key=lambda c: (c.fitness, -c.order))
    print(f"{len(state.evaluated)} architectures evaluated; best: {json.dumps(best.arch)} "
          f"({best.params / 1e6:.4g}M parameters, {best.macs / 1e9:.4g} GMACs, fitness {best.fitness:.6g})")
    print(f"written: {Path(args.out) / 'best_arch.json'}, top.md, evaluated.csv, progress.png")


def cmd_score(args: argparse.Namespace) -> None:
    proxy, space = _proxy(args.proxy, args), get_space(args.space)
    args.dataset = args.dataset or default_dataset(space)
    classes = get_dataset(args.dataset).num_classes
    budget = _budget(args)
    if args.archs:
        archs = read_archs(args.archs, space)
    elif args.sample:
        archs = sample_within(space, args.sample, random.Random(args.seed), budget)
    elif isinstance(space, TimmSpace):
        archs = [{"timm": name} for name in space.names]
    else:
        raise AutoproxError(f"--space {args.space} needs --archs FILE.json or --sample N")
    fitting = [a for a in archs if budget.fits(space, a)]
    if not fitting:
        raise AutoproxError(f"none of the {len(archs)} architectures fits {budget.describe()}")
    spec = _probe_spec(args, args.dataset)
    scores = proxy_scores(proxy, space, fitting, spec, StatsCache(args.cache), progress=not args.quiet).values
    rows = sorted(({"score": float(s), "params": space.num_params(a, classes, args.image_size),
                    "macs": space.macs(a, classes, args.image_size), "hash": space.arch_hash(a),
                    "arch": space.to_json(a)} for a, s in zip(fitting, scores)),
                  key=lambda r: -r["score"] if np.isfinite(r["score"]) else np.inf)
    print(f"{proxy_label(proxy)} on {len(fitting)} {space.name} architectures"
          + (f" ({len(archs) - len(fitting)} outside {budget.describe()} skipped)" if len(fitting) < len(archs) else ""))
    print(f"{'rank':>4}  {'score':>12}  {'params':>8}  {'GMACs':>7}  {'hash':16}  arch")
    for i, r in enumerate(rows, start=1):
        print(f"{i:>4}  {r['score']:>12.6g}  {r['params'] / 1e6:>7.4g}M  {r['macs'] / 1e9:>7.4g}  {r['hash']}  {r['arch']}")
    if args.out:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["rank", "score", "params", "macs", "hash", "arch"],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows({"rank": i, **r} for i, r in enumerate(rows, start=1))
        write_text(args.out, buffer.getvalue())
        print(f"written: {args.out}")


def cmd_simplify(args: argparse.Namespace) -> None:
    proxy = load_proxy(args.proxy)
    bundles = saved_proxy_bundles(proxy, _csv(args.bench), StatsCache(args.cache), args.compute_missing,
                                  progress=not args.quiet)
    result = simplify(proxy.tree(), [Evaluator(b, memo_bytes=1 << 28) for b in bundles], rank=not args.exact_only)
    print(f"original:   {proxy.expression}\nsimplified: {result.expression}")
    for step, is_proved in zip(result.exact, result.proved):
        print(f"  exact ({'proved by sympy' if is_proved else 'equal on the cached statistics'}): {step}")
    for step in result.rank:
        print(f"  rank-preserving at the root: {step}")
    if args.out:
        save_proxy(args.out, replace(proxy, expression=result.expression,
                                     simplification={**result.as_dict(), "checked_on": _csv(args.bench)}))
        print(f"written: {args.out}")


def cmd_run(args: argparse.Namespace) -> None:
    """The whole job on one benchmark: statistics, discovery, export, search; each step resumable."""
    out, bench = Path(args.out), bench_mod.load_bench(args.bench)
    space, kind = get_space(bench.space), bench.default_kind()
    classes = get_dataset(bench.datasets(kind)[0]).num_classes
    params = np.array([space.num_params(a, classes) for a in bench.archs])
    budget = args.params or f"{np.percentile(params, 10) / 1e6:.4g}-{np.median(params) / 1e6:.4g}"
    cache = ["--cache", args.cache] if args.cache else []
    quiet = ["--quiet"] if args.quiet else []
    discover_dir, search_dir, export_dir = out / "discover", out / "search", out / "export"
    best = discover_dir / "proxies" / "rank01.json"
    steps = [
        ("statistics", ["stats", "--bench", args.bench, *cache, *quiet]),
        ("discovery", ["discover", "--bench", args.bench, "--out", str(discover_dir), "--iterations",
                       str(args.iterations), "--search-seed", str(args.seed), *cache, *quiet,
                       *(["--resume"] if (discover_dir / "checkpoint.json").is_file() else [])]),
        *((f"export {fmt}", ["export", str(best), "--format", fmt, "--out", str(export_dir / f"proxy.{ext}")])
          for fmt, ext in (("latex", "tex"), ("python", "py"), ("graphml", "graphml"), ("png", "png"))),
        ("search", ["search", "--space", bench.space, "--proxy", str(best), "--params", budget, "--budget",
                    str(args.search_budget), "--dataset", bench.datasets(kind)[0], "--seed", str(args.seed),
                    "--out", str(search_dir), *cache, *quiet,
                    *(["--resume"] if (search_dir / "checkpoint.json").is_file() else [])]),
    ]
    for title, argv in steps:
        print(f"== {title}: autoprox {' '.join(argv)}", flush=True)
        if main(argv):
            raise AutoproxError(f"the {title} step failed (its error is above); rerun `autoprox run` to resume")
    print(f"results in {out}/:\n  discovered proxies: {discover_dir}/proxies/ (summary: {discover_dir}/summary.md)\n"
          f"  best proxy exported: {export_dir}/proxy.{{tex,py,graphml,png}}\n"
          f"  searched architecture ({budget}M parameters): {search_dir}/best_arch.json (top.md, evaluated.csv)")


def cmd_proxies(args: argparse.Namespace) -> None:
    for name, (kind, description) in catalogue().items():
        print(f"{name:16s} {kind:9s} {description}")


def cmd_arch(args: argparse.Namespace) -> None:
    for space, archs, _ in _targets(args):
        for arch in archs:
            print(json.dumps({"space": space.name, "hash": space.arch_hash(arch), "arch": arch,
                              "params": space.num_params(arch, args.num_classes, args.image_size),
                              "macs": space.macs(arch, args.num_classes, args.image_size)}))


def cmd_bench_fetch(args: argparse.Namespace) -> None:
    for path in bench_mod.fetch_bench(_csv(args.names), base_url=args.url, dest=args.dest, force=args.force):
        print(f"{path}: {len(bench_mod.load_bench(path))} architectures, sha256 verified")


def _seeds(text: str) -> tuple[int, ...]:
    """`--seeds K` (seeds 0..K-1) or a comma-separated list of distinct seeds."""
    values = _csv(text)
    seeds = tuple(int(v) for v in values) if all(v.isdigit() for v in values) else ()
    seeds = tuple(range(seeds[0])) if len(seeds) == 1 else seeds
    if not seeds or len(set(seeds)) < len(seeds):
        raise AutoproxError(f"--seeds takes K >= 1 or a comma-separated list of distinct non-negative integers, "
                            f"got {text!r}")
    return seeds


def _shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise AutoproxError(f"--shard must be I/N with 0 <= I < N, e.g. 0/2, got {text!r}")
    return int(index), int(count)


def _build_command(args: argparse.Namespace) -> str:
    """The `bench build` command that reproduces `args` (options that change no number left out)."""
    skip = {"func", "command", "bench_command", "resume", "shard", "threads", "quiet"}
    parts = [f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in skip]
    return "autoprox bench build " + " ".join(parts)


def cmd_bench_build(args: argparse.Namespace) -> None:
    import torch

    from vit_space.benchbuild import BuildPlan, build_bench
    from vit_space.train import Recipe

    if args.threads:
        torch.set_num_threads(args.threads)
    space = get_space(args.space)
    if args.archs.isdigit():
        archs = sample_within(space, int(args.archs), random.Random(args.sample_seed), Budget())
    else:
        archs = read_archs(args.archs, space)
    recipe = Recipe(steps=args.steps, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                    weight_decay=args.weight_decay, warmup=args.warmup, label_smoothing=args.label_smoothing,
                    shift=args.shift, train_size=args.train_size, test_size=args.test_size)
    plan = BuildPlan(space, tuple(archs), tuple(_csv(args.dataset)), recipe, _seeds(args.seeds))
    if not plan.datasets:
        raise AutoproxError("--dataset needs fmnist, digits or a data folder (comma-separated for several)")
    out = build_bench(plan, args.out, resume=args.resume, shard=_shard(args.shard), progress=not args.quiet,
                      command=_build_command(args))
    bench = bench_mod.load_bench(out)
    print(f"{out}: {len(bench)} architectures; fields: {', '.join(bench.fields) or 'none complete yet'}")


def cmd_data_fetch(args: argparse.Namespace) -> None:
    from vit_space.datasets import fetch_fmnist, load_images

    if args.name != "fmnist":
        raise AutoproxError(f"only fmnist is downloaded; digits ships with scikit-learn, got {args.name!r}")
    folder = fetch_fmnist(args.url, args.dest)
    print(f"{folder}: Fashion-MNIST, sha256 verified")
    if not args.dest:
        print(load_images("fmnist").describe())


def cmd_bench_show(args: argparse.Namespace) -> None:
    bench = bench_mod.load_bench(args.bench)
    space = get_space(bench.space)
    classes = get_dataset(bench.datasets(bench.default_kind())[0]).num_classes if bench.fields else 100
    params = np.array([space.num_params(a, classes) for a in bench.archs]) / 1e6
    print(f"{bench.name}: {len(bench)} {bench.space} architectures from {bench.source}")
    print(f"parameters ({classes} classes): {params.min():.4g}M to {params.max():.4g}M")
    for field in bench.fields:
        acc = bench.accuracy(field)
        ok = np.isfinite(acc)
        print(f"  {field:20s} n={ok.sum():3d}  mean {acc[ok].mean():6.2f}  std {acc[ok].std():5.2f}  "
              f"min {acc[ok].min():6.2f}  max {acc[ok].max():6.2f}")


IMAGE_SIZE_HELP = "input side in pixels (default: the space's own, 224 for autoformer/pit, 28 for the small spaces)"


def _add_target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bench", help="benchmark name(s) (autoformer, pit) or path(s), comma-separated")
    p.add_argument("--space", help="autoformer, pit or timm:NAME[,NAME...] (with --archs or --sample)")
    p.add_argument("--archs", help="JSON file: a list of architectures of --space")
    p.add_argument("--sample", type=POSITIVE, help="sample N architectures of --space (with --seed)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the batch, the init and the sketch (default 0)")
    p.add_argument("--image-size", type=bounded(int, 8), help=IMAGE_SIZE_HELP)


def _add_cache_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", help="cache folder (default $AUTOPROX_CACHE/stats or ~/.cache/autoprox/stats)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_probe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", help="proxy images: auto (default: the data set's own images where autoprox has "
                   "them, else skimage), train, skimage, noise, or a data folder; given, it also replaces a saved "
                   "proxy's recorded source")
    p.add_argument("--batch", type=POSITIVE, default=16, help="images in the probe batch (default 16)")
    p.add_argument("--sketch", type=bounded(int, 2), default=32, help="sketch size S (rows and columns kept)")
    p.add_argument("--conditions", default="data", help=f"comma-separated, from {', '.join(CONDITIONS)}")
    _add_cache_args(p)
    if "--seed" not in p._option_string_actions:
        p.add_argument("--seed", type=SEED, default=0, help="seed of the batch, the init and the sketch (default 0)")
        p.add_argument("--image-size", type=bounded(int, 8), help=IMAGE_SIZE_HELP)


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, like every other user error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="autoprox", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stats", help="probe architectures once and cache their statistics")
    _add_target_args(p)
    p.add_argument("--datasets", help=f"comma-separated, from {', '.join(DATASETS)} (default: the benchmark's KD data sets)")
    p.add_argument("--data", action="append", default=[], metavar="NAME=PATH", help="real data for one data set")
    p.add_argument("--limit", type=POSITIVE, help="only the first N architectures")
    _add_probe_args(p)
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("discover", help="evolve zero-cost proxies on cached statistics")
    p.add_argument("--bench", required=True, help="benchmark name(s) or path(s), comma-separated")
    p.add_argument("--datasets", default="", help="comma-separated (default: each benchmark's KD data sets)")
    p.add_argument("--fields", choices=["kd", "base"],
                   help="which accuracy fields to rank (default: kd where the benchmark has it, else base)")
    p.add_argument("--out", required=True, help="output folder (proxies/, logbook.csv, summary.md, checkpoint.json)")
    p.add_argument("--algo", default="elitism", choices=list(ALGORITHMS))
    p.add_argument("--iterations", type=POSITIVE, default=1000, help="elitism steps or (mu+lambda) generations")
    p.add_argument("--max-evaluations", type=POSITIVE, help="stop after this many evaluated programs")
    p.add_argument("--population", type=bounded(int, max(2, DiscoveryConfig.top_k)), default=50)
    p.add_argument("--parents", type=POSITIVE, default=1, help="elitism: parents mutated per step")
    p.add_argument("--jcm", default="mean", choices=list(JCM_MODES))
    p.add_argument("--size-limit", type=bounded(int, 3, MAX_PROGRAM_NODES), default=12,
                   help="largest program, in nodes (parsimony; default 12)")
    p.add_argument("--holdout", type=SHARE, default=0.5, help="share of each benchmark's architectures held out")
    p.add_argument("--split-seed", type=SEED, default=0)
    p.add_argument("--search-seed", type=SEED, default=0, help="seed of the evolution")
    p.add_argument("--seed-proxies", default="", help=f"start from these known proxies: {', '.join(KNOWN_PROXIES)}")
    p.add_argument("--workers", type=POSITIVE, default=1, help="evaluation processes")
    p.add_argument("--resume", action="store_true", help="continue the run checkpointed in --out")
    p.add_argument("--compute-missing", action="store_true", help="probe architectures missing from the cache")
    p.add_argument("--limit", type=POSITIVE, help="only the first N architectures of each benchmark")
    p.add_argument("--data", action="append", default=[], metavar="NAME=PATH", help="real data for one data set")
    _add_probe_args(p)
    p.set_defaults(func=cmd_discover)

    p = sub.add_parser("rank", help="correlate a proxy's scores with a benchmark's accuracies")
    p.add_argument("--bench", required=True, help="benchmark name(s) (autoformer, pit) or file(s), comma-separated")
    p.add_argument("--proxy", required=True, help="known proxy name(s) (see `autoprox proxies`) or PROXY.json, comma-separated")
    p.add_argument("--datasets", default="", help="comma-separated, e.g. c100,flowers,chaoyang,imagenet "
                   "(default: the benchmark's data sets with --fields)")
    p.add_argument("--fields", choices=["kd", "base", "all"],
                   help="accuracy fields: KD-trained, trained from scratch, or every field (ImageNet supernet too); "
                   "default: kd where the benchmark has it, else base")
    p.add_argument("--holdout", type=SHARE, default=0.5, help="share of architectures in the held-out part (0: none)")
    p.add_argument("--split-seed", type=SEED, default=0)
    p.add_argument("--format", default="table", help=f"output: {', '.join(FORMATS)}")
    p.add_argument("--cached-only", action="store_true",
                   help="use only cached statistics and scores (default: probe what is missing on the way)")
    _add_probe_args(p)
    p.set_defaults(func=cmd_rank)

    p = sub.add_parser("export", help="write a saved proxy as LaTeX, Python, GraphML, DOT, PNG or JSON")
    p.add_argument("proxy", help="a saved PROXY.json")
    p.add_argument("--format", required=True, choices=EXPORTS)
    p.add_argument("--out", help="output file (default: standard output; png: next to the proxy file)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("score", help="score architectures or timm models with a saved (or known) proxy")
    p.add_argument("proxy", help="a saved PROXY.json or a known proxy name")
    p.add_argument("--space", required=True, help="autoformer, pit or timm:NAME[,NAME...]")
    p.add_argument("--archs", help="JSON file: a list of architectures of --space")
    p.add_argument("--sample", type=POSITIVE, help="sample N distinct architectures within the budget")
    p.add_argument("--params", help="parameter range LO-HI in millions, e.g. 5-7.5")
    p.add_argument("--flops", type=POSITIVE_FLOAT, help="largest MACs per image, in billions")
    p.add_argument("--dataset", help=f"the data set whose batch and head size to use ({', '.join(DATASETS)}; "
                   "default: fmnist for 1-channel spaces, else c100)")
    p.add_argument("--out", help="CSV file of the ranked table")
    _add_probe_args(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("simplify", help="shorten a saved proxy, checked on cached benchmark statistics")
    p.add_argument("proxy", help="a saved PROXY.json")
    p.add_argument("--bench", default="autoformer,pit", help="benchmarks whose statistics the check uses")
    p.add_argument("--exact-only", action="store_true", help="no rank-preserving rewrites at the root")
    p.add_argument("--compute-missing", action="store_true", help="probe architectures missing from the cache")
    p.add_argument("--out", help="write the simplified proxy here (the original expression kept inside)")
    _add_cache_args(p)
    p.set_defaults(func=cmd_simplify)

    p = sub.add_parser("search", help="search a space for the best-scoring architectures within a budget")
    p.add_argument("--space", required=True, help="autoformer, pit or timm:NAME[,NAME...]")
    p.add_argument("--proxy", required=True, action="append",
                   help="PROXY.json or a known name; repeat (or comma-separate) to rank by mean rank over proxies")
    p.add_argument("--params", help="parameter range LO-HI in millions, e.g. 5-7.5")
    p.add_argument("--flops", type=POSITIVE_FLOAT, help="largest MACs per image, in billions")
    p.add_argument("--budget", type=POSITIVE, default=500, help="architectures to evaluate")
    p.add_argument("--algo", default="evolution", choices=list(SEARCH_ALGORITHMS))
    p.add_argument("--population", type=bounded(int, 2), default=50)
    p.add_argument("--parents", type=POSITIVE, default=10, help="evolution: the top architectures that breed")
    p.add_argument("--top-k", type=POSITIVE, default=10, help="rows of top.md")
    p.add_argument("--dataset", help="the data set whose batch and head size to use (default: fmnist for "
                   "1-channel spaces, else c100)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue the search checkpointed in --out")
    _add_probe_args(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("run", help="the whole job on a benchmark: statistics, discovery, export, search")
    p.add_argument("--bench", default="af-tiny", help="benchmark name or file (default: the shipped af-tiny)")
    p.add_argument("--out", default="runs/quickstart", help="output folder (default runs/quickstart)")
    p.add_argument("--iterations", type=POSITIVE, default=3000, help="discovery steps (default 3000)")
    p.add_argument("--search-budget", type=POSITIVE, default=500,
                   help="architectures the search evaluates (default 500)")
    p.add_argument("--params", help="search budget LO-HI in millions (default: the benchmark's 10th percentile "
                   "to its median)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the discovery and the search")
    _add_cache_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("proxies", help="list the known proxies")
    p.set_defaults(func=cmd_proxies)

    p = sub.add_parser("arch", help="validate architectures and print their hash, parameters and MACs")
    _add_target_args(p)
    p.add_argument("--num-classes", type=POSITIVE, default=1000)
    p.set_defaults(func=cmd_arch)

    bench = sub.add_parser("bench", help="ViT-Bench-101 files").add_subparsers(dest="bench_command", required=True)
    p = bench.add_parser("fetch", help="download the original benchmark files into the user cache")
    p.add_argument("--names", default=",".join(bench_mod.BENCH_NAMES))
    p.add_argument("--url", help="base URL (https:// or file://); default $AUTOPROX_BENCH_URL or the public repository")
    p.add_argument("--dest", help="folder (default: the user cache, where --bench NAME looks)")
    p.add_argument("--force", action="store_true", help="download even if a verified copy is there")
    p.set_defaults(func=cmd_bench_fetch)
    p = bench.add_parser("build", help="train architectures with one recipe and record their accuracy")
    p.add_argument("--space", required=True, help="af-tiny, pit-tiny (1x28x28; NAME@CxS for other inputs), autoformer, pit")
    p.add_argument("--dataset", required=True, help="fmnist, digits or a data folder (CIFAR-10/100, ImageFolder); "
                   "comma-separated for several")
    p.add_argument("--archs", required=True, help="N (sample N distinct architectures) or a JSON file of architectures")
    p.add_argument("--sample-seed", type=SEED, default=0, help="seed of the architecture sample")
    p.add_argument("--seeds", default="2", help="K (seeds 0..K-1) or a comma-separated list (default 2)")
    p.add_argument("--steps", type=POSITIVE, default=800, help="optimizer steps per run (default 800)")
    p.add_argument("--epochs", type=NON_NEGATIVE_FLOAT, default=0.0,
                   help="passes over each training set instead of --steps")
    p.add_argument("--batch-size", type=POSITIVE, default=32)
    p.add_argument("--lr", type=POSITIVE_FLOAT, default=3e-3, help="AdamW peak learning rate")
    p.add_argument("--weight-decay", type=NON_NEGATIVE_FLOAT, default=0.05)
    p.add_argument("--warmup", type=SHARE, default=0.1, help="share of the steps warming up (then cosine to 0)")
    p.add_argument("--label-smoothing", type=SHARE, default=0.1)
    p.add_argument("--shift", type=NON_NEGATIVE, default=0, help="random translation augmentation, in pixels")
    p.add_argument("--train-size", type=NON_NEGATIVE, default=0,
                   help="train on a fixed subset of this many images (0: all)")
    p.add_argument("--test-size", type=NON_NEGATIVE, default=0, help="evaluate on a fixed subset of this many images (0: all)")
    p.add_argument("--out", required=True, help="benchmark JSON (its journal BENCH.runs.jsonl goes beside it)")
    p.add_argument("--resume", action="store_true", help="continue the build journalled beside --out")
    p.add_argument("--shard", default="0/1", help="I/N: train every N-th run from the I-th (parallel processes)")
    p.add_argument("--threads", type=POSITIVE, help="torch threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_bench_build)
    p = bench.add_parser("show", help="summarise a benchmark")
    p.add_argument("--bench", required=True)
    p.set_defaults(func=cmd_bench_show)
    data = sub.add_parser("data", help="training data sets").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("fetch", help="download Fashion-MNIST into the user cache (sha256-checked)")
    p.add_argument("name", help="fmnist")
    p.add_argument("--url", help="base URL (https:// or file://); default $AUTOPROX_FMNIST_URL or the public repository")
    p.add_argument("--dest", help="folder (default: the user cache, where fmnist is looked for)")
    p.set_defaults(func=cmd_data_fetch)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None, *, fallback: Callable) -> None:
    """Print an AutoproxWarning as one line, `autoprox: warning: ...`; hand others to `fallback`."""
    if issubclass(category, AutoproxWarning):
        print(f"autoprox: warning: {message}", file=sys.stderr)
    else:
        fallback(message, category, filename, lineno, file, line)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a bad option already reported on one line
        return e.code if isinstance(e.code, int) else 2
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        with warnings.catch_warnings():
            warnings.showwarning = partial(_show_warning, fallback=warnings.showwarning)
            func(args)
    except AutoproxError as e:
        print(f"autoprox: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("autoprox: interrupted; everything finished so far is saved, rerun to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
