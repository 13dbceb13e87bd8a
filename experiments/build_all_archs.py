"""Build every ViT-Bench-101 architecture on timm and check its size and cost.

For each of the 200 architectures: the built model's parameter count must equal the space's
analytic count, and torch's FlopCounterMode must agree with the analytic MACs.

    python experiments/build_all_archs.py --out results/build_all_archs.md
"""

from __future__ import annotations

import argparse
import sys

import torch
from tqdm.auto import tqdm

from gp_proxy import table, write_report
from vit_space import count_params, disable_fused_attention, get_space, load_bench, measure_macs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-classes", type=int, default=100)
    parser.add_argument("--out", default="results/build_all_archs.md")
    args = parser.parse_args()
    rows, failures = [], []
    for name in ("autoformer", "pit"):
        bench, space = load_bench(name), get_space(name)
        params, macs = [], []
        for i, arch in enumerate(tqdm(bench.archs, desc=name)):
            with torch.device("meta"):
                model = space.build(arch, num_classes=args.num_classes)
            disable_fused_attention(model)
            p, m = count_params(model), measure_macs(model, 224)
            if p != space.num_params(arch, args.num_classes) or m != space.macs(arch, args.num_classes):
                failures.append(
                    f"{name} #{i}: built {p} params / {m} MACs, analytic "
                    f"{space.num_params(arch, args.num_classes)} / {space.macs(arch, args.num_classes)}"
                )
            params.append(p)
            macs.append(m)
        rows.append(
            f"| {name} | {len(bench)} | {min(params) / 1e6:.2f}-{max(params) / 1e6:.2f} | "
            f"{min(macs) / 1e9:.2f}-{max(macs) / 1e9:.2f} | {sum(f.startswith(name) for f in failures)} |"
        )
    write_report(
        args.out,
        "Every ViT-Bench-101 architecture builds on timm",
        f"python experiments/build_all_archs.py --num-classes {args.num_classes}",
        "(models built on the meta device; MACs counted by torch's FlopCounterMode with unfused attention)",
        table(["space", "built", "params (M)", "GMACs (224x224)", "mismatches with the analytic counts"], rows),
        "\n".join(failures),
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
