import json
import os

import pytest
from conftest import bench

from gp_proxy.errors import AutoproxError
from vit_space.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_stats_fills_the_cache_then_skips(capsys, tmp_path):
    bench("pit")
    argv = [
        "stats",
        "--bench",
        "pit",
        "--limit",
        "2",
        "--datasets",
        "chaoyang",
        "--batch",
        "2",
        "--image-size",
        "64",
        "--sketch",
        "8",
        "--cache",
        str(tmp_path),
        "--quiet",
    ]
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "pit: 2 entries (2 probed, 0 already cached)" in out
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "(0 probed, 2 already cached)" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["stats", "--bench", "nope"], "no benchmark file 'nope'"),
        (["stats", "--bench", "af-tiny", "--datasets", "cifar"], "unknown dataset 'cifar'; known: c100"),
        (["stats", "--bench", "af-tiny", "--conditions", "data,zen"], "unknown probe conditions ['zen']"),
        (["stats", "--bench", "af-tiny", "--minibatches", "1"], "argument --minibatches: expected an integer >= 2"),
        (
            ["stats", "--bench", "af-tiny", "--conditions", "minibatch", "--batch", "2"],
            "minibatches=4 slices; batch size 2 is smaller",
        ),
        (["stats", "--space", "vit", "--sample", "1"], "unknown space 'vit'"),
        (["stats", "--bench", "af-tiny", "--data", "c100"], "--data takes NAME=PATH"),
        (["arch", "--space", "timm:deit_tiny_patch16_22"], "unknown timm model"),
        (["discover", "--bench", "af-tiny", "--out", "x", "--seed-proxies", "zen"], "unknown proxy 'zen'"),
    ],
)
def test_user_errors_are_one_line_with_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_arch_validates_a_user_file(capsys, tmp_path):
    good = {"base_dim": 16, "mlp_ratio": 2, "depth": [1, 6, 6], "num_heads": [2, 2, 2]}
    path = tmp_path / "archs.json"
    path.write_text(json.dumps([good, {**good, "num_heads": [2, 2, 3]}]))
    code, _, err = run(capsys, "arch", "--space", "pit", "--archs", str(path))
    assert code == 2 and "architecture 1: pit arch: num_heads=[2, 2, 3] is not allowed" in err
    path.write_text("[{]")
    assert "malformed JSON" in run(capsys, "arch", "--space", "pit", "--archs", str(path))[2]
    path.write_text(json.dumps([good]))
    code, out, _ = run(capsys, "arch", "--space", "pit", "--archs", str(path), "--num-classes", "100")
    row = json.loads(out)
    assert code == 0 and row["arch"] == good and row["params"] > 0 and len(row["hash"]) == 16


def test_discover_missing_cache_says_how_to_fill_it(capsys, tmp_path):
    code, _, err = run(
        capsys,
        "discover",
        "--bench",
        "af-tiny",
        "--datasets",
        "digits",
        "--out",
        str(tmp_path / "o"),
        "--cache",
        str(tmp_path / "empty"),
    )
    assert code == 2 and "100 of 100 af-tiny architectures have no cached statistics" in err
    assert "autoprox stats" in err


def test_discover_fields_apply_to_every_benchmark(capsys, tmp_path, monkeypatch):
    """`--fields base` ranks every benchmark on its base fields (it once did only the first)."""
    bench("autoformer"), bench("pit")
    import vit_space.cli.commands
    import vit_space.proxies.tasks

    def stop(*args, **kwargs):
        raise AutoproxError("stopped before the evolution")

    asked = []
    monkeypatch.setattr(
        vit_space.proxies.tasks,
        "bench_tasks",  # records what each benchmark is asked, loads nothing
        lambda b, datasets, *args, kind, **kwargs: asked.append((b.name, kind, list(datasets))) or [],
    )
    monkeypatch.setattr(vit_space.cli.commands, "discover", stop)
    for fields, kind in (("base", "base"), ("kd", "kd"), (None, "kd")):
        asked.clear()
        code, _, err = run(
            capsys,
            "discover",
            "--bench",
            "autoformer,pit",
            "--out",
            str(tmp_path / "o"),
            *(["--fields", fields] if fields else []),
        )
        assert code == 2 and "stopped before the evolution" in err
        assert asked == [(name, kind, ["c100", "flowers", "chaoyang"]) for name in ("autoformer", "pit")]


