"""Do sketches rank architectures like full tensors? Three classic proxies computed both ways.

`sketch_proxies` estimates them from a probe's sketches (sums and norms rescaled by the full
element count); `full_proxies` computes them exactly from one plain forward/backward pass;
`both_ways` does both for a list of architectures, on any device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gp_proxy.stats import UnitStats
from vit_space.data.batches import BatchSpec
from vit_space.device import float32_matmul, resolve_device
from vit_space.probe.hooks import find_blocks, probe
from vit_space.probe.networks import batch_of, build_seeded
from vit_space.spaces import Arch, Space

PROXIES = ("snip", "grad_norm", "weight_l2")


def sketch_proxies(stats: UnitStats) -> dict[str, float]:
    """snip = Σ|W⊙gW|, grad_norm = Σ‖gW‖_F, weight_l2 = Σ‖W‖_F over all units, from sketches."""
    w, gw, n = stats.tensors["W"], stats.tensors["gW"], stats.numel["W"]
    mean = lambda t: t.double().mean(dim=(1, 2))  # noqa: E731  (U,) per-unit mean over the sketch
    return {
        "snip": float((mean((w * gw).abs()) * n).sum()),
        "grad_norm": float((mean(gw.square()) * n).sqrt().sum()),
        "weight_l2": float((mean(w.square()) * n).sqrt().sum()),
    }


def full_proxies(
    model: nn.Module, images: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor]
) -> dict[str, float]:
    """The same three proxies on the full weights and gradients of the same units."""
    model.zero_grad(set_to_none=True)
    loss_fn(model(images)).backward()
    linears = [lin for block in find_blocks(model) for lin in block.linears]
    out = {
        "snip": sum(float((lin.weight.detach() * lin.weight.grad).abs().double().sum()) for lin in linears),
        "grad_norm": sum(float(lin.weight.grad.double().norm()) for lin in linears),
        "weight_l2": sum(float(lin.weight.detach().double().norm()) for lin in linears),
    }
    model.zero_grad(set_to_none=True)
    return out


def both_ways(
    space: Space,
    archs: Sequence[Arch],
    batch: BatchSpec,
    sizes: Sequence[int],
    device: str | torch.device = "cpu",
) -> tuple[dict[str, list[float]], dict[int, dict[str, list[float]]]]:
    """The PROXIES of each of `archs` (seeded init, cross-entropy on `batch`) on `device`: exactly
    (proxy -> one value per architecture) and from sketches of each size in `sizes`
    (size -> proxy -> values), both from the same model and batch."""
    device = resolve_device(device)
    images, labels = (t.to(device) for t in batch_of(batch))
    loss_fn = lambda logits: F.cross_entropy(logits, labels)  # noqa: E731
    full = {p: [] for p in PROXIES}
    sketched = {size: {p: [] for p in PROXIES} for size in sizes}
    for arch in archs:
        model = build_seeded(space, arch, batch, device)
        with float32_matmul():
            for p, value in full_proxies(model, images, loss_fn).items():
                full[p].append(value)
            for size in sizes:
                for p, value in sketch_proxies(probe(model, images, loss_fn, size, batch.seed)).items():
                    sketched[size][p].append(value)
    return full, sketched
