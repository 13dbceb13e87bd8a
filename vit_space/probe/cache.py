"""On-disk cache of probe statistics, keyed by everything that changes the numbers.

One file per (space, architecture, batch, sketch size, condition): a `torch.save` of plain
tensors and a JSON key, read back with `weights_only=True` and checked against the key it
was asked for. Files are written atomically; a corrupt or mismatched file is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from gp_proxy.atomic import atomic_path
from gp_proxy.errors import AutoproxError
from gp_proxy.stats import StatsBundle, UnitStats, stack
from vit_space.data.batches import BatchSpec
from vit_space.data.paths import cache_root
from vit_space.device import float32_matmul, resolve_device
from vit_space.probe.conditions import CONDITIONS, MINIBATCHES, PREFIX, conditions, probe_conditions
from vit_space.probe.networks import (
    attention_kernel,
    attention_key,
    attention_note,
    batch_digest,
    batch_of,
    build_seeded,
    built_ahead,
    same_probe,
)
from vit_space.spaces import Arch, Space

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ProbeSpec:
    """How statistics are measured: the batch (data set, source, size, seed), sketch size, conditions
    and, for the `minibatch` condition, the number K of slices the batch is cut into."""

    batch: BatchSpec
    sketch_size: int = 32
    conditions: tuple[str, ...] = ("data",)
    minibatches: int = MINIBATCHES

    def validate(self) -> None:
        self.batch.validate()
        if not isinstance(self.sketch_size, int) or self.sketch_size < 2:
            raise AutoproxError(f"sketch size must be an integer >= 2, got {self.sketch_size!r}")
        conditions(self.conditions, torch.zeros(1, 3, 2, 2), torch.zeros(1, dtype=torch.long), 0, self.minibatches)
        if "minibatch" in self.conditions and self.batch.batch_size < self.minibatches:
            raise AutoproxError(
                f"the minibatch condition cuts the batch in minibatches={self.minibatches} slices; "
                f"batch size {self.batch.batch_size} is smaller"
            )

    def for_space(self, space: Space) -> ProbeSpec:
        """The spec with an unset image size (None) replaced by the space's own input size."""
        if self.batch.image_size is not None:
            return self
        return replace(self, batch=replace(self.batch, image_size=space.img_size))

    def for_dataset(self, dataset: str, source: str | None = None) -> ProbeSpec:
        """The same spec on another data set (and, if given, another image source)."""
        return replace(self, batch=replace(self.batch, dataset=dataset, source=source or self.batch.source))

    def as_dict(self) -> dict:
        """How the statistics were measured, for saved proxies (the data set aside)."""
        b = self.batch
        return {
            "source": b.source,
            "batch_size": b.batch_size,
            "seed": b.seed,
            "image_size": b.image_size,
            "sketch_size": self.sketch_size,
            "conditions": list(self.conditions),
            "minibatches": self.minibatches,
            "format": FORMAT_VERSION,
        }

    @classmethod
    def from_dict(cls, probe: dict, dataset: str, source: str | None = None) -> ProbeSpec:
        """The spec `as_dict` wrote (a saved proxy's probe block), on `dataset`'s batch, its image source
        replaced by `source` if given. The image size is left unset (None): it belongs to the networks
        being scored, not to the proxy (`for_space` sets it)."""
        try:
            spec = cls(
                BatchSpec(dataset, source or probe["source"], probe["batch_size"], probe["seed"], None),
                probe["sketch_size"],
                tuple(probe["conditions"]),
                probe.get("minibatches", MINIBATCHES),  # proxies saved before the option used the default
            )
        except (KeyError, TypeError) as e:
            raise AutoproxError(
                f"the proxy's statistics spec lacks {e}; it needs source, batch_size, seed, sketch_size and conditions"
            ) from e
        spec.validate()
        return spec

    def key(self, space: Space, arch: Arch, condition: str) -> dict:
        """The cache key of one entry (JSON-able). A `minibatch` entry names its slice count K only when
        K is not the default, and an entry names unfused attention only when timm's is switched off
        (`attention_key`; the `heads` condition always runs unfused): entries of the defaults predate
        these options and keep their files."""
        slices = (
            {"minibatches": self.minibatches} if condition == "minibatch" and self.minibatches != MINIBATCHES else {}
        )
        return {
            "format": FORMAT_VERSION,
            "space": space.name,
            "arch": space.to_json(arch),
            "batch": self.for_space(space).batch.key(),
            "sketch": self.sketch_size,
            "condition": condition,
            **slices,
            **(attention_key() if condition != "heads" else {}),
        }


def digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def unwritable(folder: Path, error: Exception) -> AutoproxError:
    """The error for a cache folder that cannot be written, with the OS's reason."""
    reason = getattr(error, "strerror", None) or str(error)
    return AutoproxError(f"cannot write into the cache folder {folder} ({reason}); pass --cache with one you can write")


class StatsCache:
    """A folder of cached `UnitStats` (default `cache_root()/stats`)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root is not None else cache_root() / "stats"

    def path(self, key: dict) -> Path:
        return self.root / key["space"] / f"{digest(key)}.pt"

    def load(self, key: dict) -> UnitStats | None:
        """The cached statistics for `key`, None if absent; `AutoproxError` if corrupt or mismatched."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            stored = json.loads(payload["key"])
            stats = UnitStats(
                tensors=payload["tensors"], numel=payload["numel"], groups=payload["groups"], block=payload["block"]
            )
            stats.validate()
        except AutoproxError as e:
            raise AutoproxError(f"cache file {path} is corrupt ({e}); delete it to recompute it") from e
        except Exception as e:  # torch.load, KeyError, json: any unreadable file
            raise AutoproxError(f"cache file {path} is corrupt ({type(e).__name__}); delete it to recompute it") from e
        if stored != key:
            raise AutoproxError(f"cache file {path} holds another entry than its name says; delete it to recompute it")
        return stats

    def save(self, key: dict, stats: UnitStats) -> Path:
        """Write `stats` under `key` atomically and return the path; AutoproxError naming the folder
        when it cannot be written (not a folder, no permission, a full disk)."""
        path = self.path(key)
        parts = {name: getattr(stats, name) for name in ("tensors", "numel", "groups", "block")}
        payload = {"key": json.dumps(key, sort_keys=True), **parts}
        try:
            with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: no temp name inside the archive
                torch.save(payload, f)
        except (OSError, RuntimeError) as e:  # torch.save raises RuntimeError on a full disk
            raise unwritable(self.root, e) from None
        return path

    @contextmanager
    def marker(self) -> Iterator[str]:
        """A new hidden file in the folder for the block (`vit_space.cluster.shared_folder` asks the
        workers for it); AutoproxError naming the folder when it cannot be written."""
        path = self.root / f".autoprox-shared-{uuid.uuid4().hex}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            path.touch()
        except OSError as e:
            raise unwritable(self.root, e) from None
        try:
            yield str(path)
        finally:
            path.unlink(missing_ok=True)

    def size_bytes(self) -> int:
        """Bytes of the cached statistics (not the hidden files a discovery shares with its workers)."""
        entries = self.root.rglob("*.pt") if self.root.is_dir() else ()
        return sum(p.stat().st_size for p in entries if not p.name.startswith("."))


def probe_arch(
    space: Space,
    arch: Arch,
    spec: ProbeSpec,
    only: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    model: nn.Module | None = None,
) -> dict[str, UnitStats]:
    """Build `arch` with its seeded init (unless `model`, that build, is given) and probe it on `device`
    under the spec's conditions (or `only` these); the statistics come back on the CPU."""
    spec, device = spec.for_space(space), resolve_device(device)
    if model is None:
        model = build_seeded(space, arch, spec.batch, device)
    images, labels = (t.to(device) for t in batch_of(spec.batch))
    conds = conditions(tuple(only or spec.conditions), images, labels, spec.batch.seed, spec.minibatches)
    with float32_matmul():
        out = probe_conditions(model, [c for c in conds if not c.reinit], spec.sketch_size, spec.batch.seed)
        for cond in (c for c in conds if c.reinit):  # the init of batch seed + 1, fed the same batch
            second = build_seeded(space, arch, replace(spec.batch, seed=spec.batch.seed + 1), device)
            out |= probe_conditions(second, [replace(cond, reinit=False)], spec.sketch_size, spec.batch.seed)
    return {c.name: out[c.name] for c in conds}


