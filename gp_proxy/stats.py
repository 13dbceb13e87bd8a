"""Named statistic tensors for a whole benchmark, stacked so one op scores every architecture.

A *unit* is one place in a network where statistics are measured (for a ViT: one linear layer
of one block). Each statistic is a sketch, an `(S, S)` matrix of sampled rows and columns of
the full tensor, with the full tensor's element count kept so that sums and norms can be
rescaled. Units are padded to the longest network; `mask` says which units exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import torch

from gp_proxy.errors import AutoproxError


@dataclass(frozen=True)
class UnitStats:
    """Statistics of one network (pickled as numpy arrays, as `StatsBundle`).

    tensors: name -> (U, S, S) float32 sketches (zeros where the statistic is absent).
    numel:   name -> (U,) float64 element count of the full tensor (0 where absent).
    groups:  group name -> (U,) bool, e.g. which units belong to attention or to the MLP.
    block:   (U,) int64 index of the block each unit belongs to.
    """

    tensors: dict[str, torch.Tensor]
    numel: dict[str, torch.Tensor]
    groups: dict[str, torch.Tensor]
    block: torch.Tensor

    @property
    def num_units(self) -> int:
        return int(self.block.shape[0])

    def validate(self) -> None:
        """Raise `AutoproxError` if shapes disagree or a present statistic is NaN/inf."""
        units = self.num_units
        for name, t in self.tensors.items():
            if t.dim() != 3 or t.shape[0] != units or t.shape[1] != t.shape[2]:
                raise AutoproxError(f"statistic {name!r} has shape {tuple(t.shape)}, expected ({units}, S, S)")
            if name not in self.numel or self.numel[name].shape != (units,):
                raise AutoproxError(f"statistic {name!r} has no element counts for its {units} units")
            if not torch.isfinite(t).all():
                raise AutoproxError(f"statistic {name!r} holds NaN or inf values")
        for name, g in self.groups.items():
            if g.shape != (units,):
                raise AutoproxError(f"group {name!r} has shape {tuple(g.shape)}, expected ({units},)")

    def __reduce__(self) -> tuple:
        return _pickled(self)


@dataclass(frozen=True)
class StatsBundle:
    """Statistics of A networks stacked over a common, padded unit axis.

    tensors: name -> (A, U, S, S) float32.
    numel:   name -> (A, U) float64; 0 where the unit or the statistic is absent.
    mask:    name -> (A, U) bool; the statistic exists at that unit.
    groups:  group name -> (A, U) bool; always has "all" (every real unit).
    block:   (A, U) int64 block index of each unit (-1 for padding).
    ids:     A identifiers, in order.
    """

    tensors: dict[str, torch.Tensor]
    numel: dict[str, torch.Tensor]
    mask: dict[str, torch.Tensor]
    groups: dict[str, torch.Tensor]
    block: torch.Tensor
    ids: tuple[str, ...] = field(default=())

    @property
    def names(self) -> list[str]:
        return sorted(self.tensors)

    @property
    def num_archs(self) -> int:
        return int(self.block.shape[0])

    @property
    def sketch_size(self) -> int:
        return int(next(iter(self.tensors.values())).shape[-1])

    def subset(self, index: torch.Tensor | list[int]) -> StatsBundle:
        """The bundle restricted to the architectures at `index` (positions); the bundle itself when
        `index` is every position in order (bundles are never modified, so need no copy)."""
        index = torch.as_tensor(index, dtype=torch.long).to(self.block.device)
        if torch.equal(index, torch.arange(self.num_archs, device=index.device)):
            return self
        pick = lambda d: {k: v.index_select(0, index) for k, v in d.items()}  # noqa: E731
        return StatsBundle(
            pick(self.tensors),
            pick(self.numel),
            pick(self.mask),
            pick(self.groups),
            self.block.index_select(0, index),
            tuple(self.ids[i] for i in index.tolist()),
        )

    @property
    def layout(self) -> tuple:
        """What bundles must share to be concatenated: statistic names with their (U, S, S) shapes, groups."""
        return tuple((n, tuple(t.shape[1:])) for n, t in sorted(self.tensors.items())), tuple(sorted(self.groups))

    def to(self, device: torch.device | str) -> StatsBundle:
        """The bundle with every tensor on `device` (programs are then evaluated there)."""
        move = lambda d: {k: v.to(device) for k, v in d.items()}  # noqa: E731
        return StatsBundle(
            move(self.tensors), move(self.numel), move(self.mask), move(self.groups), self.block.to(device), self.ids
        )

    def __reduce__(self) -> tuple:
        return _pickled(self)


Statistics = UnitStats | StatsBundle


def _numpy(value):
    """`value` with every tensor in it (alone or in a dict) as a numpy array on the CPU."""
    if isinstance(value, dict):
        return {k: _numpy(v) for k, v in value.items()}
    return value.cpu().numpy() if isinstance(value, torch.Tensor) else value


def _torch(value, device: str):
    """`_numpy`'s inverse: every numpy array in `value` as a tensor on `device`."""
    if isinstance(value, dict):
        return {k: _torch(v, device) for k, v in value.items()}
    if not isinstance(value, np.ndarray):
        return value
    return torch.from_numpy(value if value.flags.writeable else value.copy()).to(device)


