"""Where tensors go: `auto|cpu|cuda|cuda:N` resolved to a torch device, or one line naming what
torch sees. `discover` uses it so that each Dask worker places the statistics on its own device.
`float32_matmul` keeps a GPU's float32 matmuls in float32 (no TF32) while programs, probes and
training run."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from gp_proxy.errors import AutoproxError

DEVICES = ("auto", "cpu", "cuda", "cuda:N")


def _seen() -> str:
    """What torch sees, in words: its version, its CUDA build and the GPUs."""
    cuda = torch.version.cuda
    build = f"torch {torch.__version__}, " + (f"built for CUDA {cuda}" if cuda else "a CPU-only build")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    gpus = ", ".join(f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(count)) or "no CUDA device"
    return f"{build}; it sees {gpus}"


def device_name(device: str | torch.device) -> str:
    """`device` as one of `DEVICES`' spellings, checked without looking for it (AutoproxError if not one)."""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise AutoproxError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    return device


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for `device`: `auto` (the first GPU when torch sees one, else the CPU),
    `cpu`, `cuda` or `cuda:N`. AutoproxError naming what torch sees when the GPU is not there."""
    device = device_name(device)
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
