"""A user's own search space, named `package.module:ClassName` (`--space`, `get_space`).

The class is imported as code (the user's own choice) and instantiated without arguments. It
needs the space protocol, `PROTOCOL`, with `Space`'s signatures:

    validate(arch) -> arch                 the canonical, JSON-able dict (errors for bad fields)
    sample(rng) -> arch                    rng: random.Random
    mutate(arch, rng, prob=0.2) -> arch
    crossover(a, b, rng) -> (arch, arch)
    build(arch, num_classes=1000, img_size=None) -> nn.Module   weights from the global torch RNG
    num_params(arch, num_classes=1000, img_size=None) -> int
    macs(arch, num_classes=1000, img_size=None) -> int          multiply-accumulates per image

and may set `in_chans` (default 3) and `img_size` (default 224). Hashes, canonical JSON and
seeded inits come from `Space`, so caches and benchmarks key its architectures like any other.
"""

from __future__ import annotations

import importlib
import random

from torch import nn

from gp_proxy.errors import AutoproxError
from vit_space.spaces.base import Arch, Space

PROTOCOL = ("validate", "sample", "mutate", "crossover", "build", "num_params", "macs")


class UserSpace(Space):
    """`Space` around an instance of a user's class, which it calls for the protocol's methods."""

    def __init__(self, name: str, impl: object):
        self.name, self.impl = name, impl
        self.in_chans = int(getattr(impl, "in_chans", Space.in_chans))
        self.img_size = int(getattr(impl, "img_size", Space.img_size))

    def validate(self, arch: Arch) -> Arch:
        return self.impl.validate(arch)

    def sample(self, rng: random.Random) -> Arch:
        return self.impl.sample(rng)

    def mutate(self, arch: Arch, rng: random.Random, prob: float = 0.2) -> Arch:
        return self.impl.mutate(arch, rng, prob)

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> tuple[Arch, Arch]:
        return self.impl.crossover(a, b, rng)

    def build(self, arch: Arch, num_classes: int = 1000, img_size: int | None = None) -> nn.Module:
        return self.impl.build(arch, num_classes, img_size)

    def num_params(self, arch: Arch, num_classes: int = 1000, img_size: int | None = None) -> int:
        return int(self.impl.num_params(arch, num_classes, img_size))

    def macs(self, arch: Arch, num_classes: int = 1000, img_size: int | None = None) -> int:
        return int(self.impl.macs(arch, num_classes, img_size))


def user_space(name: str) -> UserSpace:
    """The space `package.module:ClassName`; AutoproxError when the module does not import, the
    class is not there, or it lacks a method of `PROTOCOL` (the error names it)."""
    module_name, _, class_name = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # the user's module: whatever it raises on import
        raise AutoproxError(
            f"--space {name}: module {module_name!r} does not import ({type(e).__name__}: {e})"
        ) from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise AutoproxError(f"--space {name}: module {module_name!r} has no class {class_name!r}")
    missing = [m for m in PROTOCOL if not callable(getattr(cls, m, None))]
    if missing:
        raise AutoproxError(
            f"--space {name}: class {class_name} lacks {', '.join(missing)} of the space protocol "
            f"({', '.join(PROTOCOL)})"
        )
    return UserSpace(name, cls())
