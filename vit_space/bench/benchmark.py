"""ViT-Bench-101 ground truth: find, fetch, load and split the AutoFormer / PiT benchmarks.

A benchmark is a list of architectures, each with the top-1 accuracy (%) it reached on
several data sets. Files are either the project's JSON conversion
(``{"space": ..., "records": [{"arch": {...}, "c100_kd_acc": 76.1, ...}, ...]}``) or the
origin ``.pth`` files published with Auto-Prox, read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gp_proxy.errors import AutoproxError, AutoproxWarning
from vit_space.data.batches import DATASETS as KNOWN_DATASETS
from vit_space.data.batches import DatasetInfo, register_dataset
from vit_space.data.paths import cache_root, download, sha256_of
from vit_space.spaces import Space, get_space

BENCH_NAMES = ("autoformer", "pit")
ORIGIN_FILES = {
    "autoformer": ("gt_autoformer.pth", "712ad277546d9f7f565ce07885be7e0b98dcd8d0724fdd1120f595b517436eca"),
    "pit": ("gt_pit.pth", "bdda89841d4105f99ab759e3243e7a2402929ba7a8430dac12a50256aa533bb2"),
}
DEFAULT_URL = "https://raw.githubusercontent.com/lilujunai/Auto-Prox-AAAI24/main/gt_results/"
DATASETS = {"c100": "c100", "flowers": "flower", "chaoyang": "chaoyang"}  # ViT-Bench-101's, with their field stems
KINDS = ("kd", "base")
IMAGENET_FIELD = "imagenet_super_acc"
SHARED_DIR = Path(__file__).resolve().parents[3] / "shared" / "vitbench101"
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "benchmarks"  # benchmarks autoprox built and ships
SHIPPED = ("af-tiny",)

_SPACE_KEYS = {"autoformer": "hidden_dim", "pit": "base_dim"}


def field_name(dataset: str, kind: str = "kd") -> str:
    """Record field holding the accuracy for ``dataset`` trained as ``kind`` ("kd" or "base").

    ``dataset`` is a short name (``c100``, ``flowers``, ``chaoyang``, ``imagenet``) or a full
    field name ending in ``_acc``, which is returned unchanged. ImageNet has a single field.
    """
    if dataset.endswith("_acc"):
        return dataset
    if dataset == "imagenet":
        return IMAGENET_FIELD
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*", dataset):
        known = ", ".join([*DATASETS, "imagenet"])
        raise AutoproxError(f"bad data set name {dataset!r}; e.g. {known} (or a field name ending in _acc)")
    if kind not in KINDS:
        raise AutoproxError(f"unknown training kind {kind!r}; known: {', '.join(KINDS)}")
    return f"{DATASETS.get(dataset, dataset)}_{kind}_acc"


def field_dataset(field: str) -> str:
    """The data set whose images a field's networks were trained on (``flower_kd_acc`` -> ``flowers``,
    ``imagenet_super_acc`` -> ``imagenet``); `AutoproxError` for other fields."""
    if field == IMAGENET_FIELD:
        return "imagenet"
    match = re.fullmatch(rf"(.+)_({'|'.join(KINDS)})_acc", field)
    if match:
        return {stem: name for name, stem in DATASETS.items()}.get(match[1], match[1])
    raise AutoproxError(
        f"field {field!r} names no known data set; known fields look like c100_kd_acc, "
        f"flower_base_acc, {IMAGENET_FIELD}"
    )


@dataclass(frozen=True, eq=False)
class Benchmark:
    """Architectures of one search space with their accuracies, aligned by index.

    ``accuracies`` maps a field (e.g. ``c100_kd_acc``) to a read-only (n_archs,) float64
    array of top-1 accuracy in %, NaN where the record has no value.
    """

    name: str
    space: str
    archs: tuple[dict, ...]
    accuracies: dict[str, np.ndarray]
    source: str

    def __post_init__(self) -> None:
        n = len(self.archs)
        accuracies = {}
        for field, values in self.accuracies.items():
            values = np.array(values, dtype=np.float64)
            if values.shape != (n,):
                raise AutoproxError(f"{self.source}: field {field!r} has shape {values.shape}, expected ({n},)")
            values.setflags(write=False)
            accuracies[field] = values
        object.__setattr__(self, "archs", tuple(self.archs))
        object.__setattr__(self, "accuracies", accuracies)

    def __len__(self) -> int:
        return len(self.archs)

    def __repr__(self) -> str:
        return f"Benchmark(name={self.name!r}, space={self.space!r}, n={len(self)}, fields={self.fields})"

    @property
    def fields(self) -> list[str]:
        """Accuracy fields with at least one finite value, in file order."""
        return [f for f, v in self.accuracies.items() if np.isfinite(v).any()]

    def datasets(self, kind: str = "kd", imagenet: bool = False) -> list[str]:
        """Short data-set names with a ``kind`` field here (c100, flowers, chaoyang[, imagenet], fmnist, ...)."""
        names = [field_dataset(f) for f in self.fields if f.endswith(f"_{kind}_acc")]
        return names + (["imagenet"] if imagenet and IMAGENET_FIELD in self.fields else [])

    def default_kind(self) -> str:
        """ "kd" where the benchmark has KD-trained fields (ViT-Bench-101), else "base" (trained from scratch)."""
        return "kd" if self.datasets("kd") else "base"

    def accuracy(self, dataset_or_field: str, kind: str = "kd") -> np.ndarray:
        """(n_archs,) top-1 accuracy in %, NaN where missing."""
        field = field_name(dataset_or_field, kind)
        if field not in self.fields:
            raise AutoproxError(
                f"benchmark {self.name!r} has no field {field!r}; it has: {', '.join(self.fields) or 'none'}"
            )
        return self.accuracies[field]

    def subset(self, indices: Sequence[int] | np.ndarray) -> Benchmark:
        """Benchmark restricted to ``indices`` (integer positions or a boolean mask), in that order."""
        idx = np.arange(len(self))[np.asarray(indices)]
        return Benchmark(
            name=self.name,
            space=self.space,
            archs=tuple(self.archs[i] for i in idx),
            accuracies={f: v[idx] for f, v in self.accuracies.items()},
            source=self.source,
        )

    def split(self, test_fraction: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Seeded architecture-level split: sorted, disjoint (train_idx, test_idx) covering all."""
        n = len(self)
        if not 0.0 < test_fraction < 1.0:
            raise AutoproxError(f"test_fraction must be in (0, 1), got {test_fraction}")
        if n < 2:
            raise AutoproxError(f"benchmark {self.name!r} has {n} architecture(s); a split needs at least 2")
        n_test = min(max(round(test_fraction * n), 1), n - 1)
        perm = np.random.default_rng(seed).permutation(n)
        return np.sort(perm[n_test:]), np.sort(perm[:n_test])

    def kfold(self, k: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
        """Seeded k-fold (train_idx, test_idx) pairs; the test folds partition all indices."""
        n = len(self)
        if not 2 <= k <= n:
            raise AutoproxError(f"k must be between 2 and the number of architectures ({n}), got {k}")
        perm = np.random.default_rng(seed).permutation(n)
        folds = [np.sort(f) for f in np.array_split(perm, k)]
        return [(np.setdiff1d(perm, test), test) for test in folds]


def cache_dir() -> Path:
    """User cache for fetched files: ``cache_root()/bench``."""
    return cache_root() / "bench"


def search_paths() -> list[Path]:
    """Folders searched for a benchmark name: $AUTOPROX_BENCH_DIR, the user cache, the shared data."""
    paths = [Path(os.environ["AUTOPROX_BENCH_DIR"]).expanduser()] if os.environ.get("AUTOPROX_BENCH_DIR") else []
    return [*paths, cache_dir(), SHARED_DIR]


def resolve_bench(name_or_path: str | os.PathLike) -> Path:
    """Path of a benchmark file given a path or a name in ``BENCH_NAMES``."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    name = str(name_or_path)
    if name in SHIPPED:
        return SHIPPED_DIR / f"{name}.json"
    if name not in BENCH_NAMES:
        raise AutoproxError(
            f"no benchmark file {name!r} and not a known benchmark name ({', '.join([*BENCH_NAMES, *SHIPPED])})"
        )
    candidates = [d / f for d in search_paths() for f in (f"{name}.json", ORIGIN_FILES[name][0])]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise AutoproxError(
        f"benchmark {name!r} not found (looked in: {looked}); "
        "run `autoprox bench fetch` (online) or set AUTOPROX_BENCH_DIR"
    )


def load_bench(name_or_path: str | os.PathLike) -> Benchmark:
    """Load a benchmark by name (see ``search_paths``) or from a ``.json`` / ``.pth`` file.

    Checked on the way, naming the file, the record (numbered from 0) and the field:
    every architecture must be valid in the space; an accuracy must be a top-1 % in [0, 100],
    or null / NaN where the record has no value (a field with no value in any record is
    ignored, with an `AutoproxWarning`). An architecture that repeats an earlier record's is
    refused when their accuracies differ, and dropped with a warning when they agree, so
    every architecture counts once.
    """
    path = resolve_bench(name_or_path)
    if path.suffix == ".json":
        payload = _read_json(path)
    elif path.suffix in (".pth", ".pt"):
        payload = _read_pth(path)
    else:
        raise AutoproxError(f"{path}: unsupported benchmark file type {path.suffix!r} (expected .json or .pth)")
    space, records = _unpack(payload, path)
    _register_datasets(payload, path)
    archs, accuracies = _columns(records, path)
    name = str(name_or_path) if str(name_or_path) in (*BENCH_NAMES, *SHIPPED) else path.stem
    space = space or _infer_space(archs, path)
    archs, accuracies = _distinct(get_space(space), archs, accuracies, path)
    return Benchmark(name=name, space=space, archs=archs, accuracies=accuracies, source=str(path))


def fetch_bench(
    names: Iterable[str] | str = BENCH_NAMES,
    base_url: str | None = None,
    dest: str | os.PathLike | None = None,
    force: bool = False,
    checksums: Mapping[str, str] | None = None,
) -> list[Path]:
    """Download the origin ``.pth`` files of ``names`` into ``dest`` and return their paths.

    ``base_url`` defaults to $AUTOPROX_BENCH_URL, then ``DEFAULT_URL`` (https:// or file://);
    ``dest`` to ``cache_dir()``. Each file is verified against ``checksums[name]`` (default:
    the published sha256 in ``ORIGIN_FILES``) before it is moved into place, so a failed
    download leaves nothing behind. Files already present with the right checksum are
    kept unless ``force``.
    """
    names = (names,) if isinstance(names, str) else tuple(names)
    unknown = [n for n in names if n not in ORIGIN_FILES]
    if unknown:
        raise AutoproxError(f"unknown benchmark {unknown[0]!r}; known: {', '.join(BENCH_NAMES)}")
    base_url = (base_url or os.environ.get("AUTOPROX_BENCH_URL") or DEFAULT_URL).rstrip("/") + "/"
    dest = Path(dest).expanduser() if dest is not None else cache_dir()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AutoproxError(f"cannot create benchmark folder {dest}: {e}") from e
    paths = []
    for name in names:
        filename, published = ORIGIN_FILES[name]
        expected = (checksums or {}).get(name, published)
        target = dest / filename
        if force or not (target.is_file() and sha256_of(target) == expected):
            download(base_url + filename, target, expected)
        paths.append(target)
    return paths


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise AutoproxError(f"{path}: cannot read: {e}") from e
    except json.JSONDecodeError as e:
        raise AutoproxError(f"{path}: malformed JSON: {e}") from e


def _read_pth(path: Path) -> Any:
    origin = {filename: sha for filename, sha in ORIGIN_FILES.values()}
    if path.name in origin and (actual := sha256_of(path)) != origin[path.name]:
        raise AutoproxError(
            f"{path}: sha256 {actual} does not match the published {origin[path.name]}; "
            "delete it and run `autoprox bench fetch`"
        )
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types (UnpicklingError, RuntimeError, EOFError, ...)
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise AutoproxError(f"{path}: torch.load failed: {type(e).__name__}: {first_line}") from e


def _unpack(payload: Any, path: Path) -> tuple[str | None, list]:
    """(space or None, records) from a list of records, {"space", "records"} or {key: record}."""
    space = None
    if isinstance(payload, Mapping) and "records" in payload:
        space, records = payload.get("space"), payload["records"]
    elif isinstance(payload, Mapping):
        records = list(payload.values())
    else:
        records = payload
    if not isinstance(records, list):
        raise AutoproxError(f"{path}: expected a list of records, got {type(records).__name__}")
    if not records:
        raise AutoproxError(f"{path}: the benchmark has no records")
    if space is not None:
        try:
            get_space(space)
        except AutoproxError as e:
            raise AutoproxError(f"{path}: {e}") from None
    return space, records


def _register_datasets(payload: Any, path: Path) -> None:
    """Make a built benchmark's folder data sets known by name, so its networks can be probed on them."""
    datasets = payload.get("datasets") if isinstance(payload, Mapping) else None
    for name, info in (datasets or {}).items() if isinstance(datasets, Mapping) else ():
        known = KNOWN_DATASETS.get(name)
        if known is not None and known.images == (info or {}).get("source", known.images):
            continue
        try:
            register_dataset(
                DatasetInfo(str(name), int(info["num_classes"]), "natural", int(info["channels"]), str(info["source"]))
            )
        except (KeyError, TypeError, ValueError) as e:
            raise AutoproxError(f"{path}: data set {name!r} needs source, num_classes and channels ({e})") from e


def _columns(records: list, path: Path) -> tuple[tuple[dict, ...], dict[str, np.ndarray]]:
    """Architectures and field -> (n,) accuracy arrays; a field a record lacks is NaN there."""
    fields = list(dict.fromkeys(k for r in records if isinstance(r, Mapping) for k in r if str(k).endswith("_acc")))
    accuracies = {f: np.full(len(records), np.nan) for f in fields}
    archs = []
    for i, record in enumerate(records):
        if not isinstance(record, Mapping) or not isinstance(record.get("arch"), Mapping):
            raise AutoproxError(f"{path}: record {i} has no 'arch' dict")
        archs.append(dict(record["arch"]))
        for field in fields:
            accuracies[field][i] = _accuracy_value(record.get(field), path, i, field)
    for field, values in accuracies.items():
        if np.isnan(values).all():
            warnings.warn(f"{path}: field {field!r} has no value in any record; it is ignored", AutoproxWarning)
    return tuple(archs), accuracies


def _accuracy_value(value: Any, path: Path, index: int, field: str) -> float:
    """A top-1 accuracy in %, NaN for a missing one (null or NaN)."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise AutoproxError(f"{path}: record {index} field {field!r} is not a number: {value!r}")
    value = float(value)
    if not (math.isnan(value) or 0.0 <= value <= 100.0):
        raise AutoproxError(
            f"{path}: record {index} field {field!r} is {value!r}; accuracies are top-1 % "
            "in [0, 100] (null or NaN where missing)"
        )
    return value


def _distinct(
    space: Space, archs: tuple[dict, ...], accuracies: dict[str, np.ndarray], path: Path
) -> tuple[tuple[dict, ...], dict[str, np.ndarray]]:
    """The records whose architectures are valid in `space`, each architecture once: a repeat with
    the same accuracies is dropped (with a warning), one with other accuracies is refused."""
    first: dict[str, int] = {}
    repeats = []
    for i, arch in enumerate(archs):
        try:
            key = space.arch_hash(arch)
        except AutoproxError as e:
            raise AutoproxError(f"{path}: record {i}: {e}") from None
        j = first.setdefault(key, i)
        if j == i:
            continue
        for field, values in accuracies.items():
            if not (values[i] == values[j] or np.isnan(values[i]) and np.isnan(values[j])):
                raise AutoproxError(
                    f"{path}: record {i} repeats the architecture of record {j} with another "
                    f"{field} ({values[i]:g} vs {values[j]:g}); keep the right one"
                )
        repeats.append(f"{i} (= {j})")
    if not repeats:
        return archs, accuracies
    warnings.warn(
        f"{path}: record(s) {', '.join(repeats)} repeat an earlier architecture with the same "
        "accuracies; each architecture is counted once",
        AutoproxWarning,
    )
    keep = np.array(sorted(first.values()))
    return tuple(archs[i] for i in keep), {f: v[keep] for f, v in accuracies.items()}


def _infer_space(archs: tuple[dict, ...], path: Path) -> str:
    """Space from the arch keys (hidden_dim -> autoformer, base_dim -> pit), else the file name."""
    for space, key in _SPACE_KEYS.items():
        if all(key in a for a in archs):
            return space
    for space in BENCH_NAMES:
        if space in path.stem:
            return space
    raise AutoproxError(f"{path}: cannot tell the search space (no 'space' field, unknown arch keys and file name)")
