"""Proxy batches: one small, seeded, ImageNet-normalised batch of images and labels per data set.

A zero-cost proxy scores an untrained network from one forward/backward pass over such a batch.
These sources are understood:

* ``"auto"`` (default): ``"train"`` for data sets whose images autoprox can load (Fashion-MNIST,
  digits, a registered folder), else ``"skimage"``;
* ``"train"``: a seeded pick of the data set's own training images and labels, normalised with
  its own mean and std (what `vit_space.bench.training` trains on);
* ``"skimage"``: seeded random crops of scikit-image's bundled sample photographs
  (colon histology for ``"chaoyang"``; grey for 1-channel data sets), with seeded uniform labels;
* ``"matched"``: the same kind of crops made to resemble each data set with what ships offline:
  its subject (``DatasetInfo.look``: scikit-learn's flower photograph for ``"flowers"``, the
  histology image for ``"chaoyang"``, scikit-image's photographs for the others) and its native
  resolution (``DatasetInfo.native_size``: CIFAR's 32 px crops upsampled to the probe size, as
  CIFAR images are when a ViT is trained on them at 224 px), with seeded uniform labels;
* ``"noise"``: standard Gaussian images with seeded uniform labels;
* a folder path: real data, either a CIFAR-10/100 folder (python pickles or binary version) or an
  ImageFolder tree ``root/<class_name>/<image files>``, with real labels.

Every batch is a pure function of its :class:`BatchSpec`: the same spec gives bitwise equal tensors,
whatever the global random state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F

from gp_proxy.errors import AutoproxError
from vit_space.data.images import pick_rows, training_rows
from vit_space.data.readers import (
    IMAGE_EXTENSIONS,
    cifar_files,
    class_dirs,
    image_files,
    is_image,
    load_image,
    read_cifar_files,
    resize,
)

__all__ = [
    "BatchSpec",
    "DATASETS",
    "DatasetInfo",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NAMED_SOURCES",
    "get_dataset",
    "make_batch",
    "register_dataset",
]


@dataclass(frozen=True)
class DatasetInfo:
    """A target data set: its name, class count, image kind (``"natural"``, ``"histology"`` or
    ``"grey"``), channels, where its own images are (a built-in name or a folder; None: nowhere),
    and for ``"matched"`` batches its subject (a key of ``PHOTOS``; None: its kind) and native
    image side in pixels (None: at least any probe size)."""

    name: str
    num_classes: int
    kind: str
    channels: int = 3
    images: str | None = None
    look: str | None = None
    native_size: int | None = None


DATASETS: dict[str, DatasetInfo] = {
    "c100": DatasetInfo("c100", 100, "natural", native_size=32),
    "flowers": DatasetInfo("flowers", 102, "natural", look="flower"),
    "chaoyang": DatasetInfo("chaoyang", 4, "histology"),
    "imagenet": DatasetInfo("imagenet", 1000, "natural"),
    "fmnist": DatasetInfo("fmnist", 10, "grey", 1, "fmnist", native_size=28),
    "digits": DatasetInfo("digits", 10, "grey", 1, "digits", native_size=8),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NAMED_SOURCES = ("auto", "train", "skimage", "matched", "noise")

PHOTOS = {  # offline photographs: scikit-image's sample data, or "sklearn:NAME" (scikit-learn's samples)
    "natural": ("astronaut", "chelsea", "coffee", "rocket"),
    "histology": ("immunohistochemistry",),
    "flower": ("sklearn:flower.jpg",),
}
MIN_CROP_FRACTION = 0.3  # smallest skimage crop side, as a fraction of the photo's shorter side
LAYOUT_ERROR = (
    "not a CIFAR-10/100 folder (data_batch_*, train or *.bin training files) "
    "or an ImageFolder tree (class folders of images)"
)


@dataclass(frozen=True)
class BatchSpec:
    """What a proxy batch is made of.

    ``source`` is one of ``NAMED_SOURCES`` or the path of a data folder; the names win over
    a folder of the same name in the working directory (write ``./noise`` for that folder).
    """

    dataset: str
    source: str = "auto"
    batch_size: int = 16
    seed: int = 0
    image_size: int | None = 224  # None: the probed space's own input size (see ProbeSpec.for_space)

    @property
    def origin(self) -> str:
        """The concrete source: ``"auto"`` resolved for this data set."""
        if self.source != "auto":
            return self.source
        return "train" if get_dataset(self.dataset).images else "skimage"

    def key(self) -> str:
        """Canonical string for cache keys, e.g. ``"c100|skimage|b16|s0|224"`` (paths made absolute;
        ``"matched"`` written ``"skimage"`` where it gives the same images, as for chaoyang)."""
        source = self.origin if self.origin in NAMED_SOURCES else str(_source_path(self.origin))
        if source == "matched" and self.photos() == replace(self, source="skimage").photos():
            source = "skimage"
        return f"{self.dataset}|{source}|b{self.batch_size}|s{self.seed}|{self.image_size}"

    def photos(self) -> tuple[str, int | None]:
        """For a ``"skimage"`` or ``"matched"`` batch: its photographs (a key of ``PHOTOS``) and the side
        in pixels its crops are shrunk to before they are upsampled (None: no shrinking)."""
        info = get_dataset(self.dataset)
        kind = "histology" if info.kind == "histology" else "natural"
        if self.origin != "matched":
            return kind, None
        shrink = info.native_size is not None and (self.image_size is None or info.native_size < self.image_size)
        return info.look or kind, info.native_size if shrink else None

    def validate(self) -> None:
        """Raise :class:`AutoproxError` unless the data set, source, sizes and seed are usable."""
        info = get_dataset(self.dataset)
        _check_int("batch_size", self.batch_size, 1)
        if self.image_size is not None:
            _check_int("image_size", self.image_size, 8)
        _check_int("seed", self.seed, 0)
        if self.origin == "train" and not info.images:
            raise AutoproxError(
                f"data set {self.dataset} has no images autoprox can load; "
                f"give its folder with --data {self.dataset}=PATH, or use --source skimage or noise"
            )
        if self.origin not in NAMED_SOURCES:
            if info.channels != 3:
                raise AutoproxError(
                    f"{self.origin}: folders hold RGB images but {self.dataset} has {info.channels} channel(s)"
                )
            _detect_layout(_source_path(self.origin))


def register_dataset(info: DatasetInfo) -> None:
    """Make a data set known by name (a user benchmark's folder); the same name must mean the same data."""
    known = DATASETS.get(info.name)
    if known is not None and known != info:
        raise AutoproxError(
            f"data set {info.name!r} is already known as {known}; rename the folder or the benchmark's data set"
        )
    DATASETS[info.name] = info


def get_dataset(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` called ``name``; :class:`AutoproxError` listing the known names otherwise."""
    if name not in DATASETS:
        raise AutoproxError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def make_batch(spec: BatchSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """The proxy batch of ``spec``.

    Returns images ``(B, C, S, S)`` float32, normalised (ImageNet statistics; a data set's own for
    ``"train"``; noise is N(0, 1) per pixel), and labels ``(B,)`` int64 in ``[0, num_classes)``, with
    ``B = batch_size``, ``C`` the data set's channels and ``S = image_size``.
    """
    spec.validate()
    if spec.image_size is None:
        raise AutoproxError("the batch's image size is not set (ProbeSpec.for_space sets it from the space)")
    info = get_dataset(spec.dataset)
    generator = torch.Generator().manual_seed(spec.seed)
    if spec.origin == "noise":
        shape = (spec.batch_size, info.channels, spec.image_size, spec.image_size)
        images = torch.randn(shape, generator=generator)
        return images, _random_labels(spec.batch_size, info.num_classes, generator)
    if spec.origin in ("skimage", "matched"):
        look, native = spec.photos()
        images = _normalise(_photo_crops(look, spec.batch_size, spec.image_size, generator, native))
        return (images.mean(1, keepdim=True) if info.channels == 1 else images), _random_labels(
            spec.batch_size, info.num_classes, generator
        )
    if spec.origin == "train":
        return _training_batch(info, spec)
    root = _source_path(spec.origin)
    images, labels = (_cifar if _detect_layout(root) == "cifar" else _image_folder)(root, spec)
    if int(labels.max()) >= info.num_classes:
        raise AutoproxError(
            f"{root}: label {int(labels.max())} is out of range for {info.name} ({info.num_classes} classes)"
        )
    return _normalise(images), labels


def _training_batch(info: DatasetInfo, spec: BatchSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded pick of the data set's own training images, normalised as `vit_space.bench.training` does
    (Fashion-MNIST's default picks ship with autoprox: see `vit_space.data.images.training_rows`)."""

    def pick(num_items: int) -> torch.Tensor:
        return pick_rows(num_items, spec.batch_size, spec.seed, Path(info.images))

    rows = training_rows(info.images, spec.image_size, pick)
    if rows.images.shape[-1] != spec.image_size:
        size = rows.images.shape[-1]
        raise AutoproxError(
            f"{info.name} has {size}x{size} images but the batch asks for "
            f"{spec.image_size}x{spec.image_size}; probe a space for that input"
        )
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (rows.mean, rows.std))
    return ((rows.images.float() / 255 - mean) / std).contiguous(), rows.labels


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise AutoproxError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _source_path(source: str) -> Path:
    """The absolute path a non-named source stands for; it must exist."""
    path = Path(source).expanduser().resolve()
    if not path.exists():
        raise AutoproxError(
            f"{source}: no such data folder; a source is {' or '.join(map(repr, NAMED_SOURCES))} "
            "or the path of a data folder"
        )
    return path


def _random_labels(batch_size: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(num_classes, (batch_size,), generator=generator, dtype=torch.int64)


def _normalise(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` float in [0, 1] -> ImageNet-normalised float32."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((images - mean) / std).float().contiguous()


# --- skimage photographs ---------------------------------------------------------------------


@cache
def _photos(look: str) -> tuple[torch.Tensor, ...]:
    """The photographs of ``PHOTOS[look]``, each ``(3, H, W)`` float32 in [0, 1]."""
    import skimage.data
    from sklearn.datasets import load_sample_image

    def load(name: str) -> torch.Tensor:
        sklearn_name = name.removeprefix("sklearn:")
        array = load_sample_image(sklearn_name) if sklearn_name != name else getattr(skimage.data, name)()
        return torch.tensor(array[..., :3]).permute(2, 0, 1).float().div(255)  # a copy: sklearn's is read-only

    return tuple(load(name) for name in PHOTOS[look])


def _photo_crops(
    look: str, batch_size: int, size: int, generator: torch.Generator, native_size: int | None = None
) -> torch.Tensor:
    """Seeded random square crops (size, position, horizontal flip) -> ``(B, 3, size, size)`` in [0, 1];
    with ``native_size`` < ``size``, each crop is first shrunk to ``native_size`` pixels (antialiased)
    and then upsampled, so it carries no more detail than the data set's own images."""
    photos = _photos(look)
    which = torch.randint(len(photos), (batch_size,), generator=generator)
    fraction, x, y, flip = torch.rand((4, batch_size), generator=generator, dtype=torch.float64)
    crops = []
    for i in range(batch_size):
        photo = photos[int(which[i])]
        height, width = photo.shape[1:]
        side = round(min(height, width) * (MIN_CROP_FRACTION + (1 - MIN_CROP_FRACTION) * float(fraction[i])))
        top = int(float(y[i]) * (height - side + 1))
        left = int(float(x[i]) * (width - side + 1))
        crop = photo[:, top : top + side, left : left + side]
        crop = crop.flip(-1) if flip[i] < 0.5 else crop
        if native_size is not None and native_size < size:
            crop = resize(crop, native_size)
        crops.append(resize(crop, size))
    return torch.stack(crops)


# --- folders on disk -------------------------------------------------------------------------


def _detect_layout(root: Path) -> str:
    """``"cifar"`` or ``"imagefolder"``; :class:`AutoproxError` otherwise."""
    if root.is_dir() and cifar_files(root, need_test=False):
        return "cifar"
    if root.is_dir() and any(is_image(p) for d in class_dirs(root) for p in d.rglob("*")):
        return "imagefolder"
    raise AutoproxError(f"{root}: {LAYOUT_ERROR}")


def _cifar(root: Path, spec: BatchSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Picked training rows of a CIFAR-10/100 folder, upscaled -> images in [0, 1], labels."""
    pixels, labels = read_cifar_files(cifar_files(root, need_test=False)[0])
    index = pick_rows(len(pixels), spec.batch_size, spec.seed, root)
    images = F.interpolate(
        pixels[index].float() / 255, size=(spec.image_size,) * 2, mode="bilinear", align_corners=False
    )
    return images, labels[index]


def _image_folder(root: Path, spec: BatchSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageFolder tree: class index = sorted class-folder order; resize shorter side, centre crop."""
    classes = class_dirs(root)
    num_classes = get_dataset(spec.dataset).num_classes
    if len(classes) > num_classes:
        raise AutoproxError(
            f"{root}: {len(classes)} class folders, more than the {num_classes} classes of {spec.dataset}"
        )
    files: list[tuple[Path, int]] = []
    for label, folder in enumerate(classes):
        images = image_files(folder)
        if not images:
            raise AutoproxError(f"{root}: class folder {folder.name!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        files += [(path, label) for path in images]
    index = pick_rows(len(files), spec.batch_size, spec.seed, root).tolist()
    images = torch.stack([load_image(files[i][0], spec.image_size) for i in index])
    return images, torch.tensor([files[i][1] for i in index], dtype=torch.int64)
