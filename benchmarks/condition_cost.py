"""Cost of the extra probe conditions next to the data probe, and the fidelity of their sketches.

Cost, per architecture, interleaved, medians of `--reps`: the plain `data` probe of a built
network; the `minibatch` probe (MINIBATCHES backward passes over slices of the same batch); the
`init2` probe (building a second initialisation of the network, then a data probe of it); the
`heads` probe (one forward pass with materialised attention, per-head statistics).
Fidelity: a gradient signal-to-noise proxy, the mean over every weight of |mean g| / std g summed
over units, from the 32x32 sketches and from the full tensors; for `heads`, the mean of each
statistic (entropy, stable rank, head similarity) over the attention units, from the sketches and
from the full tensors. Kendall tau across architectures (`init2` sketches exactly as `data` does:
`results/sketch_fidelity.md`).

    python benchmarks/condition_cost.py --space autoformer --archs 6 --reps 3 --out results/condition_cost.md
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
import torch.nn.functional as F

from gp_proxy import kendall, table, write_report
from vit_space import BatchSpec, get_space, make_batch
from vit_space.probe.conditions import MINIBATCHES
from vit_space.probe.heads import HEAD_KINDS, head_statistics, probe_heads
from vit_space.probe.hooks import find_blocks, probability_site, probe, probe_minibatches, slice_gradients


def snr_full(model, images, labels) -> float:
    """Σ over units of the mean over weights of |mean g| / std g, on full gradient tensors."""
    linears = [lin for block in find_blocks(model) for lin in block.linears]
    total = 0.0
    for s in slice_gradients(model, linears, images, labels, MINIBATCHES):
        s = s.double()
        total += float((s.mean(0).abs() / s.std(0, correction=0).clamp_min(1e-12)).mean())
    return total


def snr_sketch(stats) -> float:
    """The same proxy from the sketches (the ratio at the sampled entries)."""
    mean, std = stats.tensors["gW"].double(), stats.tensors["sgW"].double()
    return float((mean.abs() / std.clamp_min(1e-12)).mean(dim=(1, 2)).sum())


def heads_full(model, images) -> dict[str, float]:
    """Per head statistic, its mean over the attention modules, from the full tensors."""
    means: dict[str, list[float]] = {kind: [] for kind in HEAD_KINDS}

    def hook_for(read):
        def hook(module, args, output):
            for kind, full in head_statistics(read(args)).items():
                means[kind].append(float(full.double().mean()))

        return hook

    blocks = find_blocks(model)
    sites = [probability_site(block.attn) for block in blocks]
    handles = [module.register_forward_hook(hook_for(read)) for module, read in sites]
    fused = [(block.attn, block.attn.fused_attn) for block in blocks]
    for attn, _ in fused:
        attn.fused_attn = False
    with torch.no_grad():
        model(images)
    for handle in handles:
        handle.remove()
    for attn, flag in fused:
        attn.fused_attn = flag
    return {kind: statistics.mean(v) for kind, v in means.items()}


def heads_sketch(stats) -> dict[str, float]:
    """The same means from the sketches (each attention module counted once, as in `heads_full`)."""
    attention = stats.numel["Ae"] > 0
    return {kind: float(stats.tensors[kind][attention].double().mean(dim=(1, 2))[::2].mean()) for kind in HEAD_KINDS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="autoformer")
    parser.add_argument("--dataset", default="c100")
    parser.add_argument("--archs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", default="results/condition_cost.md")
    args = parser.parse_args()
    space = get_space(args.space)
    images, labels = make_batch(BatchSpec(args.dataset, "skimage", args.batch, 0, space.img_size))
    rng = random.Random(0)
    rows, ratios, sketched, full = [], [], [], []
    heads_sketched: dict[str, list[float]] = {kind: [] for kind in HEAD_KINDS}
    heads_exact: dict[str, list[float]] = {kind: [] for kind in HEAD_KINDS}
    for _ in range(args.archs):
        arch = space.sample(rng)
        torch.manual_seed(0)
        model = space.build(arch, num_classes=100)
        data_s, mini_s, init_s, heads_s = [], [], [], []
        loss = lambda logits: F.cross_entropy(logits, labels)  # noqa: E731
        for _ in range(args.reps):  # interleaved
            t0 = time.perf_counter()
            probe(model, images, loss)
            data_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            stats = probe_minibatches(model, images, labels, MINIBATCHES)
            mini_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            torch.manual_seed(1)
            probe(space.build(arch, num_classes=100), images, loss)
            init_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            head_stats = probe_heads(model, images)
            heads_s.append(time.perf_counter() - t0)
        data, mini, init, heads = (statistics.median(v) for v in (data_s, mini_s, init_s, heads_s))
        ratios.append((mini / data, init / data, heads / data))
        sketched.append(snr_sketch(stats))
        full.append(snr_full(model, images, labels))
        for kind, value in heads_sketch(head_stats).items():
            heads_sketched[kind].append(value)
        for kind, value in heads_full(model, images).items():
            heads_exact[kind].append(value)
        params = space.num_params(arch, 100) / 1e6
        rows.append(
            f"| {params:.2f} | {data:.3f} | {mini:.3f} | {mini / data:.2f} | {init:.3f} | {init / data:.2f} | "
            f"{heads:.3f} | {heads / data:.2f} | {sketched[-1]:.4g} | {full[-1]:.4g} | "
            + " | ".join(f"{heads_sketched[k][-1]:.4g} / {heads_exact[k][-1]:.4g}" for k in HEAD_KINDS)
            + " |"
        )
        print(rows[-1], flush=True)
    tau = kendall(torch.tensor(sketched).numpy(), torch.tensor(full).numpy())
    heads_tau = {
        k: kendall(torch.tensor(heads_sketched[k]).numpy(), torch.tensor(heads_exact[k]).numpy()) for k in HEAD_KINDS
    }
    worst = {
        k: max(abs(a - b) / abs(b) for a, b in zip(heads_sketched[k], heads_exact[k], strict=True)) for k in HEAD_KINDS
    }
    write_report(
        args.out,
        "Extra probe conditions: cost next to the data probe, and sketch fidelity",
        f"python benchmarks/condition_cost.py --space {args.space} --dataset {args.dataset} --archs {args.archs} "
        f"--reps {args.reps} --out {args.out}",
        f"(CPU, torch {torch.__version__}, {torch.get_num_threads()} threads; {args.space}, {args.archs} seeded "
        f"architectures, batch {args.batch} of scikit-image crops, minibatch split in {MINIBATCHES} slices, sketch "
        f"32; medians of {args.reps} interleaved runs; init2 = build a second initialisation + its data probe; heads = "
        f"one forward pass; head statistics as sketched mean / full-tensor mean over the attention modules)",
        table(
            [
                "params (M)",
                "data probe (s)",
                "minibatch probe (s)",
                "ratio",
                "init2 probe (s)",
                "ratio",
                "heads probe (s)",
                "ratio",
                "SNR, sketches",
                "SNR, full",
                "entropy Ae",
                "stable rank Ar",
                "head similarity Ah",
            ],
            rows,
        ),
        f"Overall (medians over architectures): minibatch costs {statistics.median(r[0] for r in ratios):.2f}x the "
        f"data probe, init2 {statistics.median(r[1] for r in ratios):.2f}x, heads "
        f"{statistics.median(r[2] for r in ratios):.2f}x. Kendall tau between the sketched and the full-tensor SNR "
        f"proxy across the {args.archs} architectures: {tau:.3f}. Heads, sketched vs full means: "
        + "; ".join(f"{k} tau {heads_tau[k]:.3f}, worst relative error {worst[k]:.2%}" for k in HEAD_KINDS)
        + ".",
    )


if __name__ == "__main__":
    main()
