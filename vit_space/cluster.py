"""Dask clusters: `--cluster local:N` (N one-thread worker processes on this machine) or
`--cluster tcp://HOST:PORT` (a running `dask scheduler` with its `dask worker`s; `tls://HOST:PORT`
for one that takes TLS, its certificates in Dask's `distributed.comm.tls` settings; an IPv6 host
in brackets, `tcp://[::1]:8786`).

    with connect("local:2") as client:
        for index, result in run_all(client, probe_one, jobs, "probing"):
            ...  # results arrive as tasks finish, in any order; the caller alone writes them

Tasks are pure functions of their arguments (seeded), so results do not depend on the number of
workers or the order tasks finish in. A task whose worker dies is run again on another worker
(Dask reschedules it; up to `distributed.scheduler.allowed-failures` times, 3 by default), and a
task that raises is retried `RETRIES` times before the error reaches the caller, unless the error
is an AutoproxError (a user's to fix, which would only repeat: it reaches the caller at once). A
run whose cluster has lost every worker stops, in one line, after
`distributed.scheduler.no-workers-timeout` (300 s when unset). Without `--cluster` this module is
not imported and nothing changes.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import socket
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tqdm.auto import tqdm

from gp_proxy import __version__
from gp_proxy.dask_map import access, checked, finished, refusal
from gp_proxy.errors import AutoproxError, AutoproxWarning

CONNECT_TIMEOUT = 5.0  # seconds to reach a scheduler before giving up (a handshake takes milliseconds)
PROBE_TIMEOUT = 1.0  # seconds the TCP check waits for the port to accept before leaving it to Dask
LOST_WORKER_TIMEOUT = "120s"  # how long a local cluster waits for a lost worker's restart
RETRIES = 2  # reruns of a task that raised (not an AutoproxError), before its error is the caller's


ADDRESS = re.compile(r"(tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(\d+)")  # a host, or an IPv6 one in brackets


def parse_cluster(text: str) -> tuple[str, int | str]:
    """`local:N` -> ("local", N); `tcp://HOST:PORT` or `tls://HOST:PORT` (HOST a name, an IPv4
    address or an IPv6 one in brackets) -> ("tcp" or "tls", the address); AutoproxError otherwise."""
    if match := re.fullmatch(r"local:(\d+)", text):
        if int(match[1]) < 1:
            raise AutoproxError(f"--cluster local:N needs N >= 1 worker processes, got {text!r}")
        return "local", int(match[1])
    if match := ADDRESS.fullmatch(text):
        return match[1], text
    raise AutoproxError(
        f"--cluster must be local:N, tcp://HOST:PORT or tls://HOST:PORT (an IPv6 host in brackets: "
        f"tcp://[::1]:8786), got {text!r}"
    )


def same_data(what: str, expected: str, found: str) -> None:
    """On a worker: AutoproxError when its `what` (e.g. "probe batch of digits") has the sha256
    `found`, not the client's `expected` (another copy of a data folder, or another version of a
    library that makes images), as its results would silently differ from the client's."""
    if found != expected:
        raise AutoproxError(
            f"{worker_name()} has another {what} than this process (sha256 {found[:12]}, "
            f"here {expected[:12]}); give every worker the same data and the same package versions"
        )


def worker_name() -> str:
    """ "worker ADDRESS" on a Dask worker, "this process" elsewhere."""
    from dask.distributed import get_worker

    try:
        return f"worker {get_worker().address}"
    except ValueError:  # not on a worker
        return "this process"


def _limit_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _worker_version() -> str:
    return __version__


def check_versions(client) -> None:
    """Refuse the workers connected now whose autoprox version is not the client's, naming both
    (one that joins later is refused by every task, see `run_all`)."""
    try:
        versions = client.run(_worker_version)
    except Exception as e:  # noqa: BLE001 (e.g. a worker without autoprox cannot unpickle the check)
        raise AutoproxError(
            f"a Dask worker cannot run autoprox {__version__} ({type(e).__name__}: {e}); "
            "install the same version everywhere"
        ) from None
    if not versions:
        raise AutoproxError("the Dask cluster has no workers")
    for address, version in versions.items():
        if version != __version__:
            raise refusal(address, version, __version__)


def _client_within(address: str, timeout: float):
    """A `Client` of the scheduler at `address`, or AutoproxError: at once where nothing listens
    there (a refused connection, an unknown host), else after `timeout` seconds whatever is
    listening (Dask's own timeout does not cover a port that accepts and never answers)."""
    from dask.distributed import Client

    _, host, port = ADDRESS.fullmatch(address).groups()
    try:  # fails at once where nothing listens; anything slower is left to Dask's own connector
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT).close()
    except (ConnectionRefusedError, socket.gaierror) as e:
        raise AutoproxError(f"cannot reach the Dask scheduler at {address}: {e.strerror or e}") from None
    except OSError:  # a timeout or no route to the first address: the connector tries every address
        pass
    made: dict[str, Any] = {}
    lock = threading.Lock()  # a client made just after the wait ended is closed, not leaked

    def make() -> None:
        try:
            made["client"] = Client(address, timeout=round(0.8 * timeout, 1))  # its own reason, in time
        except OSError as e:  # Dask's reason for a scheduler that did not answer in time
            made["error"] = str(e)
        except Exception as e:  # noqa: BLE001 (its reply made no sense: whatever answered is not Dask)
            made["error"] = f"what answered is not a Dask scheduler: {type(e).__name__}"
        if "error" in made:  # the failed Client is cyclic garbage whose __del__ closes it: collected here,
            gc.collect()  # not wherever the next collection falls (within another Dask loop's start, it deadlocks)
        with lock:
            if made.get("abandoned") and "client" in made:
                made["client"].close()

    thread = threading.Thread(target=make, daemon=True)
    thread.start()
    thread.join(timeout)
    with lock:
        if "client" in made:
            return made["client"]
        made["abandoned"] = True
    reason = made.get("error", f"nothing answered as a Dask scheduler within {timeout:g} s")
    raise AutoproxError(f"cannot reach the Dask scheduler at {address}: {reason}")


