"""Every proxy a user can rank architectures with, and the cache of scores that need own passes.

Three kinds, one interface (`proxy_scores`):
- analytic: parameter count and MACs, from the space's formulas (no model built);
- program: expressions of the proxy language over the probe's cached statistics (the known
  proxies of `gp_proxy.library`, or a saved proxy file), evaluated on the whole set at once;
- pass: `vit_space.proxies.zero_cost` functions run on the model built with the probe's seeded init and
  batch; their scores and wall times are cached per (architecture, batch) next to the statistics.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from gp_proxy.atomic import write_text
from gp_proxy.ensemble import ENSEMBLE_FORMAT, SavedEnsemble, load_ensemble, mean_rank
from gp_proxy.errors import AutoproxError
from gp_proxy.library import KNOWN_PROXIES
from gp_proxy.primitives import build_pset
from gp_proxy.program import Evaluator, parse
from gp_proxy.stats import StatsBundle
from gp_proxy.store import SavedProxy, json_safe, load_proxy, read_json
from vit_space.bench.benchmark import load_bench
from vit_space.data.batches import BatchSpec, get_dataset
from vit_space.device import float32_matmul, resolve_device
from vit_space.probe.cache import ProbeSpec, StatsCache, digest, fill, load_bundle
from vit_space.probe.networks import (
    attention_kernel,
    attention_key,
    attention_note,
    batch_digest,
    batch_of,
    build_seeded,
    built_ahead,
    same_probe,
)
from vit_space.proxies.zero_cost import PASS_PROXIES
from vit_space.spaces import Arch, Space, get_space

SCORES_VERSION = 1
ANALYTIC = {
    "params": "parameter count of the built model (with the data set's head)",
    "flops": "multiply-accumulates of one forward pass of one image (MACs)",
}


def catalogue() -> dict[str, tuple[str, str]]:
    """Known proxy names -> (kind, one-line description), in report order."""
    out = {name: ("analytic", text) for name, text in ANALYTIC.items()}
    out |= {name: ("program", p.description) for name, p in KNOWN_PROXIES.items()}
    out |= {name: ("pass", " ".join((fn.__doc__ or "").split("\n\n")[0].split())) for name, fn in PASS_PROXIES.items()}
    return out


Proxy = str | SavedProxy | SavedEnsemble  # a known name, a saved proxy, or an ensemble of saved proxies


def resolve_proxy(name_or_path: str) -> Proxy:
    """A known proxy name, or a saved proxy or ensemble file (`*.json` or an existing path)."""
    if name_or_path in catalogue():
        return name_or_path
    if name_or_path.endswith(".json") or Path(name_or_path).exists():
        payload = read_json(name_or_path, "proxy")
        if isinstance(payload, dict) and payload.get("format") == ENSEMBLE_FORMAT:
            return load_ensemble(name_or_path)
        return load_proxy(name_or_path)
    raise AutoproxError(f"unknown proxy {name_or_path!r}; known: {', '.join(catalogue())}, or a saved PROXY.json")


def proxy_label(proxy: Proxy) -> str:
    """A proxy's name, or its expression."""
    return proxy if isinstance(proxy, str) else proxy.expression


def with_source(proxy: Proxy, source: str | None) -> Proxy:
    """A saved proxy (or every member of an ensemble) whose recorded image source is replaced by
    `source`; a known name stays as it is."""
    if not source or isinstance(proxy, str):
        return proxy
    if isinstance(proxy, SavedEnsemble):
        return replace(proxy, members=[with_source(m, source) for m in proxy.members])
    return replace(proxy, probe={**proxy.probe, "source": source})  # the key ProbeSpec.as_dict writes