def test_a_gpu_out_of_memory_is_one_line(capsys, monkeypatch):
    import torch

    from vit_space.cli.commands import HANDLERS

    def out_of_memory(args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has 79 GiB")

    monkeypatch.setitem(HANDLERS, "stats", out_of_memory)
    code, _, err = run(capsys, "stats", "--bench", "af-tiny")
    assert code == 2 and err == (
        "autoprox: error: this process ran out of GPU memory (CUDA out of memory); give it less work at once (a "
        "smaller batch) or fewer workers per GPU\n"
    )


def test_discover_offers_its_cache_folder_to_share_statistics_with_cluster_workers(capsys, tmp_path, monkeypatch):
    """Workers that see `--cache` read the statistics from it (`gp_proxy.dask_map.shared`)."""
    import vit_space.cli.commands

    def stop(*args, share, **kwargs):
        raise AutoproxError(f"stopped; share={share}")

    monkeypatch.setattr(vit_space.cli.commands, "tasks_for", lambda *args, **kwargs: [])
    monkeypatch.setattr(vit_space.cli.commands, "discover", stop)
    code, _, err = run(capsys, "discover", "--bench", "af-tiny", "--cache", str(tmp_path / "c"), "--out", "o")
    assert code == 2 and f"stopped; share={tmp_path / 'c'}" in err


def test_discover_end_to_end_on_a_slice(capsys, tmp_path):
    bench("pit")
    argv = [
        "discover",
        "--bench",
        "pit",
        "--limit",
        "8",
        "--datasets",
        "chaoyang,c100",
        "--compute-missing",
        "--batch",
        "2",
        "--image-size",
        "64",
        "--sketch",
        "8",
        "--iterations",
        "5",
        "--population",
        "6",
        "--cache",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "run"),
        "--quiet",
    ]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "best proxy:" in out and (tmp_path / "run" / "proxies" / "rank01.json").is_file()
    saved = json.loads((tmp_path / "run" / "proxies" / "rank01.json").read_text())
    assert saved["statistics"]["probe"]["sketch_size"] == 8 and saved["provenance"]["benchmarks"] == ["pit"]
    assert set(saved["fitness"]["test"]) == {"pit/chaoyang_kd_acc", "pit/c100_kd_acc"}
    assert saved["fitness"]["test"]["pit/c100_kd_acc"]["n"] == 4  # the held-out half of 8
    assert "Pareto front (size, training JCM): pick the knee" in out and "validation" not in out
    config = json.loads((tmp_path / "run" / "checkpoint.json").read_text())["config"]
    assert config["seed_proxies"] == ["depth_width", "weight_l2"]  # the default chosen on validation data
    code, _, err = run(capsys, *argv)  # the run is there: no silent overwrite
    assert code == 2 and "pass --resume" in err
    argv[argv.index("--out") + 1] = str(tmp_path / "random")
    assert run(capsys, *argv, "--seed-proxies", "none", "--iterations", "1")[0] == 0
    assert json.loads((tmp_path / "random" / "checkpoint.json").read_text())["config"]["seed_proxies"] == []
    argv[argv.index("--out") + 1] = str(tmp_path / "validated")
    code, _, err = run(capsys, *argv, "--validation", "0.34")  # 2 of the 4 training architectures
    assert code == 2 and "fewer than 3 architectures with a known accuracy" in err and "--validation 0.34" in err
    argv[argv.index("--limit") + 1] = "20"
    code, out, err = run(capsys, *argv, "--validation", "0.4")
    assert code == 0, err
    fitness = json.loads((tmp_path / "validated" / "proxies" / "rank01.json").read_text())["fitness"]
    assert -1 <= fitness["jcm_validation"] <= 1 and "Pareto front (size, training JCM, validation JCM)" in out
    front = [line.split(maxsplit=3) for line in out.splitlines() if line.startswith("  ")]
    assert front and [int(f[0]) for f in front] == sorted(int(f[0]) for f in front)
    code, again, _ = run(capsys, "front", str(tmp_path / "validated"))
    assert code == 0 and [line.split(maxsplit=3) for line in again.splitlines() if line.startswith("  ")] == front
    size, train, checked, expression = front[-1]
    picked = tmp_path / "knee.json"
    code, out, _ = run(capsys, "front", str(tmp_path / "validated"), "--pick", size, "--out", str(picked))
    proxy = json.loads(picked.read_text())
    assert code == 0 and proxy["expression"] == expression and f"size {size}" in out
    assert (
        f"{proxy['fitness']['jcm_train']:6.3f}".strip() == train
        and f"{proxy['fitness']['jcm_validation']:.3f}" == checked
    )
    assert proxy["statistics"]["probe"] == saved["statistics"]["probe"]  # the run's own probe spec
    for argv, message in [
        (["front", str(tmp_path)], "has no Pareto front (no pareto.csv)"),
        (
            ["front", str(tmp_path / "validated"), "--pick", "99", "--out", str(picked)],
            "size must be one of the front's sizes",
        ),
        (["front", str(tmp_path / "validated"), "--pick", size], "--pick needs --out"),
    ]:
        code, _, err = run(capsys, *argv)
        assert code == 2 and message in err and err.count("\n") == 1


