"""Ranking tasks from benchmarks: cached statistics + accuracies + an architecture-level split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from gp_proxy.errors import AutoproxError
from gp_proxy.fitness import Task
from vit_space.bench.benchmark import Benchmark, field_name, load_bench
from vit_space.device import resolve_device
from vit_space.probe.cache import ProbeSpec, StatsCache, fill, load_bundle
from vit_space.spaces import get_space


def bench_tasks(
    bench: Benchmark,
    datasets: Sequence[str],
    spec: ProbeSpec,
    cache: StatsCache,
    kind: str | None = None,
    test_fraction: float = 0.5,
    split_seed: int = 0,
    compute_missing: bool = False,
    sources: dict[str, str] | None = None,
    split: tuple[np.ndarray, np.ndarray] | None = None,
    device: str | torch.device = "cpu",
    client=None,
) -> list[Task]:
    """One task per data set of `bench`: the statistics probed on that data set's batch (from
    `sources[dataset]` if given, else the spec's source), the accuracies of field `kind` (kd or base;
    default: kd where the benchmark has it), and the same seeded split for every data set (or the
    given `split`, e.g. a k-fold fold). Missing statistics are probed on `device`, and the bundles
    are put there (programs are evaluated where their statistics are); with a Dask `client` they
    are probed on its workers and the bundles stay on the CPU (`discover` moves each worker's copy)."""
    if len(bench) < 4:
        raise AutoproxError(f"benchmark {bench.name} has {len(bench)} architectures; ranking needs at least 4")
    space = get_space(bench.space)
    kind = kind or bench.default_kind()
    archs = [space.validate(a) for a in bench.archs]
    if split is not None:
        train, test = split
    elif test_fraction > 0:
        train, test = bench.split(test_fraction, split_seed)
    else:
        train, test = np.arange(len(bench)), np.array([], dtype=int)
    tasks = []
    for dataset in datasets:
        accuracy = bench.accuracy(dataset, kind)
        probe_dataset = "imagenet" if field_name(dataset, kind) == "imagenet_super_acc" else dataset
        data_spec = spec.for_dataset(probe_dataset, (sources or {}).get(probe_dataset))
        if compute_missing:
            fill(space, archs, [data_spec], cache, device=device, client=client)
        bundle = load_bundle(space, archs, data_spec, cache)
        if client is None:
            bundle = bundle.to(resolve_device(device))
        tasks.append(Task(f"{bench.name}/{field_name(dataset, kind)}", bundle, accuracy, train, test))
    return tasks


def tasks_for(
    benches: Sequence[str],
    datasets: Sequence[str] | None,
    spec: ProbeSpec,
    cache: StatsCache,
    limit: int = 0,
    kind: str | None = None,
    **kwargs,
) -> list[Task]:
    """Tasks of several benchmarks (names or paths), each ranked on its `kind` fields (default: kd
    where that benchmark has it, else base); `datasets` None means each one's data sets of that kind;
    `limit` > 0 keeps only the first `limit` architectures of each benchmark."""
    tasks = []
    for name in benches:
        bench = load_bench(name)
        if limit:
            bench = bench.subset(np.arange(min(limit, len(bench))))
        bench_kind = kind or bench.default_kind()
        names = datasets or bench.datasets(bench_kind)
        if not names:
            raise AutoproxError(
                f"benchmark {bench.name!r} has no {bench_kind} fields; it has: {', '.join(bench.fields) or 'none'}"
            )
        tasks += bench_tasks(bench, names, spec, cache, kind=bench_kind, **kwargs)
    return tasks
