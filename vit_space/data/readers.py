"""Reading image files from disk: IDX, CIFAR-10/100 (python pickles or binary records), ImageFolder trees.

One reader per format, shared by proxy batches (`vit_space.data.batches`) and training data
(`vit_space.data.images`). CIFAR pickles are read with a restricted unpickler that rebuilds
only numpy arrays and plain containers: a hostile pickle is refused, never run.
"""

from __future__ import annotations

import _codecs
import gzip
import pickle
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from gp_proxy.errors import AutoproxError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
CIFAR_PIXELS = 3 * 32 * 32
CIFAR_TRAIN = (
    ("data_batch_[0-9]", "test_batch"),
    ("train", "test"),
    ("data_batch_[0-9].bin", "test_batch.bin"),
    ("train.bin", "test.bin"),
)
LAYOUTS = (
    "CIFAR-10/100 python (data_batch_*/test_batch or train/test pickles)",
    "CIFAR-10/100 binary (data_batch_*.bin/test_batch.bin or train.bin/test.bin)",
    "ImageFolder (root/train|val|test/<class>/<images> or root/<class>/<images>)",
)


# --- IDX (MNIST-style) -----------------------------------------------------------------------


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file (optionally gzipped) of unsigned bytes -> a uint8 tensor of its shape."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise AutoproxError(f"{path}: cannot read ({e})") from e
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise AutoproxError(f"{path}: not an IDX file of unsigned bytes")
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    body = raw[4 + 4 * dims :]
    if len(body) != int(np.prod(shape)):
        raise AutoproxError(f"{path}: holds {len(body)} bytes, its header says {shape}")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(shape)


# --- CIFAR -----------------------------------------------------------------------------------


def cifar_files(root: Path, need_test: bool = True) -> tuple[list[Path], list[Path]] | None:
    """(train files, test files) of a CIFAR-10/100 folder in either version, or None.

    With ``need_test=False`` a folder of training files alone is enough (proxy batches)."""
    for train_glob, test_name in CIFAR_TRAIN:
        train, test = sorted(root.glob(train_glob)), [root / test_name]
        if train and all(p.is_file() for p in train) and (not need_test or test[0].is_file()):
            return train, test
    return None


def read_cifar(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One CIFAR file -> ``(N, 3, 32, 32)`` uint8 images, ``(N,)`` int64 labels (CIFAR-100: fine labels).

    ``*batch*`` files are CIFAR-10 (one label byte per binary record), others CIFAR-100 (coarse, fine)."""
    kind = "CIFAR-10" if "batch" in path.name else "CIFAR-100"
    if path.suffix == ".bin":
        width = CIFAR_PIXELS + (1 if kind == "CIFAR-10" else 2)
        size = path.stat().st_size
        if size == 0 or size % width:
            raise AutoproxError(f"{path}: size {size} is not a multiple of the {width}-byte {kind} record")
        rows = np.fromfile(path, dtype=np.uint8).reshape(-1, width)
        pixels, labels = rows[:, width - CIFAR_PIXELS :], rows[:, width - CIFAR_PIXELS - 1]
    else:
        content = restricted_load(path, f"a {kind} pickle")
        if not isinstance(content, dict):
            raise AutoproxError(f"{path}: not a {kind} pickle (expected a dict, got {type(content).__name__})")
        label_field = "labels" if kind == "CIFAR-10" else "fine_labels"
        pixels, labels = _field(path, content, "data", kind), np.asarray(_field(path, content, label_field, kind))
        if not isinstance(pixels, np.ndarray) or pixels.ndim != 2 or pixels.shape[1] != CIFAR_PIXELS:
            raise AutoproxError(f"{path}: 'data' must be an (N, {CIFAR_PIXELS}) uint8 array")
        if labels.shape != (len(pixels),) or not np.issubdtype(labels.dtype, np.integer) or labels.min(initial=0) < 0:
            raise AutoproxError(f"{path}: {label_field!r} must be {len(pixels)} non-negative integers")
    return (
        torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.uint8)).reshape(-1, 3, 32, 32),
        torch.from_numpy(labels.astype(np.int64)),
    )


def read_cifar_files(files: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """Several CIFAR files, concatenated in order."""
    images, labels = zip(*(read_cifar(path) for path in files))
    return torch.cat(images), torch.cat(labels)


def _field(path: Path, content: dict, name: str, kind: str) -> object:
    """``content[b"name"]`` (Python 2 pickles) or ``content["name"]``."""
    for key in (name.encode(), name):
        if key in content:
            return content[key]
    raise AutoproxError(f"{path}: not a {kind} pickle, no {name!r} entry (keys: {sorted(map(str, content))})")


@cache
def _numpy_globals() -> dict[tuple[str, str], object]:
    """The only globals a pickle may name: what rebuilds numpy arrays, dtypes and scalars."""
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    numeric = np._core.numeric if hasattr(np, "_core") else np.core.numeric
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): _codecs.encode}
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class _NumpyUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds plain containers and numpy arrays, and refuses every other global."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return _numpy_globals()[(module, name)]
        except KeyError:
            raise AutoproxError(f"refusing to unpickle {module}.{name}: only numpy arrays are allowed") from None


def restricted_load(path: Path, what: str = "a pickle of numpy arrays") -> object:
    """Unpickle ``path`` with the restricted unpickler (Python 2 strings read as bytes)."""
    try:
        with open(path, "rb") as file:
            return _NumpyUnpickler(file, encoding="bytes").load()
    except AutoproxError as error:
        raise AutoproxError(f"{path}: {error}") from None
    except Exception as error:  # a corrupt pickle can raise nearly anything
        raise AutoproxError(f"{path}: cannot read as {what} ({type(error).__name__}: {error})") from error


# --- ImageFolder -----------------------------------------------------------------------------


def class_dirs(root: Path) -> list[Path]:
    """Sorted, non-hidden sub-folders of ``root``."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file() and not path.name.startswith(".")


def image_files(folder: Path) -> list[Path]:
    """Every image file under ``folder``, sorted."""
    return sorted(p for p in folder.rglob("*") if is_image(p)) if folder.is_dir() else []


def resize(image: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear (antialiased) resize of ``(3, H, W)`` float to ``size`` (int: a square)."""
    size = (size, size) if isinstance(size, int) else size
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def load_image(path: Path, size: int) -> torch.Tensor:
    """Shorter side resized to ``int(size * 256 / 224)``, centre crop ``size`` -> ``(3, size, size)`` in [0, 1]."""
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise AutoproxError(f"{path}: cannot read image ({error})") from error
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255
    height, width = tensor.shape[1:]
    short = int(size * 256 / 224)
    scale = short / min(height, width)
    tensor = resize(tensor, (round(height * scale), round(width * scale)))
    top = (tensor.shape[1] - size) // 2
    left = (tensor.shape[2] - size) // 2
    return tensor[:, top : top + size, left : left + size]


def read_image_tree(root: Path, classes: list[str], image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image under root/<class>/ (classes in the given order) -> (N, 3, S, S) uint8, (N,) labels."""
    if not classes:
        raise AutoproxError(f"{root}: unknown data layout; understood: {'; '.join(LAYOUTS)}")
    images, labels = [], []
    for label, name in enumerate(classes):
        files = image_files(root / name)
        images += [(load_image(p, image_size) * 255).round().to(torch.uint8) for p in files]
        labels += [label] * len(files)
    if not images:
        raise AutoproxError(f"{root}: no images in its class folders; understood layouts: {'; '.join(LAYOUTS)}")
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)
