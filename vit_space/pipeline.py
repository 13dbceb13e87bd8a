"""The main job on one benchmark: probe and cache, discover, export, search; each step resumable.

`run_job` is what `autoprox run` and the experiments call. Every step writes under `out`
(``discover/``, ``export/``, ``search/``); rerunning after an interruption continues where
it stopped and reaches the same result.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gp_proxy.discovery import DiscoveryConfig, DiscoveryResult, discover
from gp_proxy.errors import IdleWorkersWarning
from gp_proxy.store import load_proxy
from vit_space.bench.benchmark import load_bench
from vit_space.data.batches import BatchSpec, get_dataset
from vit_space.probe.cache import FillReport, ProbeSpec, StatsCache, fill
from vit_space.proxies.export import export_file
from vit_space.proxies.tasks import tasks_for
from vit_space.search.budget import Budget, parse_range
from vit_space.search.searchers import SearchConfig, Searcher, SearchState
from vit_space.spaces import Space, get_space

JOB_ITERATIONS = 3000  # discovery steps of the main job
# The first population's known proxies, for `autoprox discover` and `run`: of the discovery settings
# compared on validation data inside ViT-Bench-101's training half, starting from these generalised
# best (results/quality.md, `experiments/quality.py`).
SEED_PROXIES = ("depth_width", "weight_l2")
EXPORT_FORMATS = (("latex", "tex"), ("python", "py"), ("graphml", "graphml"), ("png", "png"))


@dataclass
class JobResult:
    """What `run_job` produced: the statistics it probed, the discovery run, the exported files, the
    search, and the parameter range searched (`params`, in millions, "LO-HI")."""

    stats: FillReport
    discovery: DiscoveryResult
    exports: list[Path]
    search: SearchState
    params: str
    out: Path


def default_dataset(space: Space) -> str:
    """The data set a space is probed on when none is named: fmnist for 1-channel spaces, else c100."""
    return "fmnist" if space.in_chans == 1 else "c100"


def default_params(bench_name: str) -> str:
    """A benchmark's 10th-percentile-to-median parameter range, in millions ("LO-HI")."""
    bench = load_bench(bench_name)
    space = get_space(bench.space)
    classes = get_dataset(bench.datasets(bench.default_kind())[0]).num_classes
    params = np.array([space.num_params(a, classes) for a in bench.archs])
    return f"{np.percentile(params, 10) / 1e6:.4g}-{np.median(params) / 1e6:.4g}"


def run_job(
    bench_name: str = "af-tiny",
    out: str | Path = "runs/quickstart",
    cache: StatsCache | None = None,
    iterations: int = JOB_ITERATIONS,
    search_budget: int = 500,
    params: str | None = None,
    seed: int = 0,
    progress: bool = True,
    on_step: Callable[[str], None] = lambda step: None,
    device: str | torch.device = "cpu",
    client=None,
) -> JobResult:
    """Probe `bench_name`'s architectures, discover proxies on them (seed `seed`, `iterations` steps,
    the first population holding `SEED_PROXIES`),
    export the best, and search its space within `params` (millions, "LO-HI"; default: the
    benchmark's 10th percentile to median) for `search_budget` architectures. `on_step(title)` is
    called before each step. The statistics use batch seed 0; discovery and search use `seed`.
    Probes run and programs are evaluated on `device`; with a Dask `client` (`vit_space.cluster.connect`)
    the probes, the discovery's evaluations and the search's candidates run on its workers, with the
    same results."""
    out, cache = Path(out), cache or StatsCache()
    bench = load_bench(bench_name)
    space, kind = get_space(bench.space), bench.default_kind()
    datasets = bench.datasets(kind)
    params = params or default_params(bench_name)
    spec = ProbeSpec(BatchSpec(datasets[0], image_size=None))

    on_step("statistics")
    stats = fill(
        space,
        [space.validate(a) for a in bench.archs],
        [spec.for_dataset(d) for d in datasets],
        cache,
        progress=progress,
        device=device,
        client=client,
    )

    on_step("discovery")
    discover_dir = out / "discover"
    tasks = tasks_for([bench_name], None, spec, cache, device=device, client=client)
    with warnings.catch_warnings():  # the job scores one program per step, on a cluster too (the same results)
        warnings.simplefilter("ignore", IdleWorkersWarning)
        discovery = discover(
            tasks,
            DiscoveryConfig(iterations=iterations, seed=seed, seed_proxies=SEED_PROXIES),
            discover_dir,
            resume=(discover_dir / "checkpoint.json").is_file(),
            probe=spec.as_dict(),
            provenance={"benchmarks": [bench_name], "tasks": [t.name for t in tasks], "holdout": 0.5, "split_seed": 0},
            progress=progress,
            client=client,
            device=device,
            share=cache.root,
        )
    best = load_proxy(discovery.saved[0])

    exports = []
    for fmt, ext in EXPORT_FORMATS:
        on_step(f"export {fmt}")
        exports.append(export_file(best, fmt, out / "export" / f"proxy.{ext}"))

    on_step("search")
    search_dir = out / "search"
    budget = Budget(*parse_range(params), num_classes=get_dataset(datasets[0]).num_classes)
    searcher = Searcher(
        space,
        [best],
        budget,
        ProbeSpec(BatchSpec(datasets[0], seed=seed, image_size=None)),
        cache,
        SearchConfig(count=search_budget, seed=seed),
        device,
        client,
    )
    search = searcher.run(search_dir, resume=(search_dir / "checkpoint.json").is_file(), progress=progress)
    return JobResult(stats, discovery, exports, search, params, out)