@dataclass
class FillReport:
    computed: int = 0
    cached: int = 0
    seconds: float = 0.0
    probe_seconds: list[float] = field(default_factory=list)


def fill(
    space: Space,
    archs: Sequence[Arch],
    specs: Iterable[ProbeSpec],
    cache: StatsCache,
    progress: bool = True,
    device: str | torch.device = "cpu",
    client=None,
    ahead: bool | None = None,
) -> FillReport:
    """Probe every (architecture, spec) whose statistics are not cached yet, on `device`, and cache them.

    With `ahead` (default: when `device` is a GPU) the next network is built (seeded init, on the
    CPU) while the current one is probed; the statistics are the same either way (to the bit on
    the CPU; on a GPU to its own run-to-run noise, as some CUDA backward kernels are not deterministic).
    With a Dask `client` (`vit_space.cluster.connect`) one task per (architecture, spec) runs on
    its workers: they write into `cache` themselves when they share its folder, else they return
    the statistics and this process writes them; the entries are the same either way. Safe to
    interrupt: finished entries are on disk, the ones in progress are not, and a rerun skips what
    is there.
    """
    report, start = FillReport(), time.perf_counter()
    todo = []
    for arch, spec in ((arch, spec) for spec in specs for arch in archs):
        missing = [c for c in spec.conditions if cache.load(spec.key(space, arch, c)) is None]
        if missing:
            todo.append((arch, spec, missing))
        else:
            report.cached += 1
    if client is not None:  # each worker resolves `device` (auto, cuda) for itself
        _fill_on(client, space, todo, cache, progress, device, report)
    else:
        device = resolve_device(device)
        _probe_all(space, todo, cache, progress, device, device.type != "cpu" if ahead is None else ahead, report)
    report.seconds = time.perf_counter() - start
    return report


def _probe_all(
    space: Space, todo: list, cache: StatsCache, progress: bool, device: torch.device, ahead: bool, report: FillReport
) -> None:
    """Probe each (architecture, spec, missing conditions) of `todo` in this process, building the
    networks ahead (`built_ahead`) if asked."""
    build = lambda job: build_seeded(space, job[0], job[1].for_space(space).batch, device)  # noqa: E731
    with tqdm(todo, desc="probing", unit="arch", disable=not progress) as bar:
        for (arch, spec, missing), model in zip(bar, built_ahead(build, todo, ahead)):
            bar.set_postfix_str(f"{spec.batch.dataset} {space.arch_hash(arch)[:8]}", refresh=False)
            report.probe_seconds.append(probe_into(space, arch, spec, missing, device, cache, model))
            report.computed += 1


def probe_into(
    space: Space,
    arch: Arch,
    spec: ProbeSpec,
    conditions: Sequence[str],
    device: str | torch.device,
    cache: StatsCache,
    model: nn.Module | None = None,
) -> float:
    """Probe `arch` (built, or `model`) under `conditions` of `spec` on `device` and save each into
    `cache`; the seconds it took."""
    start = time.perf_counter()
    for condition, stats in probe_arch(space, arch, spec, conditions, device, model).items():
        cache.save(spec.key(space, arch, condition), stats)
    return time.perf_counter() - start


