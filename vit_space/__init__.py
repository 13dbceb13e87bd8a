"""ViT search spaces, benchmarks, probing and training-free search: autoprox's ViT side.

The layers, each importing only the ones before it:

    device     where networks run: `--device auto|cpu|cuda|cuda:N` (`resolve_device`)
    cluster    Dask clients for `--cluster local:N|tcp://HOST:PORT|tls://HOST:PORT` (`connect`, `run_all`)
    data       image files, training data sets, proxy batches (`BatchSpec`, `make_batch`, `load_images`)
    spaces     AutoFormer, PiT, small CPU spaces, timm models (`get_space`, `read_archs`)
    bench      benchmark files, training, building benchmarks (`load_bench`, `Recipe`, `build_bench`)
    probe      hooks, sketches, the statistics cache (`ProbeSpec`, `StatsCache`, `fill`, `probe`)
    proxies    zero-cost pass proxies, scores, tasks, rankings (`proxy_scores`, `tasks_for`, `rank`)
    search     budgets, scoring tables, searchers (`Budget`, `score_archs`, `Searcher`)
    pipeline   the main job (`run_job`)
    cli        the `autoprox` command

A script that discovers, ranks, exports and searches (see the README's "Python API")::

    from gp_proxy import DiscoveryConfig, discover, load_proxy
    from vit_space import ProbeSpec, BatchSpec, StatsCache, tasks_for, rank, load_bench, ...

Units: parameters and MACs are counts (MACs per image), accuracies top-1 percent, Kendall tau
in [-1, 1]; images are ``(B, C, S, S)`` float32 tensors, labels ``(B,)`` int64.
"""

from vit_space.bench import Benchmark, BuildPlan, Recipe, TrainResult, build_bench, load_bench, train
from vit_space.bench.benchmark import field_dataset, field_name
from vit_space.data import BatchSpec, ImageData, get_dataset, load_images, make_batch
from vit_space.device import resolve_device
from vit_space.pipeline import JobResult, run_job
from vit_space.probe import ProbeSpec, StatsCache, fill, probe_arch
from vit_space.probe.conditions import latex_names
from vit_space.proxies import Ranking, Scores, bench_tasks, catalogue, proxy_scores, rank, resolve_proxy, tasks_for
from vit_space.proxies.export import export_file, export_text
from vit_space.proxies.ranking import bench_fields, format_rankings
from vit_space.proxies.scores import saved_proxy_bundles
from vit_space.search import Budget, SearchConfig, Searcher, SearchState, sample_within, search
from vit_space.search.budget import parse_range
from vit_space.search.scoring import ScoreTable, candidates, score_archs
from vit_space.spaces import Arch, Space, count_params, disable_fused_attention, get_space, measure_macs, read_archs

__all__ = [
    "Arch",
    "BatchSpec",
    "Benchmark",
    "Budget",
    "BuildPlan",
    "ImageData",
    "JobResult",
    "ProbeSpec",
    "Ranking",
    "Recipe",
    "ScoreTable",
    "Scores",
    "SearchConfig",
    "SearchState",
    "Searcher",
    "Space",
    "StatsCache",
    "TrainResult",
    "bench_fields",
    "bench_tasks",
    "build_bench",
    "candidates",
    "catalogue",
    "count_params",
    "disable_fused_attention",
    "export_file",
    "export_text",
    "field_dataset",
    "field_name",
    "fill",
    "format_rankings",
    "get_dataset",
    "get_space",
    "latex_names",
    "load_bench",
    "load_images",
    "make_batch",
    "measure_macs",
    "parse_range",
    "probe_arch",
    "proxy_scores",
    "rank",
    "read_archs",
    "resolve_device",
    "resolve_proxy",
    "run_job",
    "sample_within",
    "saved_proxy_bundles",
    "score_archs",
    "search",
    "tasks_for",
    "train",
]
