"""PiT subnets as ViT-Bench-101 defines them, built on timm's PoolingVisionTransformer."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from timm.models.pit import PoolingVisionTransformer
from torch import nn

from vit_space.spaces.base import Arch, Space, block_macs, block_params, check_choice, check_keys, redraw

KEYS = ("base_dim", "mlp_ratio", "depth", "num_heads")
DEPTHS = ((1, 6, 6), (1, 8, 4), (2, 4, 6), (2, 6, 4), (2, 6, 6), (2, 8, 2), (2, 8, 4), (3, 4, 6), (3, 6, 4), (3, 8, 2))
HEADS = ((2, 2, 2), (2, 2, 4), (2, 2, 8), (2, 4, 4), (2, 4, 8), (2, 8, 8), (4, 4, 4), (4, 4, 8), (4, 8, 8), (8, 8, 8))


class PiTSpace(Space):
    """base_dim, one mlp_ratio, and per-stage depth and heads triples; stage width = base_dim * heads.

    Overlapping patch embedding (patch 16, stride 8), three stages joined by depthwise-conv
    pooling (stride 2), class token, qkv bias, token pooling.
    """

    name = "pit"

    def __init__(
        self,
        base_dims: Sequence[int] = (16, 24, 32, 40),
        mlp_ratios: Sequence[int] = (2, 4, 6, 8),
        depths: Sequence[Sequence[int]] = DEPTHS,
        heads: Sequence[Sequence[int]] = HEADS,
        patch_size: int = 16,
        stride: int = 8,
        in_chans: int = 3,
        img_size: int = 224,
    ):
        self.base_dims, self.mlp_ratios = tuple(base_dims), tuple(mlp_ratios)
        self.depths = tuple(list(d) for d in depths)
        self.heads = tuple(list(h) for h in heads)
        self.patch_size, self.stride, self.in_chans, self.img_size = patch_size, stride, in_chans, img_size

    def validate(self, arch: Arch) -> Arch:
        check_keys(arch, KEYS, self.name)
        return {
            "base_dim": check_choice(arch["base_dim"], self.base_dims, "base_dim", self.name),
            "mlp_ratio": check_choice(arch["mlp_ratio"], self.mlp_ratios, "mlp_ratio", self.name),
            "depth": list(check_choice(arch["depth"], self.depths, "depth", self.name)),
            "num_heads": list(check_choice(arch["num_heads"], self.heads, "num_heads", self.name)),
        }

    def sample(self, rng: random.Random) -> Arch:
        return {
            "base_dim": rng.choice(self.base_dims),
            "mlp_ratio": rng.choice(self.mlp_ratios),
            "depth": list(rng.choice(self.depths)),
            "num_heads": list(rng.choice(self.heads)),
        }

    def mutate(self, arch: Arch, rng: random.Random, prob: float = 0.2) -> Arch:
        arch = self.validate(arch)
        choices = {
            "base_dim": self.base_dims,
            "mlp_ratio": self.mlp_ratios,
            "depth": self.depths,
            "num_heads": self.heads,
        }
        while True:
            child = {k: redraw(v, choices[k], rng) if rng.random() < prob else v for k, v in arch.items()}
            if child != arch:
                return {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in child.items()}

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> tuple[Arch, Arch]:
        a, b = self.validate(a), self.validate(b)
        picks = {k: rng.random() < 0.5 for k in KEYS}
        return ({k: (b if picks[k] else a)[k] for k in KEYS}, {k: (a if picks[k] else b)[k] for k in KEYS})

    def build(self, arch: Arch, num_classes: int = 1000, img_size: int | None = None) -> nn.Module:
        arch = self.validate(arch)
        return PoolingVisionTransformer(
            img_size=img_size or self.img_size,
            patch_size=self.patch_size,
            stride=self.stride,
            in_chans=self.in_chans,
            base_dims=[arch["base_dim"]] * 3,
            depth=arch["depth"],
            heads=arch["num_heads"],
            mlp_ratio=arch["mlp_ratio"],
            num_classes=num_classes,
        )

    def _grids(self, img_size: int | None) -> list[int]:
        """Token-grid side of each stage: the patch conv, then two stride-2 poolings (k=3, pad=1)."""
        side = math.floor(((img_size or self.img_size) - self.patch_size) / self.stride + 1)
        grids = [side]
        for _ in range(2):
            side = (side + 2 - 3) // 2 + 1
            grids.append(side)
        return grids

    def _widths(self, arch: Arch) -> list[int]:
        return [arch["base_dim"] * h for h in arch["num_heads"]]

    def num_params(self, arch: Arch, num_classes: int = 1000, img_size: int | None = None) -> int:
        arch = self.validate(arch)
        widths, grid = self._widths(arch), self._grids(img_size)[0]
        total = self.in_chans * self.patch_size**2 * widths[0] + widths[0] + widths[0] * grid * grid + widths[0]
        for stage, (dim, depth) in enumerate(zip(widths, arch["depth"])):
            if stage:
                prev = widths[stage - 1]
                total += dim * 9 + dim + prev * dim + dim
            total += depth * block_params(dim, int(dim * arch["mlp_ratio"]))
        return total + 2 * widths[-1] + widths[-1] * num_classes + num_classes

    def macs(self, arch: Arch, num_classes: int = 1000, img_size: int | None = None) -> int:
        arch = self.validate(arch)
        widths, grids = self._widths(arch), self._grids(img_size)
        total = widths[0] * grids[0] ** 2 * self.in_chans * self.patch_size**2
        for stage, (dim, depth, side) in enumerate(zip(widths, arch["depth"], grids)):
            if stage:
                total += dim * side * side * 9 + widths[stage - 1] * dim
            total += depth * block_macs(dim, int(dim * arch["mlp_ratio"]), side * side + 1)
        return total + widths[-1] * num_classes
