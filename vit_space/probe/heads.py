"""Per-head attention statistics: one forward pass, no backward (the `heads` probe condition).

From the softmax probabilities P (B, H, N, N) of every attention module (B images, H heads,
N tokens), three tensors per attention unit, each laid out with one row per head:

- `Ae` (H, B*N): entropy of every attention row, divided by log N (0: one token attended,
  1: uniform attention);
- `Ar` (H, B): stable rank of every head's map, ||P||_F^2 / ||P||_2^2, divided by N
  (1/N: rank one, 1: orthogonal rows of equal norm); ||P||_2 by power iteration;
- `Ah` (H, H): cosine similarity between heads' maps, averaged over the images (1: redundant
  heads, 0: disjoint ones).

They are sketched like every probe statistic (`sketch`, rescaled to the full tensor's RMS), so
`mean(h.Ae)` is the mean normalised entropy and `std(h.Ah)` how much heads differ. Both units of
a block's attention (qkv, proj) carry them, as they carry `A`; the MLP units have none.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from gp_proxy.errors import AutoproxError
from gp_proxy.stats import UnitStats
from vit_space.probe.hooks import Block, find_blocks, probability_site, unit_stats
from vit_space.probe.sketch import sketch, stack_sketches

HEAD_KINDS = ("Ae", "Ar", "Ah")
POWER_STEPS = 100  # at most this many power-iteration steps for ||P||_2 (tests check it against the SVD)
POWER_TOL = 1e-6  # stop when no estimate changes by more than this, relatively


def spectral_norm(maps: torch.Tensor, steps: int = POWER_STEPS, tol: float = POWER_TOL) -> torch.Tensor:
    """Largest singular value of each (N, N) matrix of `maps` (..., N, N): power iteration on P^T P
    from the all-ones vector (the top direction of uniform attention), until no estimate changes by
    more than `tol` relatively or after `steps` steps."""
    flat = maps.reshape(-1, *maps.shape[-2:])
    v = torch.ones(flat.shape[0], flat.shape[-1], 1, dtype=flat.dtype, device=flat.device)
    sigma = torch.zeros(flat.shape[0], dtype=flat.dtype, device=flat.device)
    for _ in range(steps):
        pv = flat @ v
        previous, sigma = sigma, torch.linalg.vector_norm(pv, dim=(1, 2)) / torch.linalg.vector_norm(v, dim=(1, 2))
        if torch.all((sigma - previous).abs() <= tol * sigma):
            break
        v = flat.mT @ pv
        v = v / torch.linalg.vector_norm(v, dim=1, keepdim=True).clamp_min(1e-30)
    return sigma.reshape(maps.shape[:-2])


def head_statistics(probs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Full-tensor head statistics of softmax probabilities `probs` (B, H, N, N): `Ae` (H, B*N),
    `Ar` (H, B) and `Ah` (H, H), as in the module docstring."""
    batch, heads, tokens, _ = probs.shape
    p = probs.detach().float()
    entropy = -(p * p.clamp_min(1e-30).log()).sum(-1) / math.log(max(tokens, 2))
    frobenius = p.square().sum((-2, -1))
    stable_rank = frobenius / spectral_norm(p).square().clamp_min(1e-30) / tokens
    unit = torch.nn.functional.normalize(p.reshape(batch, heads, -1), dim=-1)
    similarity = (unit @ unit.mT).mean(0)
    return {
        "Ae": entropy.permute(1, 0, 2).reshape(heads, batch * tokens),
        "Ar": stable_rank.T.contiguous(),
        "Ah": similarity,
    }


def _probability_site(block: Block) -> tuple[nn.Module, Callable]:
    site = probability_site(block.attn)
    if site is None:
        raise AutoproxError(
            f"{type(block.attn).__name__} has no attn_drop module (nor talking heads' proj_w), where the heads "
            "condition reads the attention probabilities; it needs timm-style attention (softmax, then attn_drop)"
        )
    return site


def probe_heads(
    model: nn.Module, images: torch.Tensor, size: int = 32, seed: int = 0, units: dict[str, str] | None = None
) -> UnitStats:
    """One forward pass of `model` on `images` (B, 3, H, W) without gradients; per attention unit the
    sketches of `Ae`, `Ar` and `Ah`. Fused attention is switched off for the pass and restored.
    `units` maps unit names to other module paths (`hooks.unit_paths`)."""
    blocks = find_blocks(model, units)
    count = 4 * len(blocks)
    sketches = {k: [torch.zeros(size, size, device=images.device) for _ in range(count)] for k in HEAD_KINDS}
    numel = {k: torch.zeros(count, dtype=torch.float64) for k in HEAD_KINDS}

    def hook_for(read: Callable[[tuple], torch.Tensor], unit: int):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            for kind, full in head_statistics(read(args)).items():
                sketches[kind][unit] = sketches[kind][unit + 1] = sketch(full, size, seed)
                numel[kind][unit] = numel[kind][unit + 1] = full.numel()

        return hook

    fused = [(b.attn, b.attn.fused_attn) for b in blocks if hasattr(b.attn, "fused_attn")]
    sites = [_probability_site(b) for b in blocks]
    handles = [module.register_forward_hook(hook_for(read, 4 * i)) for i, (module, read) in enumerate(sites)]
    try:
        for attn, _ in fused:
            attn.fused_attn = False
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
        for attn, flag in fused:
            attn.fused_attn = flag
    missing = [i for i in range(len(blocks)) if numel["Ae"][4 * i] == 0]
    if missing:
        raise AutoproxError(
            f"the heads condition saw no attention probabilities in blocks {missing}: their attention "
            "does not pass its softmax through attn_drop (or talking heads' proj_w)"
        )
    tensors = stack_sketches(sketches)
    if not all(torch.isfinite(t).all() for t in tensors.values()):
        raise AutoproxError("the heads probe produced NaN/inf; the model or batch diverges")
    return unit_stats(tensors, numel, len(blocks))
