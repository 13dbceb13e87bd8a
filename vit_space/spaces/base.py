"""The search-space interface shared by every ViT space, and the cost of one transformer block."""

from __future__ import annotations

import hashlib
import json
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from timm.layers import use_fused_attn
from torch import nn

from gp_proxy.errors import AutoproxError

Arch = dict[str, Any]


class Space(ABC):
    """A family of ViT architectures: sample, mutate, cross, validate, build, and count costs.

    Architectures are plain JSON-able dicts; `validate` returns the canonical form (fixed
    key order, ints and floats normalised) that every other method expects.
    """

    name: str
    in_chans: int = 3  # image channels the built models take
    img_size: int = 224  # image side the built models take (pixels)

    @abstractmethod
    def validate(self, arch: Arch) -> Arch:
        """Return the canonical form of `arch`; `AutoproxError` naming the bad field otherwise."""

    @abstractmethod
    def sample(self, rng: random.Random) -> Arch:
        """Draw one architecture uniformly over the choices."""

    @abstractmethod
    def mutate(self, arch: Arch, rng: random.Random, prob: float = 0.2) -> Arch:
        """Return a different architecture: each gene is redrawn with probability `prob`."""

    @abstractmethod
    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> tuple[Arch, Arch]:
        """Return two children mixing the genes of `a` and `b` (uniform crossover)."""

    @abstractmethod
    def build(self, arch: Arch, num_classes: int = 1000, img_size: int | None = None) -> nn.Module:
        """Build the timm model for `arch` (weights initialised from the global torch RNG); `img_size`
        None means the space's own `img_size`."""

    @abstractmethod
    def num_params(self, arch: Arch, num_classes: int = 1000, img_size: int | None = None) -> int:
        """Exact number of parameters of `build(arch, num_classes, img_size)`."""

    @abstractmethod
    def macs(self, arch: Arch, num_classes: int = 1000, img_size: int | None = None) -> int:
        """Multiply-accumulates of one forward pass of one image (matmuls and convolutions)."""

    def to_json(self, arch: Arch) -> str:
        """Canonical JSON: the validated arch with sorted keys and no spaces."""
        return json.dumps(self.validate(arch), sort_keys=True, separators=(",", ":"))

    def arch_hash(self, arch: Arch) -> str:
        """Stable 16-hex-digit id of (space, arch), the same on every machine and run."""
        return hashlib.sha256(f"{self.name}|{self.to_json(arch)}".encode()).hexdigest()[:16]

    def seeded_init(self, arch: Arch, seed: int) -> int:
        """The torch seed for initialising `arch`'s weights under a global `seed`."""
        return int(hashlib.sha256(f"{seed}|{self.arch_hash(arch)}".encode()).hexdigest()[:8], 16)


def check_keys(arch: Any, keys: Sequence[str], space: str) -> None:
    """Require `arch` to be a dict with exactly `keys`."""
    if not isinstance(arch, dict):
        raise AutoproxError(f"{space} arch must be a JSON object with keys {list(keys)}, got {type(arch).__name__}")
    missing, extra = [k for k in keys if k not in arch], [k for k in arch if k not in keys]
    if missing or extra:
        problems = [f"{what} fields {names}" for what, names in (("missing", missing), ("unknown", extra)) if names]
        raise AutoproxError(f"{space} arch: {', '.join(problems)}; expected {list(keys)}")


def check_choice(value: Any, allowed: Sequence, field: str, space: str) -> Any:
    """Return `value` normalised to the matching allowed choice; error naming field and choices."""
    if isinstance(value, bool) or not isinstance(value, (int, float, list, tuple)):
        raise AutoproxError(f"{space} arch: {field}={value!r} has the wrong type; allowed values: {list(allowed)}")
    for choice in allowed:
        if _same(value, choice):
            return choice
    raise AutoproxError(f"{space} arch: {field}={value!r} is not allowed; allowed values: {list(allowed)}")


def _same(value: Any, choice: Any) -> bool:
    if isinstance(choice, (list, tuple)):
        return (
            isinstance(value, (list, tuple))
            and len(value) == len(choice)
            and all(not isinstance(v, bool) and isinstance(v, (int, float)) and v == c for v, c in zip(value, choice))
        )
    return value == choice


def check_list(value: Any, length: int, allowed: Sequence, field: str, space: str) -> list:
    """Validate a per-layer list: right length, every entry an allowed choice."""
    if not isinstance(value, list):
        raise AutoproxError(f"{space} arch: {field} must be a list of {length} values from {list(allowed)}")
    if len(value) != length:
        raise AutoproxError(f"{space} arch: {field} has {len(value)} entries but depth is {length}")
    return [check_choice(v, allowed, f"{field}[{i}]", space) for i, v in enumerate(value)]


def redraw(value: Any, choices: Sequence, rng: random.Random) -> Any:
    """A choice different from `value` (or `value` itself when there is no other)."""
    others = [c for c in choices if c != value]
    return rng.choice(others) if others else value


def block_params(dim: int, mlp_hidden: int) -> int:
    """Parameters of a pre-norm transformer block: 2 LayerNorms, qkv (with bias), proj, fc1, fc2."""
    return (
        2 * 2 * dim
        + (dim * 3 * dim + 3 * dim)
        + (dim * dim + dim)
        + (dim * mlp_hidden + mlp_hidden)
        + (mlp_hidden * dim + dim)
    )


def block_macs(dim: int, mlp_hidden: int, tokens: int) -> int:
    """MACs of one block on `tokens` tokens: the four linears plus q·kᵀ and attn·v (2·N²·dim)."""
    return tokens * (3 * dim * dim + dim * dim + 2 * dim * mlp_hidden) + 2 * tokens * tokens * dim


def count_params(model: nn.Module) -> int:
    """Number of parameters of a built model."""
    return sum(p.numel() for p in model.parameters())


def disable_fused_attention(model: nn.Module) -> None:
    """Make timm attention modules materialise their softmax probabilities (no fused SDPA)."""
    for module in model.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False


def attention_kernel() -> str:
    """ "fused", "unfused" or "fused+experimental": the attention timm's modules built now run (timm's
    switch, which `TIMM_FUSED_ATTN` = 1, 0 or 2 or `timm.layers.set_fused_attn` sets; the
    experimental level makes timm's Swin, XCiT and Visformer fused too). The kernels agree to
    float rounding, not to the bit."""
    if not use_fused_attn():
        return "unfused"
    return "fused+experimental" if use_fused_attn(experimental=True) else "fused"


def same_attention(client_attention: str) -> None:
    """On a Dask worker: AutoproxError unless its networks run the client's attention kernel."""
    from vit_space.cluster import worker_name

    if (found := attention_kernel()) != client_attention:
        raise AutoproxError(
            f"{worker_name()} runs timm's {found} attention, this process {client_attention}; "
            "set TIMM_FUSED_ATTN alike for every worker"
        )


def measure_macs(model: nn.Module, img_size: int, in_chans: int = 3) -> int:
    """MACs of one forward pass of one image, counted by torch's FlopCounterMode (flops / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(1, in_chans, img_size, img_size, device=device))
    return counter.get_total_flops() // 2
