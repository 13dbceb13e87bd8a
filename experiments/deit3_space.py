"""An example of a user's own search space: DeiT-III (timm's `deit3_*`, LayerScale ViTs) by depth,
width, heads and MLP ratio. Use it as `--space deit3_space:DeiT3Space` with this folder on the
Python path, e.g.

    PYTHONPATH=experiments autoprox score snip --space deit3_space:DeiT3Space --sample 5 --dataset c100
    PYTHONPATH=experiments autoprox search --space deit3_space:DeiT3Space --proxy snip --params 5-15 \
        --budget 20 --out runs/deit3

It implements the space protocol of `vit_space.spaces.user` with plain Python and timm.
"""

from __future__ import annotations

import random

import timm
import torch
from torch import nn

CHOICES = {"depth": (6, 8, 10, 12), "embed_dim": (192, 256, 320, 384), "num_heads": (3, 4, 6), "mlp_ratio": (3.0, 4.0)}


class DeiT3Space:
    """DeiT-III networks at 224 px, patch 16; an architecture is a dict of the four `CHOICES`."""

    in_chans, img_size = 3, 224

    def validate(self, arch: dict) -> dict:
        if not isinstance(arch, dict) or set(arch) != set(CHOICES):
            raise ValueError(f"a DeiT-III architecture has exactly the keys {sorted(CHOICES)}, got {arch!r}")
        for key, allowed in CHOICES.items():
            if arch[key] not in allowed:
                raise ValueError(f"DeiT-III {key}={arch[key]!r} is not one of {list(allowed)}")
        if arch["embed_dim"] % arch["num_heads"]:
            raise ValueError(f"embed_dim {arch['embed_dim']} is not a multiple of num_heads {arch['num_heads']}")
        return {key: type(allowed[0])(arch[key]) for key, allowed in CHOICES.items()}

    def sample(self, rng: random.Random) -> dict:
        while True:
            arch = {key: rng.choice(allowed) for key, allowed in CHOICES.items()}
            if arch["embed_dim"] % arch["num_heads"] == 0:
                return arch

    def mutate(self, arch: dict, rng: random.Random, prob: float = 0.2) -> dict:
        while True:
            child = {k: rng.choice(CHOICES[k]) if rng.random() < prob else v for k, v in arch.items()}
            if child["embed_dim"] % child["num_heads"] == 0:
                return child

    def crossover(self, a: dict, b: dict, rng: random.Random) -> tuple[dict, dict]:
        while True:
            pick = {k: rng.random() < 0.5 for k in CHOICES}
            first = {k: a[k] if pick[k] else b[k] for k in CHOICES}
            second = {k: b[k] if pick[k] else a[k] for k in CHOICES}
            if all(x["embed_dim"] % x["num_heads"] == 0 for x in (first, second)):
                return first, second

    def build(self, arch: dict, num_classes: int = 1000, img_size: int | None = None) -> nn.Module:
        return timm.create_model(
            "deit3_small_patch16_224", pretrained=False, num_classes=num_classes, img_size=img_size or 224, **arch
        )

    def num_params(self, arch: dict, num_classes: int = 1000, img_size: int | None = None) -> int:
        with torch.device("meta"):
            return sum(p.numel() for p in self.build(arch, num_classes, img_size).parameters())

    def macs(self, arch: dict, num_classes: int = 1000, img_size: int | None = None) -> int:
        """The four linears of each block and the two attention matmuls, per image (patch embedding aside)."""
        tokens = ((img_size or 224) // 16) ** 2 + 1
        dim, hidden = arch["embed_dim"], int(arch["embed_dim"] * arch["mlp_ratio"])
        per_block = tokens * (4 * dim * dim + 2 * dim * hidden) + 2 * tokens * tokens * dim
        return arch["depth"] * per_block + dim * num_classes