def _pickled(stats: Statistics) -> tuple:
    """`__reduce__` of statistics: their fields as numpy arrays and the name of their device. Dask
    sends numpy arrays as buffers without copying them, where torch's own pickling copies every
    tensor (`benchmarks/scaling.py` measures both sent to a worker)."""
    parts = {f.name: _numpy(getattr(stats, f.name)) for f in fields(stats)}
    return _unpickled, (type(stats), parts, str(stats.block.device))


def _unpickled(kind: type[Statistics], parts: dict, device: str) -> Statistics:
    """Statistics of class `kind` from the fields `_pickled` made, back on `device`."""
    return kind(**{name: _torch(value, device) for name, value in parts.items()})


def stack(stats: list[UnitStats], ids: list[str] | None = None) -> StatsBundle:
    """Stack per-network statistics into a `StatsBundle`, padding units with masked zeros."""
    if not stats:
        raise AutoproxError("no statistics to stack: the benchmark is empty")
    names = sorted(stats[0].tensors)
    for i, s in enumerate(stats):
        s.validate()
        if sorted(s.tensors) != names:
            raise AutoproxError(f"network {i} has statistics {sorted(s.tensors)}, the first has {names}")
    sizes = {s.tensors[n].shape[-1] for s in stats for n in names}
    if len(sizes) != 1:
        raise AutoproxError(f"sketch sizes differ between networks: {sorted(sizes)}")
    size, units, archs = sizes.pop(), max(s.num_units for s in stats), len(stats)
    tensors = {n: torch.zeros(archs, units, size, size) for n in names}
    numel = {n: torch.zeros(archs, units, dtype=torch.float64) for n in names}
    group_names = sorted({g for s in stats for g in s.groups})
    groups = {g: torch.zeros(archs, units, dtype=torch.bool) for g in dict.fromkeys(["all", *group_names])}
    block = torch.full((archs, units), -1, dtype=torch.long)
    for a, s in enumerate(stats):
        u = s.num_units
        for n in names:
            tensors[n][a, :u] = s.tensors[n]
            numel[n][a, :u] = s.numel[n]
        groups["all"][a, :u] = True
        for g, members in s.groups.items():
            groups[g][a, :u] = members
        block[a, :u] = s.block
    mask = {n: numel[n] > 0 for n in names}
    return StatsBundle(tensors, numel, mask, groups, block, tuple(ids or [str(i) for i in range(archs)]))


def concat(bundles: list[StatsBundle]) -> StatsBundle:
    """The architectures of `bundles`, one after the other, in one bundle (one op then scores all).
    They must share one `layout`, and so need no padding; AutoproxError otherwise."""
    layouts = {b.layout for b in bundles}
    if len(layouts) != 1:
        raise AutoproxError(f"cannot concatenate {len(bundles)} bundles of {len(layouts)} different layouts")
    join = lambda field: {k: torch.cat([getattr(b, field)[k] for b in bundles]) for k in getattr(bundles[0], field)}  # noqa: E731
    return StatsBundle(
        join("tensors"),
        join("numel"),
        join("mask"),
        join("groups"),
        torch.cat([b.block for b in bundles]),
        tuple(i for b in bundles for i in b.ids),
    )
