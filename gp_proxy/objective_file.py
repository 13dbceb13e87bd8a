"""An objective whose statistics are in a file its Dask workers read, not in what they are sent.

    reference = ObjectiveFile.write(objective, share / "objective.pt")  # kilobytes to pickle
    objective = reference.read()  # on a worker that sees `share`: the same fitness to the bit

The file holds tensors, strings and containers of them only (`torch.load(weights_only=True)`
reads it without unpickling code) and is memory-mapped, so workers on one machine share its
pages. The tasks' names, accuracies and splits and the objective's settings travel in the
reference itself.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from gp_proxy.atomic import atomic_path
from gp_proxy.errors import AutoproxError
from gp_proxy.fitness import Task
from gp_proxy.objective import Objective
from gp_proxy.stats import StatsBundle


@dataclass(frozen=True)
class TaskEntry:
    """A task without its statistics: its name, which bundle of the file it reads (`bundle`), its
    (A,) accuracies and its train/test positions."""

    name: str
    bundle: str
    accuracy: np.ndarray
    train: np.ndarray
    test: np.ndarray


@dataclass(frozen=True)
class ObjectiveFile:
    """Where an objective's statistics are (`path`) and on which device they were (`device`), and
    the rest of it: its tasks (`TaskEntry`) and its settings (mode, decimals, memo_bytes, stack:
    `Objective`'s arguments)."""

    path: str
    device: str
    tasks: tuple[TaskEntry, ...]
    settings: tuple

    @classmethod
    def write(cls, objective: Objective, path: str | os.PathLike) -> ObjectiveFile:
        """Write `objective`'s statistics to `path` atomically (tasks that share a bundle share one
        entry) and return the reference to them; OSError, or torch's RuntimeError on a full disk,
        when `path` cannot be written."""
        bundles: dict[int, str] = {}
        content: dict[str, dict] = {}
        for task in objective.tasks:
            if id(task.bundle) not in bundles:
                key = bundles[id(task.bundle)] = str(len(bundles))
                content[key] = {f.name: _cpu(getattr(task.bundle, f.name)) for f in fields(StatsBundle)}
        with atomic_path(path) as tmp:
            torch.save(content, tmp)
        entries = tuple(TaskEntry(t.name, bundles[id(t.bundle)], t.accuracy, t.train, t.test) for t in objective.tasks)
        settings = (objective.mode, objective.decimals, objective.memo_bytes, objective.stack)
        device = str(objective.tasks[0].bundle.block.device)
        return cls(os.fspath(Path(path).absolute()), device, entries, settings)

    def read(self) -> Objective:
        """The objective, its statistics memory-mapped from `path` (moved to `device` if that is not
        the CPU); AutoproxError naming the file when it cannot be read (a worker that does not see
        the folder it was written to) or does not hold these statistics."""
        try:
            content = torch.load(self.path, weights_only=True, mmap=True)
            bundles = {key: StatsBundle(**{**parts, "ids": tuple(parts["ids"])}) for key, parts in content.items()}
            tasks = [Task(e.name, bundles[e.bundle], e.accuracy, e.train, e.test) for e in self.tasks]
            objective = Objective(tasks, *self.settings)
        except Exception as e:  # missing, unreadable, not tensors (weights_only refuses the rest) or not these
            raise AutoproxError(f"cannot read the statistics file {self.path} ({type(e).__name__}: {e})") from None
        return objective if self.device == "cpu" else objective.to(self.device)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Within the block the file is in use (a shared lock, which `remove_stale` respects); after
        it, removed."""
        try:
            with open(self.path, "rb") as f:
                with suppress(OSError):  # a file system without locks: the PID in the name is then all there is
                    fcntl.flock(f, fcntl.LOCK_SH)
                yield
        finally:
            with suppress(OSError):
                os.unlink(self.path)


FILE_PREFIX = ".autoprox-objective-"  # then HOST-PID-HEX.pt, of the process that wrote it
NAME = re.compile(r"\.?" + re.escape(FILE_PREFIX) + r"(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{32}\.pt(\.[^.]+\.part)?")


def file_name() -> str:
    """A new shared file's name, saying which process on which host wrote it (`remove_stale`)."""
    return f"{FILE_PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}.pt"


def remove_stale(folder: str | os.PathLike) -> list[Path]:
    """Delete the shared files in `folder` (and their half-written temporary files) that processes
    of this host wrote, that are no longer running and that no process holds (`ObjectiveFile.held`):
    what runs killed before they could remove their own left behind. Return them. Files of other
    hosts are left alone, and so are files that cannot be deleted."""
    stale = []
    for path in Path(folder).glob(f"*{FILE_PREFIX}*"):
        match = NAME.fullmatch(path.name)
        if match and match["host"] == socket.gethostname() and not _running(int(match["pid"])) and _unheld(path):
            with suppress(OSError):
                path.unlink()
                stale.append(path)
    return stale


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _unheld(path: Path) -> bool:
    """Whether no process holds `path` (a run in another PID namespace of this host may)."""
    try:
        with open(path, "rb") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held (BlockingIOError), or unreadable
        return False
    return True


def _cpu(value):
    """`value` (a tensor, a dict of them, or a tuple of ids) as `torch.save` keeps it: tensors on the CPU."""
    if isinstance(value, dict):
        return {k: v.cpu() for k, v in value.items()}
    return value.cpu() if isinstance(value, torch.Tensor) else list(value)
