"""A discovery's statistics in a file its Dask workers read (`gp_proxy.objective_file`, `dask_map.shared`)."""

import fcntl
import os
import pickle
import random
import socket
import subprocess
import warnings
from pathlib import Path

import pytest
import torch
from deap import gp
from synthetic import planted_tasks, sample_trees
from test_cluster import in_process

from gp_proxy.dask_map import dask_map, shared
from gp_proxy.errors import AutoproxError, AutoproxWarning
from gp_proxy.objective import Objective, task_pset
from gp_proxy.objective_file import ObjectiveFile, remove_stale
from gp_proxy.program import generate, parse
from vit_space.cluster import connect
from vit_space.probe.cache import StatsCache

SENT = r"^discovery sends its statistics to the workers through the scheduler: "


@pytest.fixture(scope="module")
def client():
    with connect("local:2") as client:
        yield client


def test_an_objective_file_reads_back_the_same_fitness_and_names_itself_when_unreadable(tmp_path):
    """What workers that see a shared folder read instead of being sent the statistics: tensors
    only (`torch.load(weights_only=True)`), memory-mapped; a reference of kilobytes."""
    tasks = planted_tasks(archs=40)  # two tasks sharing one bundle
    sent = Objective(tasks).training_only()
    reference = ObjectiveFile.write(sent, tmp_path / "objective.pt")
    assert len(pickle.dumps(reference)) < 4096 < len(pickle.dumps(sent)) / 10
    read = reference.read()
    assert read.tasks[0].bundle is read.tasks[1].bundle and [t.name for t in read.tasks] == [t.name for t in tasks]
    assert read.tasks[0].bundle.ids == sent.tasks[0].bundle.ids and read.tasks[0].bundle.block.device.type == "cpu"
    pset = task_pset(tasks)
    trees = sample_trees(pset, 6)
    fitnesses = [sent(t) for t in trees]
    assert [read(t) for t in trees] == fitnesses and fitnesses[-1][0] > 0.3
    unreadable = {
        "No such file": None,
        "KeyError": {},  # tensors, but not these statistics
        "TypeError": {"0": {"tensors": {}, "ids": []}},
        "UnpicklingError": {"0": os.getpid},  # a function: weights_only refuses to load it
    }
    for error, content in unreadable.items():
        Path(reference.path).unlink(missing_ok=True)
        if content is not None:
            torch.save(content, reference.path)
        with pytest.raises(AutoproxError, match=rf"^cannot read the statistics file .*objective\.pt \(.*{error}"):
            reference.read()


def test_workers_that_see_the_shared_folder_read_the_statistics_from_it(client, tmp_path):
    """The scheduler, which keeps a plugin for every worker that joins, then holds kilobytes; the
    file lives as long as the block; a worker that cannot read it is one line naming it."""

    def on_scheduler() -> list[int]:  # the pickled size of each objective the scheduler keeps
        sizes = lambda dask_scheduler: [len(p) for n, p in dask_scheduler.worker_plugins.items() if "objective" in n]  # noqa: E731
        return client.run_on_scheduler(sizes)

    tasks = planted_tasks(archs=60)
    objective, pset = Objective(tasks), task_pset(tasks)
    random.seed(2)
    trees = [gp.PrimitiveTree(generate(pset, 1, 4)) for _ in range(30)]
    expected = [objective(t) for t in trees]
    with dask_map(objective, client) as map_fn:
        sent = on_scheduler()
        assert map_fn(None, trees) == expected
    with dask_map(objective, client, share=tmp_path) as map_fn:
        kept = on_scheduler()
        assert [p.name for p in tmp_path.iterdir()][0].startswith(".autoprox-objective-")
        assert map_fn(None, trees) == expected
    assert not list(tmp_path.iterdir())
    assert len(sent) == len(kept) == 1 and kept[0] < 8192 < sent[0] / 10
    with dask_map(objective, client, share=tmp_path) as map_fn:
        next(tmp_path.iterdir()).unlink()  # as for a worker that joined later without the folder
        with pytest.raises(AutoproxError, match=r"^worker tcp://\S+ cannot read the statistics file .*; every worker"):
            map_fn(None, trees)


