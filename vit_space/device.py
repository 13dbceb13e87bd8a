"""Where models run: `--device auto|cpu|cuda|cuda:N`, and float32 kept float32 on GPUs.

Every model autoprox builds is built on the CPU under its seeded RNG (so the weights are the
same on every device), then moved. Statistics, scores and accuracies come back to the CPU, so
the cache on disk does not depend on the device. All probe statistics, pass proxies and training
run in float32 (SynFlow in float64, as on the CPU); `float32_matmul` switches TF32 off while a
probe, a pass proxy or a training run runs, so a GPU's matmuls and convolutions keep float32's
precision.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from gp_proxy.errors import AutoproxError

DEVICES = ("auto", "cpu", "cuda", "cuda:N")
_SEEDING = threading.RLock()  # torch's global CPU generator is one per process


def _seen() -> str:
    """What torch sees, in words: its version, its CUDA build and the GPUs."""
    cuda = torch.version.cuda
    build = f"torch {torch.__version__}, " + (f"built for CUDA {cuda}" if cuda else "a CPU-only build")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    gpus = ", ".join(f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(count)) or "no CUDA device"
    return f"{build}; it sees {gpus}"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for `device`: `auto` (the first GPU when torch sees one, else the CPU),
    `cpu`, `cuda` or `cuda:N`. AutoproxError naming what torch sees when the GPU is not there."""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise AutoproxError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    index = int(device.partition(":")[2] or 0)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index >= count:
        raise AutoproxError(f"device {device} was asked for, but {_seen()}")
    return torch.device("cuda", index)


@contextmanager
def cpu_seeded(seed: int) -> Iterator[None]:
    """Within the block torch's global CPU generator is seeded with `seed` (the GPUs' generators are
    left alone), one thread at a time; its state is restored after."""
    with _SEEDING, torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


@contextmanager
def float32_matmul() -> Iterator[None]:
    """Within the block, CUDA matmuls and cuDNN convolutions use full float32 (no TF32); restored after.

    It sets torch's `allow_tf32` flags, or, where the process already set TF32 through the newer
    `fp32_precision` API (reading the old flags then raises), that API: torch refuses a mix of the two."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    flags = [(matmul, "allow_tf32", False), (cudnn, "allow_tf32", False)]
    try:
        saved = [getattr(owner, name) for owner, name, _ in flags]
    except RuntimeError:
        flags = [(matmul, "fp32_precision", "ieee"), (cudnn.conv, "fp32_precision", "ieee")]
        saved = [getattr(owner, name) for owner, name, _ in flags]
    for owner, name, off in flags:
        setattr(owner, name, off)
    try:
        yield
    finally:
        for (owner, name, _), value in zip(flags, saved):
            setattr(owner, name, value)
