"""Where tensors go: `auto|cpu|cuda|cuda:N` resolved to a torch device, or one line naming what
torch sees. `discover` uses it so that each Dask worker places the statistics on its own device.
`float32_matmul` keeps float32 matmuls and convolutions in float32 (no TF32 on a GPU, no bf16
through oneDNN on a CPU) while programs, probes and training run."""

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


def out_of_memory(where: str, error: torch.OutOfMemoryError) -> AutoproxError:
    """One line for a GPU that ran out of memory in `where` (e.g. "this process"): torch's first
    sentence, and what to lower (a retry would only repeat it)."""
    first = str(error).split(". ")[0].strip()
    return AutoproxError(
        f"{where} ran out of GPU memory ({first}); give it less work at once (a smaller batch) or fewer workers per GPU"
    )


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
    """Within the block, float32 matmuls and convolutions keep float32's precision (no TF32 on a GPU,
    no bf16 through oneDNN on a CPU); every precision setting of the process is restored after.

    It calls `torch.set_float32_matmul_precision("highest")` and sets cuDNN's `allow_tf32`, or, where
    the process set precisions through torch's newer per-backend `fp32_precision` API (reading the
    former then raises: torch refuses a mix of the two), sets each backend's `fp32_precision`."""
    backends = torch.backends
    owners = (backends.cuda.matmul, backends.cudnn.conv, backends.mkldnn.matmul, backends.mkldnn.conv)
    precisions = [owner.fp32_precision for owner in owners]
    try:
        legacy = torch.get_float32_matmul_precision(), backends.cudnn.allow_tf32
    except RuntimeError:
        legacy = None
        for owner in owners:
            owner.fp32_precision = "ieee"
    else:
        torch.set_float32_matmul_precision("highest")
        backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        if legacy is not None:
            torch.set_float32_matmul_precision(legacy[0])
            backends.cudnn.allow_tf32 = legacy[1]
        for owner, precision in zip(owners, precisions):  # as they were, those the calls above changed too
            if owner.fp32_precision != precision:
                owner.fp32_precision = precision
