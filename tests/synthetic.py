"""Synthetic ranking tasks with a planted signal, for engine tests that need no ViT."""

import numpy as np
import torch

from gp_proxy.fitness import Task
from gp_proxy.stats import UnitStats, stack

NAMES = ["W", "gW", "X"]


def planted_tasks(archs: int = 40, seed: int = 0, noise: float = 0.3) -> list[Task]:
    """Two tasks whose accuracies follow the summed Frobenius norm of `gW` over the "mlp" units
    (plus noise); the networks differ in unit count and statistic scales."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    stats, signal = [], []
    for _ in range(archs):
        units = int(torch.randint(4, 9, (1,), generator=g))
        scale = float(torch.rand(1, generator=g)) + 0.5
        tensors = {n: torch.randn(units, 6, 6, generator=g) for n in NAMES}
        tensors["gW"] *= scale
        numel = {n: torch.full((units,), 1000.0, dtype=torch.float64) for n in NAMES}
        mlp = torch.arange(units) % 2 == 1
        stats.append(UnitStats(tensors, numel, {"mlp": mlp, "msa": ~mlp}, torch.arange(units) // 2))
        signal.append(float((tensors["gW"][mlp].square().mean((1, 2)) * 1000).sqrt().sum()))
    bundle = stack(stats)
    signal = np.array(signal)
    order = rng.permutation(archs)
    train, test = np.sort(order[: archs // 2]), np.sort(order[archs // 2 :])
    tasks = []
    for name in ("data1", "data2"):
        accuracy = 70 + 5 * (signal - signal.mean()) / signal.std() + noise * 5 * rng.standard_normal(archs)
        tasks.append(Task(name, bundle, accuracy, train, test))
    return tasks


PLANTED = "agg_sum_mlp(fro(gW))"  # the program `planted_tasks` rewards (training JCM > 0.3)


def sample_trees(pset, seed: int, count: int = 200) -> list:
    """`count` random programs (heights 1 to 5, Python's `random` seeded with `seed`), then `PLANTED`."""
    import random

    from deap import gp

    from gp_proxy.program import generate

    random.seed(seed)
    trees = [gp.PrimitiveTree(generate(pset, 1, 5)) for _ in range(count)]
    return trees + [gp.PrimitiveTree.from_string(PLANTED, pset)]