def warn_of_oversubscription(workers: int) -> None:
    """One line when `local:workers` starts more one-thread worker processes than this process may
    run on at once (its CPU affinity): allowed, as it can be meant, but they take turns on the cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if workers > cores:
        warnings.warn(
            f"--cluster local:{workers} starts {workers} worker processes on {cores} core(s); they take turns "
            f"on them, so local:{cores} is usually as fast and holds less memory",
            AutoproxWarning,
            stacklevel=3,
        )


@contextmanager
def connect(spec: str, timeout: float = CONNECT_TIMEOUT) -> Iterator[Any]:
    """A Dask `Client` for `spec` (see `parse_cluster`), closed after the block; a local cluster is
    shut down with it. AutoproxError when the scheduler cannot be reached within `timeout` seconds,
    a `tls://` one without Dask's TLS settings, or a worker runs another autoprox version."""
    import dask
    from dask.distributed import Client, LocalCluster

    kind, where = parse_cluster(spec)
    if kind == "local":
        warn_of_oversubscription(where)
    if kind == "tls" and not dask.config.get("distributed.comm.tls.ca-file", None):
        raise AutoproxError(
            f"--cluster {spec} takes TLS: set Dask's distributed.comm.tls.ca-file, .client.cert and "
            ".client.key (e.g. DASK_DISTRIBUTED__COMM__TLS__CA_FILE=ca.pem)"
        )
    cluster = client = None
    client_log = logging.getLogger("distributed.client")
    client_level = client_log.level
    client_log.setLevel(logging.CRITICAL)  # a lost scheduler is our one line, not Dask's tracebacks too
    # a local cluster drops a worker its nanny has not restarted within this (Dask's default, 15 s, a
    # worker importing torch on a busy machine can take); its nanny goes on restarting it meanwhile
    waits = {"distributed.deploy.lost-worker-timeout": LOST_WORKER_TIMEOUT} if kind == "local" else {}
    with dask.config.set(waits):
        try:
            if kind == "local":
                cluster = LocalCluster(
                    n_workers=where,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    # its HTTP server (health checks) on a free local port: no clash with another cluster's 8787
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                    silence_logs=logging.ERROR,
                )
                client = Client(cluster)
                client.run(_limit_threads, 1)  # one torch thread per worker: the numbers of a one-thread run
            else:
                client = _client_within(where, timeout)
            check_versions(client)
            yield client
        finally:
            try:
                if client is not None:
                    client.close()
                if cluster is not None:
                    cluster.close()
            finally:
                client_log.setLevel(client_level)


def run_all(client, fn: Callable, jobs: Sequence[tuple], desc: str, progress: bool = True) -> Iterator[tuple[int, Any]]:
    """Run `fn(*job)` for every job on the cluster; yield (position in `jobs`, result) as each finishes.
    Each task first checks its worker's autoprox version (`gp_proxy.dask_map.checked`), so a worker
    that joined after `connect` and runs another version does no work. AutoproxError when the
    cluster has had no workers for too long (see `gp_proxy.dask_map.finished`)."""
    token = uuid.uuid4().hex[:8]
    futures = [
        client.submit(checked, __version__, fn, *job, key=f"{desc}-{token}-{i}", pure=False, retries=RETRIES)
        for i, job in enumerate(jobs)
    ]
    position = {f.key: i for i, f in enumerate(futures)}
    with tqdm(total=len(futures), desc=desc, unit="task", disable=not progress) as bar:
        for future, result in finished(client, futures):
            bar.update()
            yield position[future.key], result
            future.release()


def shared_folder(client, marker: str) -> str | None:
    """`marker`, a file this process just made in a folder, when every worker connected now sees it
    (the same files as this process) and can write into its folder, else None. Tasks write into the
    folder only where they see the marker, so a worker that joins later without the folder returns
    its results instead. AutoproxError naming the folder when a worker sees it but cannot write there."""
    folder = os.path.dirname(marker)
    seen = access(client, marker, os.F_OK)
    if not seen or not all(seen.values()):
        return None
    unwritable = sorted(address for address, ok in access(client, folder, os.W_OK).items() if not ok)
    if unwritable:
        raise AutoproxError(f"workers {', '.join(unwritable)} see the cache folder {folder} but cannot write into it")
    return marker
