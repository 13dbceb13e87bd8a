"""Programs evaluated on a Dask cluster (imported only when `discover` is given a client).

    with dask_map(objective, client, device="cuda") as map_fn:
        fitnesses = map_fn(toolbox.evaluate, trees)  # at most one batch of expressions per worker

The objective travels to the workers as a `WorkerPlugin` (or, given a folder they all see, only an
`ObjectiveFile` reference to its statistics written there), not as scattered data: Dask runs a
registered plugin on every worker, those that join or restart later included, and its Active
Memory Manager cannot drop the copies (it drops the extra replicas of scattered data, which left
one worker doing every task and lost the run when that worker died). A task carries only its
expressions, so a task whose worker dies runs again on any other.

Shared by every Dask path (`vit_space.cluster.run_all` too): `checked` runs a task on a worker of
the client's version and returns an AutoproxError (a GPU out of memory as one too) rather than
raising it (it would only repeat, so Dask must not retry it); `finished` yields futures with their
results as they finish, raising those AutoproxErrors, one line when Dask cancelled the tasks (a
lost scheduler) or every worker that ran a task died, and one line on a cluster that has had no
worker for `distributed.scheduler.no-workers-timeout` (Dask's own setting; 300 s when unset).
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import torch
from dask.utils import parse_timedelta
from deap import gp
from distributed import Future, WorkerPlugin, as_completed, get_worker
from distributed.scheduler import KilledWorker, NoWorkerError

from gp_proxy import __version__
from gp_proxy.device import device_name, out_of_memory, resolve_device
from gp_proxy.errors import AutoproxError, AutoproxWarning
from gp_proxy.memory import keep_freed_memory, return_freed_memory
from gp_proxy.objective import Objective, task_pset
from gp_proxy.objective_file import ObjectiveFile, file_name, remove_stale
from gp_proxy.program import parse


@contextmanager
def own_random_state() -> Iterator[None]:
    """Give Python's `random` state back as it was: Dask draws from it (which worker to gather from,
    which copies to keep), and the search's own draws must not depend on the cluster."""
    state = random.getstate()
    try:
        yield
    finally:
        random.setstate(state)


def refusal(address: str, version: str, client_version: str) -> AutoproxError:
    """The error for a worker at `address` that runs autoprox `version`, not the client's."""
    return AutoproxError(
        f"worker {address} runs autoprox {version} and this client autoprox {client_version}; "
        "install the same version everywhere"
    )


NO_WORKERS_TIMEOUT = "300s"  # how long a run waits for a worker, when the cluster has none, if Dask's setting is unset
POLL_SECONDS = 1.0  # how often a run with nothing finishing checks that the cluster still has workers


@dataclass(frozen=True)
class UserFault:
    """A task's AutoproxError, returned as its result instead of raised: the same input would raise
    it again, so Dask's retries (meant for errors that may not repeat) must not rerun the task."""

    message: str


def checked(client_version: str, fn: Callable, *args: Any) -> Any:
    """`fn(*args)` on a worker that runs the client's autoprox version (`client_version`); a
    `UserFault` for AutoproxError, the refusal naming both versions included (a worker can join a
    cluster after the client's first check), and for a GPU out of memory (it would repeat too)."""
    if __version__ != client_version:
        return UserFault(str(refusal(get_worker().address, __version__, client_version)))
    try:
        return fn(*args)
    except AutoproxError as e:
        return UserFault(str(e))
    except torch.OutOfMemoryError as e:
        return UserFault(str(out_of_memory(f"worker {get_worker().address}", e)))


def _cancelled(error: CancelledError) -> AutoproxError:
    """One line for tasks Dask cancelled (e.g. `scheduler-connection-lost`), with Dask's reason."""
    reason = getattr(error, "reason", None) or next((g.reason for g in getattr(error, "error_groups", ())), "unknown")
    return AutoproxError(f"Dask cancelled the tasks ({reason}); check the cluster's scheduler and run again")


def _no_workers(how_long: str) -> AutoproxError:
    return AutoproxError(
        f"the Dask cluster has had no workers for {how_long}; start workers for its scheduler and run "
        "again (or set distributed.scheduler.no-workers-timeout to wait longer)"
    )


def _lost(error: OSError) -> AutoproxError:
    return AutoproxError(f"lost the Dask scheduler ({error}); check it and run again")


def workers(client) -> int:
    """How many workers the cluster has now; AutoproxError when its scheduler cannot be reached."""
    try:
        return len(client.nthreads())
    except OSError as e:
        raise _lost(e) from None


def access(client, path: str, mode: int) -> dict[str, bool]:
    """Whether each worker connected now has `os.access(path, mode)` (a worker whose check failed:
    False); AutoproxError when the scheduler cannot be reached."""
    try:
        answers = client.run(os.access, path, mode, on_error="return")
    except OSError as e:
        raise _lost(e) from None
    return {address: ok is True for address, ok in answers.items()}


