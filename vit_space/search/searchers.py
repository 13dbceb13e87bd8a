"""Training-free ViT search: find high-scoring architectures within a budget with saved proxies.

Two algorithms over a `Space`:
- random: `count` distinct architectures sampled within the budget;
- evolution: a population of `population` architectures; each generation takes the top
  `parents`, makes children by crossover (probability `crossover`) or mutation, keeps those
  that fit the budget and were never evaluated, scores them, and keeps the best `population`.
Every candidate is probed once: statistics and pass-proxy scores are cached by architecture
hash, so a rerun or a `resume` never probes twice. With several proxies a candidate's
fitness is its mean rank (as a fraction of the candidates evaluated so far, 1 = best) over
the proxies; with one, its score. An ensemble counts as its members (ranks over every
candidate so far, not over one batch).

Random search also proceeds in batches of `population`. A JSON checkpoint after every batch
holds the evaluated candidates, the population and the random state, so an interrupted search
resumes to the same result.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.stats import rankdata
from tqdm.auto import tqdm

from gp_proxy.atomic import write_text
from gp_proxy.ensemble import SavedEnsemble
from gp_proxy.errors import AutoproxError
from gp_proxy.markdown import table
from gp_proxy.store import SavedProxy
from vit_space.device import resolve_device
from vit_space.probe.cache import ProbeSpec, StatsCache
from vit_space.proxies.scores import proxy_label, proxy_scores
from vit_space.search.budget import Budget, sample_within
from vit_space.spaces import Arch, Space

ALGORITHMS = ("evolution", "random")
CHECKPOINT_VERSION = 1
TRIES_PER_CHILD = 200


@dataclass(frozen=True)
class SearchConfig:
    """count: candidates evaluated in all; population, parents, crossover, mutation: evolution."""

    algorithm: str = "evolution"
    count: int = 500
    population: int = 50
    parents: int = 10
    crossover: float = 0.5
    mutation: float = 0.2
    seed: int = 0
    top_k: int = 10

    def validate(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise AutoproxError(f"unknown search algorithm {self.algorithm!r}; known: {', '.join(ALGORITHMS)}")
        bad = {
            "count": self.count >= 1,
            "population": self.population >= 2,
            "parents": 1 <= self.parents <= self.population,
        }
        if not all(bad.values()):
            raise AutoproxError(
                "search needs count >= 1, population >= 2 and 1 <= parents <= population; got "
                + ", ".join(f"{k}={getattr(self, k)!r}" for k, ok in bad.items() if not ok)
            )
        if not (0 <= self.crossover <= 1 and 0 < self.mutation <= 1):
            raise AutoproxError("crossover must lie in [0, 1] and mutation in (0, 1]")


@dataclass
class Candidate:
    """One evaluated architecture: its scores (one per proxy), costs and evaluation order."""

    arch: Arch
    hash: str
    scores: list[float]
    params: int
    macs: int
    order: int
    fitness: float = float("nan")


@dataclass
class SearchState:
    """Every evaluated candidate in order, and the hashes of the current population."""

    evaluated: list[Candidate] = field(default_factory=list)
    population: list[str] = field(default_factory=list)


def refresh_fitness(candidates: Sequence[Candidate]) -> None:
    """Fitness = the score (one proxy) or the mean rank fraction over proxies (NaN scores rank last)."""
    scores = np.array([c.scores for c in candidates], dtype=np.float64)
    if scores.shape[1] == 1:
        fitness = np.where(np.isfinite(scores[:, 0]), scores[:, 0], -np.inf)
    else:
        filled = np.where(np.isfinite(scores), scores, -np.inf)
        fitness = np.mean([rankdata(col) / len(col) for col in filled.T], axis=0)
    for c, f in zip(candidates, fitness):
        c.fitness = float(f)


class Searcher:
    """Evaluates and evolves candidates of `space` within `budget` under `proxies`."""

    def __init__(
        self,
        space: Space,
        proxies: Sequence[str | SavedProxy | SavedEnsemble],
        budget: Budget,
        spec: ProbeSpec,
        cache: StatsCache,
        config: SearchConfig,
        device: str | torch.device = "cpu",
        client=None,
    ):
        config.validate()
        self.device, self.client = device if client is not None else resolve_device(device), client
        self.space, self.proxies, self.budget, self.spec, self.cache, self.config = (
            space,
            [m for p in proxies for m in (p.members if isinstance(p, SavedEnsemble) else [p])],
            budget,
            spec,
            cache,
            config,
        )

    def evaluate(self, archs: Sequence[Arch], state: SearchState) -> None:
        """Score `archs` with every proxy and append them to the evaluated candidates."""
        scores = [
            proxy_scores(
                p, self.space, archs, self.spec, self.cache, progress=False, device=self.device, client=self.client
            ).values
            for p in self.proxies
        ]
        b = self.budget
        for i, arch in enumerate(archs):
            state.evaluated.append(
                Candidate(
                    arch,
                    self.space.arch_hash(arch),
                    [float(s[i]) for s in scores],
                    self.space.num_params(arch, b.num_classes, b.img_size),
                    self.space.macs(arch, b.num_classes, b.img_size),
                    len(state.evaluated),
                )
            )
        refresh_fitness(state.evaluated)

    def children(self, parents: Sequence[Candidate], count: int, seen: set[str], rng: random.Random) -> list[Arch]:
        """Up to `count` new architectures within the budget, bred from `parents`."""
        out: list[Arch] = []
        for _ in range(TRIES_PER_CHILD * count):
            if len(out) == count:
                break
            if len(parents) > 1 and rng.random() < self.config.crossover:
                a, b = rng.sample(list(parents), 2)
                child = self.space.crossover(a.arch, b.arch, rng)[0]
                child = self.space.mutate(child, rng, self.config.mutation) if rng.random() < 0.5 else child
            else:
                child = self.space.mutate(rng.choice(list(parents)).arch, rng, self.config.mutation)
            child = self.space.validate(child)
            key = self.space.arch_hash(child)
            if key not in seen and self.budget.fits(self.space, child):
                seen.add(key)
                out.append(child)
        return out

    def run(self, out_dir: str | Path, resume: bool = False, progress: bool = True) -> SearchState:
        """Search until `config.count` candidates are evaluated, checkpointing in `out_dir`."""
        out_dir = Path(out_dir)
        checkpoint = out_dir / "checkpoint.json"
        if checkpoint.exists() and not resume:
            raise AutoproxError(
                f"{checkpoint} exists: pass --resume to continue that search, or use a new --out folder"
            )
        rng = random.Random(self.config.seed)
        state = self._restore(checkpoint, rng) if resume and checkpoint.exists() else SearchState()
        cfg = self.config
        with tqdm(
            total=cfg.count,
            initial=len(state.evaluated),
            desc=f"search {self.space.name}",
            unit="arch",
            disable=not progress,
        ) as bar:
            while len(state.evaluated) < cfg.count:
                left = cfg.count - len(state.evaluated)
                seen = {c.hash for c in state.evaluated}
                if cfg.algorithm == "random" or not state.population:
                    batch = sample_within(self.space, min(cfg.population, left), rng, self.budget, exclude=seen)
                else:
                    ranked = self._ranked(state)
                    batch = self.children(ranked[: cfg.parents], min(cfg.population, left), seen, rng)
                    if not batch:
                        raise AutoproxError(
                            "evolution found no new architecture within the budget; widen the budget or lower the count"
                        )
                self.evaluate(batch, state)
                state.population = [c.hash for c in self._ranked(state)[: cfg.population]]
                self._checkpoint(checkpoint, state, rng)
                bar.update(len(batch))
                bar.set_postfix(best=f"{max(c.fitness for c in state.evaluated):.4g}", refresh=False)
        self._write_outputs(out_dir, state)
        return state

    def _ranked(self, state: SearchState) -> list[Candidate]:
        """The population (or, before one exists, every candidate) best first."""
        pool = set(state.population)
        members = [c for c in state.evaluated if c.hash in pool] or state.evaluated
        return sorted(members, key=lambda c: (-c.fitness, c.order))

    def _checkpoint(self, path: Path, state: SearchState, rng: random.Random) -> None:
        version, internal, gauss = rng.getstate()
        payload = {
            "version": CHECKPOINT_VERSION,
            "config": asdict(self.config),
            "space": self.space.name,
            "proxies": [proxy_label(p) for p in self.proxies],
            "budget": asdict(self.budget),
            "spec": self.spec.as_dict(),
            "evaluated": [asdict(c) for c in state.evaluated],
            "population": state.population,
            "random_state": [version, list(internal), gauss],
        }
        write_text(path, json.dumps(payload, default=str))

    def _restore(self, path: Path, rng: random.Random) -> SearchState:
        same = False
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            same = (
                payload["version"] == CHECKPOINT_VERSION
                and payload["config"] == asdict(self.config)
                and payload["space"] == self.space.name
                and payload["proxies"] == [proxy_label(p) for p in self.proxies]
                and payload["budget"] == json.loads(json.dumps(asdict(self.budget)))
                and payload["spec"] == json.loads(json.dumps(self.spec.as_dict()))
            )
            state = SearchState([Candidate(**c) for c in payload["evaluated"]], list(payload["population"]))
            if same:
                self._check_restored(state)
            version, internal, gauss = payload["random_state"]
            rng.setstate((version, tuple(internal), gauss))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise AutoproxError(
                f"resume file {path} is corrupt ({type(e).__name__}: {e}); delete it or use a new --out"
            ) from e
        if not same:
            raise AutoproxError(
                f"resume file {path} comes from another search (space, proxies, budget or options "
                "differ); use the same options or a new --out folder"
            )
        return state

    def _check_restored(self, state: SearchState) -> None:
        """ValueError unless every restored candidate is one of this space's architectures under its
        own hash, with a score per proxy, and the population names evaluated candidates."""
        for c in state.evaluated:
            numbers = [c.params, c.macs, c.order, *c.scores]
            if (
                not all(isinstance(n, (int, float)) for n in numbers)
                or len(c.scores) != len(self.proxies)
                or self.space.arch_hash(c.arch) != c.hash
            ):
                raise ValueError(f"evaluated architecture {c.hash!r} does not match its record")
        if not set(state.population) <= {c.hash for c in state.evaluated}:
            raise ValueError("the population names architectures never evaluated")

    def _write_outputs(self, out_dir: Path, state: SearchState) -> None:
        ranked = sorted(state.evaluated, key=lambda c: (-c.fitness, c.order))
        labels = [proxy_label(p) for p in self.proxies]
        best = ranked[0]
        write_text(
            out_dir / "best_arch.json",
            json.dumps(
                {
                    "space": self.space.name,
                    "arch": best.arch,
                    "hash": best.hash,
                    "params": best.params,
                    "macs": best.macs,
                    "scores": dict(zip(labels, best.scores)),
                    "fitness": best.fitness,
                },
                indent=2,
            )
            + "\n",
        )
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["order", "hash", "fitness", *labels, "params", "macs", "arch"])
        writer.writerows(
            [c.order, c.hash, repr(c.fitness), *map(repr, c.scores), c.params, c.macs, self.space.to_json(c.arch)]
            for c in state.evaluated
        )
        write_text(out_dir / "evaluated.csv", buffer.getvalue())
        rows = [
            f"| {i} | {c.fitness:.6g} | "
            + " | ".join(f"{s:.6g}" for s in c.scores)
            + f" | {c.params / 1e6:.4g} | {c.macs / 1e9:.4g} | `{self.space.to_json(c.arch)}` |"
            for i, c in enumerate(ranked[: self.config.top_k], start=1)
        ]
        write_text(
            out_dir / "top.md",
            f"# Top {len(rows)} of {len(state.evaluated)} {self.space.name} architectures "
            f"({self.config.algorithm}, seed {self.config.seed}, {self.budget.describe()})\n\n"
            + table(["rank", "fitness", *labels, "params (M)", "GMACs", "arch"], rows)
            + "\n",
        )
        _plot(out_dir / "progress.png", state, self.config.algorithm)


def _plot(path: Path, state: SearchState, algorithm: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fitness = np.maximum.accumulate([c.fitness for c in state.evaluated])
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(np.arange(1, len(fitness) + 1), fitness)
    ax.set_xlabel("architectures evaluated")
    ax.set_ylabel("best fitness so far")
    ax.set_title(f"{algorithm} search", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def search(
    space: Space,
    proxies: Sequence[str | SavedProxy | SavedEnsemble],
    budget: Budget,
    spec: ProbeSpec,
    cache: StatsCache,
    config: SearchConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    device: str | torch.device = "cpu",
    client=None,
) -> SearchState:
    """Search `space` within `budget` for the architectures `proxies` score best (the function form of
    `Searcher(...).run(...)`, as `discover` is for proxies); writes best_arch.json, top.md, evaluated.csv
    and progress.png in `out_dir`; candidates are probed on `device`, or on the workers of a Dask `client`."""
    searcher = Searcher(space, proxies, budget, spec, cache, config, device, client)
    return searcher.run(out_dir, resume=resume, progress=progress)