def test_bench_fetch_from_a_file_url_checks_the_published_checksum(capsys, tmp_path):
    import torch

    mirror, dest = tmp_path / "mirror", tmp_path / "dest"
    mirror.mkdir()
    torch.save(
        [{"arch": {"base_dim": 16, "mlp_ratio": 2, "depth": [1, 6, 6], "num_heads": [2, 2, 2]}, "c100_kd_acc": 70.0}],
        mirror / "gt_pit.pth",
    )
    code, _, err = run(capsys, "bench", "fetch", "--names", "pit", "--url", mirror.as_uri(), "--dest", str(dest))
    assert code == 2 and "does not match the expected bdda8984" in err  # not the published file
    assert not dest.exists() or not list(dest.iterdir())  # nothing half-written or unverified is kept


def test_stats_probes_named_timm_models(capsys, tmp_path):
    code, out, err = run(
        capsys,
        "stats",
        "--space",
        "timm:deit_tiny_patch16_224",
        "--sample",
        "1",
        "--datasets",
        "imagenet",
        "--batch",
        "1",
        "--image-size",
        "64",
        "--sketch",
        "8",
        "--cache",
        str(tmp_path),
        "--quiet",
    )
    assert code == 0, err
    assert "timm: 1 entries (1 probed, 0 already cached)" in out


def test_rank_json_names_the_benchmark_fields(capsys):
    bench("pit")
    code, out, _ = run(capsys, "rank", "--bench", "pit", "--proxy", "params", "--format", "json", "--quiet")
    payload = json.loads(out)
    kendalls = [payload["fields"][f]["kendall"] for f in ("c100_kd_acc", "flower_kd_acc", "chaoyang_kd_acc")]
    assert code == 0 and payload["proxy"] == "params" and payload["bench"] == "pit"
    assert payload["jcm"] == pytest.approx(sum(kendalls) / 3) and payload["fields"]["c100_kd_acc"]["n"] == 100
    assert payload["heldout"]["fields"]["c100_kd_acc"]["n"] == 50


def test_rank_probes_new_architectures_of_a_user_benchmark(capsys, tmp_path):
    archs = [
        {"base_dim": d, "mlp_ratio": r, "depth": [1, 6, 6], "num_heads": [2, 2, 4]}
        for d, r in ((16, 2), (24, 4), (32, 8), (16, 8), (24, 2))
    ]
    records = [{"arch": a, "c100_kd_acc": 60.0 + i} for i, a in enumerate(archs)]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"space": "pit", "records": records}))
    argv = (
        "rank",
        "--bench",
        str(path),
        "--proxy",
        "snip,naswot",
        "--holdout",
        "0",
        "--image-size",
        "64",
        "--batch",
        "4",
        "--sketch",
        "8",
        "--cache",
        str(tmp_path / "cache"),
        "--format",
        "csv",
        "--quiet",
    )
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    rows = [line.split(",") for line in out.splitlines()[1:] if ",c100_kd_acc," in line]
    assert [r[0] for r in rows] == ["snip", "naswot"] and all(r[7] == "5" for r in rows)
    assert any((tmp_path / "cache" / "_scores" / "pit").iterdir())
    cached = run(capsys, *argv, "--cached-only")[1]
    without_times = lambda text: [line.rsplit(",", 1)[0] for line in text.splitlines()]  # noqa: E731
    assert without_times(cached) == without_times(out)


@pytest.mark.parametrize(
    "argv, message",
    [
        (("rank", "--bench", "pit", "--proxy", "nope"), "unknown proxy 'nope'; known: params, flops"),
        (
            ("rank", "--bench", "pit", "--proxy", "params", "--datasets", "imagenet"),
            "has no field 'imagenet_super_acc'",
        ),
        (("rank", "--bench", "pit", "--proxy", "params", "--format", "xml"), "unknown format 'xml'"),
    ],
)
def test_rank_user_errors(capsys, argv, message):
    bench("pit")
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_rank_cached_only_says_how_to_fill_the_cache(capsys, tmp_path):
    bench("pit")
    code, _, err = run(
        capsys, "rank", "--bench", "pit", "--proxy", "snip", "--cached-only", "--cache", str(tmp_path), "--quiet"
    )
    assert code == 2 and "no cached statistics" in err and "autoprox stats" in err