def test_workers_that_cannot_read_the_shared_folder_are_sent_the_statistics(tmp_path, monkeypatch):
    training = Objective(planted_tasks()).training_only()
    with in_process(2) as (_, client):
        with shared(client, training, tmp_path) as source:
            assert isinstance(source, ObjectiveFile) and os.path.exists(source.path)
        assert not list(tmp_path.iterdir())  # removed after the block
        (tmp_path / "file").touch()
        with pytest.warns(AutoproxWarning, match=SENT + r"could not write them to .*file \("):
            with shared(client, training, tmp_path / "file") as source:
                assert source is training
        with monkeypatch.context() as patch:  # a full disk
            patch.setattr(torch, "save", lambda *args: (_ for _ in ()).throw(RuntimeError("enforce fail")))
            with pytest.warns(AutoproxWarning, match=SENT + r"could not write them to .* \(enforce fail\)"):
                with shared(client, training, tmp_path) as source:
                    assert source is training
        first, answers = sorted(client.nthreads())[0], client.run(os.getpid)
        failing = lambda fn, *args, **kwargs: {a: OSError("x") if a == first else fn(*args) for a in answers}  # noqa: E731
        with monkeypatch.context() as patch:  # one worker's check fails
            patch.setattr(client, "run", failing)
            with pytest.warns(AutoproxWarning, match=SENT + rf"workers {first} cannot read {tmp_path}; they read"):
                with shared(client, training, tmp_path) as source:
                    assert source is training
        with monkeypatch.context() as patch:  # the scheduler lost during the check
            patch.setattr(client, "run", lambda *args, **kwargs: (_ for _ in ()).throw(OSError("pool closing")))
            with pytest.raises(AutoproxError, match=r"^lost the Dask scheduler \(pool closing\); check it"):
                with shared(client, training, tmp_path):
                    pass
    with in_process(0) as (_, client), pytest.warns(AutoproxWarning, match=SENT + "the cluster has no worker to ask"):
        with shared(client, training, tmp_path) as source:
            assert source is training
    assert [p.name for p in tmp_path.iterdir()] == ["file"]  # no shared file left behind


def test_shared_files_that_killed_runs_of_this_host_left_are_removed_and_not_counted_as_cache(tmp_path):
    ended = subprocess.Popen(["true"])
    ended.wait()
    host, me = socket.gethostname(), os.getpid()
    writers = ((host, ended.pid), (host, me), ("other-host", ended.pid), (host, ended.pid))
    names = [f".autoprox-objective-{h}-{pid}-{c * 32}.pt" for (h, pid), c in zip(writers, "abcd")]
    names.append(f"..autoprox-objective-{host}-{ended.pid}-{'e' * 32}.pt.x1y2.part")  # killed while writing
    for name in names:
        (tmp_path / name).write_bytes(b"x" * 100)
    (tmp_path / "autoformer").mkdir()
    (tmp_path / "autoformer" / "entry.pt").write_bytes(b"x" * 7)
    assert StatsCache(tmp_path).size_bytes() == 7
    with open(tmp_path / names[3], "rb") as held:  # a run of another PID namespace of this host still uses it
        fcntl.flock(held, fcntl.LOCK_SH)
        assert sorted(remove_stale(tmp_path)) == sorted([tmp_path / names[0], tmp_path / names[4]])
    assert sorted(p.name for p in tmp_path.glob(".*")) == sorted(names[1:4])  # live, another host's, held


def test_a_scheduler_lost_during_discovery_is_one_error_and_leaves_no_file(tmp_path):
    """Leaving the discovery's block cannot take the plugin off the lost scheduler's workers: that
    failure must not replace the one line."""
    tasks = planted_tasks()
    objective, tree = Objective(tasks), parse("agg_sum_mlp(fro(gW))", task_pset(tasks))
    with in_process(1) as (cluster, _), connect(cluster.scheduler_address, timeout=2) as client:
        with pytest.raises(AutoproxError, match=r"^(Dask cancelled the tasks|lost the Dask scheduler) \("):
            with dask_map(objective, client, share=tmp_path) as map_fn:
                assert map_fn(None, [tree]) == [objective(tree)]
                cluster.close()
                map_fn(None, [tree] * 4)
    assert not list(tmp_path.iterdir())


def test_workers_that_resolve_device_auto_differently_are_warned_of(tmp_path, monkeypatch):
    import gp_proxy.dask_map

    objective = Objective(planted_tasks())
    with in_process(2) as (_, client):
        with warnings.catch_warnings():
            warnings.simplefilter("error", AutoproxWarning)  # all workers on this machine's CPU: no warning
            with dask_map(objective, client, device="auto"):
                pass
        first, second = sorted(client.nthreads())
        real_run = client.run
        told = {first: "cuda", second: "cpu"}  # one with a GPU, one without
        mixed = lambda fn, *a, **k: told if fn is gp_proxy.dask_map._auto_device else real_run(fn, *a, **k)  # noqa: E731
        monkeypatch.setattr(client, "run", mixed)
        expected = rf"^device auto resolves differently on the workers \(cpu on {second}; cuda on {first}\): their"
        with pytest.warns(AutoproxWarning, match=expected):
            with dask_map(objective, client, device="auto"):
                pass
