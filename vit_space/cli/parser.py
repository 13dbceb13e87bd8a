"""The `autoprox` argument parser: sub-commands, options, their ranges and their defaults.

Defaults that decide results come from the library's configuration classes (`DiscoveryConfig`,
`SearchConfig`, `Recipe`), so they are written once.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from gp_proxy.discovery import ALGORITHMS, DiscoveryConfig
from gp_proxy.fitness import JCM_MODES
from gp_proxy.library import KNOWN_PROXIES
from gp_proxy.program import MAX_PROGRAM_NODES
from vit_space.bench.benchmark import BENCH_NAMES
from vit_space.bench.training import Recipe
from vit_space.data.batches import DATASETS, BatchSpec
from vit_space.pipeline import JOB_ITERATIONS, SEED_PROXIES
from vit_space.probe.cache import CONDITIONS, ProbeSpec
from vit_space.proxies.export import EXPORTS
from vit_space.proxies.ranking import FORMATS
from vit_space.search.searchers import ALGORITHMS as SEARCH_ALGORITHMS
from vit_space.search.searchers import SearchConfig


def csv_list(text: str | None) -> list[str]:
    """`"a, b,,c"` -> `["a", "b", "c"]`: a comma-separated option as a list."""
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def bounded(
    kind: type, low: float, high: float = math.inf, high_open: bool = False, low_open: bool = False
) -> Callable[[str], float]:
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


IMAGE_SIZE_HELP = "input side in pixels (default: the space's own, 224 for autoformer/pit, 28 for the small spaces)"


def _add_target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bench", help="benchmark name(s) (autoformer, pit) or path(s), comma-separated")
    p.add_argument("--space", help="autoformer, pit or timm:NAME[,NAME...] (with --archs or --sample)")
    p.add_argument("--archs", help="JSON file: a list of architectures of --space")
    p.add_argument("--sample", type=POSITIVE, help="sample N architectures of --space (with --seed)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the batch, the init and the sketch (default 0)")
    p.add_argument("--image-size", type=bounded(int, 8), help=IMAGE_SIZE_HELP)


def _add_device_arg(p: argparse.ArgumentParser, what: str = "where networks run and programs are evaluated") -> None:
    p.add_argument(
        "--device",
        default="auto",
        help=f"{what}: auto (a GPU when torch sees one, else the CPU; default), cpu, cuda or cuda:N",
    )


def _add_cluster_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cluster",
        help="run the work on Dask: local:N (N one-thread worker processes here), tcp://HOST:PORT or "
        "tls://HOST:PORT (a running `dask scheduler`); default: this process alone",
    )


def _add_cache_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", help="cache folder (default $AUTOPROX_CACHE/stats or ~/.cache/autoprox/stats)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_probe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--source",
        help="proxy images: auto (default: the data set's own images where autoprox has "
        "them, else skimage), train, skimage, matched (skimage crops given each data set's subject and native "
        "resolution), noise, or a data folder; given, it also replaces a saved "
        "proxy's recorded source",
    )
    p.add_argument(
        "--batch", type=POSITIVE, default=BatchSpec.batch_size, help="images in the probe batch (default %(default)s)"
    )
    p.add_argument(
        "--sketch", type=bounded(int, 2), default=ProbeSpec.sketch_size, help="sketch size S (rows and columns kept)"
    )
    p.add_argument("--conditions", default="data", help=f"comma-separated, from {', '.join(CONDITIONS)}")
    p.add_argument(
        "--minibatches",
        type=bounded(int, 2),
        default=ProbeSpec.minibatches,
        help="K: slices of the batch whose gradients the minibatch condition compares (>= 2; default %(default)s)",
    )
    _add_cache_args(p)
    _add_device_arg(p)
    if "--seed" not in p._option_string_actions:
        p.add_argument("--seed", type=SEED, default=0, help="seed of the batch, the init and the sketch (default 0)")
        p.add_argument("--image-size", type=bounded(int, 8), help=IMAGE_SIZE_HELP)


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, like every other user error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The `autoprox` parser; each sub-command sets `handler`, a key of `vit_space.cli.commands.HANDLERS`."""
    parser = _Parser(
        prog="autoprox", description="Discover zero-cost proxies for ViT search, rank and search with them."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stats", help="probe architectures once and cache their statistics")
    _add_target_args(p)
    p.add_argument(
        "--datasets", help=f"comma-separated, from {', '.join(DATASETS)} (default: the benchmark's KD data sets)"
    )
    p.add_argument("--data", action="append", default=[], metavar="NAME=PATH", help="real data for one data set")
    p.add_argument("--limit", type=POSITIVE, help="only the first N architectures")
    _add_probe_args(p)
    _add_cluster_arg(p)
    p.set_defaults(handler="stats")

    p = sub.add_parser("discover", help="evolve zero-cost proxies on cached statistics")
    p.add_argument("--bench", required=True, help="benchmark name(s) or path(s), comma-separated")
    p.add_argument("--datasets", default="", help="comma-separated (default: each benchmark's KD data sets)")
    p.add_argument(
        "--fields",
        choices=["kd", "base"],
        help="which accuracy fields to rank (default: kd where the benchmark has it, else base)",
    )
    p.add_argument("--out", required=True, help="output folder (proxies/, logbook.csv, summary.md, checkpoint.json)")
    p.add_argument("--algo", default=DiscoveryConfig.algorithm, choices=list(ALGORITHMS))
    p.add_argument(
        "--iterations",
        type=POSITIVE,
        default=DiscoveryConfig.iterations,
        help="elitism steps or (mu+lambda) generations (default %(default)s)",
    )
    p.add_argument("--max-evaluations", type=POSITIVE, help="stop after this many evaluated programs")
    p.add_argument("--population", type=bounded(int, max(2, DiscoveryConfig.top_k)), default=DiscoveryConfig.population)
    p.add_argument("--parents", type=POSITIVE, default=DiscoveryConfig.batch, help="elitism: parents mutated per step")
    p.add_argument("--jcm", default=DiscoveryConfig.jcm, choices=list(JCM_MODES))
    p.add_argument(
        "--size-limit",
        type=bounded(int, 3, MAX_PROGRAM_NODES),
        default=DiscoveryConfig.size_limit,
        help="largest program, in nodes (parsimony; default %(default)s)",
    )
    p.add_argument("--holdout", type=SHARE, default=0.5, help="share of each benchmark's architectures held out")
    p.add_argument("--split-seed", type=SEED, default=0)
    p.add_argument(
        "--validation",
        type=SHARE,
        default=DiscoveryConfig.validation,
        help="share of the training architectures the search never sees; the saved proxies are ranked by "
        "their JCM there (default %(default)s: ranked by training JCM)",
    )
    p.add_argument("--validation-seed", type=SEED, default=DiscoveryConfig.validation_seed)
    p.add_argument("--search-seed", type=SEED, default=0, help="seed of the evolution")
    p.add_argument(
        "--seed-proxies",
        default=",".join(SEED_PROXIES),
        help=f"known proxies in the first population, from {', '.join(KNOWN_PROXIES)} (default %(default)s: the "
        "setting that generalised best on validation data, results/quality.md; 'none' for a random start)",
    )
    p.add_argument("--workers", type=POSITIVE, default=1, help="evaluation processes")
    p.add_argument("--resume", action="store_true", help="continue the run checkpointed in --out")
    p.add_argument("--compute-missing", action="store_true", help="probe architectures missing from the cache")
    p.add_argument("--limit", type=POSITIVE, help="only the first N architectures of each benchmark")
    p.add_argument("--data", action="append", default=[], metavar="NAME=PATH", help="real data for one data set")
    _add_probe_args(p)
    _add_cluster_arg(p)
    p.set_defaults(handler="discover")

    p = sub.add_parser("rank", help="correlate a proxy's scores with a benchmark's accuracies")
    p.add_argument("--bench", required=True, help="benchmark name(s) (autoformer, pit) or file(s), comma-separated")
    p.add_argument(
        "--proxy", required=True, help="known proxy name(s) (see `autoprox proxies`) or PROXY.json, comma-separated"
    )
    p.add_argument(
        "--datasets",
        default="",
        help="comma-separated, e.g. c100,flowers,chaoyang,imagenet (default: the benchmark's data sets with --fields)",
    )
    p.add_argument(
        "--fields",
        choices=["kd", "base", "all"],
        help="accuracy fields: KD-trained, trained from scratch, or every field (ImageNet supernet too); "
        "default: kd where the benchmark has it, else base",
    )
    p.add_argument("--holdout", type=SHARE, default=0.5, help="share of architectures in the held-out part (0: none)")
    p.add_argument("--split-seed", type=SEED, default=0)
    p.add_argument("--format", default="table", help=f"output: {', '.join(FORMATS)}")
    p.add_argument(
        "--cached-only",
        action="store_true",
        help="use only cached statistics and scores (default: probe what is missing on the way)",
    )
    _add_probe_args(p)
    p.set_defaults(handler="rank")

    p = sub.add_parser(
        "export", help="write a saved proxy as LaTeX, Python, sympy, GraphML, DOT, PNG or JSON; a run as a LaTeX table"
    )
    p.add_argument("proxy", help="a saved PROXY.json (latex-table: a discover --out folder)")
    p.add_argument("--format", required=True, choices=EXPORTS)
    p.add_argument("--out", help="output file (default: standard output; png: next to the proxy file)")
    p.set_defaults(handler="export")

    p = sub.add_parser("score", help="score architectures or timm models with a saved (or known) proxy")
    p.add_argument("proxy", help="a saved PROXY.json or a known proxy name")
    p.add_argument("--space", required=True, help="autoformer, pit or timm:NAME[,NAME...]")
    p.add_argument("--archs", help="JSON file: a list of architectures of --space")
    p.add_argument("--sample", type=POSITIVE, help="sample N distinct architectures within the budget")
    p.add_argument("--params", help="parameter range LO-HI in millions, e.g. 5-7.5")
    p.add_argument("--flops", type=POSITIVE_FLOAT, help="largest MACs per image, in billions")
    p.add_argument(
        "--dataset",
        help=f"the data set whose batch and head size to use ({', '.join(DATASETS)}; "
        "default: fmnist for 1-channel spaces, else c100)",
    )
    p.add_argument("--out", help="CSV file of the ranked table")
    _add_probe_args(p)
    p.set_defaults(handler="score")

    p = sub.add_parser("ensemble", help="combine a discover run's best proxies by rank averaging")
    p.add_argument("run", help="a discover --out folder")
    p.add_argument("--top", type=bounded(int, 2), default=5, help="how many of its proxies (default %(default)s)")
    p.add_argument("--out", required=True, help="ENSEMBLE.json (use it wherever a PROXY.json is taken)")
    p.set_defaults(handler="ensemble")

    p = sub.add_parser("front", help="print a discover run's Pareto front (size against JCM), or save one program")
    p.add_argument("run", help="a discover --out folder")
    p.add_argument("--pick", type=bounded(int, 1), help="save the front's program of this size (nodes)")
    p.add_argument("--out", help="PROXY.json for --pick")
    p.set_defaults(handler="front")

    p = sub.add_parser("simplify", help="shorten a saved proxy, checked on cached benchmark statistics")
    p.add_argument("proxy", help="a saved PROXY.json")
    p.add_argument("--bench", default="autoformer,pit", help="benchmarks whose statistics the check uses")
    p.add_argument("--exact-only", action="store_true", help="no rank-preserving rewrites at the root")
    p.add_argument("--compute-missing", action="store_true", help="probe architectures missing from the cache")
    p.add_argument("--out", help="write the simplified proxy here (the original expression kept inside)")
    _add_cache_args(p)
    _add_device_arg(p, "where --compute-missing probes (programs are checked on the CPU)")
    p.set_defaults(handler="simplify")

    p = sub.add_parser("search", help="search a space for the best-scoring architectures within a budget")
    p.add_argument("--space", required=True, help="autoformer, pit or timm:NAME[,NAME...]")
    p.add_argument(
        "--proxy",
        required=True,
        action="append",
        help="PROXY.json or a known name; repeat (or comma-separate) to rank by mean rank over proxies",
    )
    p.add_argument("--params", help="parameter range LO-HI in millions, e.g. 5-7.5")
    p.add_argument("--flops", type=POSITIVE_FLOAT, help="largest MACs per image, in billions")
    p.add_argument("--budget", type=POSITIVE, default=SearchConfig.count, help="architectures to evaluate")
    p.add_argument("--algo", default=SearchConfig.algorithm, choices=list(SEARCH_ALGORITHMS))
    p.add_argument("--population", type=bounded(int, 2), default=SearchConfig.population)
    p.add_argument(
        "--parents", type=POSITIVE, default=SearchConfig.parents, help="evolution: the top architectures that breed"
    )
    p.add_argument("--top-k", type=POSITIVE, default=SearchConfig.top_k, help="rows of top.md")
    p.add_argument(
        "--dataset",
        help="the data set whose batch and head size to use (default: fmnist for 1-channel spaces, else c100)",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue the search checkpointed in --out")
    _add_probe_args(p)
    _add_cluster_arg(p)
    p.set_defaults(handler="search")

    p = sub.add_parser("run", help="the whole job on a benchmark: statistics, discovery, export, search")
    p.add_argument("--bench", default="af-tiny", help="benchmark name or file (default: the shipped af-tiny)")
    p.add_argument("--out", default="runs/quickstart", help="output folder (default runs/quickstart)")
    p.add_argument("--iterations", type=POSITIVE, default=JOB_ITERATIONS, help="discovery steps (default %(default)s)")
    p.add_argument(
        "--search-budget",
        type=POSITIVE,
        default=SearchConfig.count,
        help="architectures the search evaluates (default 500)",
    )
    p.add_argument(
        "--params", help="search budget LO-HI in millions (default: the benchmark's 10th percentile to its median)"
    )
    p.add_argument("--seed", type=SEED, default=0, help="seed of the discovery and the search")
    _add_cache_args(p)
    _add_device_arg(p)
    _add_cluster_arg(p)
    p.set_defaults(handler="run")

    p = sub.add_parser("proxies", help="list the known proxies")
    p.set_defaults(handler="proxies")

    p = sub.add_parser("arch", help="validate architectures and print their hash, parameters and MACs")
    _add_target_args(p)
    p.add_argument("--num-classes", type=POSITIVE, default=1000)
    p.set_defaults(handler="arch")

    bench = sub.add_parser("bench", help="ViT-Bench-101 files").add_subparsers(dest="bench_command", required=True)
    p = bench.add_parser("fetch", help="download the original benchmark files into the user cache")
    p.add_argument("--names", default=",".join(BENCH_NAMES))
    p.add_argument("--url", help="base URL (https:// or file://); default $AUTOPROX_BENCH_URL or the public repository")
    p.add_argument("--dest", help="folder (default: the user cache, where --bench NAME looks)")
    p.add_argument("--force", action="store_true", help="download even if a verified copy is there")
    p.set_defaults(handler="bench_fetch")
    p = bench.add_parser("build", help="train architectures with one recipe and record their accuracy")
    p.add_argument(
        "--space", required=True, help="af-tiny, pit-tiny (1x28x28; NAME@CxS for other inputs), autoformer, pit"
    )
    p.add_argument(
        "--dataset",
        required=True,
        help="fmnist, digits or a data folder (CIFAR-10/100, ImageFolder); comma-separated for several",
    )
    p.add_argument("--archs", required=True, help="N (sample N distinct architectures) or a JSON file of architectures")
    p.add_argument("--sample-seed", type=SEED, default=0, help="seed of the architecture sample")
    p.add_argument("--seeds", default="2", help="K (seeds 0..K-1) or a comma-separated list (default 2)")
    p.add_argument("--steps", type=POSITIVE, default=Recipe.steps, help="optimizer steps per run (default %(default)s)")
    p.add_argument(
        "--epochs",
        type=NON_NEGATIVE_FLOAT,
        default=Recipe.epochs,
        help="passes over each training set instead of --steps",
    )
    p.add_argument("--batch-size", type=POSITIVE, default=Recipe.batch_size)
    p.add_argument("--lr", type=POSITIVE_FLOAT, default=Recipe.lr, help="AdamW peak learning rate")
    p.add_argument("--weight-decay", type=NON_NEGATIVE_FLOAT, default=Recipe.weight_decay)
    p.add_argument(
        "--warmup", type=SHARE, default=Recipe.warmup, help="share of the steps warming up (then cosine to 0)"
    )
    p.add_argument("--label-smoothing", type=SHARE, default=Recipe.label_smoothing)
    p.add_argument(
        "--shift", type=NON_NEGATIVE, default=Recipe.shift, help="random translation augmentation, in pixels"
    )
    p.add_argument(
        "--train-size",
        type=NON_NEGATIVE,
        default=Recipe.train_size,
        help="train on a fixed subset of this many images (0: all)",
    )
    p.add_argument(
        "--test-size",
        type=NON_NEGATIVE,
        default=Recipe.test_size,
        help="evaluate on a fixed subset of this many images (0: all)",
    )
    p.add_argument("--out", required=True, help="benchmark JSON (its journal BENCH.runs.jsonl goes beside it)")
    p.add_argument("--resume", action="store_true", help="continue the build journalled beside --out")
    p.add_argument("--shard", default="0/1", help="I/N: train every N-th run from the I-th (parallel processes)")
    p.add_argument("--threads", type=POSITIVE, help="torch threads here (default: torch's choice; not with --cluster)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_device_arg(p)
    _add_cluster_arg(p)
    p.set_defaults(handler="bench_build")
    p = bench.add_parser("show", help="summarise a benchmark")
    p.add_argument("--bench", required=True)
    p.set_defaults(handler="bench_show")
    data = sub.add_parser("data", help="training data sets").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("fetch", help="download Fashion-MNIST into the user cache (sha256-checked)")
    p.add_argument("name", help="fmnist")
    p.add_argument(
        "--url", help="base URL (https:// or file://); default $AUTOPROX_FMNIST_URL or the public repository"
    )
    p.add_argument("--dest", help="folder (default: the user cache, where fmnist is looked for)")
    p.set_defaults(handler="data_fetch")
    return parser
