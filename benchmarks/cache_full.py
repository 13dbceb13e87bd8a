"""Time caching the statistics of the whole ViT-Bench-101 and measure the cache size.

Target (issue 2): 200 architectures x every KD data set, batch 16, sketch 32, in <= 30 minutes
on a 2-core machine, cache <= 2 GB.

    python benchmarks/cache_full.py --cache /tmp/autoprox-full --out results/cache_full.md
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from gp_proxy.markdown import table, write_report
from vit_space.bench.benchmark import load_bench
from vit_space.data.batches import BatchSpec
from vit_space.probe.cache import ProbeSpec, StatsCache, fill
from vit_space.spaces import get_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, help="an empty folder, so every entry is probed")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--sketch", type=int, default=32)
    parser.add_argument("--out", default="results/cache_full.md")
    args = parser.parse_args()
    cache, rows, start = StatsCache(args.cache), [], time.perf_counter()
    for name in ("autoformer", "pit"):
        bench = load_bench(name)
        space = get_space(bench.space)
        specs = [ProbeSpec(BatchSpec(d, "skimage", args.batch, 0), args.sketch) for d in bench.datasets("kd")]
        report = fill(space, [space.validate(a) for a in bench.archs], specs, cache)
        rows.append(
            f"| {name} | {len(bench)} | {','.join(bench.datasets('kd'))} | {report.computed} | "
            f"{report.cached} | {report.seconds / 60:.1f} | {np.mean(report.probe_seconds or [0]):.2f} |"
        )
    total = time.perf_counter() - start
    size = cache.size_bytes()
    write_report(
        args.out,
        "Caching the statistics of the whole ViT-Bench-101",
        f"python benchmarks/cache_full.py --cache {args.cache} --batch {args.batch} --sketch {args.sketch}",
        f"(torch {torch.__version__}, {torch.get_num_threads()} threads, CPU only; "
        "skimage crops, seed 0, condition data)",
        table(["space", "archs", "data sets", "probed", "already cached", "minutes", "s per probe"], rows),
        f"Total: {total / 60:.1f} minutes (target <= 30); cache size {size / 2**20:.0f} MiB (target <= 2048).",
    )


if __name__ == "__main__":
    main()