class ScoreCache:
    """Pass-proxy scores, one JSON file per (space, architecture, batch): `{proxy: score}` and the
    seconds each took. Lives in the statistics cache folder, under `_scores/`."""

    def __init__(self, stats_cache: StatsCache):
        self.root = stats_cache.root / "_scores"

    @staticmethod
    def key(space: Space, arch: Arch, batch: BatchSpec) -> dict:
        """The key of one file; it names unfused attention where timm's is switched off (`attention_key`)."""
        return {
            "format": SCORES_VERSION,
            "space": space.name,
            "arch": space.to_json(arch),
            "batch": batch.key(),
            **attention_key(),
        }

    def path(self, key: dict) -> Path:
        return self.root / key["space"] / f"{digest(key)}.json"

    def load(self, key: dict) -> dict:
        """{"scores": {...}, "seconds": {...}} for `key` (empty when absent); corrupt files are refused."""
        path = self.path(key)
        if not path.is_file():
            return {"scores": {}, "seconds": {}}
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            ok = payload["key"] == key and all(isinstance(payload[k], dict) for k in ("scores", "seconds"))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise AutoproxError(
                f"score cache file {path} is corrupt ({type(e).__name__}); delete it to recompute"
            ) from e
        if not ok:
            raise AutoproxError(f"score cache file {path} holds another entry than its name says; delete it")
        payload["scores"] = {k: float("nan") if v is None else float(v) for k, v in payload["scores"].items()}
        return payload

    def save(self, key: dict, entry: dict) -> None:
        """Merge `entry` into the file on disk (another process may have added scores meanwhile)."""
        on_disk = self.load(key)
        scores, seconds = on_disk["scores"] | entry["scores"], on_disk["seconds"] | entry["seconds"]
        payload = {"key": key, "scores": json_safe(scores), "seconds": seconds}
        write_text(self.path(key), json.dumps(payload, sort_keys=True) + "\n")


