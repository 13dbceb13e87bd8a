"""The GPU path in one short run, each figure next to the CPU's from the same run (issue 15).

  probe       data probes per second of AutoFormer and PiT networks at 224 px, batch 16; on the
              device with each network built in line and built ahead (as `fill` does on a GPU);
  agreement   Kendall tau between the CPU's and the device's scores of the same networks under
              programs over the probe statistics and the NASWOT pass proxy (target >= 0.99);
  cache       a ViT-Bench-101-sized cache on the device: `--scale` AutoFormers and as many PiTs
              (ViT-Bench-101's own where its files are found, e.g. under AUTOPROX_BENCH_DIR, else
              seeded samples of the spaces), each probed on the c100, flowers and chaoyang batches
              (600 probes at the default; target <= 2 min). The CPU figure is the CPU probe time
              times the probe count: an estimate from the probe row, not run (it would take hours);
  discovery   candidates per second, random programs scored on all of that cache's statistics held
              on the device, and on the CPU (the first 100 of them; target >= 500 per second on
              the device), each space's data sets scored in one pass (stacked, `Objective`'s
              default on a GPU) and one pass per task (its default on a CPU);
  fidelity    the sketch fidelity check on the device: SNIP, grad-norm and weight-L2 from 32x32
              sketches vs full tensors, Kendall tau over `--fidelity-archs` networks per space
              (target >= 0.95, as on the CPU in results/sketch_fidelity.md);
  training    50 steps of `train` (an af-tiny network on digits), on the device and on the CPU;
              one AutoFormer-Ti training step at 224 px (batch `--step-batch`) on each, and
              ViT-Bench-101's build (300 runs of 300 epochs) priced with it on N workers.

The architectures are seeded samples of the spaces, the statistics go to a temporary folder
(removed at the end), and accuracies for the discovery tasks are stand-ins (speed does not depend
on them). The report is written after each section, in the order above, so a run cut short
keeps what it measured, and a section that fails is reported in one line while the next ones
still run; the script then exits 1, naming the failed sections, as it does when CPU and device
scores disagree (tau < 0.99). Where torch sees no GPU it prints one line and exits 0; `--device cpu`
runs the same on the CPU (a dry run).

    python benchmarks/device_check.py --out results/device_check.md
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from discovery_throughput import fresh_rate  # a sibling script: benchmarks/ is on sys.path when run
from vitbench_scale import EPOCH_IMAGES, EPOCHS, RUNS, autoformer_step, days_on, steps_per_run  # sibling script

from gp_proxy import Task, kendall, table, write_report
from gp_proxy.discovery import task_pset
from gp_proxy.errors import AutoproxError
from gp_proxy.library import KNOWN_PROXIES
from gp_proxy.program import generate
from vit_space import (
    BatchSpec,
    ProbeSpec,
    StatsCache,
    fill,
    get_space,
    load_bench,
    load_images,
    proxy_scores,
    resolve_device,
)
from vit_space.bench.training import Recipe, train
from vit_space.probe.cache import load_bundle
from vit_space.probe.fidelity import PROXIES, both_ways

DATASETS = ("c100", "flowers", "chaoyang")
AGREEMENT_PROXIES = ("snip", "grad_norm", "weight_l2", "naswot")
CPU_PROGRAMS = 100  # the CPU's discovery rate is timed on the first this many programs (it is ~40x slower)


def probe_rows(device: torch.device, count: int, folder: Path) -> tuple[list[str], list[str], float]:
    """Probe rate rows per space, agreement rows, and the CPU's seconds per probe (mean over spaces);
    the statistics go to caches under `folder`."""
    rows, agree, cpu_seconds = [], [], []
    for name in ("autoformer", "pit"):
        space = get_space(name)
        archs = [space.sample(random.Random(seed)) for seed in range(count)]
        spec = ProbeSpec(BatchSpec("c100", "skimage", 16, 0))
        scores = {}
        seconds = {}
        for side, where in (("cpu", torch.device("cpu")), ("device", device)):
            warm = StatsCache(folder / f"{name}_{side}_warm-up")  # kernels loaded for these shapes; not timed
            fill(space, archs, [spec], warm, progress=False, device=where)
            cache = StatsCache(folder / f"{name}_{side}")
            report = fill(space, archs, [spec], cache, False, where, ahead=side == "device")
            seconds[side] = report.seconds / len(archs)
            scores[side] = {
                p: proxy_scores(p, space, archs, spec, cache, progress=False, device=where).values
                for p in AGREEMENT_PROXIES
            }
        inline = fill(space, archs, [spec], StatsCache(folder / f"{name}_inline"), False, device, ahead=False)
        cpu, dev, inline = seconds["cpu"], seconds["device"], inline.seconds / len(archs)
        cpu_seconds.append(cpu)
        rows.append(f"| {name} | {len(archs)} | {1 / cpu:.2f} | {1 / inline:.2f} | {1 / dev:.2f} | {cpu / dev:.1f}x |")
        for proxy in AGREEMENT_PROXIES:
            tau = kendall(scores["device"][proxy], scores["cpu"][proxy])
            worst = np.max(np.abs(scores["device"][proxy] / scores["cpu"][proxy] - 1))
            verdict = "ok" if tau >= 0.99 else "BELOW 0.99"
            agree.append(f"| {name} | {proxy} | {len(archs)} | {tau:.3f} | {worst:.2e} | {verdict} |")
    return rows, agree, statistics.mean(cpu_seconds)


def fidelity_rows(device: torch.device, count: int) -> list[str]:
    """Kendall tau of each sketched proxy vs its full value over `count` seeded networks per space."""
    rows = []
    for name in ("autoformer", "pit"):
        space = get_space(name)
        archs = [space.sample(random.Random(2000 + seed)) for seed in range(count)]
        full, sketched = both_ways(space, archs, BatchSpec("c100", "skimage", 16, 0), [32], device)
        taus = [kendall(np.array(sketched[32][p]), np.array(full[p])) for p in PROXIES]
        verdict = "ok" if min(taus) >= 0.95 else "BELOW 0.95"
        rows.append(f"| {name} | {count} | " + " | ".join(f"{t:.3f}" for t in taus) + f" | {verdict} |")
    return rows


def cache_archs(name: str, scale: int) -> tuple[list[dict], str]:
    """The first `scale` architectures of ViT-Bench-101's space `name` where its file is found
    (`AUTOPROX_BENCH_DIR`, ...), else `scale` seeded samples of the space; and which of the two."""
    space = get_space(name)
    try:
        return [space.validate(a) for a in load_bench(name).archs[:scale]], "ViT-Bench-101's own architectures"
    except AutoproxError:
        return [space.sample(random.Random(1000 + seed)) for seed in range(scale)], "seeded samples (no benchmark file)"


def cache_tasks(device: torch.device, scale: int, folder: Path) -> tuple[list[Task], float, int, str]:
    """The ViT-Bench-101-sized cache probed on `device` into `folder`: its tasks (stand-in accuracies,
    statistics loaded onto `device`), wall time, probes, and where the architectures came from."""
    cache, tasks, probes, start, sources = StatsCache(folder), [], 0, time.perf_counter(), set()
    for name in ("autoformer", "pit"):
        space = get_space(name)
        archs, source = cache_archs(name, scale)
        sources.add(source)
        specs = [ProbeSpec(BatchSpec(d, "skimage", 16, 0)) for d in DATASETS]
        probes += fill(space, archs, specs, cache, progress=True, device=device).computed
        params = np.array([space.num_params(a, 100) for a in archs], dtype=np.float64)
        noise = np.random.default_rng(0).normal(0, params.std() / 2, (len(DATASETS), len(archs)))
        everything = np.arange(len(archs))
        for d, spec in enumerate(specs):
            bundle = load_bundle(space, archs, spec.for_space(space), cache).to(device)
            tasks.append(Task(f"{name}/{spec.batch.dataset}", bundle, params + noise[d], everything, everything[:0]))
    return tasks, time.perf_counter() - start, probes, " / ".join(sorted(sources))


def discovery_rate(tasks: list[Task], programs: int, stacked: bool) -> float:
    """Random programs scored per second on every task, memo cleared before each (the worst case);
    `stacked`: `Objective`'s `stack`."""
    random.seed(0)
    trees = [generate(task_pset(tasks), 1, 3) for _ in range(programs)]
    fresh_rate(tasks, trees[:1], stacked)  # warm-up, not counted
    return fresh_rate(tasks, trees, stacked)


