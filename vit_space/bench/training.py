"""Train one architecture on one data set with a fixed recipe and report its held-out top-1.

The recipe (`Recipe`) is a fixed number of AdamW steps over shuffled passes of the training set,
with linear warm-up then cosine decay to zero, label smoothing, and random translations of up to
`shift` pixels (zero fill). A budget in steps treats small and large data sets alike: a small one
is seen many times, a large one partly. Every random
choice (weight init, data order, augmentation) comes from generators seeded by the run's seed
and the architecture's hash, so a run on the CPU is reproducible at a fixed torch thread count (on
a GPU to float tolerance: some CUDA backward kernels are not deterministic).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F

from gp_proxy.errors import AutoproxError
from vit_space.data.images import ImageData
from vit_space.device import cpu_seeded, float32_matmul, resolve_device
from vit_space.spaces import Arch, Space


@dataclass(frozen=True)
class Recipe:
    """How every architecture of a benchmark is trained: `steps` AdamW steps of `batch_size` images
    (or, when `epochs` > 0, as many steps as `epochs` passes over each data set's training images)."""

    steps: int = 800
    epochs: float = 0.0
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup: float = 0.1  # share of the steps spent warming up
    label_smoothing: float = 0.1
    shift: int = 0  # random translations of up to this many pixels (af-tiny trains without: results/augmentation.md)
    train_size: int = 0  # 0: every training image; else a fixed seeded subset of this many
    test_size: int = 0  # 0: every test image; else a fixed seeded subset

    def __post_init__(self) -> None:
        checks = {
            "steps": self.steps >= 1,
            "epochs": self.epochs >= 0,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "warmup": 0 <= self.warmup < 1,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "shift": self.shift >= 0,
            "train_size": self.train_size >= 0,
            "test_size": self.test_size >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise AutoproxError(f"bad training recipe value(s): {', '.join(f'{b}={getattr(self, b)!r}' for b in bad)}")

    def steps_for(self, train_images: int) -> int:
        """Optimizer steps on a data set of `train_images` training images."""
        return max(math.ceil(self.epochs * train_images / self.batch_size), 1) if self.epochs else self.steps

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Recipe:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise AutoproxError(f"unknown recipe field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


@dataclass(frozen=True)
class TrainResult:
    """One training run: held-out top-1 (%), wall time (s) and the final training loss."""

    top1: float  # held-out top-1 accuracy, %
    seconds: float  # wall time of training and evaluation
    final_loss: float  # mean training loss over the last tenth of the steps


def validate_fits(space: Space, data: ImageData) -> None:
    """`AutoproxError` unless the data's images have the channels and size the space's models take."""
    if (data.channels, data.image_size) != (space.in_chans, space.img_size):
        raise AutoproxError(
            f"space {space.name} takes {space.in_chans}-channel {space.img_size}x{space.img_size} images but "
            f"{data.name} has {data.channels}-channel {data.image_size}x{data.image_size} ones; use a space "
            f"for that input (e.g. {space.name.partition('@')[0]}@{data.channels}x{data.image_size})"
        )


def subset(images: torch.Tensor, labels: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed seeded subset of `size` rows (all rows when `size` is 0 or too large)."""
    if not size or size >= len(labels):
        return images, labels
    index = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:size].sort().values
    return images[index], labels[index]


def train(
    space: Space, arch: Arch, data: ImageData, recipe: Recipe, seed: int, device: str | torch.device = "cpu"
) -> TrainResult:
    """Train `arch` from its seeded init (drawn on the CPU) on `data` with `recipe`, on `device` in
    float32 (no TF32 on a GPU); held-out top-1 in %. Batches are drawn and shifted on the CPU, so
    the order does not depend on the device."""
    device = resolve_device(device)
    validate_fits(space, data)
    start = time.perf_counter()
    run_seed = space.seeded_init(arch, seed)
    generator = torch.Generator().manual_seed(run_seed)
    with cpu_seeded(run_seed):
        model = space.build(arch, num_classes=data.num_classes).to(device)
    mean, std = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in data.mean_std())
    images, labels = subset(data.train_images, data.train_labels, recipe.train_size)
    test_images, test_labels = subset(data.test_images, data.test_labels, recipe.test_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps = recipe.steps_for(len(labels))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(round(recipe.warmup * steps), steps))
    model.train()
    losses = []
    with float32_matmul():
        for index in _batches(len(labels), recipe.batch_size, steps, generator):
            x = (_shift(images[index], recipe.shift, generator).to(device).float() / 255 - mean) / std
            loss = F.cross_entropy(model(x), labels[index].to(device), label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            if not math.isfinite(losses[-1]):
                break
        top1 = evaluate(model, test_images, test_labels, mean, std)
    tail = losses[-max(len(losses) // 10, 1) :]
    return TrainResult(top1, time.perf_counter() - start, sum(tail) / len(tail))


def _batches(n: int, batch_size: int, steps: int, generator: torch.Generator):
    """`steps` index batches drawn from successive shuffled passes over `n` items."""
    order = torch.empty(0, dtype=torch.int64)
    for _ in range(steps):
        while len(order) < batch_size:
            order = torch.cat([order, torch.randperm(n, generator=generator)])
        yield order[:batch_size]
        order = order[batch_size:]


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    batch_size: int = 500,
) -> float:
    """Top-1 accuracy (%) of `model` in eval mode on uint8 `images` (CPU), run where `model` is."""
    model.eval()
    device = mean.device
    correct = sum(
        int(
            (
                model((images[i : i + batch_size].to(device).float() / 255 - mean) / std).argmax(1).cpu()
                == labels[i : i + batch_size]
            ).sum()
        )
        for i in range(0, len(labels), batch_size)
    )
    return 100.0 * correct / len(labels)


def _warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))

    return factor


def _shift(images: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by a random offset in [-pixels, pixels]^2 (zero fill)."""
    if not pixels:
        return images
    n, _, h, w = images.shape
    padded = F.pad(images, (pixels,) * 4)
    dy, dx = torch.randint(2 * pixels + 1, (2, n), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None].expand(n, images.shape[1], h, w + 2 * pixels)
    shifted = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :].expand(n, images.shape[1], h, w)
    return shifted.gather(3, cols)
