"""Where models run: `--device auto|cpu|cuda|cuda:N` (`resolve_device`, from `gp_proxy.device`),
seeded builds, and float32 kept float32 on GPUs.

Every model autoprox builds is built on the CPU under its seeded RNG (so the weights are the
same on every device), then moved. Statistics, scores and accuracies come back to the CPU, so
the cache on disk does not depend on the device. All probe statistics, pass proxies and training
run in float32 (SynFlow in float64, as on the CPU); `float32_matmul` (from `gp_proxy.device`)
switches TF32 (GPU) and oneDNN's bf16 (CPU) off while a probe, a pass proxy, a training run or a
program runs, so matmuls and convolutions keep float32's precision whatever the process set.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from gp_proxy.device import DEVICES, float32_matmul, resolve_device

__all__ = ["DEVICES", "cpu_seeded", "float32_matmul", "resolve_device"]

_SEEDING = threading.RLock()  # torch's global CPU generator is one per process


@contextmanager
def cpu_seeded(seed: int) -> Iterator[None]:
    """Within the block torch's global CPU generator is seeded with `seed` (the GPUs' generators are
    left alone), one thread at a time; its state is restored after."""
    with _SEEDING, torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield
