"""Build a benchmark by training: every (architecture, data set, seed) run with one recipe.

Finished runs are appended to a journal beside the output (``BENCH.runs.jsonl``: a config line,
then one line per run), so an interrupted build resumes where it stopped and several processes
(`shard` i of n) can fill one benchmark: each append holds an exclusive lock on the journal. A
last line cut off by an interruption is set aside when the build resumes (moved to
``BENCH.runs.jsonl.torn``, with a warning), so the next run starts a line of its own. After every
run the benchmark file is rewritten atomically from the journal, in the ViT-Bench-101 shape every other command reads::

    {"space": ..., "datasets": {...}, "recipe": {...}, "seeds": [...], "noise": {...},
     "records": [{"arch": {...}, "fmnist_base_acc": 81.2, "fmnist_base_seeds": [81.0, 81.4], ...}]}

`*_base_acc` is the mean over seeds, present once every seed of that data set has run.
"""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch
from scipy.stats import kendalltau
from tqdm.auto import tqdm

from gp_proxy.atomic import write_text
from gp_proxy.errors import AutoproxError, AutoproxWarning
from vit_space.bench.benchmark import field_name
from vit_space.bench.training import Recipe, TrainResult, train, validate_fits
from vit_space.data.images import BUILTIN, ImageData, load_images
from vit_space.spaces import Arch, Space, attention_kernel, same_attention

FORMAT = "autoprox-bench/1"


@dataclass(frozen=True)
class BuildPlan:
    """What a build trains: every arch on every data set under every seed, with one recipe."""

    space: Space
    archs: tuple[Arch, ...]
    datasets: tuple[str, ...]  # built-in names or folder paths
    recipe: Recipe
    seeds: tuple[int, ...]

    def as_dict(self) -> dict:
        return {
            "format": FORMAT,
            "space": self.space.name,
            "datasets": [dataset_name(d) for d in self.datasets],
            "recipe": self.recipe.as_dict(),
            "seeds": list(self.seeds),
            "archs": [self.space.arch_hash(a) for a in self.archs],
        }

    def jobs(self) -> list[tuple[Arch, str, int]]:
        return [(a, d, s) for a in self.archs for d in self.datasets for s in self.seeds]


def dataset_name(dataset: str) -> str:
    """The name a data set's fields carry: the built-in name, or a folder's name."""
    return dataset if dataset in BUILTIN else Path(dataset).expanduser().resolve().name


def journal_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".runs.jsonl")


def build_bench(
    plan: BuildPlan,
    out: str | os.PathLike,
    resume: bool = False,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    command: str = "",
    device: str | torch.device = "cpu",
    client=None,
) -> Path:
    """Train the plan's missing runs of `shard` (i, n), every n-th job from the i-th, on `device`; return `out`.

    With a Dask `client` (`vit_space.cluster.connect`) each run is one task on its workers, which
    load the training data themselves (a data folder must be at the same path there); this
    process alone appends each result to the journal as it arrives, so an interrupted or
    resumed build loses at most the runs in flight.
    """
    if not plan.archs:
        raise AutoproxError("nothing to train: no architectures")
    hashes = [plan.space.arch_hash(a) for a in plan.archs]
    if len(set(hashes)) < len(hashes):
        first = next(i for i, h in enumerate(hashes) if hashes.index(h) != i)
        raise AutoproxError(f"architecture {first} repeats architecture {hashes.index(hashes[first])}")
    index, count = shard
    if not 0 <= index < count:
        raise AutoproxError(f"shard must be I/N with 0 <= I < N, got {index}/{count}")
    data = {d: load_images(d, plan.space.img_size) for d in plan.datasets}
    for d in data.values():
        validate_fits(plan.space, d)
    journal = journal_path(out)
    done = _open_journal(journal, plan.as_dict(), resume)
    jobs = [job for i, job in enumerate(plan.jobs()) if i % count == index]
    todo = [(a, d, s) for a, d, s in jobs if (plan.space.arch_hash(a), dataset_name(d), s) not in done]

    def record(arch: Arch, dataset: str, seed: int, result: TrainResult) -> None:
        line = {
            "arch": plan.space.arch_hash(arch),
            "dataset": dataset_name(dataset),
            "seed": seed,
            "top1": result.top1,
            "seconds": round(result.seconds, 3),
            "final_loss": result.final_loss,
        }
        _append(journal, line)
        write_bench(plan, data, journal, out, command)

    desc = f"training {plan.space.name}"
    if client is not None:
        from vit_space.cluster import run_all

        # a folder's absolute path: a worker's working directory is not this one
        where = {d: d if d in BUILTIN else str(Path(d).expanduser().resolve()) for d in plan.datasets}
        kernel = attention_kernel()
        tasks = [
            (plan.space, arch, where[dataset], plan.recipe, seed, str(device), data[dataset].digest, kernel)
            for arch, dataset, seed in todo
        ]
        for position, result in run_all(client, _train_task, tasks, desc, progress):
            record(*todo[position], result)
    else:
        bar = tqdm(todo, desc=desc, unit="run", disable=not progress, initial=len(jobs) - len(todo), total=len(jobs))
        with bar:
            for arch, dataset, seed in bar:
                run = f"{dataset_name(dataset)} seed {seed} {plan.space.arch_hash(arch)[:8]}"
                bar.set_postfix_str(run, refresh=False)
                record(arch, dataset, seed, train(plan.space, arch, data[dataset], plan.recipe, seed, device))
    write_bench(plan, data, journal, out, command)
    return Path(out)