def measure_pass(
    space: Space,
    arch: Arch,
    batch: BatchSpec,
    names: Sequence[str],
    device: str | torch.device,
    model: nn.Module | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """One architecture's scores and seconds of the pass proxies `names`, on `device`, on its seeded
    build (`model` when given, else built here; also a Dask task)."""
    device = resolve_device(device)
    if model is None:
        model = build_seeded(space, arch, batch, device)
    images, labels = (t.to(device) for t in batch_of(batch))
    scores, seconds = {}, {}
    for name in names:
        t0 = time.perf_counter()
        with float32_matmul():
            scores[name] = float(PASS_PROXIES[name](model, images, labels, batch.seed))
        seconds[name] = time.perf_counter() - t0
        model.zero_grad(set_to_none=True)
    return scores, seconds


def _measure_task(
    space: Space, arch: Arch, batch: BatchSpec, names: Sequence[str], device: str, batch_sha: str, attention: str
):
    """A worker's task: `measure_pass`, once its probe batch has the client's sha256 `batch_sha` and
    its attention kernel is the client's `attention`."""
    same_probe(batch, batch_sha, attention)
    return measure_pass(space, arch, batch, names, device)


def pass_scores(
    space: Space,
    archs: Sequence[Arch],
    batch: BatchSpec,
    names: Sequence[str],
    cache: StatsCache,
    compute_missing: bool = True,
    progress: bool = True,
    device: str | torch.device = "cpu",
    client=None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Scores and seconds, each name -> (A,), of pass proxies `names`; computes what is missing on
    `device`, or on the workers of a Dask `client` (one task per architecture), and caches it (or
    raises `AutoproxError` if not `compute_missing`).

    Safe to interrupt: every architecture's scores are written (by this process) as soon as they are computed.
    """
    unknown = [n for n in names if n not in PASS_PROXIES]
    if unknown:
        raise AutoproxError(f"unknown pass proxies {unknown}; known: {', '.join(PASS_PROXIES)}")
    store = ScoreCache(cache)
    keys = [store.key(space, arch, batch) for arch in archs]
    entries = [store.load(key) for key in keys]
    todo = [(i, [n for n in names if n not in e["scores"]]) for i, e in enumerate(entries)]
    todo = [(i, missing) for i, missing in todo if missing]
    if todo and not compute_missing:
        i, missing = todo[0]
        raise AutoproxError(
            f"architecture {space.arch_hash(archs[i])} has no cached {', '.join(missing)} "
            f"scores for {batch.key()}{attention_note()} in {store.root}; compute them with `autoprox rank` "
            "without --cached-only"
        )
    if client is not None:
        from vit_space.cluster import run_all

        checks = (batch_digest(batch), attention_kernel())
        jobs = [(space, archs[i], batch, missing, device, *checks) for i, missing in todo]
        results = ((todo[j][0], result) for j, result in run_all(client, _measure_task, jobs, "proxies", progress))
    else:  # on a GPU the next network is built while the current one is scored
        device = resolve_device(device)
        build = lambda job: build_seeded(space, archs[job[0]], batch, device)  # noqa: E731
        models = built_ahead(build, todo, ahead=device.type != "cpu")
        bar = tqdm(todo, desc=f"proxies {batch.dataset}", unit="arch", disable=not progress)
        results = ((i, measure_pass(space, archs[i], batch, left, device, m)) for (i, left), m in zip(bar, models))
    for i, (scores, seconds) in results:
        entries[i]["scores"] |= scores
        entries[i]["seconds"] |= seconds
        store.save(keys[i], entries[i])
    return (
        {n: np.array([e["scores"][n] for e in entries], dtype=np.float64) for n in names},
        {n: np.array([e["seconds"][n] for e in entries], dtype=np.float64) for n in names},
    )


@dataclass(frozen=True)
class Scores:
    """One proxy's scores (A,) on one batch, and its wall time per architecture in seconds
    (for programs: evaluation from the cache, the probe not included)."""

    values: np.ndarray
    seconds_per_arch: float


def proxy_scores(
    proxy: Proxy,
    space: Space,
    archs: Sequence[Arch],
    spec: ProbeSpec,
    cache: StatsCache,
    compute_missing: bool = True,
    progress: bool = True,
    device: str | torch.device = "cpu",
    client=None,
) -> Scores:
    """Scores of a known proxy name or a saved proxy on `archs`, measured on `spec`'s batch; networks
    and programs run on `device` (with a Dask `client`, missing statistics are probed on its workers).

    Saved proxies use their own statistics spec (batch source, size and seed, sketch, conditions)
    on `spec`'s data set, at `spec`'s image size (the scored networks' input). An ensemble's
    scores are its members' mean ranks among `archs` (relative to the set scored). Statistics and
    pass scores missing from `cache` are computed (`compute_missing`) or reported as an error.
    """
    if isinstance(proxy, SavedEnsemble):
        members = [
            proxy_scores(m, space, archs, spec, cache, compute_missing, progress, device, client) for m in proxy.members
        ]
        return Scores(mean_rank([m.values for m in members]), sum(m.seconds_per_arch for m in members))
    spec = spec.for_space(space)
    classes, size = get_dataset(spec.batch.dataset).num_classes, spec.batch.image_size
    if isinstance(proxy, str) and proxy in ANALYTIC:
        t0 = time.perf_counter()
        count = space.num_params if proxy == "params" else space.macs
        values = np.array([count(a, classes, size) for a in archs], dtype=np.float64)
        return Scores(values, (time.perf_counter() - t0) / len(archs))
    if isinstance(proxy, str) and proxy in PASS_PROXIES:
        scores, seconds = pass_scores(
            space, archs, spec.batch, [proxy], cache, compute_missing, progress, device, client
        )
        return Scores(scores[proxy], float(np.nanmean(seconds[proxy])))
    if isinstance(proxy, SavedProxy):
        saved = ProbeSpec.from_dict(proxy.probe, spec.batch.dataset)
        spec = replace(saved, batch=replace(saved.batch, image_size=spec.batch.image_size))
        expression, names, groups = proxy.expression, proxy.names, proxy.groups
    else:
        expression, names, groups = KNOWN_PROXIES[proxy].expression, None, None
    if compute_missing:
        fill(space, archs, [spec], cache, progress=progress, device=device, client=client)
    bundle = load_bundle(space, archs, spec, cache).to(resolve_device("cpu" if client is not None else device))
    lacking = sorted(set(names or []) - set(bundle.names))
    if lacking:
        raise AutoproxError(
            f"the proxy reads statistics {lacking} that conditions {','.join(spec.conditions)} do not provide"
        )
    t0 = time.perf_counter()
    tree = parse(expression, build_pset(bundle.names, list(groups or bundle.groups)))
    values = Evaluator(bundle, memo_bytes=0)(tree).astype(np.float64)
    return Scores(values, (time.perf_counter() - t0) / len(archs))


def saved_proxy_bundles(
    proxy: SavedProxy,
    benches: Sequence[str],
    cache: StatsCache,
    compute_missing: bool = False,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> list[StatsBundle]:
    """The statistics a saved proxy reads, under its own spec, for every architecture of each
    benchmark and each of its data sets (KD ones where there are); with `compute_missing`, those
    missing are probed on `device` first. The bundles are on the CPU."""
    bundles = []
    for name in benches:
        bench = load_bench(name)
        space = get_space(bench.space)
        archs = [space.validate(a) for a in bench.archs]
        for dataset in bench.datasets(bench.default_kind()):
            spec = ProbeSpec.from_dict(proxy.probe, dataset)
            if compute_missing:
                fill(space, archs, [spec], cache, progress=progress, device=device)
            bundles.append(load_bundle(space, archs, spec, cache))
    return bundles
