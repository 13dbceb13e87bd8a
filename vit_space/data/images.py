"""Whole image data sets for training: Fashion-MNIST, scikit-learn's digits, and folders on disk.

`load_images(name_or_path, image_size)` returns an :class:`ImageData`: train and held-out test
images as ``(N, C, H, W)`` uint8 tensors with ``(N,)`` int64 labels. Understood:

* ``fmnist``: Fashion-MNIST (10 classes, 1x28x28, 60000 train / 10000 test) from its four IDX
  ``.gz`` files, found in $AUTOPROX_FMNIST_DIR, the user cache or Debian's ``dataset-fashion-mnist``
  package; when none has them they are downloaded into the user cache (sha256-checked; also
  ``autoprox data fetch fmnist [--url file://...]``), unless $AUTOPROX_OFFLINE is set; the rows that
  proxy batches take by default ship with autoprox (`training_rows`), so probing needs none of it;
* ``digits``: scikit-learn's 8x8 handwritten digits (10 classes, 1797 images) upsampled to 1x28x28,
  with a fixed seeded 75/25 split;
* a folder: CIFAR-10/100 (python pickles or binary files) or an ImageFolder tree, either
  ``root/{train,val|test}/<class>/<images>`` or ``root/<class>/<images>`` (a fixed seeded 80/20 split).
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gp_proxy.errors import AutoproxError
from vit_space.data.paths import cache_root, download, sha256_of
from vit_space.data.readers import cifar_files, class_dirs, read_cifar_files, read_idx, read_image_tree

FMNIST_FILES = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
FMNIST_URL = "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"
DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")
# Fashion-MNIST's shipped probe rows: the first PROBE_ROWS picks of batch seed PROBE_SEED (every batch size
# up to PROBE_ROWS at that seed); regenerate with `write_probe_rows()` and update the checksum.
PROBE_FILE = Path(__file__).resolve().parents[1] / "batches" / "fmnist-train-probe.npz"
PROBE_SHA256 = "6013466477331ca4a04aba331787be9c46d59021b47aca5601a0658e704b1a62"
PROBE_SEED, PROBE_ROWS = 0, 64
BUILTIN = ("fmnist", "digits")
SPLIT_SEED = 0  # fixed: every run of every seed sees the same train/test split


def tensors_sha256(*tensors: torch.Tensor) -> str:
    """sha256 of the tensors' dtypes, shapes and bytes, in order (the same values, the same digest)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype} {tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class ImageData:
    """A data set split for training: ``(N, C, H, W)`` uint8 images and ``(N,)`` int64 labels."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int

    @property
    def channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_images.shape[-1]

    @cached_property
    def digest(self) -> str:
        """sha256 of both splits' images and labels (computed once)."""
        return tensors_sha256(self.train_images, self.train_labels, self.test_images, self.test_labels)

    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and (sample) std of the training images, in [0, 1] units, from exact integer
        sums: the same numbers whatever torch's thread count (a float32 reduction is not)."""
        pixels = self.train_images.transpose(0, 1).reshape(self.channels, -1).long()
        count = pixels.shape[1]
        sums, squares = pixels.sum(1).tolist(), (pixels * pixels).sum(1).tolist()
        means = tuple(total / count / 255 for total in sums)
        stds = tuple(
            max(math.sqrt((count * sq - total * total) / (count * (count - 1))) / 255, 1e-3)
            for total, sq in zip(sums, squares)
        )
        return means, stds

    def describe(self) -> str:
        return (
            f"{self.name}: {self.num_classes} classes, {self.channels}x{self.image_size}x{self.image_size}, "
            f"{len(self.train_labels)} train / {len(self.test_labels)} test images"
        )


@dataclass(frozen=True, eq=False)
class TrainingRows:
    """Picked rows of a training split: ``(B, C, H, W)`` uint8 images, ``(B,)`` int64 labels, and the
    whole split's per-channel mean and std (see :meth:`ImageData.mean_std`)."""

    images: torch.Tensor
    labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True, eq=False)