def test_score_samples_within_a_budget_and_ranks(capsys, tmp_path):
    argv = (
        "score",
        "snip",
        "--space",
        "pit",
        "--sample",
        "3",
        "--params",
        "0.2-3",
        "--seed",
        "1",
        "--image-size",
        "64",
        "--batch",
        "4",
        "--sketch",
        "8",
        "--cache",
        str(tmp_path / "c"),
        "--out",
        str(tmp_path / "ranked.csv"),
        "--quiet",
    )
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    rows = (tmp_path / "ranked.csv").read_text().splitlines()
    assert rows[0] == "rank,score,params,macs,hash,arch" and len(rows) == 4
    scores = [float(r.split(",")[1]) for r in rows[1:]]
    assert scores == sorted(scores, reverse=True) and all(0.2e6 <= int(r.split(",")[2]) <= 3e6 for r in rows[1:])
    assert "snip on 3 pit architectures" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (("score", "snip", "--space", "pit", "--sample", "2", "--params", "500-600"), "spans about"),
        (("score", "snip", "--space", "pit"), "needs --archs FILE.json or --sample N"),
        (("score", "snip", "--space", "pit", "--sample", "2", "--params", "x"), "LO-HI in millions"),
        (("score", "nope.json", "--space", "pit", "--sample", "2"), "cannot read proxy file"),
        (("score", "snip", "--space", "timm:resnet18", "--quiet"), "ResNet has no transformer blocks"),
        (("score", "naswot", "--space", "timm:resnet18", "--quiet"), "ResNet has no nn.GELU"),
    ],
)
def test_score_user_errors(capsys, tmp_path, argv, message):
    code, _, err = run(capsys, *argv, "--cache", str(tmp_path))
    assert code == 2 and message in err


def test_simplify_checks_on_a_benchmark_and_keeps_the_original(capsys, tmp_path):
    archs = [
        {"base_dim": d, "mlp_ratio": r, "depth": [1, 6, 6], "num_heads": [2, 2, 4]}
        for d, r in ((16, 2), (24, 4), (32, 8), (16, 8))
    ]
    (tmp_path / "mine.json").write_text(
        json.dumps({"space": "pit", "records": [{"arch": a, "c100_kd_acc": 60.0 + i} for i, a in enumerate(archs)]})
    )
    from gp_proxy.store import SavedProxy, load_proxy, save_proxy

    probe = {
        "source": "skimage",
        "batch_size": 4,
        "seed": 0,
        "image_size": 64,
        "sketch_size": 8,
        "conditions": ["data"],
    }
    found = "s_div(agg_sum_qkv(fro(sign(sign(gW)))), agg_mean_ln_out(max(sign(Y))))"
    save_proxy(tmp_path / "p.json", SavedProxy(found, ["W", "gW", "Y"], ["all", "qkv", "ln_out"], probe))
    code, out, err = run(
        capsys,
        "simplify",
        str(tmp_path / "p.json"),
        "--bench",
        str(tmp_path / "mine.json"),
        "--compute-missing",
        "--cache",
        str(tmp_path / "c"),
        "--out",
        str(tmp_path / "s.json"),
        "--quiet",
    )
    assert code == 0, err
    simplified = load_proxy(tmp_path / "s.json")
    assert simplified.expression == "agg_sum_qkv(fro(sign(gW)))"
    assert simplified.simplification["original"] == found and "proved by sympy" in out


def test_search_command_writes_its_outputs_and_reports_bad_budgets(capsys, tmp_path):
    argv = [
        "search",
        "--space",
        "pit",
        "--proxy",
        "snip",
        "--proxy",
        "naswot",
        "--params",
        "0.5-3",
        "--budget",
        "6",
        "--population",
        "3",
        "--parents",
        "2",
        "--image-size",
        "64",
        "--batch",
        "4",
        "--sketch",
        "8",
        "--cache",
        str(tmp_path / "c"),
        "--out",
        str(tmp_path / "run"),
        "--quiet",
    ]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "6 architectures evaluated; best:" in out
    code, out, _ = run(capsys, "arch", "--space", "pit", "--archs", str(tmp_path / "run" / "best_arch.json"))
    assert (
        code == 0 and json.loads(out)["arch"] == json.loads((tmp_path / "run" / "best_arch.json").read_text())["arch"]
    )
    header = (tmp_path / "run" / "evaluated.csv").read_text().splitlines()[0]
    assert header == "order,hash,fitness,snip,naswot,params,macs,arch"
    code, _, err = run(capsys, *argv)
    assert code == 2 and "pass --resume" in err
    code, _, err = run(capsys, *[a if a != "0.5-3" else "400-500" for a in argv[:-3]], "--out", str(tmp_path / "r2"))
    assert code == 2 and "spans about" in err


