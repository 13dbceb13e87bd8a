"""Networks as probes and pass proxies see them: the probe batch, seeded builds, and builds ahead."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import torch
from timm.layers import use_fused_attn
from torch import nn

from gp_proxy.errors import AutoproxError
from vit_space.data.batches import BatchSpec, get_dataset, make_batch
from vit_space.data.images import tensors_sha256
from vit_space.device import cpu_seeded, resolve_device
from vit_space.spaces import Arch, Space


@lru_cache(maxsize=8)
def batch_of(spec: BatchSpec) -> tuple[torch.Tensor, torch.Tensor]:
    return make_batch(spec)


@lru_cache(maxsize=8)
def batch_digest(spec: BatchSpec) -> str:
    """sha256 of `spec`'s probe batch, images and labels: a worker checks that it makes the client's."""
    return tensors_sha256(*batch_of(spec))


def attention_kernel() -> str:
    """ "fused" or "unfused": the attention timm's modules built now run (timm's switch, which
    `TIMM_FUSED_ATTN` or `timm.layers.set_fused_attn` sets). The two agree to float rounding, not to the bit."""
    return "fused" if use_fused_attn() else "unfused"


def attention_key() -> dict:
    """`{"attention": "unfused"}` where timm's fused attention is switched off (`TIMM_FUSED_ATTN=0`,
    `timm.layers.set_fused_attn(False)`, or a torch without it), else empty. The two kernels give
    the same statistics up to float rounding, not to the bit, so a cache keeps them apart. The
    device, TF32 and oneDNN's bf16 are not in a key: statistics come back to the CPU and are
    computed in float32 on every device (`vit_space.device.float32_matmul`), and no option changes
    their dtype."""
    return {} if attention_kernel() == "fused" else {"attention": "unfused"}


def same_probe(spec: BatchSpec, client_sha: str, client_attention: str) -> None:
    """On a Dask worker: AutoproxError unless its probe batch for `spec` has the client's sha256 and
    its networks run the client's attention kernel (`attention_kernel`)."""
    from vit_space.cluster import same_data

    same_data(f"probe batch of {spec.dataset}", client_sha, batch_digest(spec))
    if (found := attention_kernel()) != client_attention:
        from dask.distributed import get_worker

        raise AutoproxError(
            f"worker {get_worker().address} runs timm's {found} attention, this process {client_attention}; "
            "set TIMM_FUSED_ATTN alike for every worker"
        )


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
