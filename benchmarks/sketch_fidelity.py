"""Sketch fidelity: do SNIP, grad-norm and weight-L2 from sketches rank architectures like full tensors?

Target (issue 2): Kendall tau >= 0.95 on 30 AutoFormer architectures at sketch 32; on any device
(issue 15: `--device cuda`, both ways computed there).

    python benchmarks/sketch_fidelity.py --archs 30 --sizes 16,32,64 --out results/sketch_fidelity.md
"""

from __future__ import annotations

import argparse
import random

from scipy.stats import kendalltau
from tqdm.auto import tqdm

from gp_proxy.markdown import table, write_report
from vit_space.bench.benchmark import load_bench
from vit_space.data.batches import BatchSpec
from vit_space.device import resolve_device
from vit_space.probe.fidelity import PROXIES, both_ways
from vit_space.spaces import get_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--sizes", default="16,32,64")
    parser.add_argument("--spaces", default="autoformer,pit")
    parser.add_argument("--device", default="cpu", help="cpu (default), auto, cuda or cuda:N")
    parser.add_argument(
        "--out", help="default: results/sketch_fidelity.md on the CPU, results/sketch_fidelity_cuda.md on a GPU"
    )
    args = parser.parse_args()
    if args.out is None:  # a GPU run does not overwrite the CPU's report
        kind = resolve_device(args.device).type
        args.out = f"results/sketch_fidelity{'' if kind == 'cpu' else '_' + kind}.md"
    sizes = [int(s) for s in args.sizes.split(",")]
    batch = BatchSpec("c100", batch_size=args.batch)
    rows = []
    for name in args.spaces.split(","):
        archs = random.Random(0).sample(list(load_bench(name).archs), args.archs)
        full, sketched = both_ways(get_space(name), tqdm(archs, desc=name), batch, sizes, args.device)
        for s in sizes:
            taus = [kendalltau(sketched[s][p], full[p]).statistic for p in PROXIES]
            rows.append(f"| {name} | {s} | " + " | ".join(f"{t:.3f}" for t in taus) + " |")
    device = "" if args.device == "cpu" else f" --device {args.device}"
    write_report(
        args.out,
        "Sketch fidelity: proxies from sketches vs full tensors (Kendall tau)",
        f"python benchmarks/sketch_fidelity.py --archs {args.archs} --batch {args.batch} "
        f"--sizes {args.sizes} --spaces {args.spaces}{device}",
        f"({args.archs} architectures per space drawn with seed 0, skimage crops of c100, seed 0. "
        "grad-norm and weight-L2 are sums of per-unit Frobenius norms, exact by construction since "
        "sketches keep each tensor's RMS; SNIP = sum |W * gW| is the real test.)",
        table(["space", "sketch", *PROXIES], rows),
    )


if __name__ == "__main__":
    main()
