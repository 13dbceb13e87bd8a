"""Networks as probes and pass proxies see them: the probe batch, seeded builds, and builds ahead."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import torch
from torch import nn

from gp_proxy.errors import AutoproxError
from vit_space.data.batches import BatchSpec, get_dataset, make_batch
from vit_space.data.images import tensors_sha256
from vit_space.device import cpu_seeded, resolve_device
from vit_space.spaces import Arch, Space, attention_kernel, same_attention


@lru_cache(maxsize=8)
def batch_of(spec: BatchSpec) -> tuple[torch.Tensor, torch.Tensor]:
    return make_batch(spec)


@lru_cache(maxsize=8)
def batch_digest(spec: BatchSpec) -> str:
    """sha256 of `spec`'s probe batch, images and labels: a worker checks that it makes the client's."""
    return tensors_sha256(*batch_of(spec))


def attention_key() -> dict:
    """`{"attention": kernel}` where timm's attention is not its default fused kernel
    (`attention_kernel`), else empty, so entries of the default keep their files. The device,
    TF32 and oneDNN's bf16 are not in a key: statistics come back to the CPU and are computed in
    float32 on every device (`vit_space.device.float32_matmul`), and no option changes their dtype."""
    kernel = attention_kernel()
    return {} if kernel == "fused" else {"attention": kernel}


def attention_note() -> str:
    """For an error about missing cache entries: " with timm's KERNEL attention" where the key names it
    (the entries of the default kernel do not count), else empty."""
    return f" with timm's {attention_kernel()} attention (TIMM_FUSED_ATTN)" if attention_key() else ""


def same_probe(spec: BatchSpec, client_sha: str, client_attention: str) -> None:
    """On a Dask worker: AutoproxError unless its probe batch for `spec` has the client's sha256 and
    its networks run the client's attention kernel."""
    from vit_space.cluster import same_data

    same_data(f"probe batch of {spec.dataset}", client_sha, batch_digest(spec))
    same_attention(client_attention)


def build_seeded(space: Space, arch: Arch, batch: BatchSpec, device: str | torch.device = "cpu") -> nn.Module:
    """`arch` built for `batch`'s data set with its seeded init under the batch seed (on the CPU, so
    the weights do not depend on the device), in train mode, on `device` (the model every probe and
    pass proxy sees); `AutoproxError` if the data set's channels are not what the space takes."""
    info = get_dataset(batch.dataset)
    if info.channels != space.in_chans:
        raise AutoproxError(
            f"space {space.name} takes {space.in_chans}-channel images but {batch.dataset} has "
            f"{info.channels}-channel ones; use a space for that input (e.g. af-tiny@3x32, af-tiny for 1x28)"
        )
    with cpu_seeded(space.seeded_init(arch, batch.seed)):
        model = space.build(arch, num_classes=info.num_classes, img_size=batch.image_size)
    return model.to(resolve_device(device)).train()


def built_ahead(build: Callable[[object], nn.Module], items: Sequence, ahead: bool) -> Iterator[nn.Module]:
    """`build(item)` for each of `items`, in order. With `ahead`, the next item's model is built in a
    background thread while the caller uses the current one, so the seeded init (CPU work) overlaps
    the probe on a GPU. The models are the same either way."""
    if not ahead:
        yield from map(build, items)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="build") as pool:
        pending = [pool.submit(build, item) for item in items[:1]]
        for index in range(len(items)):
            model = pending.pop().result()
            pending += [pool.submit(build, item) for item in items[index + 1 : index + 2]]
            yield model


__all__ = ["batch_of", "build_seeded", "built_ahead"]
