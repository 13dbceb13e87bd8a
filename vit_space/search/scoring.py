"""Scoring a set of architectures with one proxy: the table `autoprox score` prints and writes."""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gp_proxy.atomic import write_text
from gp_proxy.errors import AutoproxError
from gp_proxy.store import SavedProxy
from vit_space.probe.cache import ProbeSpec, StatsCache
from vit_space.proxies.scores import proxy_scores
from vit_space.search.budget import Budget, sample_within
from vit_space.spaces import Arch, Space, TimmSpace

COLUMNS = ("rank", "score", "params", "macs", "hash", "arch")


@dataclass(frozen=True)
class ScoredArch:
    """One scored architecture: `params` in parameters, `macs` in multiply-accumulates per image."""

    rank: int
    score: float
    params: int
    macs: int
    hash: str
    arch: str  # the space's canonical JSON


@dataclass(frozen=True)
class ScoreTable:
    """Architectures within a budget, best score first (NaN scores last); `skipped` lay outside it."""

    rows: list[ScoredArch]
    skipped: int

    def write_csv(self, path: str | Path) -> Path:
        """The rows as CSV (columns `COLUMNS`), written atomically."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows([getattr(r, c) for c in COLUMNS] for r in self.rows)
        write_text(path, buffer.getvalue())
        return Path(path)


def candidates(
    space: Space, budget: Budget, sample: int = 0, seed: int = 0, archs: Sequence[Arch] | None = None
) -> list[Arch]:
    """The architectures to score: `archs` if given, else `sample` seeded draws within `budget`,
    else (timm spaces) every named model."""
    if archs:
        return list(archs)
    if sample:
        return sample_within(space, sample, random.Random(seed), budget)
    if isinstance(space, TimmSpace):
        return [{"timm": name} for name in space.names]
    raise AutoproxError(f"space {space.name} needs --archs FILE.json or --sample N (architectures or a sample size)")


def score_archs(
    proxy: str | SavedProxy,
    space: Space,
    archs: Sequence[Arch],
    spec: ProbeSpec,
    cache: StatsCache,
    budget: Budget = Budget(),
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> ScoreTable:
    """Score the architectures of `archs` that fit `budget` with `proxy` on `device`; rank them, best first."""
    fitting = [a for a in archs if budget.fits(space, a)]
    if not fitting:
        raise AutoproxError(f"none of the {len(archs)} architectures fits {budget.describe()}")
    scores = proxy_scores(proxy, space, fitting, spec, cache, progress=progress, device=device).values
    classes, image_size = budget.num_classes, budget.img_size
    order = sorted(range(len(fitting)), key=lambda i: -scores[i] if np.isfinite(scores[i]) else np.inf)
    rows = [
        ScoredArch(
            rank,
            float(scores[i]),
            space.num_params(fitting[i], classes, image_size),
            space.macs(fitting[i], classes, image_size),
            space.arch_hash(fitting[i]),
            space.to_json(fitting[i]),
        )
        for rank, i in enumerate(order, start=1)
    ]
    return ScoreTable(rows, len(archs) - len(fitting))