def training_row(device: torch.device) -> str:
    space, data = get_space("af-tiny"), load_images("digits")
    arch = space.sample(random.Random(0))
    recipe = Recipe(steps=50, test_size=300)
    cpu, dev = (train(space, arch, data, recipe, 0, where) for where in (torch.device("cpu"), device))
    return (
        f"| af-tiny on digits, 50 steps | {cpu.seconds:.2f} | {dev.seconds:.2f} | {cpu.seconds / dev.seconds:.1f}x | "
        f"{cpu.top1:.1f} / {dev.top1:.1f} |"
    )


def scale_rows(device: torch.device, batch: int) -> tuple[str, list[str]]:
    """An AutoFormer-Ti training step at 224 px on the CPU and on `device`, and ViT-Bench-101's build
    priced with the device's step on N such devices (`vitbench_scale.days_on`)."""
    cpu, dev = (autoformer_step(batch, device=where) for where in (torch.device("cpu"), device))
    step = f"| AutoFormer-Ti, one step at 224 px, batch {batch} | {cpu:.3g} | {dev:.3g} | {cpu / dev:.1f}x | |"
    return step, [f"| {n} | {days_on(n, cpu, batch):,.1f} | {days_on(n, dev, batch):,.1f} |" for n in (1, 8, 64, RUNS)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (default; skips without a GPU), cuda, cuda:N or cpu")
    parser.add_argument("--archs", type=int, default=8, help="networks per space for the probe and agreement rows")
    parser.add_argument("--fidelity-archs", type=int, default=30, help="networks per space for the fidelity rows")
    parser.add_argument("--scale", type=int, default=100, help="networks per space in the cache row")
    parser.add_argument("--programs", type=int, default=500, help="random programs for the discovery row")
    parser.add_argument("--step-batch", type=int, default=32, help="batch of the AutoFormer-Ti training step")
    parser.add_argument("--out", default="results/device_check.md")
    args = parser.parse_args()
    for option in ("archs", "fidelity_archs", "scale"):
        value = getattr(args, option)
        if value < 3:
            parser.error(f"--{option.replace('_', '-')} must be at least 3 (a Kendall tau needs 3), got {value}")
    for option in ("programs", "step_batch"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1, got {getattr(args, option)}")
    try:
        device = resolve_device(args.device)
    except AutoproxError as e:
        sys.exit(f"device_check: {e}")
    if device.type == "cpu" and args.device == "auto":
        print(f"device_check: skipped, torch sees no CUDA device (torch {torch.__version__})")
        return
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    title = f"Device check: {name} next to the CPU"
    command = (
        f"python benchmarks/device_check.py --device {args.device} --archs {args.archs} "
        f"--fidelity-archs {args.fidelity_archs} --scale {args.scale} --programs {args.programs} "
        f"--step-batch {args.step_batch} --out {args.out}"
    )
    start, sections, measured, failed = time.perf_counter(), [], {}, []
    workload = ["workload", "CPU", str(device), "target"]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a timeout still removes the temporary folder

    def save(*blocks: str, done: bool = False) -> None:
        """Add `blocks` to the report and write it: a run cut short keeps every finished section."""
        sections.extend(blocks)
        print("\n\n".join(blocks), flush=True)
        elapsed = time.perf_counter() - start
        status = f"whole check {elapsed:.0f} s" if done else f"{elapsed:.0f} s so far, later sections missing"
        threads = f"(torch {torch.__version__}, CPU with {torch.get_num_threads()} threads; {status})"
        write_report(args.out, title, command, threads, *sections, echo=False)

    def run(what: str, section: Callable[[], list[str]]) -> None:
        """Save `section`'s blocks; a section that raises is saved as one line and the next ones still
        run, so a GPU lent for a few minutes loses only that section."""
        try:
            blocks = section()
        except Exception as e:  # noqa: BLE001 (any failure: reported, not fatal)
            traceback.print_exc()
            blocks = [f"{what}: failed on this run ({type(e).__name__}: {e})."]
            failed.append(what)
        save(*blocks)

    def probe_section() -> list[str]:
        probe, agree, measured["cpu_probe"] = probe_rows(device, args.archs, Path(folder))
        if any("BELOW" in row for row in agree):
            failed.append("agreement (Kendall tau < 0.99)")
        return [
            "Data probe at 224 px, batch 16 (skimage batch, c100), probes per second, timed after one untimed pass "
            "over the same networks on the same device (so no column pays for loading kernels); "
            f"on {device} each network built in line (build, then probe) and built ahead (`fill`: the next "
            "network's seeded init on the CPU while the current one is probed):",
            table(["space", "networks", "CPU", f"{device}, in line", f"{device}, ahead", "speed-up"], probe),
            "Scores of the same networks from each device's statistics (Kendall tau, and the largest relative "
            "difference of a score):",
            table(["space", "proxy", "networks", "tau", "max relative difference", "target tau >= 0.99"], agree),
        ]

    def cache_section() -> list[str]:
        measured["tasks"], seconds, probes, source = cache_tasks(device, args.scale, Path(folder) / "bench")
        cpu = (
            f"{measured['cpu_probe'] * probes / 60:.2f} min (estimated: CPU probe time x {probes})"
            if "cpu_probe" in measured
            else "n/a (no probe row)"
        )
        row = (
            f"| ViT-Bench-101-sized cache: {probes} probes ({args.scale} AutoFormer + {args.scale} PiT x "
            f"{len(DATASETS)} data sets; {source}) | {cpu} | {seconds / 60:.2f} min | <= 2 min |"
        )
        return [table(workload, [row])]

    def discovery_section() -> list[str]:
        if "tasks" not in measured:
            return ["Discovery: not run (no cache to score programs on)."]
        tasks = measured.pop("tasks")
        cpu_programs, on_cpu = min(args.programs, CPU_PROGRAMS), [replace(t, bundle=t.bundle.to("cpu")) for t in tasks]
        rows = []
        for stacked, way, target in (
            (True, "one pass per space (the default on a GPU)", ">= 500"),
            (False, "one pass per task (on a CPU)", "none (the GPU's target is for its default)"),
        ):
            rate = discovery_rate(tasks, args.programs, stacked)
            cpu_rate = discovery_rate(on_cpu, cpu_programs, stacked)
            rows.append(
                f"| discovery, {way}: random programs per second on all {len(tasks)} tasks (memo cleared; "
                f"statistics on {tasks[0].bundle.block.device} for the device column; the CPU's from the first "
                f"{cpu_programs} of the {args.programs} programs) | {cpu_rate:.1f} | {rate:.1f} | {target} |"
            )
        return [table(workload, rows)]

    def fidelity_section() -> list[str]:
        return [
            f"Sketch fidelity on {device} (32x32 sketches vs full tensors, Kendall tau; c100 batch at 224 px):",
            table(["space", "networks", *PROXIES, "target tau >= 0.95"], fidelity_rows(device, args.fidelity_archs)),
        ]

    def training_section() -> list[str]:
        step, estimate = scale_rows(device, args.step_batch)
        return [
            "Training (`train`, seconds; held-out top-1 % CPU / device; the AutoFormer-Ti step is the fastest of "
            "3 after a warm-up, on random images):",
            table(["run", "CPU (s)", f"{device} (s)", "speed-up", "top-1 CPU / device"], [training_row(device), step]),
            f"ViT-Bench-101's scale priced with that step ({RUNS} runs of {EPOCHS} epochs of {EPOCH_IMAGES:,} "
            f"images, {steps_per_run(args.step_batch):,} steps of batch {args.step_batch} each), each run one task "
            "on one worker, so ceil(runs / workers) runs in turn (data loading, evaluation and the scheduler's "
            "milliseconds per task left out):",
            table(["workers", "days on CPU workers like this one", f"days on {name}s"], estimate),
        ]

    with tempfile.TemporaryDirectory(prefix="device_check_") as folder:
        run("Probe and agreement", probe_section)
        run("Cache", cache_section)
    run("Discovery", discovery_section)
    run("Sketch fidelity", fidelity_section)
    run("Training", training_section)
    save(
        "Programs over statistics used in the agreement rows: "
        + ", ".join(f"{p} = `{KNOWN_PROXIES[p].expression}`" for p in AGREEMENT_PROXIES if p in KNOWN_PROXIES)
        + ".",
        done=True,
    )
    print(f"written: {args.out}")
    if failed:
        sys.exit(f"device_check: failed: {', '.join(failed)} (see {args.out})")


if __name__ == "__main__":
    main()
