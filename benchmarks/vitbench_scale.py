"""ViT-Bench-101's training bill at the issue's scale (100 architectures x 3 data sets x 300 epochs), and one
measured AutoFormer-Ti training step to price it with (`scaling.py` on CPU workers,
`device_check.py` on a GPU)."""

from __future__ import annotations

import math
import random
import time

import torch
import torch.nn.functional as F

from vit_space import get_space
from vit_space.device import float32_matmul

EPOCH_IMAGES = 50_000  # CIFAR-100's training set
RUNS, EPOCHS = 100 * 3, 300  # the scale: 100 architectures x 3 data sets (one space, KD), 300 epochs


def autoformer_step(batch: int, reps: int = 3, device: str | torch.device = "cpu") -> float:
    """Seconds of one AdamW training step of an AutoFormer-Ti (mid-sized sample) at 224 px on
    `device`: the fastest of `reps` steps after one warm-up step."""
    space = get_space("autoformer")
    torch.manual_seed(0)
    model = space.build(space.sample(random.Random(0)), num_classes=100).train().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images, labels = torch.randn(batch, 3, 224, 224).to(device), torch.randint(0, 100, (batch,)).to(device)
    seconds = []
    with float32_matmul():  # as `train` runs: no TF32 on a GPU, no bf16 on a CPU
        for _ in range(reps + 1):
            start = time.perf_counter()
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize(device)
            seconds.append(time.perf_counter() - start)
    return min(seconds[1:])


def steps_per_run(batch: int) -> int:
    """Optimizer steps of one ViT-Bench-101 run at batch `batch`."""
    return EPOCHS * EPOCH_IMAGES // batch


def days_on(workers: int, step: float, batch: int) -> float:
    """Days to train the `RUNS` runs on `workers` workers of `step` seconds per step, each run one
    task on one worker (so ceil(RUNS / workers) runs in turn; a scheduler's milliseconds per task
    are nothing against a run of days)."""
    return math.ceil(RUNS / workers) * steps_per_run(batch) * step / 86400
