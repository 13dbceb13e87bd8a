"""Fixed timm models by name (`timm:deit_tiny_patch16_224,timm:pit_ti_224`) as a space to probe and score."""

from __future__ import annotations

import difflib
import random
from collections.abc import Sequence
from functools import lru_cache

import timm
import torch
from torch import nn

from gp_proxy.errors import AutoproxError
from vit_space.spaces.base import Arch, Space, count_params, measure_macs, redraw


@lru_cache(maxsize=1)
def _known_models() -> frozenset[str]:
    return frozenset(timm.list_models())


def check_model_name(name: str) -> str:
    """Return `name` if timm knows it; otherwise an error suggesting close names."""
    if name not in _known_models():
        close = difflib.get_close_matches(name, sorted(_known_models()), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
        raise AutoproxError(f"unknown timm model {name!r}{hint}")
    return name


class TimmSpace(Space):
    """A fixed list of timm models; an architecture is `{"timm": NAME}` (randomly initialised, no download).

    `sample`, `mutate` and `crossover` pick among the listed names, so a searcher can walk the list.
    """

    name = "timm"

    def __init__(self, names: Sequence[str]):
        if not names:
            raise AutoproxError("a timm space needs at least one model name, e.g. timm:deit_tiny_patch16_224")
        self.names = tuple(check_model_name(n) for n in names)

    def validate(self, arch: Arch) -> Arch:
        if not isinstance(arch, dict) or set(arch) != {"timm"} or not isinstance(arch["timm"], str):
            raise AutoproxError(f'timm arch must be {{"timm": NAME}}, got {arch!r}')
        return {"timm": check_model_name(arch["timm"])}

    def sample(self, rng: random.Random) -> Arch:
        return {"timm": rng.choice(self.names)}

    def mutate(self, arch: Arch, rng: random.Random, prob: float = 0.2) -> Arch:
        return {"timm": redraw(self.validate(arch)["timm"], self.names, rng)}

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> tuple[Arch, Arch]:
        return self.validate(b), self.validate(a)

    def build(self, arch: Arch, num_classes: int = 1000, img_size: int | None = None) -> nn.Module:
        name = self.validate(arch)["timm"]
        try:
            return timm.create_model(
                name, pretrained=False, num_classes=num_classes, img_size=img_size or self.img_size
            )
        except TypeError:  # models without an img_size argument (e.g. convolutional ones)
            return timm.create_model(name, pretrained=False, num_classes=num_classes)

    def _on_meta(self, arch: Arch, num_classes: int, img_size: int) -> nn.Module:
        with torch.device("meta"):
            return self.build(arch, num_classes, img_size)

    def num_params(self, arch: Arch, num_classes: int = 1000, img_size: int | None = None) -> int:
        return count_params(self._on_meta(arch, num_classes, img_size))

    def macs(self, arch: Arch, num_classes: int = 1000, img_size: int | None = None) -> int:
        model = self._on_meta(arch, num_classes, img_size)
        for module in model.modules():
            if hasattr(module, "fused_attn"):
                module.fused_attn = False
        return measure_macs(model, img_size or self.img_size, self.in_chans)
