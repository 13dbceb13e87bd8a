"""Search spaces: AutoFormer and PiT as ViT-Bench-101 defines them, and fixed timm models by name."""
from __future__ import annotations

from gp_proxy.errors import AutoproxError
from vit_space.spaces.autoformer import AutoFormerSpace
from vit_space.spaces.base import Arch, Space, count_params, disable_fused_attention, measure_macs
from vit_space.spaces.pit import PiTSpace
from vit_space.spaces.timm_models import TimmSpace

SPACES = {"autoformer": AutoFormerSpace, "pit": PiTSpace}


def get_space(name: str) -> Space:
    """`autoformer`, `pit`, or `timm:NAME[,NAME...]` (the `timm:` prefix may repeat on each name)."""
    if name in SPACES:
        return SPACES[name]()
    if name.startswith("timm:"):
        return TimmSpace([n.strip().removeprefix("timm:") for n in name[len("timm:"):].split(",") if n.strip()])
    raise AutoproxError(f"unknown space {name!r}; known: {', '.join(SPACES)}, timm:MODEL_NAME[,MODEL_NAME...]")


__all__ = ["Arch", "AutoFormerSpace", "PiTSpace", "SPACES", "Space", "TimmSpace", "count_params",
           "disable_fused_attention", "get_space", "measure_macs"]
