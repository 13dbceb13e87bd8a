"""The `autoprox bench` and `autoprox data` sub-commands: fetch, build and show benchmarks; fetch data."""

from __future__ import annotations

import argparse
import random
import shlex

import numpy as np

from gp_proxy.errors import AutoproxError
from vit_space.bench import benchmark as bench_mod
from vit_space.cli.parser import csv_list
from vit_space.cli.runtime import cluster_client, work_device
from vit_space.data.batches import get_dataset
from vit_space.search.budget import Budget, sample_within
from vit_space.spaces import get_space, read_archs


def cmd_bench_fetch(args: argparse.Namespace) -> None:
    for path in bench_mod.fetch_bench(csv_list(args.names), base_url=args.url, dest=args.dest, force=args.force):
        print(f"{path}: {len(bench_mod.load_bench(path))} architectures, sha256 verified")


def _seeds(text: str) -> tuple[int, ...]:
    """`--seeds K` (seeds 0..K-1) or a comma-separated list of distinct seeds."""
    values = csv_list(text)
    seeds = tuple(int(v) for v in values) if all(v.isdigit() for v in values) else ()
    seeds = tuple(range(seeds[0])) if len(seeds) == 1 else seeds
    if not seeds or len(set(seeds)) < len(seeds):
        raise AutoproxError(
            f"--seeds takes K >= 1 or a comma-separated list of distinct non-negative integers, got {text!r}"
        )
    return seeds


def _shard(text: str) -> tuple[int, int]:
    index, sep, count = text.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise AutoproxError(f"--shard must be I/N with 0 <= I < N, e.g. 0/2, got {text!r}")
    return int(index), int(count)


def _build_command(args: argparse.Namespace) -> str:
    """The `bench build` command that reproduces `args`, runnable anywhere: the parser's own
    fields and the options that say only where or how fast it runs are left out, as are unset
    ones (None, or a flag that is off); a flag that is on is written alone."""
    skip = {"handler", "command", "bench_command", "resume", "shard", "threads", "quiet", "device", "cluster"}
    parts = [
        f"--{k.replace('_', '-')}" + ("" if v is True else f" {shlex.quote(str(v))}")
        for k, v in vars(args).items()
        if k not in skip and v is not None and v is not False
    ]
    return "autoprox bench build " + " ".join(parts)


def cmd_bench_build(args: argparse.Namespace) -> None:
    import torch

    from vit_space.bench.build import BuildPlan, build_bench
    from vit_space.bench.training import Recipe

    if args.threads and args.cluster:
        raise AutoproxError(
            "--threads sets this process's torch threads, which trains nothing with --cluster (each local:N "
            "worker runs one thread); leave it out"
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    space = get_space(args.space)
    if args.archs.isdigit():
        archs = sample_within(space, int(args.archs), random.Random(args.sample_seed), Budget())
    else:
        archs = read_archs(args.archs, space)
    recipe = Recipe(
        steps=args.steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup=args.warmup,
        label_smoothing=args.label_smoothing,
        shift=args.shift,
        train_size=args.train_size,
        test_size=args.test_size,
    )
    plan = BuildPlan(space, tuple(archs), tuple(csv_list(args.dataset)), recipe, _seeds(args.seeds))
    if not plan.datasets:
        raise AutoproxError("--dataset needs fmnist, digits or a data folder (comma-separated for several)")
    with cluster_client(args) as client:
        out = build_bench(
            plan,
            args.out,
            resume=args.resume,
            shard=_shard(args.shard),
            progress=not args.quiet,
            command=_build_command(args),
            device=work_device(args),
            client=client,
        )
    bench = bench_mod.load_bench(out)
    print(f"{out}: {len(bench)} architectures; fields: {', '.join(bench.fields) or 'none complete yet'}")


def cmd_data_fetch(args: argparse.Namespace) -> None:
    from vit_space.data.images import fetch_fmnist, load_images

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
        print(
            f"  {field:20s} n={ok.sum():3d}  mean {acc[ok].mean():6.2f}  std {acc[ok].std():5.2f}  "
            f"min {acc[ok].min():6.2f}  max {acc[ok].max():6.2f}"
        )
