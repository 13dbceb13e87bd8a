"""AutoFormer-Ti subnets as ViT-Bench-101 defines them, built on timm's VisionTransformer."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from functools import partial

from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from gp_proxy.errors import AutoproxError
from vit_space.spaces.base import Arch, Space, block_macs, block_params, check_choice, check_keys, check_list, redraw

KEYS = ("hidden_dim", "depth", "mlp_ratio", "num_heads")


class AutoFormerSpace(Space):
    """hidden_dim, depth, and per layer mlp_ratio and num_heads; qkv width = hidden_dim.

    Patch 16, class token, learned position embedding, pre-norm blocks with qkv bias, token
    pooling; MLP hidden width = int(mlp_ratio * hidden_dim), head dim = hidden_dim / num_heads.
    """

    name = "autoformer"

    def __init__(
        self,
        hidden_dims: Sequence[int] = (192, 216, 240),
        depths: Sequence[int] = (12, 13, 14),
        mlp_ratios: Sequence[float] = (3.5, 4.0),
        num_heads: Sequence[int] = (3, 4),
        patch_sizes: Sequence[int] = (16,),
        in_chans: int = 3,
        img_size: int = 224,
    ):
        self.hidden_dims, self.depths = tuple(hidden_dims), tuple(depths)
        self.mlp_ratios, self.heads = tuple(float(r) for r in mlp_ratios), tuple(num_heads)
        self.patch_sizes, self.in_chans, self.img_size = tuple(patch_sizes), in_chans, img_size
        self.keys = KEYS + ("patch_size",) if len(self.patch_sizes) > 1 else KEYS

    def _patch(self, arch: Arch) -> int:
        return arch.get("patch_size", self.patch_sizes[0])

    def validate(self, arch: Arch) -> Arch:
        check_keys(arch, self.keys, self.name)
        dim = check_choice(arch["hidden_dim"], self.hidden_dims, "hidden_dim", self.name)
        depth = check_choice(arch["depth"], self.depths, "depth", self.name)
        heads = check_list(arch["num_heads"], depth, self.heads, "num_heads", self.name)
        bad = [h for h in heads if dim % h]
        if bad:
            raise AutoproxError(f"{self.name} arch: hidden_dim={dim} is not divisible by num_heads {bad}")
        return self._with_patch(
            {
                "hidden_dim": dim,
                "depth": depth,
                "mlp_ratio": check_list(arch["mlp_ratio"], depth, self.mlp_ratios, "mlp_ratio", self.name),
                "num_heads": heads,
            },
            lambda: check_choice(arch["patch_size"], self.patch_sizes, "patch_size", self.name),
        )

    def _with_patch(self, arch: Arch, patch: Callable[[], int]) -> Arch:
        """`arch` with its patch_size gene set from `patch()` where the space has that gene."""
        return {**arch, "patch_size": patch()} if "patch_size" in self.keys else arch

    def sample(self, rng: random.Random) -> Arch:
        depth = rng.choice(self.depths)
        return self._with_patch(
            {
                "hidden_dim": rng.choice(self.hidden_dims),
                "depth": depth,
                "mlp_ratio": [rng.choice(self.mlp_ratios) for _ in range(depth)],
                "num_heads": [rng.choice(self.heads) for _ in range(depth)],
            },
            lambda: rng.choice(self.patch_sizes),
        )

    def mutate(self, arch: Arch, rng: random.Random, prob: float = 0.2) -> Arch:
        arch = self.validate(arch)
        while True:
            child = self._mutate_once(arch, rng, prob)
            if child != arch:
                return child

    def _mutate_once(self, arch: Arch, rng: random.Random, prob: float) -> Arch:
        depth = redraw(arch["depth"], self.depths, rng) if rng.random() < prob else arch["depth"]
        ratios = (arch["mlp_ratio"] + [rng.choice(self.mlp_ratios) for _ in range(depth)])[:depth]
        heads = (arch["num_heads"] + [rng.choice(self.heads) for _ in range(depth)])[:depth]
        return self._with_patch(
            {
                "hidden_dim": redraw(arch["hidden_dim"], self.hidden_dims, rng)
                if rng.random() < prob
                else arch["hidden_dim"],
                "depth": depth,
                "mlp_ratio": [redraw(r, self.mlp_ratios, rng) if rng.random() < prob else r for r in ratios],
                "num_heads": [redraw(h, self.heads, rng) if rng.random() < prob else h for h in heads],
            },
            lambda: redraw(arch["patch_size"], self.patch_sizes, rng) if rng.random() < prob else arch["patch_size"],
        )

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> tuple[Arch, Arch]:
        a, b = self.validate(a), self.validate(b)
        return self._child(a, b, rng), self._child(b, a, rng)

    def _child(self, first: Arch, second: Arch, rng: random.Random) -> Arch:
        """Depth from `first`; each gene from either parent where both have it."""
        depth = first["depth"]

        def layer(key: str, i: int):
            return second[key][i] if i < second["depth"] and rng.random() < 0.5 else first[key][i]

        return self._with_patch(
            {
                "hidden_dim": rng.choice([first["hidden_dim"], second["hidden_dim"]]),
                "depth": depth,
                "mlp_ratio": [layer("mlp_ratio", i) for i in range(depth)],
                "num_heads": [layer("num_heads", i) for i in range(depth)],
            },
            lambda: rng.choice([first["patch_size"], second["patch_size"]]),
        )

    def build(self, arch: Arch, num_classes: int = 1000, img_size: int | None = None) -> nn.Module:
        arch = self.validate(arch)
        dim = arch["hidden_dim"]
        model = VisionTransformer(
            img_size=img_size or self.img_size,
            patch_size=self._patch(arch),
            in_chans=self.in_chans,
            num_classes=num_classes,
            embed_dim=dim,
            depth=0,
            qkv_bias=True,
            weight_init="skip",
        )
        norm = partial(nn.LayerNorm, eps=1e-6)
        model.blocks = nn.Sequential(
            *[
                Block(dim, num_heads=h, mlp_ratio=r, qkv_bias=True, norm_layer=norm)
                for r, h in zip(arch["mlp_ratio"], arch["num_heads"])
            ]
        )
        model.init_weights()
        return model

    def _tokens(self, arch: Arch, img_size: int | None) -> int:
        return ((img_size or self.img_size) // self._patch(arch)) ** 2 + 1

    def num_params(self, arch: Arch, num_classes: int = 1000, img_size: int | None = None) -> int:
        arch = self.validate(arch)
        dim, patch = arch["hidden_dim"], self._patch(arch)
        embed = self.in_chans * patch * patch * dim + dim + dim + self._tokens(arch, img_size) * dim
        blocks = sum(block_params(dim, int(r * dim)) for r in arch["mlp_ratio"])
        return embed + blocks + 2 * dim + dim * num_classes + num_classes

    def macs(self, arch: Arch, num_classes: int = 1000, img_size: int | None = None) -> int:
        arch = self.validate(arch)
        dim, tokens = arch["hidden_dim"], self._tokens(arch, img_size)
        embed = (tokens - 1) * dim * self.in_chans * self._patch(arch) ** 2
        return embed + sum(block_macs(dim, int(r * dim), tokens) for r in arch["mlp_ratio"]) + dim * num_classes
