"""Ground truth: benchmark files (`benchmark`), training recipes (`train`) and building a benchmark
by training its architectures (`build`)."""

from vit_space.bench.benchmark import Benchmark, fetch_bench, load_bench
from vit_space.bench.build import BuildPlan, build_bench
from vit_space.bench.training import Recipe, TrainResult, train

__all__ = ["Benchmark", "BuildPlan", "Recipe", "TrainResult", "build_bench", "fetch_bench", "load_bench", "train"]