def test_commands_without_cluster_never_import_dask(tmp_path):
    """The README's promise: without --cluster nothing changes and Dask is not imported."""
    import subprocess
    import sys

    script = f"""
import sys
from vit_space.cli import main
cache, out = {str(tmp_path / "c")!r}, {str(tmp_path / "d")!r}
assert main(["stats", "--bench", "af-tiny", "--limit", "6", "--cache", cache, "--quiet"]) == 0
argv = ["discover", "--bench", "af-tiny", "--limit", "6", "--iterations", "2", "--population", "6"]
assert main(argv + ["--cache", cache, "--out", out, "--quiet"]) == 0
print(sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed")))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def _session_processes(session: int) -> list[int]:
    """PIDs of the live processes in session `session` (Linux's /proc; zombies left out)."""
    import pathlib

    pids = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while listed
            continue
        if fields[0] != "Z" and int(fields[3]) == session:
            pids.append(int(stat.parent.name))
    return pids


def _sigterm_during_discovery(pool: list[str], group: bool, tmp_path) -> tuple[int, str]:
    """Run `discover` with `pool` options in a new session, send SIGTERM (to its process group if
    `group`) once its first checkpoint is written, and return its exit status and stderr, after
    checking that the checkpoint is whole and that no process of the session outlives it."""
    import signal
    import subprocess
    import sys
    import time

    cache, out = tmp_path / "c", tmp_path / "d"
    assert main(["stats", "--bench", "af-tiny", "--limit", "6", "--cache", str(cache), "--quiet"]) == 0
    argv = ["discover", "--bench", "af-tiny", "--limit", "6", "--iterations", "10000000", "--population", "6"]
    argv += ["--cache", str(cache), "--out", str(out), "--quiet", *pool]
    script = "import sys; from vit_space.cli import main; sys.exit(main(sys.argv[1:]))"
    run = subprocess.Popen(
        [sys.executable, "-c", script, *argv], stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.json").exists() and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.2)
        assert (out / "checkpoint.json").exists(), run.stderr.read() if run.poll() is not None else "no checkpoint"
        if "--cluster" in pool:
            assert list(cache.glob(".autoprox-objective-*.pt")), "the workers were not reading a shared file"
        os.killpg(run.pid, signal.SIGTERM) if group else run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert json.loads((out / "checkpoint.json").read_text())["version"]
    deadline = time.monotonic() + 10  # worker processes get a moment to finish ending
    while _session_processes(run.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _session_processes(run.pid) == []
    return run.returncode, err


@pytest.mark.slow
@pytest.mark.parametrize(
    "pool, group",
    [([], True), (["--cluster", "local:1"], False), (["--cluster", "local:1"], True)],
    ids=["one process, to its process group", "--cluster local:1, to the command", "--cluster local:1, to its group"],
)
def test_sigterm_stops_discovery_as_ctrl_c_does_and_leaves_nothing_behind(pool, group, tmp_path):
    """`kill PID` signals the command, a batch system's time limit (SLURM, `timeout`) its whole process
    group: either way the run ends with status 130 and the interrupted line, its checkpoint stays, its
    worker processes end, and the statistics file it shared with them is removed."""
    code, err = _sigterm_during_discovery(pool, group, tmp_path)
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "autoprox: interrupted; everything finished so far is saved, rerun to resume"
    assert "Traceback" not in err
    assert not list((tmp_path / "c").glob(".autoprox-objective-*"))


@pytest.mark.slow
@pytest.mark.parametrize("group", [False, True], ids=["to the command", "to its process group"])
def test_sigterm_ends_discovery_with_forked_workers_at_once_and_its_workers_with_it(group, tmp_path):
    """With `--workers N` SIGTERM keeps its default action (a pool's cleanup could wait for ever on a
    lock a killed worker held): the command ends at once, its workers after it, its checkpoint whole."""
    code, err = _sigterm_during_discovery(["--workers", "2"], group, tmp_path)
    assert code == -15, err


def test_a_first_sigterm_interrupts_and_a_second_takes_the_default_action():
    import signal
    import time

    from vit_space.cli.main import sigterm_as_interrupt

    def before(signum, frame):
        raise AssertionError("the handler from before the command ran")

    previous = signal.signal(signal.SIGTERM, before)
    try:
        with sigterm_as_interrupt():
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the signal ends the sleep and its handler raises
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # a second one ends the process
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        signal.signal(signal.SIGTERM, previous)
