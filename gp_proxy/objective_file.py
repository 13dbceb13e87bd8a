"""An objective whose statistics are in a file its Dask workers read, not in what they are sent.

    reference = ObjectiveFile.write(objective, share / "objective.pt")  # kilobytes to pickle
    objective = reference.read()  # on a worker that sees `share`: the same fitness to the bit

The file holds tensors, strings and containers of them only (`torch.load(weights_only=True)`
reads it without unpickling code) and is memory-mapped, so workers on one machine share its
pages. The tasks' names, accuracies and splits and the objective's settings travel in the
reference itself.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
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
    """Where an objective's statistics are (`path`), and the rest of it: its tasks (`TaskEntry`)
    and its settings (mode, decimals, memo_bytes, stack: `Objective`'s arguments)."""

    path: str
    tasks: tuple[TaskEntry, ...]
    settings: tuple

    @classmethod
    def write(cls, objective: Objective, path: str | os.PathLike) -> ObjectiveFile:
        """Write `objective`'s statistics to `path` atomically (tasks that share a bundle share one
        entry) and return the reference to them; OSError when `path` cannot be written."""
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
        return cls(os.fspath(Path(path).absolute()), entries, settings)

    def read(self) -> Objective:
        """The objective, its statistics memory-mapped from `path` on the CPU; AutoproxError naming
        the file when it cannot be read (a worker that does not see the folder it was written to)."""
        try:
            content = torch.load(self.path, weights_only=True, mmap=True)
            bundles = {key: StatsBundle(**{**parts, "ids": tuple(parts["ids"])}) for key, parts in content.items()}
        except Exception as e:  # missing, unreadable, not tensors (weights_only refuses the rest) or not these
            raise AutoproxError(f"cannot read the statistics file {self.path} ({type(e).__name__}: {e})") from None
        tasks = [Task(e.name, bundles[e.bundle], e.accuracy, e.train, e.test) for e in self.tasks]
        return Objective(tasks, *self.settings)


PREFIX = ".autoprox-objective-"  # a shared file's name: PREFIX, then HOST-PID-HEX.pt of the process that wrote it
NAME = re.compile(re.escape(PREFIX) + r"(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{32}\.pt")


def file_name() -> str:
    """A new shared file's name, saying which process on which host wrote it (`remove_stale`)."""
    return f"{PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}.pt"


def remove_stale(folder: str | os.PathLike) -> list[Path]:
    """Delete the shared files in `folder` that processes of this host wrote and that are no longer
    running (a run killed before it could remove its own); return them. Files of other hosts are
    left: their processes cannot be asked."""
    stale = []
    for path in Path(folder).glob(f"{PREFIX}*.pt"):
        match = NAME.fullmatch(path.name)
        if match and match["host"] == socket.gethostname() and not _running(int(match["pid"])):
            path.unlink(missing_ok=True)
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


def _cpu(value):
    """`value` (a tensor, a dict of them, or a tuple of ids) as `torch.save` keeps it: tensors on the CPU."""
    if isinstance(value, dict):
        return {k: v.cpu() for k, v in value.items()}
    return value.cpu() if isinstance(value, torch.Tensor) else list(value)
