"""Parameter and FLOP budgets, and sampling architectures that fit one.

Costs are analytic (`Space.num_params`, `Space.macs`), so nothing is built to check a budget.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass

from gp_proxy.errors import AutoproxError
from vit_space.spaces import Arch, Space

SAMPLES_PER_ARCH = 1000  # rejection-sampling tries per requested architecture


def parse_range(text: str, what: str = "params") -> tuple[float, float]:
    """`"LO-HI"` in millions (e.g. `"5-7.5"`; `"-6"` or `"5-"` leave a side open) -> (lo, hi) in units."""
    lo, sep, hi = text.partition("-")
    try:
        low = float(lo) * 1e6 if lo.strip() else 0.0
        high = float(hi) * 1e6 if hi.strip() else float("inf")
    except ValueError:
        raise AutoproxError(f"--{what} takes LO-HI in millions, e.g. 5-7.5; got {text!r}") from None
    if not sep or low > high:
        raise AutoproxError(f"--{what} takes LO-HI in millions with LO <= HI, e.g. 5-7.5; got {text!r}")
    return low, high


@dataclass(frozen=True)
class Budget:
    """Parameter range [params_min, params_max] and a MAC ceiling, for networks built with
    `num_classes` outputs at `img_size` pixels."""

    params_min: float = 0.0
    params_max: float = float("inf")
    macs_max: float = float("inf")
    num_classes: int = 1000
    img_size: int | None = None  # None: the space's own input size

    def fits(self, space: Space, arch: Arch) -> bool:
        params = space.num_params(arch, self.num_classes, self.img_size)
        if not self.params_min <= params <= self.params_max:
            return False
        return self.macs_max == float("inf") or space.macs(arch, self.num_classes, self.img_size) <= self.macs_max

    def describe(self) -> str:
        parts = [f"{self.params_min / 1e6:g}M to {self.params_max / 1e6:g}M parameters"]
        if self.macs_max < float("inf"):
            parts.append(f"at most {self.macs_max / 1e9:g} GMACs")
        return " and ".join(parts)


def sample_within(
    space: Space, count: int, rng: random.Random, budget: Budget, exclude: Collection[str] = ()
) -> list[Arch]:
    """`count` distinct architectures drawn uniformly from `space` and kept if they fit `budget`
    and their hash is not in `exclude`.

    Raises `AutoproxError` with the range the space spans in samples when too few fit.
    """
    found: dict[str, Arch] = {}
    seen_params = []
    for _ in range(SAMPLES_PER_ARCH * count):
        arch = space.validate(space.sample(rng))
        seen_params.append(space.num_params(arch, budget.num_classes, budget.img_size))
        if budget.fits(space, arch) and (key := space.arch_hash(arch)) not in exclude:
            found.setdefault(key, arch)
            if len(found) == count:
                return list(found.values())
    span = f"{min(seen_params) / 1e6:.2f}M to {max(seen_params) / 1e6:.2f}M parameters"
    raise AutoproxError(
        f"only {len(found)} of {count} new distinct {space.name} architectures fit {budget.describe()} "
        f"in {SAMPLES_PER_ARCH * count} samples; the space spans about {span}"
    )