def _outcome(future: Future, result: Any) -> Any:
    """`result` as `as_completed(with_results=True)` gave it for `checked` task `future`: a task's
    `UserFault` raised as the caller's own AutoproxError, a task's error raised as itself, and one
    line for tasks Dask cancelled or found no worker for."""
    if isinstance(result, CancelledError):
        raise _cancelled(result)
    if future.status == "error":
        _, error, traceback = result
        if isinstance(error, NoWorkerError):  # the scheduler's own distributed.scheduler.no-workers-timeout
            raise _no_workers("the scheduler's distributed.scheduler.no-workers-timeout") from None
        if isinstance(error, KilledWorker):  # distributed.scheduler.allowed-failures + 1 workers died running it
            last, runs = getattr(error.last_worker, "address", error.last_worker), error.allowed_failures + 1
            raise AutoproxError(
                f"task {error.task} was run {runs} time{'s' * (runs > 1)} and its worker died each time (the "
                f"last: {last}); out of memory is the usual cause: check the workers' logs, use a smaller batch or "
                "fewer workers per machine"
            ) from None
        raise error.with_traceback(traceback)
    if isinstance(result, UserFault):
        raise AutoproxError(result.message)
    return result


def finished(client, futures: Iterable[Future]) -> Iterator[tuple[Future, Any]]:
    """Yield (future, its result) as each of `checked` tasks `futures` finishes, in any order (see
    `_outcome` for errors). Each result is fetched as its task finishes, so a caller slow to take
    them loses none to a worker that leaves meanwhile. While none finishes and the cluster has no
    worker, Dask waits without a word: warn once, and raise AutoproxError when it has had none for
    `distributed.scheduler.no-workers-timeout` (`NO_WORKERS_TIMEOUT` when unset)."""
    ready = as_completed(futures, loop=client.loop, with_results=True, raise_errors=False)
    idle = parse_timedelta(dask.config.get("distributed.scheduler.no-workers-timeout") or NO_WORKERS_TIMEOUT)
    alone_since = None  # when the cluster was first seen without workers, this time
    while not ready.is_empty():
        with ready.thread_condition:  # as `as_completed` itself waits, but for at most POLL_SECONDS
            woken = ready.has_ready() or ready.thread_condition.wait(timeout=POLL_SECONDS)
        if woken or ready.has_ready():
            for future, result in ready.next_batch(block=False):
                yield future, _outcome(future, result)
        elif workers(client):
            alone_since = None
        elif alone_since is None:
            alone_since = time.monotonic()
            warnings.warn(f"the Dask cluster has no workers; waiting up to {idle:g} s for one", AutoproxWarning)
        elif time.monotonic() - alone_since >= idle:
            raise _no_workers(f"{idle:g} s, with {ready.count()} task(s) not done")


class ObjectivePlugin(WorkerPlugin):
    """A worker's copy of the objective, or of its `ObjectiveFile` to read it from, moved on first
    use to `device` as the worker resolves it (None: left where it is; `auto`: the worker's own first
    GPU, else its CPU)."""

    def __init__(self, objective: Objective | ObjectiveFile, device: str | None):
        self.objective, self.device = objective, device
        self._ready: tuple[Objective, gp.PrimitiveSetTyped] | None = None
        self._clears = 0  # how often this copy's memo was cleared

    def setup(self, worker) -> None:
        """On the worker: a lock, as a worker with several threads may run two batches at once (the
        memo of subtrees is not thread-safe, so they take turns); freed memory kept for reuse, which
        Dask's nanny has its workers hand back to the OS (`gp_proxy.memory`)."""
        self._lock = threading.Lock()
        self._kept = keep_freed_memory()

    def teardown(self, worker) -> None:
        """On the worker, when discovery ends: its free memory back to the OS."""
        if self._kept:
            return_freed_memory()

    def evaluate(self, expressions: list[str], clears: int) -> list[tuple[float, int]]:
        """The fitnesses of `expressions` by the objective on its device; its memo is cleared
        whenever the client's objective has been (`clears`: how often), as in one process."""
        with self._lock:
            if self._ready is None:
                objective = self.objective
                if isinstance(objective, ObjectiveFile):
                    objective = _read_on_worker(objective)
                if self.device is not None:
                    objective = objective.to(resolve_device(self.device))
                self.objective, self._ready = None, (objective, task_pset(objective.tasks))  # one copy of statistics
            objective, pset = self._ready
            if self._clears < clears:
                objective.clear()
                self._clears = clears
            return [objective(parse(e, pset)) for e in expressions]


def _read_on_worker(reference: ObjectiveFile) -> Objective:
    """`reference.read()`, its error naming this worker and what to do."""
    try:
        return reference.read()
    except AutoproxError as e:
        raise AutoproxError(
            f"worker {get_worker().address} {e}; every worker must see the folder this client shares statistics in"
        ) from None


def _evaluate_on_worker(plugin: str, expressions: list[str], clears: int) -> list[tuple[float, int]]:
    """A Dask worker's share of a step: its copy of the objective (the plugin named `plugin`) scores `expressions`."""
    return get_worker().plugins[plugin].evaluate(expressions, clears)