def _probe_task(
    space: Space,
    arch: Arch,
    spec: ProbeSpec,
    conditions: list[str],
    device: str,
    marker: str | None,
    batch_sha: str,
    attention: str,
):
    """A worker's task: probe and save into the shared cache folder that holds `marker` when this
    worker sees it (returns the seconds, None), else return (seconds, statistics per condition)
    for the client to save. AutoproxError unless its probe batch has the client's sha256 `batch_sha`
    and its attention kernel is the client's `attention`."""
    same_probe(spec.for_space(space).batch, batch_sha, attention)
    if marker is not None and os.path.exists(marker):
        return probe_into(space, arch, spec, conditions, device, StatsCache(os.path.dirname(marker))), None
    start = time.perf_counter()
    stats = probe_arch(space, arch, spec, conditions, device)
    return time.perf_counter() - start, stats


def _fill_on(client, space: Space, todo: list, cache: StatsCache, progress: bool, device, report: FillReport) -> None:
    from vit_space.cluster import run_all, shared_folder

    if not todo:  # nothing to probe: the folder is not checked either
        return
    kernel = attention_kernel()
    with cache.marker() as made:
        marker = shared_folder(client, made)
        tasks = [
            (space, arch, spec, missing, str(device), marker, batch_digest(spec.for_space(space).batch), kernel)
            for arch, spec, missing in todo
        ]
        for index, (seconds, stats) in run_all(client, _probe_task, tasks, "probing", progress):
            arch, spec, _ = todo[index]
            for condition, entry in (stats or {}).items():
                cache.save(spec.key(space, arch, condition), entry)
            report.probe_seconds.append(seconds)
            report.computed += 1


def merge_conditions(per_condition: dict[str, UnitStats]) -> UnitStats:
    """One `UnitStats` with statistic names prefixed by condition (`X`, `noise.X`, `sf.X`)."""
    first = next(iter(per_condition.values()))
    return UnitStats(
        tensors={PREFIX[c] + k: v for c, s in per_condition.items() for k, v in s.tensors.items()},
        numel={PREFIX[c] + k: v for c, s in per_condition.items() for k, v in s.numel.items()},
        groups=first.groups,
        block=first.block,
    )


def load_bundle(
    space: Space, archs: Sequence[Arch], spec: ProbeSpec, cache: StatsCache, ids: Sequence[str] | None = None
) -> StatsBundle:
    """Stack the cached statistics of `archs` under `spec` into one `StatsBundle`.

    Raises `AutoproxError` naming how many entries are missing and the command that fills them.
    """
    if not archs:
        raise AutoproxError("no architectures to load statistics for: the benchmark is empty")
    spec = spec.for_space(space)
    entries, missing, lacking = [], 0, set()
    for arch in archs:
        per_condition = {c: cache.load(spec.key(space, arch, c)) for c in spec.conditions}
        if any(s is None for s in per_condition.values()):
            missing += 1
            lacking |= {c for c, s in per_condition.items() if s is None}
            continue
        entries.append(merge_conditions(per_condition))
    if missing:
        lacking_names = ",".join(sorted(lacking, key=CONDITIONS.index))
        slices = (
            f" --minibatches {spec.minibatches}" if "minibatch" in lacking and spec.minibatches != MINIBATCHES else ""
        )
        raise AutoproxError(
            f"{missing} of {len(archs)} {space.name} architectures have no cached statistics for "
            f"{spec.batch.key()} sketch {spec.sketch_size} conditions {lacking_names}{attention_note()} "
            f"in {cache.root}; fill them with `autoprox stats --datasets {spec.batch.dataset} --source "
            f"{spec.batch.source} --batch {spec.batch.batch_size} --seed {spec.batch.seed} --sketch {spec.sketch_size} "
            f"--conditions {','.join(spec.conditions)}{slices} --bench ...`"
        )
    return stack(entries, list(ids) if ids is not None else [space.arch_hash(a) for a in archs])


__all__ = [
    "CONDITIONS",
    "FORMAT_VERSION",
    "FillReport",
    "ProbeSpec",
    "StatsCache",
    "digest",
    "fill",
    "load_bundle",
    "merge_conditions",
    "probe_arch",
]