class ShippedRows:
    """Rows ``indices`` of a training split of ``num_train`` images, shipped with autoprox."""

    num_train: int
    indices: torch.Tensor
    images: torch.Tensor
    labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def take(self, index: torch.Tensor) -> TrainingRows | None:
        """The split's rows ``index``, or None unless every one of them is shipped."""
        position = {int(i): p for p, i in enumerate(self.indices)}
        if not all(int(i) in position for i in index):
            return None
        rows = torch.tensor([position[int(i)] for i in index], dtype=torch.int64)
        return TrainingRows(self.images[rows], self.labels[rows], self.mean, self.std)


def training_rows(name_or_path: str, image_size: int | None, pick: Callable[[int], torch.Tensor]) -> TrainingRows:
    """The rows ``pick(N)`` of a data set's training split of N images (``pick`` must be pure).

    For Fashion-MNIST not on disk they come from the shipped probe rows when those hold every
    picked row (the same bytes, so the same batch); otherwise the data set is loaded (downloaded)."""
    if name_or_path == "fmnist" and fmnist_folder() is None:
        shipped = shipped_probe_rows()
        rows = shipped.take(pick(shipped.num_train))
        if rows is not None:
            return rows
    data = load_images(name_or_path, image_size)
    index = pick(len(data.train_labels))
    return TrainingRows(data.train_images[index], data.train_labels[index], *data.mean_std())


@lru_cache(maxsize=1)
def shipped_probe_rows(path: Path = PROBE_FILE, expected: str = PROBE_SHA256) -> ShippedRows:
    """Fashion-MNIST's shipped probe rows, sha256-checked (a plain ``.npz``, never unpickled)."""
    try:
        digest = sha256_of(path)
    except OSError as e:
        raise AutoproxError(f"{path}: cannot read the shipped probe rows ({e}); reinstall autoprox") from e
    if digest != expected:
        raise AutoproxError(f"{path}: sha256 {digest} does not match the expected {expected}; reinstall autoprox")
    with np.load(path, allow_pickle=False) as z:
        return ShippedRows(
            int(z["num_train"]),
            torch.from_numpy(z["indices"]),
            torch.from_numpy(z["images"]),
            torch.from_numpy(z["labels"]),
            tuple(z["mean"].tolist()),
            tuple(z["std"].tolist()),
        )


def write_probe_rows(path: Path = PROBE_FILE, seed: int = PROBE_SEED, count: int = PROBE_ROWS) -> str:
    """Write Fashion-MNIST's first ``count`` batch picks of ``seed`` (from the full data set) to ``path``;
    returns its sha256 (for PROBE_SHA256)."""
    data = load_images("fmnist")
    index = pick_rows(len(data.train_labels), count, seed, Path("fmnist"))
    mean, std = data.mean_std()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez_compressed(
            f,
            num_train=np.int64(len(data.train_labels)),
            indices=index.numpy(),
            images=data.train_images[index].numpy(),
            labels=data.train_labels[index].numpy(),
            mean=np.array(mean),
            std=np.array(std),
        )
    return sha256_of(path)


def pick_rows(num_items: int, count: int, seed: int, root: Path) -> torch.Tensor:
    """Seeded choice of ``count`` distinct indices in ``[0, num_items)`` (a batch's rows of a split);
    ``root`` names the data in the error when there are too few."""
    if num_items < count:
        raise AutoproxError(f"{root}: batch size (--batch) {count} exceeds the {num_items} images there")
    return torch.randperm(num_items, generator=torch.Generator().manual_seed(seed))[:count]


def load_images(name_or_path: str, image_size: int | None = None) -> ImageData:
    """The data set `fmnist`, `digits` or a folder path; folder images of varying size are resized
    (shorter side, centre crop) to `image_size` (default 32)."""
    if name_or_path in BUILTIN:
        return _builtin(name_or_path)
    root = Path(name_or_path).expanduser()
    if not root.is_dir():
        raise AutoproxError(f"unknown data set {name_or_path!r}: not one of {', '.join(BUILTIN)} and not a folder")
    return _folder(str(root.resolve()), image_size or 32)


@lru_cache(maxsize=4)
def _builtin(name: str) -> ImageData:
    return _fmnist() if name == "fmnist" else _digits()


# --- Fashion-MNIST ---------------------------------------------------------------------------