def _train_task(
    space: Space, arch: Arch, dataset: str, recipe: Recipe, seed: int, device: str, data_sha: str, attention: str
) -> TrainResult:
    """A worker's task: one training run, its data loaded (and kept) in the worker; AutoproxError
    unless that data has the client's sha256 `data_sha` and its attention kernel is the client's."""
    from vit_space.cluster import same_data

    data = load_images(dataset, space.img_size)
    same_data(f"copy of the data set {dataset}", data_sha, data.digest)
    same_attention(attention)
    return train(space, arch, data, recipe, seed, device)


def _open_journal(journal: Path, config: dict, resume: bool) -> set[tuple[str, str, int]]:
    """The (arch hash, data set, seed) runs already in `journal`; create it if absent."""
    if not journal.exists():
        journal.parent.mkdir(parents=True, exist_ok=True)
        with open(journal, "w", encoding="utf-8") as f:
            f.write(json.dumps({"config": config}) + "\n")
        return set()
    if not resume:
        raise AutoproxError(f"{journal} exists: pass --resume to continue that build, or choose another --out")
    repair_journal(journal)
    stored, runs = read_journal(journal)
    if stored != config:
        growing = ("archs", "seeds")
        differ = sorted(k for k in set(stored) | set(config) if stored.get(k) != config.get(k) and k not in growing)
        if differ:
            raise AutoproxError(
                f"{journal} belongs to another build (different {', '.join(differ)}); "
                "choose another --out or rerun with that build's settings"
            )
        shrunk = [k for k in growing if not set(stored.get(k, [])) <= set(config[k])]
        if shrunk:
            raise AutoproxError(
                f"{journal} has {' and '.join(shrunk)} this build lacks; a resumed build may add "
                "architectures and seeds, not drop them"
            )
        _append(journal, {"config": config})  # the build grows: record its new extent
    return {(r["arch"], r["dataset"], r["seed"]) for r in runs}


