import dataclasses
import json
import logging
import os
import random
import re
import signal
import socket
import threading
import time
import warnings
from contextlib import contextmanager
from functools import partial

import dask
import pytest
import torch

import gp_proxy.memory
import vit_space.cluster as cluster_mod
from gp_proxy.dask_map import workers
from gp_proxy.errors import AutoproxError, AutoproxWarning
from vit_space.bench.build import BuildPlan, build_bench, journal_path
from vit_space.bench.training import Recipe
from vit_space.cluster import check_versions, connect, parse_cluster, run_all
from vit_space.data.batches import BatchSpec
from vit_space.probe.cache import ProbeSpec, StatsCache, fill
from vit_space.spaces import get_space

SPACE = get_space("af-tiny")
ARCHS = [SPACE.sample(random.Random(s)) for s in range(6)]
QUIET_HTTP = {"dashboard_address": "127.0.0.1:0"}  # the scheduler's HTTP server on a free port: no clash over 8787
SPECS = [ProbeSpec(BatchSpec(d, image_size=None), conditions=("data", "heads")) for d in ("digits",)]


def entries(root) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.rglob("*.pt"))}


@contextmanager
def killed_while_busy(client):
    """Within the block, SIGKILL one worker as soon as it runs a task; yields the list that gets the
    keys it was running (empty if it never ran one within two minutes)."""
    address, pid = next(iter(client.run(os.getpid).items()))
    caught: list = []

    def kill() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not client.processing().get(address):
            time.sleep(0.01)
        caught.append(client.processing().get(address))
        os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill)
    killer.start()
    try:
        yield caught
    finally:
        killer.join()


def test_more_local_workers_than_usable_cores_warns_in_one_line(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cluster_mod.warn_of_oversubscription(2)
    assert caught == []
    with pytest.warns(AutoproxWarning) as warned:
        cluster_mod.warn_of_oversubscription(5)
    assert [str(w.message) for w in warned] == [
        "--cluster local:5 starts 5 worker processes on 2 core(s); they take turns on them, so local:2 is "
        "usually as fast and holds less memory"
    ]


def test_parse_cluster_and_bad_addresses():
    assert parse_cluster("local:3") == ("local", 3)
    assert parse_cluster("tcp://10.0.0.5:8786") == ("tcp", "tcp://10.0.0.5:8786")
    assert parse_cluster("tls://head.example.org:8786") == ("tls", "tls://head.example.org:8786")
    assert parse_cluster("tcp://[fe80::1]:8786") == ("tcp", "tcp://[fe80::1]:8786")
    bad_ones = (
        "local:0",
        "local",
        "local:two",
        "10.0.0.5:8786",
        "tcp://host",
        "ssh://h:1",
        "tcp://::1:8786",
        "tcp://[h]:1",
    )
    for bad in bad_ones:
        with pytest.raises(AutoproxError, match="--cluster"):
            parse_cluster(bad)


def _ipv6_loopback() -> bool:

    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_a_scheduler_at_an_ipv6_address_is_joined():
    from dask.distributed import LocalCluster

    with LocalCluster(
        n_workers=1,
        processes=False,
        protocol="tcp",
        host="[::1]",
        dashboard_address=None,
        silence_logs=logging.ERROR,
        scheduler_kwargs=QUIET_HTTP,
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://[::1]:")
        with connect(cluster.scheduler_address) as joined:
            assert [r for _, r in run_all(joined, abs, [(-3,)], "ipv6", progress=False)] == [3]
    with pytest.raises(
        AutoproxError, match=r"^cannot reach the Dask scheduler at tcp://\[::1\]:9: Connection refused$"
    ):
        with connect("tcp://[::1]:9"):
            pass


def _certificates(folder) -> dict[str, str] | None:
    """A test CA and a certificate it signed (for scheduler, worker and client alike), made by
    the openssl command; None where there is none."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        return None
    paths = {name: str(folder / f"{name}.pem") for name in ("ca", "ca-key", "cert", "key", "request")}
    for command in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=autoprox-test-ca"]
        + ["-keyout", paths["ca-key"], "-out", paths["ca"]],
        [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            paths["key"],
            "-out",
            paths["request"],
        ],
        ["x509", "-req", "-days", "1", "-in", paths["request"], "-CA", paths["ca"], "-CAkey", paths["ca-key"]]
        + ["-set_serial", "1", "-out", paths["cert"]],
    ):
        subprocess.run(["openssl", *command], check=True, capture_output=True)
    return paths


def test_a_tls_scheduler_is_joined_with_dasks_tls_settings_and_refused_in_one_line_without(tmp_path):
    from dask.distributed import LocalCluster
    from distributed.security import Security

    paths = _certificates(tmp_path)
    if paths is None:
        pytest.skip("no openssl command to make test certificates")
    pair = {"cert": paths["cert"], "key": paths["key"]}
    security = Security(
        tls_ca_file=paths["ca"],
        require_encryption=True,
        **{f"tls_{who}_{what}": path for who in ("scheduler", "worker", "client") for what, path in pair.items()},
    )
    with LocalCluster(
        n_workers=1,
        processes=False,
        protocol="tls://",
        security=security,
        dashboard_address=None,
        scheduler_kwargs=QUIET_HTTP,
        silence_logs=logging.ERROR,
    ) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://")
        with pytest.raises(
            AutoproxError, match=rf"^--cluster {address} takes TLS: set Dask's distributed.comm.tls.ca-file"
        ):
            with connect(address):
                pass
        settings = {"ca-file": paths["ca"], "client.cert": paths["cert"], "client.key": paths["key"]}
        with dask.config.set({f"distributed.comm.tls.{k}": v for k, v in settings.items()}):
            with connect(address) as joined:
                assert [r for _, r in run_all(joined, abs, [(-4,)], "tls", progress=False)] == [4]


def test_an_address_where_nothing_listens_is_one_error_at_once():
    for address, reason in (("tcp://127.0.0.1:9", "Connection refused$"), ("tcp://no-such-host.invalid:8786", r"\S")):
        start = time.perf_counter()
        with pytest.raises(AutoproxError, match=rf"^cannot reach the Dask scheduler at {address}: {reason}"):
            with connect(address, timeout=5):
                pass
        assert time.perf_counter() - start < 2.5


@pytest.mark.parametrize(
    "command",
    [
        "stats --bench af-tiny",
        "discover --bench af-tiny --out {out}/d",
        "search --space af-tiny --proxy snip --out {out}/s",
        "run --out {out}/r",
        "bench build --space af-tiny --dataset digits --archs 1 --out {out}/b.json",
    ],
)
def test_every_command_on_a_cluster_it_cannot_use_is_one_line_and_exit_status_2(command, tmp_path, capsys):
    from vit_space.cli.main import main

    bad = {
        "tcp://127.0.0.1:9": r"cannot reach the Dask scheduler at tcp://127.0.0.1:9: .*Connection refused",
        "local:0": r"--cluster local:N needs N >= 1 worker processes, got 'local:0'",
        "udp://host:1": r"--cluster must be local:N, tcp://HOST:PORT or tls://HOST:PORT",
        "tls://127.0.0.1:9": r"--cluster tls://127.0.0.1:9 takes TLS: set Dask's distributed.comm.tls.ca-file",
    }
    for cluster, message in bad.items():
        start = time.perf_counter()
        cache = [] if command.startswith("bench") else ["--cache", str(tmp_path / "c")]
        code = main([*command.format(out=tmp_path).split(), *cache, "--cluster", cluster])
        err = capsys.readouterr().err
        assert code == 2 and re.match(rf"autoprox: error: {message}", err) and len(err.strip().splitlines()) == 1
        assert time.perf_counter() - start < 5
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # refused before any work


def test_a_port_that_answers_but_is_not_dask_is_one_error_and_leaves_no_client_behind():
    import gc
    import threading

    from dask.distributed import Client

    with socket.socket() as talker:
        talker.bind(("127.0.0.1", 0))
        talker.listen()
        address = f"tcp://127.0.0.1:{talker.getsockname()[1]}"

        def answer() -> None:  # every connection gets a line of HTTP, as a web server's would
            while True:
                try:
                    conn, _ = talker.accept()
                except OSError:
                    return
                with conn:
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 64)

        threading.Thread(target=answer, daemon=True).start()
        start = time.perf_counter()
        refused = rf"^cannot reach the Dask scheduler at {address}: what answered is not a Dask scheduler"
        clients = lambda: sum(type(o) is Client for o in gc.get_objects())  # noqa: E731
        gc.disable()  # no collection by chance: the failed client must be gone already
        try:
            alive = clients()
            with pytest.raises(AutoproxError, match=refused):
                with connect(address, timeout=2):
                    pass
            # left to a later collection, its __del__ once deadlocked a LocalCluster starting in this process
            assert clients() <= alive
        finally:
            gc.enable()
        assert time.perf_counter() - start < 3


def test_a_port_that_accepts_and_never_answers_is_one_error_within_the_timeout():

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections complete in the backlog; nothing ever answers
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        start = time.perf_counter()
        with pytest.raises(
            AutoproxError,
            match=rf"^cannot reach the Dask scheduler at {address}: nothing answered as a Dask scheduler within 2 s$",
        ):
            with connect(address, timeout=2):
                pass
        assert time.perf_counter() - start < 3


@contextmanager
def in_process(workers: int):
    """A client of a `LocalCluster` of `workers` thread workers in this process (which may be none)."""
    from dask.distributed import Client, LocalCluster

    with LocalCluster(
        n_workers=workers,
        processes=False,
        threads_per_worker=1,
        protocol="tcp",  # not in-process queues: a tcp:// address, as `--cluster tcp://HOST:PORT` takes
        dashboard_address=None,
        scheduler_kwargs=QUIET_HTTP,
        silence_logs=logging.ERROR,
    ) as cluster:
        with Client(cluster) as client:
            yield cluster, client


CALLS: list[int] = []


def _users_error(x: int) -> None:
    CALLS.append(x)
    raise AutoproxError(f"bad input {x}")


def _flaky_once(x: int) -> int:
    CALLS.append(x)
    if CALLS.count(x) == 1:
        raise OSError("a flaky disk")
    return x


def _out_of_gpu_memory(x: int) -> None:
    CALLS.append(x)
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79 GiB")


def test_a_users_error_in_a_task_reaches_the_caller_at_once_and_other_errors_are_retried():
    CALLS.clear()
    with in_process(1) as (_, client):
        with pytest.raises(AutoproxError, match=r"^bad input 7$"):
            list(run_all(client, _users_error, [(7,)], "users", progress=False))
        assert CALLS == [7]  # run once: 3 times (RETRIES = 2) before
        assert [r for _, r in run_all(client, _flaky_once, [(5,)], "flaky", progress=False)] == [5]
        assert CALLS == [7, 5, 5]
        oom = r"^worker tcp://\S+ ran out of GPU memory \(CUDA out of memory\); give it less work at once \(a smaller"
        with pytest.raises(AutoproxError, match=oom):
            list(run_all(client, _out_of_gpu_memory, [(3,)], "oom", progress=False))
        assert CALLS == [7, 5, 5, 3]  # a retry would only repeat it


def _dies(x: int) -> None:
    os._exit(1)


def test_a_task_every_worker_dies_running_is_one_error_naming_it():
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), connect("local:1") as client:
        dead = r"^task dies-\w+-0 was run 1 time and its worker died each time \(the last: tcp://\S+\); out of"
        with pytest.raises(AutoproxError, match=dead):
            list(run_all(client, _dies, [(0,)], "dies", progress=False))


def test_a_cluster_without_workers_is_one_error_after_dasks_no_workers_timeout(tmp_path):
    from synthetic import planted_tasks

    from gp_proxy.discovery import DiscoveryConfig, discover

    jobs = [(-1,), (-2,), (-3,)]
    with in_process(0) as (_, client), dask.config.set({"distributed.scheduler.no-workers-timeout": "2s"}):
        start = time.perf_counter()
        with pytest.warns(AutoproxWarning, match=r"^the Dask cluster has no workers; waiting up to 2 s for one$"):
            with pytest.raises(AutoproxError, match=r"^the Dask cluster has had no workers for 2 s, with 3 task"):
                list(run_all(client, abs, jobs, "nobody", progress=False))
        assert 2 <= time.perf_counter() - start < 15
        config = DiscoveryConfig(iterations=2, population=6)
        with pytest.warns(AutoproxWarning), pytest.raises(AutoproxError, match=r"no workers for 2 s, with 1 task\(s\)"):
            discover(planted_tasks(), config, tmp_path, progress=False, client=client)


def test_a_scheduler_with_its_own_no_workers_timeout_is_one_error_too():
    """Set before the cluster starts, the scheduler fails the tasks itself (NoWorkerError)."""
    with dask.config.set({"distributed.scheduler.no-workers-timeout": "1s"}), in_process(0) as (_, client):
        warnings.simplefilter("ignore", AutoproxWarning)  # whether this process noticed first is a race
        with pytest.raises(AutoproxError, match=r"^the Dask cluster has had no workers for the scheduler's distrib"):
            list(run_all(client, abs, [(-1,)], "nobody", progress=False))


def test_a_lost_scheduler_is_one_error(caplog):
    with in_process(1) as (cluster, _), connect(cluster.scheduler_address, timeout=2) as client:
        lost = threading.Timer(1.5, cluster.close)
        lost.start()
        start = time.perf_counter()
        with pytest.raises(AutoproxError, match=r"^Dask cancelled the tasks \(scheduler-connection-lost\); check"):
            list(run_all(client, time.sleep, [(0.5,)] * 40, "lost", progress=False))
        assert time.perf_counter() - start < 15
        lost.join()
        with pytest.raises(AutoproxError, match=r"^lost the Dask scheduler \(.*\); check it and run again$"):
            workers(client)  # how `finished` counts workers while nothing finishes
    assert not [r for r in caplog.records if r.name == "distributed.client" and r.levelno >= logging.ERROR]


def test_a_run_on_a_cluster_without_workers_goes_on_when_one_joins():
    with in_process(0) as (cluster, client), dask.config.set({"distributed.scheduler.no-workers-timeout": "60s"}):
        joins = threading.Timer(2.5, cluster.scale, (1,))
        start = time.perf_counter()
        joins.start()
        with pytest.warns(AutoproxWarning, match="waiting up to 60 s"):
            assert sorted(r for _, r in run_all(client, abs, [(-1,), (-2,)], "late", progress=False)) == [1, 2]
        assert 2.5 <= time.perf_counter() - start < 30
        joins.join()


def test_results_finished_before_every_worker_left_reach_a_slow_caller():
    """Dask forgets the result of a finished task whose worker leaves before the client reads it (the
    future is "lost" and waits for a worker to recompute it): `finished` reads each as it finishes."""
    with in_process(1) as (cluster, client):
        results = run_all(client, abs, [(-1,), (-2,), (-3,)], "slow", progress=False)
        taken = [next(results)]
        time.sleep(1)  # the caller is busy; the other tasks finish meanwhile
        cluster.scale(0)
        while client.nthreads():
            time.sleep(0.1)
        rest = threading.Thread(target=lambda: taken.extend(results), daemon=True)
        rest.start()
        rest.join(10)  # before: Client.gather of a lost future waited for a worker, with no timeout
        assert sorted(r for _, r in taken) == [1, 2, 3]


def test_a_worker_with_several_threads_moves_its_objective_once_and_scores_in_turn(monkeypatch):
    """`dask worker --nthreads 4` may run two batches of one step at once on one worker."""
    from concurrent.futures import ThreadPoolExecutor

    from deap import gp
    from synthetic import planted_tasks

    from gp_proxy.dask_map import ObjectivePlugin
    from gp_proxy.objective import Objective, task_pset
    from gp_proxy.program import generate

    tasks = planted_tasks()
    pset, objective = task_pset(tasks), Objective(tasks)
    random.seed(3)
    expressions = [str(gp.PrimitiveTree(generate(pset, 1, 4))) for _ in range(40)] + ["agg_sum_mlp(fro(gW))"]
    expected = [objective(gp.PrimitiveTree.from_string(e, pset)) for e in expressions]
    moves, real_to = [], Objective.to

    def slow_to(self, device):
        moves.append(device)
        time.sleep(0.3)  # long enough for every thread to ask for the objective while it moves
        return real_to(self, device)

    monkeypatch.setattr(Objective, "to", slow_to)
    plugin = ObjectivePlugin(Objective(tasks), "cpu")
    plugin.setup(worker=None)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda clears: plugin.evaluate(expressions, clears), [1, 1, 2, 2]))
    assert moves == [torch.device("cpu")]
    assert all(r == expected for r in results) and expected[-1][0] > 0.3


def _unit_stats():
    from gp_proxy.stats import UnitStats

    g = torch.Generator().manual_seed(0)
    tensors = {"W": torch.randn(5, 8, 8, generator=g), "gW": torch.randn(5, 8, 8, generator=g)}
    numel = {n: torch.full((5,), 4096.0, dtype=torch.float64) for n in tensors}
    return UnitStats(tensors, numel, {"mlp": torch.arange(5) % 2 == 1}, torch.arange(5) // 2)


@pytest.mark.parametrize("kind", ["bundle", "one network"])
def test_statistics_pickle_as_numpy_arrays_and_come_back_equal(kind):
    """Dask sends numpy arrays as buffers, without the copy torch's own pickling makes."""
    import pickle

    from synthetic import planted_tasks

    stats = planted_tasks()[0].bundle if kind == "bundle" else _unit_stats()
    buffers = []
    data = pickle.dumps(stats, protocol=5, buffer_callback=buffers.append)
    assert sum(b.raw().nbytes for b in buffers) >= sum(t.numel() * 4 for t in stats.tensors.values())
    back = pickle.loads(data, buffers=buffers)
    assert type(back) is type(stats)
    for part in ("tensors", "numel", "groups") + (("mask",) if kind == "bundle" else ()):
        mine, theirs = getattr(stats, part), getattr(back, part)
        assert list(mine) == list(theirs)
        assert all(torch.equal(mine[k], theirs[k]) and mine[k].dtype == theirs[k].dtype for k in mine)
    assert torch.equal(back.block, stats.block) and back.block.dtype == stats.block.dtype
    assert back.block.device.type == "cpu" and getattr(back, "ids", ()) == getattr(stats, "ids", ())


def test_workers_are_sent_the_training_rows_only_and_score_to_the_bit_as_the_whole_objective():
    import pickle

    from synthetic import planted_tasks, sample_trees

    from gp_proxy.objective import Objective, task_pset

    tasks = planted_tasks(archs=40)  # two tasks sharing one bundle and one 20/20 split
    whole = Objective(tasks)
    sent = whole.training_only()
    assert [len(t.train) for t in sent.tasks] == [20, 20] and [len(t.test) for t in sent.tasks] == [0, 0]
    assert sent.tasks[0].bundle is sent.tasks[1].bundle and sent.tasks[0].bundle.num_archs == 20
    assert 0.45 < len(pickle.dumps(sent)) / len(pickle.dumps(whole)) < 0.55
    pset = task_pset(tasks)
    trees = sample_trees(pset, 5)
    fitnesses = [whole(t) for t in trees]
    assert [sent(t) for t in trees] == fitnesses and fitnesses[-1][0] > 0.3
    assert len({f for f in fitnesses if f[0] != float("-inf")}) > 20  # the programs differ, not all invalid


def test_a_step_sends_the_programs_that_share_the_roots_first_argument_to_one_worker():
    """So a parent's mutants mostly find their subtrees in that worker's memo; the batches still spread."""
    from collections import Counter

    from deap import gp
    from synthetic import planted_tasks

    from gp_proxy.dask_map import batch_of
    from gp_proxy.objective import task_pset
    from gp_proxy.program import generate

    pset = task_pset(planted_tasks())
    parent = gp.PrimitiveTree.from_string("s_add(agg_sum_mlp(fro(gW)), agg_sum_msa(fro(X)))", pset)
    mutant = gp.PrimitiveTree.from_string("s_add(agg_sum_mlp(fro(gW)), agg_mean_msa(l1(W)))", pset)
    other = gp.PrimitiveTree.from_string("s_add(agg_sum_mlp(l1(gW)), agg_sum_msa(fro(X)))", pset)
    assert all(batch_of(parent, n) == batch_of(mutant, n) for n in range(1, 9))
    assert any(batch_of(parent, n) != batch_of(other, n) for n in range(2, 9))
    random.seed(0)
    counts = Counter(batch_of(gp.PrimitiveTree(generate(pset, 2, 4)), 3) for _ in range(300))
    assert sorted(counts) == [0, 1, 2] and min(counts.values()) > 50


def test_the_training_rows_are_not_copied_again_to_be_sent_or_scored_on_a_worker():
    """`training_only` sends the rows the objective's evaluators hold, and a worker's objective
    over them (each row a training row) copies none: each copy of ViT-Bench-101's took seconds."""
    from synthetic import planted_tasks

    from gp_proxy.objective import Objective

    whole = Objective(planted_tasks(archs=40))
    sent = whole.training_only()
    bundle = sent.tasks[0].bundle
    assert whole.training_only().tasks[0].bundle is bundle
    assert bundle.subset(range(bundle.num_archs)) is bundle
    reordered = bundle.subset([1, 0, *range(2, bundle.num_archs)])
    assert reordered is not bundle and reordered.ids[:2] == bundle.ids[1::-1]
    assert Objective(sent.tasks).training_only().tasks[0].bundle is bundle


@pytest.fixture(scope="module")
def client():
    with connect("local:2") as client:
        yield client


def test_a_running_scheduler_is_joined_by_its_address(client):
    with connect(client.scheduler.address) as joined:  # what `--cluster tcp://HOST:PORT` does
        assert len(joined.nthreads()) == 2
        results = run_all(joined, abs, [(-i,) for i in range(4)], "tcp", progress=False)
        assert sorted(r for _, r in results) == [0, 1, 2, 3]


def test_workers_with_another_version_are_refused(client, monkeypatch, tmp_path):
    """At connect, and by every task (a worker may join later): the client's version is patched, as
    if this client were another release."""
    from synthetic import planted_tasks

    import gp_proxy.dask_map
    from gp_proxy.discovery import DiscoveryConfig, discover

    refused = r"^worker tcp://\S+ runs autoprox 0\.1\.0 and this client autoprox 9\.9\.9; install the same"
    monkeypatch.setattr(cluster_mod, "__version__", "9.9.9")
    with pytest.raises(AutoproxError, match=refused):
        check_versions(client)
    with pytest.raises(AutoproxError, match=refused):
        list(run_all(client, abs, [(-1,)], "versions", progress=False))
    monkeypatch.setattr(gp_proxy.dask_map, "__version__", "9.9.9")
    config = DiscoveryConfig(iterations=2, population=6, batch=2)  # a batch per worker: no IdleWorkersWarning
    with pytest.raises(AutoproxError, match=refused):
        discover(planted_tasks(), config, tmp_path, progress=False, client=client)


def test_statistics_returned_by_two_workers_are_byte_identical_to_one_process(client, tmp_path, monkeypatch):
    alone = StatsCache(tmp_path / "alone")
    fill(SPACE, ARCHS, SPECS, alone, progress=False)
    monkeypatch.setattr(cluster_mod, "shared_folder", lambda client, marker: None)  # workers return
    spread = StatsCache(tmp_path / "spread")
    fill(SPACE, ARCHS[:2], SPECS, spread, progress=False, client=client)  # two cached before the rest
    report = fill(SPACE, ARCHS, SPECS, spread, progress=False, client=client)
    assert (report.computed, report.cached) == (4, 2)
    assert entries(spread.root) == entries(alone.root) and len(entries(alone.root)) == 12


def test_a_worker_killed_mid_probe_loses_nothing(client, tmp_path):
    """Two workers writing into the shared cache, one killed while it probes: the entries of one process."""
    space = get_space("autoformer")  # probes long enough to be caught running
    archs = [space.sample(random.Random(s)) for s in range(4)]
    specs = [ProbeSpec(BatchSpec("c100", batch_size=4, image_size=32))]
    alone = StatsCache(tmp_path / "alone")
    fill(space, archs, specs, alone, progress=False)
    spread = StatsCache(tmp_path / "spread")
    with killed_while_busy(client) as caught:
        report = fill(space, archs, specs, spread, progress=False, client=client)
    assert caught and caught[0]  # it was running a probe when it died
    assert report.computed == 4 and entries(spread.root) == entries(alone.root)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it


def test_a_cache_folder_workers_cannot_write_is_refused(client, tmp_path, monkeypatch):
    real_run = client.run  # root may write anywhere here, so the workers' answer is told

    def run(fn, path, mode, **kwargs):
        return {"tcp://w1": False} if mode == os.W_OK else real_run(fn, path, mode, **kwargs)

    monkeypatch.setattr(client, "run", run)
    (tmp_path / ".marker").touch()
    with pytest.raises(AutoproxError, match=r"^workers tcp://w1 see the cache folder .* but cannot write into it$"):
        cluster_mod.shared_folder(client, str(tmp_path / ".marker"))


@pytest.mark.parametrize("where", ["here", "cluster"])
def test_a_cache_folder_that_cannot_be_written_is_one_line_from_the_command(client, tmp_path, capsys, where):
    from vit_space.cli.main import main

    (tmp_path / "file").touch()
    cluster = ["--cluster", client.scheduler.address] if where == "cluster" else []
    argv = ["stats", "--bench", "af-tiny", "--limit", "1", "--cache", str(tmp_path / "file" / "x"), "--quiet"]
    assert main(argv + cluster) == 2
    err = capsys.readouterr().err.strip()
    folder = tmp_path / "file" / "x"
    expected = f"cannot write into the cache folder {folder} (Not a directory); pass --cache with one you can write"
    assert err == f"autoprox: error: {expected}"


def test_a_worker_that_does_not_see_the_shared_folder_returns_its_statistics(tmp_path):
    """Decided per task, as a worker may join after the folder was checked: without the marker
    the task writes nothing and returns the statistics; with it, it writes them."""
    from vit_space.probe.cache import _probe_task
    from vit_space.probe.networks import attention_kernel, batch_digest

    spec, marker = SPECS[0], tmp_path / ".autoprox-shared-x"
    kernel = attention_kernel()
    task = (SPACE, ARCHS[0], spec, ["data"], "cpu", str(marker), batch_digest(spec.for_space(SPACE).batch), kernel)
    seconds, returned = _probe_task(*task)
    assert seconds > 0 and set(returned) == {"data"} and not list(tmp_path.iterdir())
    marker.touch()
    seconds, stats = _probe_task(*task)
    saved = StatsCache(tmp_path).load(spec.key(SPACE, ARCHS[0], "data"))
    assert stats is None and saved.tensors.keys() == returned["data"].tensors.keys()
    assert all(torch.equal(saved.tensors[k], v) for k, v in returned["data"].tensors.items())


def small_archs(count: int) -> list:
    archs, rng = [], random.Random(0)
    while len(archs) < count:
        arch = SPACE.sample(rng)
        if SPACE.num_params(arch, 10) < 40_000 and arch not in archs:
            archs.append(arch)
    return archs


def accuracies(path) -> list[dict]:
    """The benchmark file's records without their wall times."""
    records = json.loads(path.read_text())["records"]
    return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in records]


PLAN = BuildPlan(SPACE, tuple(small_archs(3)), ("digits",), Recipe(steps=40, batch_size=16, test_size=200), (0, 1))


def test_one_worker_and_two_give_byte_identical_statistics_and_the_same_accuracies(client, tmp_path):
    """The issue's own test: `local:1` against `local:2` (the two workers finish in any order)."""
    caches = {n: StatsCache(tmp_path / f"stats{n}") for n in (1, 2)}
    with connect("local:1") as one:
        fill(SPACE, ARCHS, SPECS, caches[1], progress=False, client=one)
        build_bench(PLAN, tmp_path / "one.json", progress=False, client=one)
    fill(SPACE, ARCHS, SPECS, caches[2], progress=False, client=client)
    build_bench(PLAN, tmp_path / "two.json", progress=False, client=client)
    assert entries(caches[1].root) == entries(caches[2].root) and len(entries(caches[1].root)) == 12
    assert accuracies(tmp_path / "one.json") == accuracies(tmp_path / "two.json")
    assert len(accuracies(tmp_path / "one.json")) == 3


def test_a_worker_killed_mid_training_loses_no_run(client, tmp_path):
    """A build on two workers, one killed while it trains: the accuracies of a build in one process."""
    alone = build_bench(PLAN, tmp_path / "alone.json", progress=False)
    with killed_while_busy(client) as caught:
        spread = build_bench(PLAN, tmp_path / "spread.json", progress=False, client=client)
    assert caught and caught[0]  # it was running a training run when it died
    assert accuracies(spread) == accuracies(alone) and all("digits_base_acc" in r for r in accuracies(alone))
    runs = [json.loads(line) for line in journal_path(spread).read_text().splitlines()[1:]]
    assert len(runs) == 6  # every run journalled once, none twice
    client.wait_for_workers(2, timeout=60)
    # a build stopped after 3 runs (its journal cut there), resumed on the cluster: one process's accuracies
    lines = journal_path(spread).read_text().splitlines(keepends=True)
    journal_path(tmp_path / "halves.json").write_text("".join(lines[:4]))
    resumed = build_bench(PLAN, tmp_path / "halves.json", resume=True, progress=False, client=client)
    assert accuracies(resumed) == accuracies(alone)
    assert len(journal_path(resumed).read_text().splitlines()) == 1 + 6


def _other_data_on_worker(other: bool) -> None:
    """On a worker: probe batches and training images mirrored left to right (not the client's), or
    (`other` False) its own again."""
    import dataclasses

    import vit_space.bench.build as build
    import vit_space.probe.networks as networks
    from vit_space.data.batches import make_batch
    from vit_space.data.images import load_images

    def mirrored_batch(spec):
        images, labels = make_batch(spec)
        return images.flip(-1), labels

    def mirrored_data(*args):
        data = load_images(*args)
        return dataclasses.replace(data, train_images=data.train_images.flip(-1))

    networks.batch_of.cache_clear()
    networks.batch_digest.cache_clear()
    networks.make_batch, build.load_images = (mirrored_batch, mirrored_data) if other else (make_batch, load_images)


def settled(client, timeout: float = 60) -> None:
    """Wait until the workers run no task (those of a refused run may still be in flight)."""
    deadline = time.time() + timeout
    while any(client.processing().values()) and time.time() < deadline:
        time.sleep(0.05)


def test_a_worker_with_other_images_than_the_client_is_refused(client, tmp_path):
    """Another copy of a data folder, or another scikit-image making the probe images, would make
    its results silently differ from one process's."""
    from vit_space.proxies.scores import pass_scores

    refused = r"^worker tcp://\S+ has another {} than this process \(sha256 [0-9a-f]{{12}}, here [0-9a-f]{{12}}\); give"
    cache, batch = StatsCache(tmp_path / "cache"), SPECS[0].for_space(SPACE).batch
    client.run(_other_data_on_worker, True)
    try:
        with pytest.raises(AutoproxError, match=refused.format("probe batch of digits")):
            fill(SPACE, ARCHS[:2], SPECS, cache, progress=False, client=client)
        with pytest.raises(AutoproxError, match=refused.format("probe batch of digits")):
            pass_scores(SPACE, ARCHS[:2], batch, ["zico"], cache, progress=False, client=client)
        with pytest.raises(AutoproxError, match=refused.format("copy of the data set digits")):
            build_bench(PLAN, tmp_path / "bench.json", progress=False, client=client)
    finally:  # once the refused runs' tasks still in flight are done: they could cache a mirrored batch again
        settled(client)
        client.run(_other_data_on_worker, False)
    assert not list((tmp_path / "cache").rglob("*.pt")) and not list((tmp_path / "cache").rglob("*.json"))
    assert len(journal_path(tmp_path / "bench.json").read_text().splitlines()) == 1  # its header alone
    fill(SPACE, ARCHS[:2], SPECS, cache, progress=False, client=client)  # the workers' own images again


def _fused_attention_on_worker(fused: bool) -> None:
    import timm.layers.config

    timm.layers.config._USE_FUSED_ATTN = int(fused)  # as TIMM_FUSED_ATTN does at import


def test_a_worker_running_another_attention_kernel_is_refused(client, tmp_path):
    """Its statistics would agree with this process's to float rounding only, under this process's key."""
    from vit_space.proxies.scores import pass_scores

    refused = r"^worker tcp://\S+ runs timm's unfused attention, this process fused; set TIMM_FUSED_ATTN alike"
    cache, batch = StatsCache(tmp_path / "cache"), SPECS[0].for_space(SPACE).batch
    client.run(_fused_attention_on_worker, False)
    try:
        with pytest.raises(AutoproxError, match=refused):
            fill(SPACE, ARCHS[:2], SPECS, cache, progress=False, client=client)
        with pytest.raises(AutoproxError, match=refused):
            pass_scores(SPACE, ARCHS[:2], batch, ["naswot"], cache, progress=False, client=client)
        with pytest.raises(AutoproxError, match=refused):  # training rounds differently too
            build_bench(PLAN, tmp_path / "bench.json", progress=False, client=client)
    finally:
        settled(client)
        client.run(_fused_attention_on_worker, True)
    assert not list((tmp_path / "cache").rglob("*.pt")) and not list((tmp_path / "cache").rglob("*.json"))
    assert len(journal_path(tmp_path / "bench.json").read_text().splitlines()) == 1  # its header alone


def test_discovery_on_the_cluster_finds_what_one_process_finds(client, tmp_path):
    from synthetic import planted_tasks

    from gp_proxy.discovery import DiscoveryConfig, discover

    tasks, config = planted_tasks(), DiscoveryConfig(iterations=12, population=20, hall_of_fame=5, seed=5, batch=2)
    alone = discover(tasks, config, tmp_path / "alone", progress=False)
    spread = discover(tasks, config, tmp_path / "spread", progress=False, client=client, device="cpu")
    assert [str(i) for i in spread.halloffame] == [str(i) for i in alone.halloffame]
    assert list(spread.logbook) == list(alone.logbook) and spread.evaluations == alone.evaluations
    # stopped after 7 steps on the cluster, then resumed there: the same run again
    discover(tasks, dataclasses.replace(config, iterations=7), tmp_path / "halves", progress=False, client=client)
    resumed = discover(tasks, config, tmp_path / "halves", resume=True, progress=False, client=client)
    assert [str(i) for i in resumed.halloffame] == [str(i) for i in alone.halloffame]
    assert list(resumed.logbook) == list(alone.logbook)
    idle = r"^elitism scores 1 program\(s\) per step on 2 workers, so 1 wait through every step; set batch"
    one_parent = dataclasses.replace(config, batch=1, iterations=1)
    with pytest.warns(AutoproxWarning, match=idle):
        discover(tasks, one_parent, tmp_path / "one", progress=False, client=client)


@pytest.mark.filterwarnings("ignore::gp_proxy.errors.IdleWorkersWarning")  # one program per step
@pytest.mark.filterwarnings("error:discovery sends its statistics")  # the workers must read the shared file
def test_discovery_holds_the_objective_on_every_worker_and_survives_a_killed_one(client, tmp_path):
    """Every worker keeps its copy of the statistics for the whole run (Dask's memory manager drops
    extra copies of scattered data within seconds, which left one worker doing all the work and lost
    the run with it), gone after it; a worker killed mid-run loses nothing."""
    from deap import gp
    from synthetic import planted_tasks

    from gp_proxy.dask_map import dask_map
    from gp_proxy.discovery import DiscoveryConfig, discover
    from gp_proxy.objective import Objective, task_pset
    from gp_proxy.program import generate

    def held() -> list[int]:
        count = lambda dask_worker: sum(n.startswith("autoprox-objective") for n in dask_worker.plugins)  # noqa: E731
        return sorted(client.run(count).values())

    def keeping() -> list[int]:  # blocks that keep freed memory for reuse, on each worker
        return sorted(client.run(lambda: gp_proxy.memory._holders).values())

    tasks = planted_tasks()
    objective, pset = Objective(tasks), task_pset(tasks)
    random.seed(1)
    trees = [gp.PrimitiveTree(generate(pset, 1, 3)) for _ in range(40)]
    with dask_map(objective, client) as map_fn:
        time.sleep(3)  # past the memory manager's first round (every 2 s)
        assert held() == [1, 1] and keeping() == [1, 1]
        assert map_fn(None, trees) == [objective(t) for t in trees]
    assert held() == [0, 0] and keeping() == [0, 0]  # the memory went back to the OS
    config = DiscoveryConfig(iterations=60, population=20, hall_of_fame=5, seed=3)
    alone = discover(tasks, config, tmp_path / "alone", progress=False)
    with killed_while_busy(client) as caught:
        share = tmp_path / "cache"  # a worker that restarts reads the statistics from the file again
        survived = discover(tasks, config, tmp_path / "killed", progress=False, client=client, share=share)
    assert caught and caught[0]  # a worker died while it scored programs
    assert not list(share.iterdir())
    assert [str(i) for i in survived.halloffame] == [str(i) for i in alone.halloffame]
    assert list(survived.logbook) == list(alone.logbook) and survived.evaluations == alone.evaluations


@pytest.mark.skipif(torch.cuda.is_available(), reason="the workers see a GPU")
@pytest.mark.filterwarnings("ignore::gp_proxy.errors.IdleWorkersWarning")  # one program per step
def test_discovery_asking_workers_for_a_gpu_they_lack_is_one_error(client, tmp_path):
    from synthetic import planted_tasks

    from gp_proxy.discovery import DiscoveryConfig, discover

    run = partial(discover, planted_tasks(), DiscoveryConfig(iterations=2, population=6, seed=0), progress=False)
    with pytest.raises(AutoproxError, match=r"^device cuda:1 was asked for, but torch .*; it sees no CUDA device$"):
        run(tmp_path / "gpu", client=client, device="cuda:1")  # raised by a worker, as the client's own error
    with pytest.raises(AutoproxError, match=r"^device must be one of auto, cpu, cuda, cuda:N, got 'gpu'$"):
        run(tmp_path / "typo", client=client, device="gpu")
    assert not (tmp_path / "typo").exists()  # refused before any work


def test_a_search_probes_its_candidates_on_the_cluster(client, tmp_path):
    from vit_space.search.budget import Budget
    from vit_space.search.searchers import SearchConfig, search

    spec, config = SPECS[0], SearchConfig(count=8, population=4, parents=2, seed=1)
    run = partial(search, SPACE, ["snip"], Budget(), spec, config=config, progress=False)
    alone = run(StatsCache(tmp_path / "a"), out_dir=tmp_path / "alone")
    spread = run(StatsCache(tmp_path / "s"), out_dir=tmp_path / "spread", client=client)
    assert [(c.arch, c.fitness) for c in spread.evaluated] == [(c.arch, c.fitness) for c in alone.evaluated]
    assert entries(tmp_path / "s") == entries(tmp_path / "a") and len(entries(tmp_path / "a")) == 16


@pytest.mark.filterwarnings("error:discovery sends its statistics")  # the workers must read the shared file
def test_the_main_job_on_the_cluster_gives_the_results_of_one_process(client, tmp_path, monkeypatch):
    from gp_proxy.objective_file import ObjectiveFile
    from vit_space.bench.benchmark import SHIPPED_DIR
    from vit_space.pipeline import run_job

    shared, write = [], ObjectiveFile.write.__func__
    recorded = lambda cls, objective, path: shared.append(path) or write(cls, objective, path)  # noqa: E731
    monkeypatch.setattr(ObjectiveFile, "write", classmethod(recorded))

    bench = json.loads((SHIPPED_DIR / "af-tiny.json").read_text())
    bench["records"] = bench["records"][:8]
    (tmp_path / "tiny.json").write_text(json.dumps(bench))
    run = partial(run_job, str(tmp_path / "tiny.json"), iterations=3, search_budget=4, progress=False)
    alone = run(tmp_path / "alone", StatsCache(tmp_path / "a"))
    spread = run(tmp_path / "spread", StatsCache(tmp_path / "s"), client=client)
    assert spread.stats.computed == alone.stats.computed == 16  # 8 architectures x 2 data sets
    assert [p.parent for p in shared] == [tmp_path / "s"]  # the workers read the statistics from the cache
    assert entries(tmp_path / "s") == entries(tmp_path / "a")
    assert [str(i) for i in spread.discovery.halloffame] == [str(i) for i in alone.discovery.halloffame]
    found = [[(c.arch, c.fitness) for c in job.search.evaluated] for job in (alone, spread)]
    assert found[0] == found[1]


def test_pass_proxies_scored_on_the_cluster_equal_one_process(client, tmp_path):
    from vit_space.proxies.scores import pass_scores

    names, batch = ["zico", "naswot"], SPECS[0].for_space(SPACE).batch
    alone, _ = pass_scores(SPACE, ARCHS, batch, names, StatsCache(tmp_path / "a"), progress=False)
    spread, seconds = pass_scores(SPACE, ARCHS, batch, names, StatsCache(tmp_path / "s"), progress=False, client=client)
    assert {n: v.tolist() for n, v in spread.items()} == {n: v.tolist() for n, v in alone.items()}
    assert all((s > 0).all() for s in seconds.values())
    saved, _ = pass_scores(SPACE, ARCHS, batch, names, StatsCache(tmp_path / "s"), compute_missing=False)
    assert {n: v.tolist() for n, v in saved.items()} == {n: v.tolist() for n, v in alone.items()}  # the client saved


def test_missing_statistics_for_discovery_are_probed_on_the_cluster(client, tmp_path):
    """`discover --compute-missing --cluster`: the tasks' missing statistics are probed by the
    workers (not by this process), and the bundles equal one process's, left on the CPU."""
    from distributed import get_task_stream

    from vit_space.proxies.tasks import tasks_for

    spec = ProbeSpec(BatchSpec("digits", image_size=None))
    make = partial(tasks_for, ["af-tiny"], None, spec, limit=6, test_fraction=0.5, compute_missing=True)
    alone = make(StatsCache(tmp_path / "alone"))
    with get_task_stream(client) as stream:
        spread = make(StatsCache(tmp_path / "spread"), client=client)
    assert sum(t["key"].startswith("probing") for t in stream.data) == 6 * len(spread) == 12  # fmnist and digits
    for a, b in zip(alone, spread):
        assert a.name == b.name and b.bundle.block.device.type == "cpu"
        assert all(torch.equal(a.bundle.tensors[k], b.bundle.tensors[k]) for k in a.bundle.tensors)


def test_a_folder_data_set_named_relative_to_this_process_is_found_by_the_workers(client, tmp_path, monkeypatch):
    from test_data import write_image_folder

    for split in ("train", "test"):
        write_image_folder(tmp_path / "flowers" / split, per_class=4)
    monkeypatch.chdir(tmp_path)  # the workers keep the working directory they started in
    recipe = Recipe(steps=6, batch_size=4)
    plan = BuildPlan(get_space("af-tiny@3x28"), tuple(small_archs(2)), ("flowers",), recipe, (0,))
    alone = build_bench(plan, tmp_path / "alone.json", progress=False)
    spread = build_bench(plan, tmp_path / "spread.json", progress=False, client=client)
    assert accuracies(spread) == accuracies(alone) and all("flower_base_acc" in r for r in accuracies(alone))