def batch_of(tree: gp.PrimitiveTree, count: int) -> int:
    """Which of `count` batches (one per worker) scores `tree`: fixed by its root's first argument,
    which a mutation elsewhere in the tree leaves as it was, so a parent's children mostly go where
    its subtrees are already in the memo (round-robin batches made each worker's memo see half of
    them). Any batch scores a tree alike, so this changes only where the time goes."""
    first = gp.PrimitiveTree(tree[tree.searchSubtree(1)]) if len(tree) > 1 else tree
    return zlib.crc32(str(first).encode()) % count


def _auto_device() -> str:
    return resolve_device("auto").type


def warn_of_mixed_devices(client) -> None:
    """Warn when device `auto` resolves to a GPU on some workers and to the CPU on others: their
    fitnesses agree to float rounding, not to the bit, so a run could depend on which worker scored what."""
    try:
        kinds = client.run(_auto_device, on_error="return")
    except OSError as e:
        raise _lost(e) from None
    by_kind: dict[str, list[str]] = {}
    for address, kind in sorted(kinds.items()):
        if isinstance(kind, str):
            by_kind.setdefault(kind, []).append(address)
    if len(by_kind) > 1:
        where = "; ".join(f"{kind} on {', '.join(addresses)}" for kind, addresses in sorted(by_kind.items()))
        warnings.warn(
            f"device auto resolves differently on the workers ({where}): their fitnesses agree to float "
            "rounding, not to the bit, so the run may depend on which worker scores what; name one device",
            AutoproxWarning,
        )


@contextmanager
def shared(client, training: Objective, share: str | os.PathLike) -> Iterator[Objective | ObjectiveFile]:
    """What the workers are sent of `training` for the block: an `ObjectiveFile` written to `share`
    (`file_name`, in use for the block, removed after; files that killed runs of this host left
    there are removed first) when every worker connected now can read it, else `training` itself,
    with a one-line warning saying why (a folder this process cannot write, one some worker cannot
    read, no worker to ask)."""
    remove_stale(share)
    try:
        reference = ObjectiveFile.write(training, Path(share) / file_name())
    except (OSError, RuntimeError) as e:  # torch.save raises RuntimeError on a full disk
        yield _sent(training, f"could not write them to {share} ({e})")
        return
    with reference.held():
        readable = access(client, reference.path, os.R_OK)
        unread = sorted(address for address, ok in readable.items() if not ok)
        if readable and not unread:
            yield reference
            return
    why = f"workers {', '.join(unread)} cannot read {share}" if unread else "the cluster has no worker to ask"
    yield _sent(training, why)


def _sent(training: Objective, why: str) -> Objective:
    warnings.warn(
        f"discovery sends its statistics to the workers through the scheduler: {why}; they read them "
        "from the cache folder where every worker can",
        AutoproxWarning,
    )
    return training


@contextmanager
def dask_map(
    objective: Objective, client, device: str | torch.device | None = None, share: str | os.PathLike | None = None
) -> Iterator[Callable]:
    """`map(evaluate, trees)` over the workers of `client`: every call splits the trees (as
    expressions) in at most one batch per worker connected at that moment (`batch_of`); the
    objective, its training architectures only (`Objective.training_only`: a worker only scores
    programs), is held on each worker (see `ObjectivePlugin`) for the duration of the block. With
    `share`, a folder the workers see too (a shared cache), the statistics are written there and each
    worker reads them from the file (`shared`): the scheduler, which keeps a plugin to send to every
    worker that joins, then holds kilobytes, not the statistics. The results are `map`'s."""
    where = None if device is None else device_name(device)  # spelling checked here, resolved by each worker
    name = f"autoprox-objective-{uuid.uuid4().hex}"
    if where == "auto":
        warn_of_mixed_devices(client)

    def on_cluster(_evaluate, trees) -> list[tuple[float, int]]:
        trees = list(trees)
        with own_random_state():
            count = max(workers(client), 1)
            batches: dict[int, list[int]] = {}  # a batch's positions in `trees`
            for i, tree in enumerate(trees):
                batches.setdefault(batch_of(tree, count), []).append(i)
            places = list(batches.values())
            n = len(places)
            futures = client.map(
                checked,
                [__version__] * n,
                [_evaluate_on_worker] * n,
                [name] * n,
                [[str(trees[i]) for i in p] for p in places],
                [objective.clears] * n,
                pure=False,
            )
            done = {future.key: values for future, values in finished(client, futures)}
        out = [None] * len(trees)
        for p, future in zip(places, futures):
            for i, value in zip(p, done[future.key]):
                out[i] = value
        return out

    stack = ExitStack()  # the shared file, if any: removed at the end, whatever happened
    try:
        with own_random_state():
            training = objective.training_only()
            source = training if share is None else stack.enter_context(shared(client, training, share))
            client.register_plugin(ObjectivePlugin(source, where), name=name)
        try:
            yield on_cluster
        except BaseException:
            with suppress(AutoproxError):  # a lost scheduler: the error raised is the one to show
                _unregister(client, name)
            raise
        _unregister(client, name)
    finally:
        stack.close()


def _unregister(client, name: str) -> None:
    """Take plugin `name` off the workers; AutoproxError when the scheduler is lost."""
    try:
        with own_random_state():
            client.unregister_worker_plugin(name)
    except OSError as e:
        raise _lost(e) from None