@contextmanager
def _locked(journal: Path, mode: str) -> Iterator[IO]:
    """`journal` opened in `mode` under an exclusive lock, held until it is closed (and flushed)."""
    try:
        with open(journal, mode, encoding=None if "b" in mode else "utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield f
    except OSError as e:
        raise AutoproxError(f"cannot update {journal}: {e.strerror}") from e


def _append(journal: Path, entry: dict) -> None:
    """Append one line to `journal`, whole: one write under the lock."""
    with _locked(journal, "a") as f:
        f.write(json.dumps(entry) + "\n")


def repair_journal(journal: Path) -> None:
    """Set aside a last line an interruption cut off, so the next run is not appended onto it: the
    text after the last newline moves to ``JOURNAL.torn`` (appended), with a warning; a last line
    that is complete but for its newline just gets the newline."""
    with _locked(journal, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        tail = data[end:]
        if not tail.strip():
            return
        try:
            json.loads(tail)
        except ValueError:
            torn = journal.with_name(journal.name + ".torn")
            with open(torn, "ab") as out:
                out.write(tail + b"\n")
            f.truncate(end)
            line = data.count(b"\n") + 1
            warnings.warn(
                f"{journal}: line {line} was cut off by an interruption ({len(tail)} bytes); "
                f"moved it to {torn} and resumed from the complete lines",
                AutoproxWarning,
            )
        else:
            f.write(b"\n")


def read_journal(journal: Path) -> tuple[dict, list[dict]]:
    """(latest config, finished runs) of a journal; a last line cut off by an interruption is ignored
    (`repair_journal` sets it aside before a build appends)."""
    try:
        lines = journal.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise AutoproxError(f"cannot read {journal}: {e}") from e
    entries = []
    for number, line in enumerate(lines[:-1], start=1):  # text after the last newline: a line cut off
        if line.strip():
            entries.append((number, _journal_entry(journal, number, line)))
    if not entries or not isinstance(entries[0][1].get("config"), dict):
        raise AutoproxError(f"{journal} is not a build journal (no config line); delete it to start over")
    configs = [e["config"] for _, e in entries if isinstance(e.get("config"), dict)]
    runs = [e for _, e in entries if "config" not in e]
    keys = {"arch", "dataset", "seed", "top1", "seconds"}
    for number, entry in entries:
        if "config" not in entry and not keys <= set(entry):
            raise AutoproxError(
                f"{journal} is corrupt: line {number} is a run without {sorted(keys - set(entry))}; "
                "delete that line (or the file, to start over)"
            )
    return configs[-1], runs


def _journal_entry(journal: Path, number: int, line: str) -> dict:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as e:
        raise AutoproxError(
            f"{journal} is corrupt: line {number}: {e.msg} at column {e.colno}; "
            "delete that line (or the file, to start over)"
        ) from e
    if not isinstance(entry, dict):
        raise AutoproxError(
            f"{journal} is corrupt: line {number} is not a JSON object; delete that line (or the file, to start over)"
        )
    return entry


def write_bench(
    plan: BuildPlan, data: dict[str, ImageData], journal: Path, out: str | os.PathLike, command: str = ""
) -> None:
    """Assemble the benchmark file from the journal (atomically)."""
    _, runs = read_journal(journal)
    by_key: dict[tuple[str, str], dict[int, dict]] = {}
    for run in runs:
        by_key.setdefault((run["arch"], run["dataset"]), {})[run["seed"]] = run
    names = [dataset_name(d) for d in plan.datasets]
    records = []
    for arch in plan.archs:
        h = plan.space.arch_hash(arch)
        if not any((h, n) in by_key for n in names):
            continue
        num_classes = data[plan.datasets[0]].num_classes
        record = {
            "arch": arch,
            "hash": h,
            "params": plan.space.num_params(arch, num_classes),
            "macs": plan.space.macs(arch, num_classes),
        }
        for name in names:
            per_seed = by_key.get((h, name), {})
            if len(per_seed) == len(plan.seeds):
                record[field_name(name, "base")] = round(float(np.mean([per_seed[s]["top1"] for s in plan.seeds])), 4)
            record[f"{name}_base_seeds"] = {str(s): per_seed[s]["top1"] for s in plan.seeds if s in per_seed}
            record[f"{name}_seconds"] = round(sum(r["seconds"] for r in per_seed.values()), 2)
        records.append(record)
    payload = {
        "format": FORMAT,
        "space": plan.space.name,
        "command": command,
        "datasets": {dataset_name(d): _describe(d, v) for d, v in data.items()},
        "recipe": plan.recipe.as_dict(),
        "seeds": list(plan.seeds),
        "noise": seed_noise(records, names, plan.seeds),
        "records": records,
    }
    write_text(out, json.dumps(payload, indent=1) + "\n")


def _describe(dataset: str, data: ImageData) -> dict:
    return {
        "source": dataset if dataset in BUILTIN else str(Path(dataset).expanduser().resolve()),
        "num_classes": data.num_classes,
        "channels": data.channels,
        "image_size": data.image_size,
        "train_images": len(data.train_labels),
        "test_images": len(data.test_labels),
    }


def seed_noise(records: Sequence[dict], names: Sequence[str], seeds: Sequence[int]) -> dict:
    """Per data set, over every pair of seeds: Kendall tau between the two seeds' accuracy rankings
    and their mean absolute difference (points), on the architectures both seeds have; and the means."""
    noise = {}
    for name in names:
        pairs = []
        for i, first in enumerate(seeds):
            for second in seeds[i + 1 :]:
                both = [
                    (r[f"{name}_base_seeds"][str(first)], r[f"{name}_base_seeds"][str(second)])
                    for r in records
                    if {str(first), str(second)} <= set(r.get(f"{name}_base_seeds", {}))
                ]
                if len(both) >= 3:
                    a, b = np.array(both).T
                    pairs.append(
                        {
                            "seeds": [first, second],
                            "n": len(both),
                            "kendall": round(float(kendalltau(a, b)[0]), 4),
                            "mean_abs_diff": round(float(np.abs(a - b).mean()), 3),
                        }
                    )
        if pairs:
            noise[name] = {
                "pairs": pairs,
                "kendall": round(float(np.mean([p["kendall"] for p in pairs])), 4),
                "mean_abs_diff": round(float(np.mean([p["mean_abs_diff"] for p in pairs])), 3),
            }
    return noise