def fmnist_dirs() -> list[Path]:
    """Folders searched for the Fashion-MNIST IDX files, in order."""
    env = [Path(os.environ["AUTOPROX_FMNIST_DIR"]).expanduser()] if os.environ.get("AUTOPROX_FMNIST_DIR") else []
    return [*env, cache_root() / "fashion-mnist", DEBIAN_FMNIST]


def fetch_fmnist(base_url: str | None = None, dest: str | os.PathLike | None = None) -> Path:
    """Download the four Fashion-MNIST files (sha256-checked) into `dest` (default: the user cache)."""
    base_url = (base_url or os.environ.get("AUTOPROX_FMNIST_URL") or FMNIST_URL).rstrip("/") + "/"
    dest = Path(dest).expanduser() if dest else cache_root() / "fashion-mnist"
    for filename, expected in FMNIST_FILES.items():
        target = dest / filename
        if not (target.is_file() and sha256_of(target) == expected):
            download(base_url + filename, target, expected)
    return dest


def fmnist_folder() -> Path | None:
    """The first of :func:`fmnist_dirs` that holds all four Fashion-MNIST files, or None."""
    return next((d for d in fmnist_dirs() if all((d / f).is_file() for f in FMNIST_FILES)), None)


def _fmnist() -> ImageData:
    folder = fmnist_folder()
    if folder is None and os.environ.get("AUTOPROX_OFFLINE"):
        raise AutoproxError(
            f"Fashion-MNIST not found (looked in {', '.join(map(str, fmnist_dirs()))}) and "
            "AUTOPROX_OFFLINE is set; run `autoprox data fetch fmnist` (--url file://... works), "
            "`apt-get install dataset-fashion-mnist` or set AUTOPROX_FMNIST_DIR"
        )
    if folder is None:
        print(
            f"Fashion-MNIST not found locally; downloading it (30 MB, sha256-checked) into "
            f"{cache_root() / 'fashion-mnist'}",
            file=sys.stderr,
        )
        folder = fetch_fmnist()
    train = read_idx(folder / "train-images-idx3-ubyte.gz"), read_idx(folder / "train-labels-idx1-ubyte.gz")
    test = read_idx(folder / "t10k-images-idx3-ubyte.gz"), read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    return ImageData("fmnist", train[0][:, None], train[1].long(), test[0][:, None], test[1].long(), 10)


# --- scikit-learn digits ---------------------------------------------------------------------


def _digits(size: int = 28, test_fraction: float = 0.25) -> ImageData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images).float()[:, None] / 16  # (1797, 1, 8, 8) in [0, 1]
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    labels = torch.from_numpy(digits.target).long()
    test, train = _split(len(labels), test_fraction)
    return ImageData("digits", images[train], labels[train], images[test], labels[test], 10)


def _split(n: int, test_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed seeded (test, train) index split."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_test = round(n * test_fraction)
    return perm[:n_test].sort().values, perm[n_test:].sort().values


# --- folders ---------------------------------------------------------------------------------


@lru_cache(maxsize=2)
def _folder(root_name: str, image_size: int) -> ImageData:
    root = Path(root_name)
    name = root.name
    cifar = cifar_files(root)
    if cifar:
        (train_x, train_y), (test_x, test_y) = (read_cifar_files(files) for files in cifar)
        classes = int(max(train_y.max(), test_y.max())) + 1
        return ImageData(name, train_x, train_y, test_x, test_y, classes)
    splits = [root / s for s in ("train", "val", "test")]
    if (root / "train").is_dir() and any(s.is_dir() for s in splits[1:]):
        test_dir = next(s for s in splits[1:] if s.is_dir())
        classes = [d.name for d in class_dirs(root / "train")]
        train_x, train_y = read_image_tree(root / "train", classes, image_size)
        test_x, test_y = read_image_tree(test_dir, classes, image_size)
        return ImageData(name, train_x, train_y, test_x, test_y, len(classes))
    classes = [d.name for d in class_dirs(root)]
    images, labels = read_image_tree(root, classes, image_size)
    test, train = _split(len(labels), 0.2)
    return ImageData(name, images[train], labels[train], images[test], labels[test], len(classes))
