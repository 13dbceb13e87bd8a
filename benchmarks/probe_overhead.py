"""Probe overhead: the default probe (one data pass) vs a bare forward+backward, side by side.

Target (issue 2): probe <= 1.3x a bare forward+backward of the same model and batch.
The bare pass is a plain training step (timm's fused attention, no hooks); the probe is the
same step with the statistics hooks, sketching and attention-probability sketches. Runs are
interleaved (bare, probe, bare, probe, ...) after a warm-up, and the median is kept.

    python benchmarks/probe_overhead.py --archs 5 --out results/probe_overhead.md
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
import torch.nn.functional as F

from gp_proxy.markdown import table, write_report
from vit_space.bench.benchmark import load_bench
from vit_space.data.batches import BatchSpec, make_batch
from vit_space.probe.cache import ProbeSpec, probe_arch
from vit_space.probe.hooks import probe
from vit_space.spaces import get_space


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=5, help="architectures per space")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--sketch", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", default="results/probe_overhead.md")
    args = parser.parse_args()
    images, labels = make_batch(BatchSpec("c100", batch_size=args.batch))
    loss_fn = lambda logits: F.cross_entropy(logits, labels)  # noqa: E731
    rows, totals = [], {"bare": 0.0, "probe": 0.0, "end_to_end": 0.0}
    for name in ("autoformer", "pit"):
        space = get_space(name)
        for arch in random.Random(0).sample(list(load_bench(name).archs), args.archs):
            torch.manual_seed(0)
            model = space.build(arch, num_classes=100)

            def bare() -> None:
                model.zero_grad(set_to_none=True)
                loss_fn(model(images)).backward()

            probe_pass = lambda: probe(model, images, loss_fn, args.sketch, 0)  # noqa: E731
            bare(), probe_pass()  # warm-up
            times = {"bare": [], "probe": []}
            for _ in range(args.reps):
                times["bare"].append(timed(bare))
                times["probe"].append(timed(probe_pass))
            spec = ProbeSpec(BatchSpec("c100", batch_size=args.batch), args.sketch)
            end_to_end = timed(lambda: probe_arch(space, arch, spec))  # build + seeded init + probe
            b, p = statistics.median(times["bare"]), statistics.median(times["probe"])
            totals["bare"] += b
            totals["probe"] += p
            totals["end_to_end"] += end_to_end
            rows.append(
                f"| {name} | {space.num_params(arch, 100) / 1e6:.2f} | {b:.3f} | {p:.3f} | {p / b:.2f} | "
                f"{end_to_end:.3f} | {end_to_end / b:.2f} |"
            )
            print(rows[-1], flush=True)
    write_report(
        args.out,
        "Probe overhead vs a bare forward+backward",
        f"python benchmarks/probe_overhead.py --archs {args.archs} --batch {args.batch} "
        f"--sketch {args.sketch} --reps {args.reps}",
        f"(CPU, torch {torch.__version__}, {torch.get_num_threads()} threads; medians of {args.reps} interleaved runs)",
        table(
            [
                "space",
                "params (M)",
                "bare fwd+bwd (s)",
                "probe (s)",
                "probe / bare",
                "build+init+probe (s)",
                "end-to-end / bare",
            ],
            rows,
        ),
        f"Overall: probe / bare = {totals['probe'] / totals['bare']:.2f} (target <= 1.3); "
        f"with model building and seeded init = {totals['end_to_end'] / totals['bare']:.2f}.",
    )


if __name__ == "__main__":
    main()
