"""Search spaces: AutoFormer and PiT as ViT-Bench-101 defines them, fixed timm models by name, and a
user's own space by `package.module:ClassName`."""

from __future__ import annotations

from collections.abc import Callable

from gp_proxy.errors import AutoproxError
from vit_space.spaces.archfile import read_archs
from vit_space.spaces.autoformer import AutoFormerSpace
from vit_space.spaces.base import (
    Arch,
    Space,
    attention_kernel,
    count_params,
    disable_fused_attention,
    measure_macs,
    same_attention,
)
from vit_space.spaces.pit import PiTSpace
from vit_space.spaces.timm_models import TimmSpace
from vit_space.spaces.user import PROTOCOL, UserSpace, user_space


def tiny_autoformer(in_chans: int = 1, img_size: int = 28) -> AutoFormerSpace:
    """AutoFormer-style space for small images (CPU-sized): width, depth, per-layer heads and MLP
    ratio, patch size 4 or 7 (49 or 16 tokens at 28x28)."""
    return AutoFormerSpace(
        hidden_dims=(16, 32, 48, 64),
        depths=(1, 2, 3, 4),
        mlp_ratios=(1.0, 2.0, 3.0, 4.0),
        num_heads=(1, 2, 4),
        patch_sizes=(4, 7),
        in_chans=in_chans,
        img_size=img_size,
    )


def tiny_pit(in_chans: int = 1, img_size: int = 28) -> PiTSpace:
    """PiT-style space for small images: base width, MLP ratio, per-stage depth and heads; patch 4
    stride 2, so three stages of 13x13, 7x7 and 4x4 tokens at 28x28."""
    return PiTSpace(
        base_dims=(8, 12, 16, 24),
        mlp_ratios=(1, 2, 3, 4),
        depths=TINY_PIT_DEPTHS,
        heads=TINY_PIT_HEADS,
        patch_size=4,
        stride=2,
        in_chans=in_chans,
        img_size=img_size,
    )


TINY_PIT_DEPTHS = ((1, 1, 1), (1, 2, 1), (1, 1, 2), (2, 2, 1), (1, 2, 2), (2, 2, 2), (1, 3, 1), (2, 3, 2), (1, 4, 2))
TINY_PIT_HEADS = ((1, 1, 1), (1, 1, 2), (1, 2, 2), (1, 2, 4), (2, 2, 2), (2, 2, 4), (2, 4, 4), (2, 4, 8), (4, 4, 4))
SPACES: dict[str, Callable[..., Space]] = {
    "autoformer": AutoFormerSpace,
    "pit": PiTSpace,
    "af-tiny": tiny_autoformer,
    "pit-tiny": tiny_pit,
}
SMALL_SPACES = ("af-tiny", "pit-tiny")


def get_space(name: str) -> Space:
    """`autoformer`, `pit`, `af-tiny[@CxS]`, `pit-tiny[@CxS]`, `timm:NAME[,NAME...]`, or a user's own
    space `package.module:ClassName` (`vit_space.spaces.user`: the space protocol).

    The small spaces take 1-channel 28x28 images unless a suffix says otherwise: `af-tiny@3x32`
    is the same space for 3-channel 32x32 images (CIFAR). The `timm:` prefix may repeat on each name.
    """
    base, _, shape = name.partition("@")
    if base in SMALL_SPACES:
        space = SPACES[base](*_input_shape(shape, name)) if shape else SPACES[base]()
        space.name = name
        return space
    if name in SPACES:
        return SPACES[name]()
    if name.startswith("timm:"):
        return TimmSpace([n.strip().removeprefix("timm:") for n in name[len("timm:") :].split(",") if n.strip()])
    if ":" in name:
        return user_space(name)
    raise AutoproxError(
        f"unknown space {name!r}; known: {', '.join(SPACES)} (the small ones also as NAME@CxS, "
        "e.g. af-tiny@3x32), timm:MODEL_NAME[,MODEL_NAME...], or package.module:ClassName (your own space)"
    )


def _input_shape(shape: str, name: str) -> tuple[int, int]:
    """`"3x32"` -> (3, 32): channels and image side of a small space's input."""
    chans, _, side = shape.partition("x")
    if not (chans.isdigit() and side.isdigit() and int(chans) >= 1 and int(side) >= 8):
        raise AutoproxError(f"space {name!r}: the input after @ must be CHANNELSxSIDE with side >= 8, e.g. @3x32")
    return int(chans), int(side)


__all__ = [
    "Arch",
    "AutoFormerSpace",
    "PiTSpace",
    "SMALL_SPACES",
    "SPACES",
    "Space",
    "tiny_autoformer",
    "tiny_pit",
    "TimmSpace",
    "PROTOCOL",
    "attention_kernel",
    "UserSpace",
    "count_params",
    "disable_fused_attention",
    "get_space",
    "measure_macs",
    "read_archs",
    "same_attention",
]
