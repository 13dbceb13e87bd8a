import importlib
import random
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gp_proxy import Evaluator, build_pset, parse
from gp_proxy.errors import AutoproxError
from vit_space.bench.benchmark import load_bench
from vit_space.cli import main
from vit_space.data.batches import BatchSpec
from vit_space.device import cpu_seeded, float32_matmul, resolve_device
from vit_space.probe.cache import ProbeSpec, StatsCache, fill, load_bundle
from vit_space.spaces import get_space

NO_GPU = not torch.cuda.is_available()


def test_resolve_device_names_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "cuda:x", "cuda:-1", "CPU", 3):
        with pytest.raises(AutoproxError, match=r"device must be one of auto, cpu, cuda, cuda:N, got"):
            resolve_device(bad)


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_cuda_without_a_gpu_names_what_torch_sees():
    for asked in ("cuda", "cuda:1"):
        with pytest.raises(AutoproxError, match=rf"device {asked} was asked for, but torch .* it sees no CUDA device"):
            resolve_device(asked)


PROXY_FILE = Path(__file__).resolve().parents[1] / "results" / "discovery" / "seed0" / "proxies" / "rank01.json"
COMMANDS = {  # every command that builds or runs a model, each as it would run on the CPU
    "stats": "stats --space af-tiny --sample 2 --datasets digits --cache {tmp}/cache",
    "rank": "rank --bench af-tiny --proxy snip --cache {tmp}/cache",
    "score": f"score {PROXY_FILE} --space af-tiny --sample 2 --cache {{tmp}}/cache",
    "search": "search --space af-tiny --proxy snip --params 0.01-0.03 --out {tmp}/out --cache {tmp}/cache",
    "discover": "discover --bench af-tiny --iterations 2 --out {tmp}/out --cache {tmp}/cache",
    "run": "run --out {tmp}/out --cache {tmp}/cache",
    "bench build": "bench build --space af-tiny --dataset digits --archs 1 --steps 2 --out {tmp}/out/b.json",
    "simplify": f"simplify {PROXY_FILE} --bench af-tiny --compute-missing --cache {{tmp}}/cache",
}


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_cli_refuses_cuda_on_one_line_before_any_work(command, tmp_path, capsys):
    code = main([*COMMANDS[command].format(tmp=tmp_path).split(), "--device", "cuda"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "sees no CUDA device" in err
    assert not list(tmp_path.iterdir())  # nothing written: no cache, no output folder


def test_float32_matmul_switches_tf32_off_and_restores_it():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        with float32_matmul():
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        with pytest.raises(RuntimeError), float32_matmul():
            raise RuntimeError("inside")
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_cpu_seeded_draws_as_manual_seed_does_and_restores_the_generator():
    state = torch.random.get_rng_state()
    try:
        with cpu_seeded(7), cpu_seeded(7):  # nests (a build inside a build)
            drawn = torch.rand(4)
        assert torch.equal(torch.random.get_rng_state(), state)
        torch.manual_seed(7)
        assert torch.equal(drawn, torch.rand(4))
    finally:
        torch.random.set_rng_state(state)


def test_float32_matmul_uses_torchs_newer_api_where_the_process_does():
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = matmul.fp32_precision, conv.fp32_precision
    try:
        matmul.fp32_precision = conv.fp32_precision = "tf32"  # torch's newer API: the old flags now raise when read
        with pytest.raises(RuntimeError, match="mix of the legacy and new APIs"):
            torch.backends.cuda.matmul.allow_tf32  # noqa: B018
        torch.backends.mkldnn.matmul.fp32_precision = "bf16"  # a CPU's oneDNN matmuls in bf16
        with float32_matmul():
            assert (matmul.fp32_precision, conv.fp32_precision) == ("ieee", "ieee")
            assert torch.backends.mkldnn.matmul.fp32_precision == "ieee"
        assert (matmul.fp32_precision, conv.fp32_precision) == ("tf32", "tf32")
        assert torch.backends.mkldnn.matmul.fp32_precision == "bf16"
    finally:
        matmul.fp32_precision, conv.fp32_precision = saved  # "none" makes the old flags readable again
        torch.backends.mkldnn.matmul.fp32_precision = "none"
    assert isinstance(torch.backends.cuda.matmul.allow_tf32, bool)


def _bundle(tmp_path, device):
    space = get_space("af-tiny")
    spec = ProbeSpec(BatchSpec("digits", image_size=None), conditions=("data", "heads"))
    archs = [space.sample(random.Random(s)) for s in range(5)]
    fill(space, archs, [spec], StatsCache(tmp_path / str(device)), progress=False, device=device)
    return load_bundle(space, archs, spec, StatsCache(tmp_path / str(device)))


@pytest.mark.skipif(NO_GPU, reason="needs a CUDA GPU")
def test_statistics_and_programs_on_the_gpu_match_the_cpu(tmp_path):
    cpu, gpu = _bundle(tmp_path, "cpu"), _bundle(tmp_path, "cuda")
    for name in cpu.names:
        assert gpu.tensors[name].device.type == "cpu"  # the cache holds CPU tensors whatever the device
        assert torch.allclose(gpu.tensors[name], cpu.tensors[name], rtol=1e-3, atol=1e-5), name
    program = parse("agg_sum_all(u_mul(fro(gW), mean(h.Ae)))", build_pset(cpu.names, sorted(cpu.groups)))
    on_cpu, on_gpu = Evaluator(cpu)(program), Evaluator(cpu.to("cuda"))(program)
    assert np.allclose(on_gpu, on_cpu, rtol=1e-5)  # the same statistics, evaluated on either device
    probed_on_gpu = Evaluator(gpu.to("cuda"))(program)  # the GPU's own statistics, evaluated there
    assert np.allclose(probed_on_gpu, on_cpu, rtol=1e-3)


def test_a_bundle_moved_and_subset_keeps_its_values(tmp_path):
    bundle = _bundle(tmp_path, "cpu")
    moved = bundle.to(resolve_device("auto"))
    program = parse("agg_mean_msa(mean(h.Ah))", build_pset(bundle.names, sorted(bundle.groups)))
    assert np.allclose(Evaluator(moved)(program), Evaluator(bundle)(program), rtol=1e-6)
    picked = moved.subset([3, 1])
    assert picked.ids == (bundle.ids[3], bundle.ids[1])
    assert np.allclose(Evaluator(picked)(program), Evaluator(bundle)(program)[[3, 1]], rtol=1e-6)


@pytest.mark.skipif(NO_GPU, reason="needs a CUDA GPU")
def test_discovery_on_the_gpu_scores_programs_as_the_cpu_does(tmp_path):
    from synthetic import planted_tasks

    from gp_proxy.discovery import DiscoveryConfig, discover
    from gp_proxy.objective import Objective

    tasks, config = planted_tasks(), DiscoveryConfig(iterations=4, population=12, seed=2)
    found = discover(tasks, config, tmp_path, progress=False, device="cuda")
    on_cpu, on_gpu = Objective(tasks), Objective(tasks).to("cuda")
    for tree in found.halloffame:
        assert tree.fitness.values[0] == on_gpu(tree)[0]  # the search's fitness is the GPU's
        assert abs(on_gpu(tree)[0] - on_cpu(tree)[0]) <= 0.002, str(tree)


@pytest.mark.skipif(NO_GPU, reason="needs a CUDA GPU")
def test_statistics_pickled_on_the_gpu_come_back_on_it():
    import pickle

    from synthetic import planted_tasks

    bundle = planted_tasks()[0].bundle
    back = pickle.loads(pickle.dumps(bundle.to("cuda")))
    assert back.block.device.type == "cuda" and all(t.is_cuda for t in back.tensors.values())
    assert all(torch.equal(back.tensors[k].cpu(), bundle.tensors[k]) for k in bundle.tensors)


@pytest.mark.parametrize(
    "device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(NO_GPU, reason="needs a CUDA GPU"))]
)
def test_probes_and_programs_keep_float32_matmuls_whatever_the_process_set(tmp_path, device):
    """`torch.set_float32_matmul_precision("medium")` gives a GPU's float32 matmuls TF32, and a CPU's
    bf16 where oneDNN has AMX or AVX512-BF16 (as this machine's CPU does): probes and programs keep
    float32 all the same, and the process keeps its setting."""
    saved = torch.get_float32_matmul_precision()
    try:
        exact = _bundle(tmp_path / "highest", device)
        program = parse("agg_sum_all(fro(matmul(gram(W), gW)))", build_pset(exact.names, sorted(exact.groups)))
        scores = Evaluator(exact.to(device))(program)
        torch.set_float32_matmul_precision("medium")  # TF32 (or bf16) matmuls for the rest of the process
        medium = _bundle(tmp_path / "medium", device)
        assert torch.get_float32_matmul_precision() == "medium"
        assert np.array_equal(Evaluator(exact.to(device))(program), scores)
        for name in exact.names:  # a GPU's backward kernels are not all deterministic: to float tolerance there
            same = torch.equal if device == "cpu" else lambda a, b: torch.allclose(a, b, rtol=1e-4, atol=1e-7)
            assert same(medium.tensors[name], exact.tensors[name]), name
    finally:
        torch.set_float32_matmul_precision(saved)


def test_float32_matmul_keeps_a_process_precision_of_medium_readable_and_restores_it():
    saved = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        with float32_matmul():
            assert torch.get_float32_matmul_precision() == "highest"
            assert torch.backends.mkldnn.matmul.fp32_precision == "ieee" and not torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "medium" and torch.backends.cudnn.allow_tf32
        assert torch.backends.mkldnn.matmul.fp32_precision == "bf16"
    finally:
        torch.set_float32_matmul_precision(saved)


@pytest.mark.skipif(NO_GPU, reason="needs a CUDA GPU")
def test_a_probe_on_the_gpu_waits_for_it_once_per_kind_of_statistic():
    """Synchronising CUDA calls of the data and minibatch probes of a built network, after a warm-up
    (which copies the sketch indices over): one per statistic copied back (7 + 2), not one per sketch."""
    import warnings

    from vit_space.probe.hooks import probe, probe_minibatches
    from vit_space.probe.networks import batch_of

    space = get_space("autoformer")
    model = space.build(space.sample(random.Random(0)), num_classes=100, img_size=224).cuda()
    images, labels = (t.cuda() for t in batch_of(BatchSpec("c100", "skimage", 8, 0)))

    def both_probes() -> None:
        probe(model, images, lambda logits: torch.nn.functional.cross_entropy(logits, labels))
        probe_minibatches(model, images, labels, 4)

    both_probes()
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            both_probes()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    synced = [str(w.message) for w in caught if "called a synchronizing CUDA operation" in str(w.message)]
    assert 0 < len(synced) <= 7 + 2, synced[:3]


def test_device_check_reports_a_failed_section_in_one_line_and_runs_the_next_ones(tmp_path, monkeypatch):
    """A GPU is lent for minutes: one section that fails (here the probe, then the cache) must not
    cost the sections after it. The training section runs for real on the CPU."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    check = importlib.import_module("device_check")

    def out_of_memory(*args):
        raise RuntimeError("CUDA out of memory (simulated)")

    def unwritable(*args):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(check, "probe_rows", out_of_memory)
    monkeypatch.setattr(check, "cache_tasks", unwritable)
    monkeypatch.setattr(check, "fidelity_rows", lambda device, count: [f"| autoformer | {count} | 1 | 1 | 1 | ok |"])
    out = tmp_path / "report.md"
    argv = ["device_check.py", "--device", "cpu", "--archs", "3", "--fidelity-archs", "3", "--scale", "3"]
    monkeypatch.setattr(sys, "argv", [*argv, "--programs", "1", "--step-batch", "1", "--out", str(out)])
    monkeypatch.setattr(check.signal, "signal", lambda *args: None)  # pytest keeps its own SIGTERM handler
    with pytest.raises(SystemExit, match=rf"^device_check: failed: Probe and agreement, Cache \(see {out}\)$"):
        check.main()
    report = out.read_text()
    assert "Probe and agreement: failed on this run (RuntimeError: CUDA out of memory (simulated))." in report
    assert "Cache: failed on this run (OSError: disk full (simulated))." in report
    assert "Discovery: not run (no cache to score programs on)." in report
    assert "| autoformer | 3 | 1 | 1 | 1 | ok |" in report  # the sections after the failures ran
    assert re.search(r"\| af-tiny on digits, 50 steps \| [\d.]+ \| [\d.]+ \| [\d.]+x \| [\d.]+ / [\d.]+ \|", report)
    assert "| AutoFormer-Ti, one step at 224 px, batch 1 |" in report and "| 300 |" in report
    assert "whole check" in report and "later sections missing" not in report


@pytest.mark.slow
def test_device_check_runs_every_section_for_real_on_the_cpu(tmp_path, monkeypatch, capsys):
    """The dry run, nothing replaced: what a GPU machine runs, at the smallest sizes."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    check = importlib.import_module("device_check")
    out = tmp_path / "report.md"
    argv = ["device_check.py", "--device", "cpu", "--archs", "3", "--fidelity-archs", "3", "--scale", "3"]
    monkeypatch.setattr(sys, "argv", [*argv, "--programs", "5", "--step-batch", "1", "--out", str(out)])
    monkeypatch.setattr(check.signal, "signal", lambda *args: None)  # pytest keeps its own SIGTERM handler
    check.main()  # returns: every section ran and the CPU agrees with itself
    report = out.read_text()
    assert "failed on this run" not in report and "whole check" in report
    agreement = re.findall(r"\| (autoformer|pit) \| (\w+) \| 3 \| ([-\d.]+) \| ([\d.e+-]+) \| ok \|", report)
    assert len(agreement) == 8 and {tau for *_, tau, _ in agreement} == {"1.000"}  # the same device twice
    assert re.search(r"ViT-Bench-101-sized cache: 18 probes .* \| [\d.]+ min \| <= 2 min \|", report)
    try:  # the benchmark's own architectures where its file is found (CI), else seeded samples
        first = load_bench("pit").archs[:3]
        assert "ViT-Bench-101's own architectures" in report
        assert [a["depth"] for a in check.cache_archs("pit", 3)[0]] == [a["depth"] for a in first]
    except AutoproxError:
        assert "seeded samples (no benchmark file)" in report
    assert re.search(r"\| discovery, one pass per space.* \| [\d.]+ \| [\d.]+ \| >= 500 \|", report)
    assert re.search(r"\| discovery, one pass per task.* \| [\d.]+ \| [\d.]+ \| none \(the GPU's target", report)
    probe = r"\| (autoformer|pit) \| 3 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+x \|"  # every network timed
    assert len(re.findall(probe, report)) == 2
    fidelity = r"\| (autoformer|pit) \| 3 \| [-\d.]+ \| [-\d.]+ \| [-\d.]+ \| (ok|BELOW 0.95) \|"
    assert len(re.findall(fidelity, report)) == 2
    step = re.search(r"\| AutoFormer-Ti, one step at 224 px, batch 1 \| ([\d.e-]+) \| ([\d.e-]+) \| [\d.]+x \|", report)
    assert step and float(step[1]) > 0
    estimate = report[report.index("| workers |") :]
    rows = re.findall(r"^\| (\d+) \| [\d,.]+ \| ([\d,.]+) \|$", estimate, flags=re.M)
    days = {int(n): float(d.replace(",", "")) for n, d in rows}
    assert sorted(days) == [1, 8, 64, 300]
    # 15,000,000 steps of batch 1 per run; 300 runs one after another on one worker, 38 in turn on 8, one on 300
    assert days[1] == pytest.approx(300 * 15_000_000 * float(step[2]) / 86400, rel=0.01)
    assert days[8] == pytest.approx(days[1] * 38 / 300, rel=0.01)
    assert days[300] == pytest.approx(days[1] / 300, rel=0.01)
