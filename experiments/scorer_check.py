"""The exported scorer against autoprox: `score(model, images, labels)` of an exported Python proxy,
run in a fresh interpreter that cannot import autoprox, on ViT-Bench-101 networks and timm models.

Two proxies cover every condition a file can export (`PROXIES`: data with attention probabilities,
minibatch and heads; data, noise and synflow). Each scores `--archs` AutoFormer networks of
ViT-Bench-101 (sampled from the space where the benchmark is not found) and the timm models
`--timm` at `--image-size` px on the c100 skimage batch (`--batch` images); autoprox scores the
same networks with `proxy_scores`. Reported: the largest relative difference per group.

    python experiments/scorer_check.py --out results/scorer_check.md
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import torch

from gp_proxy import SavedProxy, table, write_report
from vit_space import BatchSpec, ProbeSpec, StatsCache, fill, get_space, load_bench, proxy_scores
from vit_space.probe.cache import load_bundle
from vit_space.proxies.export import export_file

PROXIES = {  # expression, conditions
    "main": (
        "s_add(agg_sum_all(u_mul(fro(gW), mean(A))), s_add(agg_mean_msa(u_mul(mean(h.Ae), std(h.Ah))), "
        "agg_sum_all(u_div(fro(mb.gW), fro(mb.sgW)))))",
        ("data", "minibatch", "heads"),
    ),
    "others": ("s_add(agg_sum_mlp(l1(noise.gX)), agg_sum_all(fro(sf.gW)))", ("data", "noise", "synflow")),
}
TIMM = ["deit_tiny_patch16_224", "deit_tiny_distilled_patch16_224", "vit_tiny_patch16_224", "pit_ti_224"]
TIMM += ["eva02_tiny_patch14_224"]

FRESH = """
import importlib.util, json, sys
sys.modules["gp_proxy"] = sys.modules["vit_space"] = None  # this interpreter cannot import autoprox
modules = {}
for key, path in json.loads(sys.argv[1]).items():
    spec = importlib.util.spec_from_file_location(f"exported_{key}", path)
    modules[key] = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(modules[key])
del sys.modules["gp_proxy"], sys.modules["vit_space"]  # autoprox only builds the networks and batches below
from vit_space.data.batches import BatchSpec
from vit_space.probe.networks import batch_of, build_seeded
from vit_space.spaces import get_space
import torch
torch.set_num_threads(json.loads(sys.argv[3]))  # the caller's: float32 sums depend on the thread count
out = {}
for key, name, archs, size, batch_size in json.loads(sys.argv[2]):
    space, batch = get_space(name), BatchSpec("c100", "skimage", batch_size, 0, size)
    images, labels = batch_of(batch)
    out[f"{key} {name}"] = [modules[key].score(build_seeded(space, a, batch), images, labels) for a in archs]
    print(f"exported {key}: scored {len(archs)} {name} networks", file=sys.stderr, flush=True)
print(json.dumps(out))
"""


def exported_proxies(folder: Path, batch: int) -> tuple[dict[str, SavedProxy], dict[str, Path]]:
    """The `PROXIES` as saved proxies (names and groups from one probed AutoFormer) and their exported files."""
    space, proxies, files = get_space("autoformer"), {}, {}
    for key, (expression, conditions) in PROXIES.items():
        spec = ProbeSpec(BatchSpec("c100", "skimage", batch, 0, 32), conditions=conditions)
        archs = [space.sample(random.Random(0))]
        fill(space, archs, [spec], StatsCache(folder / "cache"), progress=False)
        bundle = load_bundle(space, archs, spec, StatsCache(folder / "cache"))
        proxies[key] = SavedProxy(expression, bundle.names, sorted(bundle.groups), spec.as_dict())
        files[key] = export_file(proxies[key], "python", folder / f"{key}.py")
    return proxies, files


def fresh_scores(files: dict[str, Path], targets: list[tuple]) -> dict[str, list[float]]:
    """Scores by the exported files in a fresh interpreter that cannot import autoprox: per target
    (proxy key, space name, architectures, image size, batch size), under "KEY SPACE". It runs with
    this process's torch thread count, as float32 sums (synflow's above all) change with it; its
    progress lines go to stderr."""
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FRESH), json.dumps({k: str(v) for k, v in files.items()}),
         json.dumps(targets), json.dumps(torch.get_num_threads())],
        stdout=subprocess.PIPE, text=True, check=True,
    )  # fmt: skip
    return json.loads(run.stdout.splitlines()[-1])


def autoprox_scores(proxy: SavedProxy, target: tuple, cache: StatsCache) -> np.ndarray:
    _, name, archs, size, batch = target
    spec = ProbeSpec(BatchSpec("c100", "skimage", batch, 0, size))
    return proxy_scores(proxy, get_space(name), archs, spec, cache, progress=False).values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--timm", default=",".join(TIMM))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", default="results/scorer_check.md")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="scorer_check_"))
    proxies, files = exported_proxies(folder, args.batch)
    try:
        archs, where = list(load_bench("autoformer").archs)[: args.archs], "ViT-Bench-101's first"
    except Exception:  # no benchmark here: the same space, sampled
        archs, where = [get_space("autoformer").sample(random.Random(s)) for s in range(args.archs)], "sampled"
    names = args.timm.split(",")
    targets = [(key, "autoformer", archs, args.image_size, args.batch) for key in PROXIES] + [
        (key, f"timm:{args.timm}", [{"timm": n} for n in names], args.image_size, args.batch) for key in PROXIES
    ]
    scores = fresh_scores(files, targets)
    rows, cache = [], StatsCache(folder / "cache")
    for target in targets:
        key, name = target[0], target[1]
        expected = autoprox_scores(proxies[key], target, cache)
        print(f"autoprox {key}: scored {len(target[2])} {name} networks", flush=True)
        worst = float(np.max(np.abs(np.array(scores[f"{key} {name}"]) / expected - 1)))
        rows.append(f"| `{PROXIES[key][0]}` | {', '.join(PROXIES[key][1])} | {name} | {len(target[2])} | {worst:.1e} |")
    write_report(
        args.out,
        "The exported scorer against autoprox",
        f"python experiments/scorer_check.py --archs {args.archs} --timm {args.timm} --image-size {args.image_size} "
        f"--batch {args.batch} --out {args.out}",
        f"Networks: {where} {args.archs} AutoFormers and {len(names)} timm models, {args.image_size} px, the c100 "
        f"skimage batch of {args.batch} images. The exported files ran in a fresh interpreter in which importing "
        "autoprox fails; autoprox scored the same networks with `proxy_scores`; both with "
        f"{torch.get_num_threads()} torch threads.",
        table(["proxy", "conditions", "networks", "count", "largest relative difference"], rows),
    )
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
