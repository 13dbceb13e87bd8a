"""The statistics probe: one forward and one backward pass, sketches of what proxies read.

For every transformer block (a module with `attn.qkv`, `attn.proj`, `mlp.fc1`, `mlp.fc2`, or the
paths a `units` mapping names) and each of its four linears (a *unit*), the probe records
sketches of the weight `W` and its gradient `gW`, the input activation `X` and its gradient
`gX`, the output `Y` and its gradient `gY`; and, on the two attention units, the attention
probabilities `A`.

Attention probabilities of timm's `Attention` are recomputed for the sketched rows only from
the qkv output, so the model keeps its fused attention and the probe costs about one plain
training step. Other attention modules run unfused and are read where `probability_site` says
(the input of `attn_drop`, or of talking heads' `proj_w` in CaiT).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers.attention import Attention
from torch import nn

from gp_proxy.errors import AutoproxError, AutoproxWarning
from gp_proxy.stats import UnitStats
from vit_space.probe.sketch import sketch, sketch_indices, stack_sketches

LINEARS = ("qkv", "proj", "fc1", "fc2")
KINDS = ("W", "gW", "X", "gX", "Y", "gY", "A")
GROUPS = {
    "msa": ("qkv", "proj"),
    "mlp": ("fc1", "fc2"),
    "ln_out": ("qkv", "fc1"),
    **{name: (name,) for name in LINEARS},
}


UNITS = {"qkv": "attn.qkv", "proj": "attn.proj", "fc1": "mlp.fc1", "fc2": "mlp.fc2"}  # timm's names


@dataclass(frozen=True)
class Block:
    """A transformer block as the probe sees it: the block module, its four unit linears in the
    order of `LINEARS` (qkv, proj, fc1, fc2) and its attention module (the parent of qkv)."""

    module: nn.Module
    linears: tuple[nn.Linear, ...]
    attn: nn.Module


def unit_paths(units: dict[str, str] | None = None) -> dict[str, str]:
    """Where each unit linear sits in a block: `UNITS` updated with `units` (e.g. ``{"qkv":
    "attention.query_key_value"}``), dotted paths relative to the block."""
    unknown = sorted(set(units or {}) - set(LINEARS))
    if unknown:
        raise AutoproxError(f"units: unknown unit names {unknown}; allowed: {', '.join(LINEARS)}")
    bad = {k: v for k, v in (units or {}).items() if not isinstance(v, str) or not v}
    if bad:
        raise AutoproxError(f"units: paths must be non-empty dotted module names, got {bad}")
    return {**UNITS, **(units or {})}


def _submodule(module: nn.Module, path: str) -> nn.Module | None:
    for part in path.split(".") if path else ():
        module = getattr(module, part, None)
        if not isinstance(module, nn.Module):
            return None
    return module


def find_blocks(model: nn.Module, units: dict[str, str] | None = None) -> list[Block]:
    """Transformer blocks in forward order: modules with linears at the paths of `unit_paths(units)`
    (by default attn.qkv, attn.proj, mlp.fc1, mlp.fc2: timm's ViT, DeiT-III, PiT, Swin, EVA and
    CaiT's self-attention blocks). Other modules with both the attention and the MLP parent (CaiT's
    class-attention blocks: separate q, k, v linears) are not probed, with an `AutoproxWarning`
    naming them; a model with no block at all is refused, naming the paths looked for."""
    paths = unit_paths(units)
    parents = {paths[name].rpartition(".")[0] for name in ("qkv", "fc1")}
    blocks, skipped = [], []
    for m in model.modules():
        linears = tuple(_submodule(m, paths[name]) for name in LINEARS)
        if all(isinstance(linear, nn.Linear) for linear in linears):
            blocks.append(Block(m, linears, _submodule(m, paths["qkv"].rpartition(".")[0])))
        elif all(parent and _submodule(m, parent) is not None for parent in parents):
            skipped.append(type(m).__name__)
    if not blocks:
        looked = ", ".join(paths[name] for name in LINEARS)
        raise AutoproxError(
            f"{type(model).__name__} has no transformer blocks with {looked} linears; the probe needs a "
            "ViT-style model (units= maps other module names)"
        )
    if skipped:
        names = ", ".join(sorted(set(skipped)))
        warnings.warn(
            f"{type(model).__name__}: {len(skipped)} blocks ({names}) lack linears at "
            f"{', '.join(paths[name] for name in LINEARS)} and are not probed",
            AutoproxWarning,
            stacklevel=2,
        )
    return blocks


def unit_stats(tensors: dict[str, torch.Tensor], numel: dict[str, torch.Tensor], blocks: int) -> UnitStats:
    """`UnitStats` of `blocks` blocks of four units each (qkv, proj, fc1, fc2), with their groups."""
    units = 4 * blocks
    linear_of_unit = [LINEARS[u % 4] for u in range(units)]
    groups = {g: torch.tensor([name in members for name in linear_of_unit]) for g, members in GROUPS.items()}
    return UnitStats(tensors, numel, groups, torch.arange(units, dtype=torch.long) // 4)


def probability_site(attn: nn.Module) -> tuple[nn.Module, Callable] | None:
    """Where an unfused attention module's softmax probabilities (B, H, N, N) pass: a module to hook
    and `read(args) -> probabilities` of its forward input. Talking-heads attention (CaiT: mixes the
    heads' maps before and after the softmax with `proj_l` and `proj_w`) is read at the input of
    `proj_w`; other attention at the input of `attn_drop`; None when there is neither."""
    mix = getattr(attn, "proj_w", None)
    if isinstance(mix, nn.Linear) and isinstance(getattr(attn, "proj_l", None), nn.Linear):
        return mix, lambda args: args[0].permute(0, 3, 1, 2)
    drop = getattr(attn, "attn_drop", None)
    if isinstance(drop, nn.Module):
        return drop, lambda args: args[0]
    return None


def _fast_attention(attn: nn.Module) -> bool:
    return type(attn) is Attention and getattr(attn, "gate", None) is None


def attention_sketch(attn: nn.Module, qkv: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """(size, size) sketch of the softmax probabilities (B, H, N, N) of timm's `Attention`,
    computed from its qkv output (B, N, 3*H*hd) for the sketched rows only (not rescaled), on
    the output's device."""
    with torch.no_grad():
        batch, tokens, _ = qkv.shape
        heads = attn.num_heads
        q, k, _ = qkv.reshape(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = attn.q_norm(q), attn.k_norm(k)
        rows = sketch_indices(batch * heads * tokens, size, seed, qkv.device)
        b, h, n = rows // (heads * tokens), (rows // tokens) % heads, rows % tokens
        logits = torch.einsum("sd,snd->sn", q[b, h, n], k[b, h]) * attn.scale
        cols = sketch_indices(tokens, size, seed, qkv.device)
        return logits.softmax(dim=-1).index_select(1, cols).float()


class _Recorder:
    """Hooks that fill `sketches[kind][unit]` (on the model's device) and `numel[kind][unit]`
    during one pass."""

    def __init__(self, blocks: list[Block], size: int, seed: int):
        self.blocks, self.size, self.seed = blocks, size, seed
        units, device = 4 * len(blocks), blocks[0].linears[0].weight.device
        self.sketches = {k: [torch.zeros(size, size, device=device) for _ in range(units)] for k in KINDS}
        self.numel = {k: torch.zeros(units, dtype=torch.float64) for k in KINDS}
        self.handles: list = []
        self.fused: list[tuple[nn.Module, bool]] = []

    def record(self, kind: str, unit: int, t: torch.Tensor) -> None:
        self.sketches[kind][unit] = sketch(t, self.size, self.seed)
        self.numel[kind][unit] = t.numel()

    def __enter__(self) -> _Recorder:
        for b, block in enumerate(self.blocks):
            for j, linear in enumerate(block.linears):
                self.handles.append(linear.register_forward_hook(self._linear_hook(4 * b + j)))
            if _fast_attention(block.attn):
                self.handles.append(block.linears[0].register_forward_hook(self._fast_attn_hook(block.attn, 4 * b)))
            elif (site := probability_site(block.attn)) is not None:
                if hasattr(block.attn, "fused_attn"):
                    self.fused.append((block.attn, block.attn.fused_attn))
                    block.attn.fused_attn = False
                self.handles.append(site[0].register_forward_hook(self._probs_hook(site[1], 4 * b)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()
        for attn, fused in self.fused:
            attn.fused_attn = fused

    def _grad_hook(self, kind: str, unit: int) -> Callable[[torch.Tensor], None]:
        return lambda grad: self.record(kind, unit, grad)

    def _linear_hook(self, unit: int):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            x = args[0]
            self.record("X", unit, x)
            self.record("Y", unit, output)
            if x.requires_grad:
                x.register_hook(self._grad_hook("gX", unit))
            if output.requires_grad:
                output.register_hook(self._grad_hook("gY", unit))

        return hook

    def _fast_attn_hook(self, attn: nn.Module, unit: int):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            self._set_attention(
                attention_sketch(attn, output, self.size, self.seed), output.shape, attn.num_heads, unit
            )

        return hook

    def _probs_hook(self, read: Callable[[tuple], torch.Tensor], unit: int):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            probs = read(args)
            self.sketches["A"][unit] = self.sketches["A"][unit + 1] = sketch(
                probs, self.size, self.seed, match_rms=False
            )
            self.numel["A"][unit] = self.numel["A"][unit + 1] = probs.numel()

        return hook

    def _set_attention(self, probs: torch.Tensor, qkv_shape: torch.Size, heads: int, unit: int) -> None:
        batch, tokens, _ = qkv_shape
        self.sketches["A"][unit] = self.sketches["A"][unit + 1] = probs
        self.numel["A"][unit] = self.numel["A"][unit + 1] = batch * heads * tokens * tokens

    def weights(self) -> None:
        """Record W and gW (call after the backward pass)."""
        for b, block in enumerate(self.blocks):
            for j, linear in enumerate(block.linears):
                self.record("W", 4 * b + j, linear.weight)
                if linear.weight.grad is not None:
                    self.record("gW", 4 * b + j, linear.weight.grad)

    def result(self) -> UnitStats:
        return unit_stats(stack_sketches(self.sketches), dict(self.numel), len(self.blocks))


def probe(
    model: nn.Module,
    images: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    size: int = 32,
    seed: int = 0,
    units: dict[str, str] | None = None,
) -> UnitStats:
    """One forward and backward pass of `model` on `images` (B, 3, H, W) with `loss_fn(logits)`.

    Returns the sketched statistics of every unit; hooks are removed and gradients cleared after.
    `units` maps unit names to other module paths (`unit_paths`).
    """
    blocks = find_blocks(model, units)
    model.zero_grad(set_to_none=True)
    with _Recorder(blocks, size, seed) as recorder:
        loss_fn(model(images)).backward()
        recorder.weights()
    model.zero_grad(set_to_none=True)
    stats = recorder.result()
    bad = [k for k, t in stats.tensors.items() if not torch.isfinite(t).all()]
    if bad:
        raise AutoproxError(f"the probe produced NaN/inf in statistics {bad}; the model or batch diverges")
    return stats


def slice_gradients(
    model: nn.Module, linears: list[nn.Linear], images: torch.Tensor, labels: torch.Tensor, parts: int
) -> list[torch.Tensor]:
    """Per linear, its weight gradients under `parts` equal slices of the batch (cross-entropy, one
    backward pass each), stacked: (parts, out, in). Gradients are cleared after."""
    if len(images) < parts:
        raise AutoproxError(f"the minibatch condition splits the batch in {parts}; batch size {len(images)} is smaller")
    grads: list[list[torch.Tensor]] = [[] for _ in linears]
    for rows in torch.tensor_split(torch.arange(len(images), device=images.device), parts):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(images[rows]), labels[rows]).backward()
        for unit, linear in enumerate(linears):
            grads[unit].append(linear.weight.grad.detach().clone())
    model.zero_grad(set_to_none=True)
    return [torch.stack(g) for g in grads]


def probe_minibatches(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    parts: int,
    size: int = 32,
    seed: int = 0,
    units: dict[str, str] | None = None,
) -> UnitStats:
    """Weight gradients of `parts` equal slices of the batch, one backward pass each (cross-entropy).

    Per unit: `gW`, the sketch of the slices' mean gradient, and `sgW`, the sketch of their
    elementwise standard deviation (population std over the slices), both taken from the full
    tensors before sketching, so `mean(abs(gW)) / mean(sgW)` is a gradient signal-to-noise ratio.
    """
    blocks = find_blocks(model, units)
    linears = [linear for block in blocks for linear in block.linears]
    stacks = slice_gradients(model, linears, images, labels, parts)
    tensors = stack_sketches(
        {
            "gW": [sketch(s.mean(0), size, seed) for s in stacks],
            "sgW": [sketch(s.std(0, correction=0), size, seed) for s in stacks],
        }
    )
    counts = torch.tensor([float(linear.weight.numel()) for linear in linears], dtype=torch.float64)
    stats = unit_stats(tensors, {"gW": counts, "sgW": counts.clone()}, len(blocks))
    if not all(torch.isfinite(t).all() for t in tensors.values()):
        raise AutoproxError("the minibatch probe produced NaN/inf gradients; the model or batch diverges")
    return stats
