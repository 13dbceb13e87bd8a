"""Proxy batches: shapes, determinism, real photographs, and every on-disk layout and error."""

import os
import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from gp_proxy.errors import AutoproxError
from vit_space.data.batches import (
    DATASETS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    BatchSpec,
    get_dataset,
    make_batch,
)

SMALL = 32  # image_size used where the size does not matter, to keep the file fast


def neighbour_correlation(images: torch.Tensor) -> float:
    """Mean correlation of horizontally adjacent pixels over the images ``(B, 3, H, W)``."""
    left, right = images[..., :-1].reshape(len(images), -1), images[..., 1:].reshape(len(images), -1)
    return float(np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(left.numpy(), right.numpy())]))


def denormalise(images: torch.Tensor) -> torch.Tensor:
    return images * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)


def write_cifar_python(root, num_images=20, protocol=2, seed=0):
    """A small fake CIFAR-100 "python version" folder; returns (pixels, fine labels)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (num_images, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 100, num_images)]
    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        content = {b"data": pixels, b"fine_labels": labels, b"coarse_labels": [v // 5 for v in labels]}
        (root / split).write_bytes(pickle.dumps(content, protocol=protocol))
    return pixels, labels


def write_image_folder(root, classes=("b_tulip", "a_rose", "c_daisy"), per_class=3):
    """An ImageFolder tree of small PNGs whose red channel encodes the class (in written order)."""
    for position, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            colour = (40 + 80 * position, 10 * i, 200)
            Image.new("RGB", (40 + 7 * i, 30), colour).save(root / name / f"{i}.png")


def red_level(images: torch.Tensor) -> torch.Tensor:
    """Mean red value in [0, 255] of each image ``(B, 3, H, W)`` (normalised)."""
    return denormalise(images)[:, 0].mean((1, 2)) * 255


# --- data sets and specs ---------------------------------------------------------------------


def test_get_dataset_and_unknown_name():
    assert get_dataset("chaoyang").num_classes == 4
    assert get_dataset("chaoyang").kind == "histology"
    with pytest.raises(AutoproxError, match="unknown dataset 'cifar'.*c100, flowers, chaoyang, imagenet"):
        get_dataset("cifar")


def test_key_is_canonical_and_paths_are_absolute(tmp_path, monkeypatch):
    assert BatchSpec("c100").key() == "c100|skimage|b16|s0|224"
    assert BatchSpec("flowers", "noise", 8, 3, 96).key() == "flowers|noise|b8|s3|96"
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    assert BatchSpec("c100", "data").key() == BatchSpec("c100", str(tmp_path / "data")).key()
    assert BatchSpec("c100", "data").key() == f"c100|{(tmp_path / 'data').resolve()}|b16|s0|224"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"dataset": "mnist"}, "unknown dataset 'mnist'; known: c100"),
        ({"dataset": "c100", "batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"dataset": "c100", "batch_size": 2.0}, "batch_size must be an integer >= 1"),
        ({"dataset": "c100", "image_size": 7}, "image_size must be an integer >= 8, got 7"),
        ({"dataset": "c100", "seed": -1}, "seed must be an integer >= 0"),
        (
            {"dataset": "c100", "source": "skimag"},
            "skimag: no such data folder; a source is .auto. or .train. or .skimage. or .matched. or .noise.",
        ),
    ],
)
def test_bad_specs_are_refused(kwargs, message):
    spec = BatchSpec(**kwargs)
    with pytest.raises(AutoproxError, match=message):
        spec.validate()
    with pytest.raises(AutoproxError, match=message):
        make_batch(spec)


# --- generated sources -----------------------------------------------------------------------


@pytest.mark.parametrize("source", ["skimage", "matched", "noise"])
@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_shapes_dtypes_and_label_ranges(dataset, source):
    images, labels = make_batch(BatchSpec(dataset, source, batch_size=64, image_size=SMALL))
    assert images.shape == (64, DATASETS[dataset].channels, SMALL, SMALL) and images.dtype == torch.float32
    assert labels.shape == (64,) and labels.dtype == torch.int64
    assert 0 <= labels.min() and labels.max() < DATASETS[dataset].num_classes
    assert torch.isfinite(images).all()


def test_default_batch_is_224():
    images, labels = make_batch(BatchSpec("imagenet"))
    assert images.shape == (16, 3, 224, 224) and labels.shape == (16,)


@pytest.mark.parametrize("source", ["skimage", "noise"])
def test_deterministic_and_independent_of_global_rng(source):
    spec = BatchSpec("chaoyang" if source == "noise" else "flowers", source, batch_size=8, seed=5, image_size=SMALL)
    torch.manual_seed(1)
    np.random.seed(1)
    first = make_batch(spec)
    torch.manual_seed(2)
    np.random.seed(2)
    torch.rand(10)
    second = make_batch(spec)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    other = make_batch(BatchSpec(spec.dataset, source, batch_size=8, seed=6, image_size=SMALL))
    assert not torch.equal(first[0], other[0])
    assert not torch.equal(first[1], other[1])


def test_skimage_batches_are_photographs_not_noise():
    photos, _ = make_batch(BatchSpec("c100", batch_size=8, image_size=64))
    noise, _ = make_batch(BatchSpec("c100", "noise", batch_size=8, image_size=64))
    assert neighbour_correlation(photos) > 0.8
    assert abs(neighbour_correlation(noise)) < 0.05
    # crops differ from one another (random photo, size, position and flip)
    assert len({tuple(image.flatten()[:50].tolist()) for image in photos}) == len(photos)


def test_skimage_batches_are_plausibly_normalised():
    images, _ = make_batch(BatchSpec("imagenet", batch_size=32, image_size=64))
    mean, std = images.mean((0, 2, 3)), images.std((0, 2, 3))
    assert (mean.abs() < 1.0).all(), mean
    assert ((std > 0.5) & (std < 1.5)).all(), std
    raw = denormalise(images)
    assert raw.min() >= -1e-4 and raw.max() <= 1 + 1e-4  # antialiased bilinear stays within [0, 1]


def test_chaoyang_uses_the_histology_image():
    import skimage.data

    histology, _ = make_batch(BatchSpec("chaoyang", batch_size=16, image_size=64))
    natural, _ = make_batch(BatchSpec("c100", batch_size=16, image_size=64))
    assert not torch.allclose(histology, natural)
    ihc_mean = torch.from_numpy(skimage.data.immunohistochemistry()).float().mean((0, 1)) / 255
    batch_mean = denormalise(histology).mean((0, 2, 3))
    assert torch.allclose(batch_mean, ihc_mean, atol=0.06), (batch_mean, ihc_mean)
    assert neighbour_correlation(histology) > 0.8


def test_matched_batches_take_each_data_set_s_subject_and_resolution():
    from sklearn.datasets import load_sample_image

    from vit_space.data.readers import resize

    def batch(dataset: str, source: str) -> torch.Tensor:
        return make_batch(BatchSpec(dataset, source, batch_size=8, image_size=96))[0]

    def detail(images: torch.Tensor) -> float:
        """Share of the images' energy that a trip through 32 px loses."""
        raw = denormalise(images)
        trip = torch.stack([resize(resize(i, 32), 96) for i in raw])
        return float(((raw - trip) ** 2).mean() / raw.var())

    c100, photos = batch("c100", "matched"), batch("c100", "skimage")
    assert detail(c100) < 0.2 * detail(photos)  # CIFAR's 32 px, upsampled (measured: 0.006 vs 0.054)
    assert neighbour_correlation(c100) > neighbour_correlation(photos)
    flower = torch.tensor(load_sample_image("flower.jpg")).float() / 255  # (H, W, 3)

    def colour_bins(pixels: torch.Tensor) -> torch.Tensor:  # (..., 3) in [0, 1] -> 8 levels per channel
        q = (pixels.clamp(0, 1) * 7.999).long()
        return q[..., 0] * 64 + q[..., 1] * 8 + q[..., 2]

    present = torch.zeros(512, dtype=torch.bool)
    present[colour_bins(flower).flatten()] = True  # the colours the photograph has

    def share_of_flower_colours(images: torch.Tensor) -> torch.Tensor:  # per image
        return present[colour_bins(denormalise(images).permute(0, 2, 3, 1))].float().mean((1, 2))

    assert (share_of_flower_colours(batch("flowers", "matched")) > 0.99).all()  # crops of the flower photo
    assert share_of_flower_colours(batch("flowers", "skimage")).mean() < 0.95
    for same in ("chaoyang", "imagenet"):  # subject and resolution already what skimage gives
        assert torch.equal(batch(same, "matched"), batch(same, "skimage"))
    assert BatchSpec("c100", "matched").key() == "c100|matched|b16|s0|224"
    for same in (BatchSpec("chaoyang", "matched"), BatchSpec("c100", "matched", image_size=32)):  # one cache entry
        assert same.key() == replace(same, source="skimage").key()
        assert torch.equal(make_batch(same)[0], make_batch(replace(same, source="skimage"))[0])


# --- CIFAR-100 folders -----------------------------------------------------------------------


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_cifar_python_folder_gives_real_images_and_labels(tmp_path, protocol):
    pixels, labels = write_cifar_python(tmp_path / "cifar-100-python", protocol=protocol)
    spec = BatchSpec("c100", str(tmp_path / "cifar-100-python"), batch_size=6, seed=1, image_size=32)
    images, batch_labels = make_batch(spec)
    assert images.shape == (6, 3, 32, 32) and batch_labels.dtype == torch.int64
    # at image_size 32 the upscale is the identity: each image is one of the written rows, with its label
    rows = (denormalise(images) * 255).round().to(torch.uint8).reshape(6, -1).numpy()
    for row, label in zip(rows, batch_labels.tolist()):
        (match,) = np.flatnonzero((pixels == row).all(axis=1))
        assert labels[match] == label
    assert len(set(map(bytes, rows))) == 6  # distinct images
    again = make_batch(spec)
    assert torch.equal(images, again[0]) and torch.equal(batch_labels, again[1])


def test_cifar_python_upscales_to_image_size(tmp_path):
    write_cifar_python(tmp_path)
    images, _ = make_batch(BatchSpec("c100", str(tmp_path), batch_size=4, image_size=64))
    assert images.shape == (4, 3, 64, 64)


def test_cifar_accepts_python2_style_pickle_of_str_keys(tmp_path):
    rng = np.random.default_rng(0)
    content = {"data": rng.integers(0, 256, (5, 3072), dtype=np.uint8), "fine_labels": np.arange(5, dtype=np.int64)}
    (tmp_path / "train").write_bytes(pickle.dumps(content))
    _, labels = make_batch(BatchSpec("c100", str(tmp_path), batch_size=5, image_size=32))
    assert sorted(labels.tolist()) == [0, 1, 2, 3, 4]


class _Hostile:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_hostile_pickle_is_refused_without_side_effect(tmp_path):
    marker = tmp_path / "pwned"
    content = {b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 1], b"x": _Hostile(f"touch '{marker}'")}
    (tmp_path / "train").write_bytes(pickle.dumps(content))
    with pytest.raises(AutoproxError, match=r"train: refusing to unpickle (posix|nt|os)\.system"):
        make_batch(BatchSpec("c100", str(tmp_path), batch_size=2, image_size=32))
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not a pickle at all", "cannot read as a CIFAR-100 pickle"),
        (pickle.dumps([1, 2, 3]), "not a CIFAR-100 pickle \\(expected a dict, got list\\)"),
        (pickle.dumps({b"fine_labels": [0]}), "no 'data' entry"),
        (pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"fine_labels": [0, 1]}), "'data' must be an"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0]}), "'fine_labels' must be 2"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 100]}), "label 100 is out of range"),
    ],
)
def test_bad_cifar_pickles_are_refused(tmp_path, content, message):
    (tmp_path / "train").write_bytes(content)
    with pytest.raises(AutoproxError, match=message):
        make_batch(BatchSpec("c100", str(tmp_path), batch_size=2, image_size=32))


def test_cifar_binary_folder(tmp_path):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (12, 3072), dtype=np.uint8)
    fine = rng.integers(0, 100, 12).astype(np.uint8)
    coarse = fine // 5
    (tmp_path / "train.bin").write_bytes(np.concatenate([coarse[:, None], fine[:, None], pixels], axis=1).tobytes())
    images, labels = make_batch(BatchSpec("c100", str(tmp_path), batch_size=5, seed=2, image_size=32))
    rows = (denormalise(images) * 255).round().to(torch.uint8).reshape(5, -1).numpy()
    for row, label in zip(rows, labels.tolist()):
        (match,) = np.flatnonzero((pixels == row).all(axis=1))
        assert fine[match] == label
    bigger, _ = make_batch(BatchSpec("c100", str(tmp_path), batch_size=5, seed=2, image_size=48))
    assert bigger.shape == (5, 3, 48, 48)


def test_cifar_binary_of_wrong_size_is_refused(tmp_path):
    (tmp_path / "train.bin").write_bytes(bytes(3074 * 2 + 1))
    with pytest.raises(AutoproxError, match="not a multiple of the 3074-byte CIFAR-100 record"):
        make_batch(BatchSpec("c100", str(tmp_path), batch_size=1, image_size=32))


def test_batch_larger_than_the_data_is_refused(tmp_path):
    write_cifar_python(tmp_path, num_images=4)
    with pytest.raises(AutoproxError, match=r"batch size \(--batch\) 5 exceeds the 4 images"):
        make_batch(BatchSpec("c100", str(tmp_path), batch_size=5, image_size=32))


# --- ImageFolder trees -----------------------------------------------------------------------


def test_image_folder_labels_follow_sorted_folder_order(tmp_path):
    write_image_folder(tmp_path)  # written order b_tulip, a_rose, c_daisy -> sorted a_rose=0, b_tulip=1, c_daisy=2
    red_by_label = {1: 40, 0: 120, 2: 200}
    images, labels = make_batch(BatchSpec("flowers", str(tmp_path), batch_size=9, image_size=SMALL))
    assert images.shape == (9, 3, SMALL, SMALL) and labels.dtype == torch.int64
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for red, label in zip(red_level(images).tolist(), labels.tolist()):
        assert red == pytest.approx(red_by_label[label], abs=1)


def test_image_folder_is_seeded_and_centre_cropped(tmp_path):
    write_image_folder(tmp_path, per_class=4)
    spec = BatchSpec("chaoyang", str(tmp_path), batch_size=4, seed=0, image_size=SMALL)
    first, second = make_batch(spec), make_batch(spec)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    choices = {tuple(make_batch(BatchSpec("chaoyang", str(tmp_path), 4, seed, SMALL))[1].tolist()) for seed in range(5)}
    assert len(choices) > 1


def test_image_folder_crop_keeps_the_centre(tmp_path):
    # a wide image: left third blue, middle third green, right third red; the centre crop is all green
    array = np.zeros((30, 90, 3), np.uint8)
    array[:, :30, 2] = array[:, 30:60, 1] = array[:, 60:, 0] = 255
    (tmp_path / "only").mkdir()
    Image.fromarray(array).save(tmp_path / "only" / "x.bmp")
    images, labels = make_batch(BatchSpec("imagenet", str(tmp_path), batch_size=1, image_size=16))
    raw = denormalise(images)[0]
    assert labels.tolist() == [0]
    assert raw[1].min() > 0.95 and raw[0].max() < 0.05 and raw[2].max() < 0.05


def test_image_folder_with_too_many_classes_is_refused(tmp_path):
    write_image_folder(tmp_path, classes=tuple(f"class{i}" for i in range(5)), per_class=1)
    with pytest.raises(AutoproxError, match="5 class folders, more than the 4 classes of chaoyang"):
        make_batch(BatchSpec("chaoyang", str(tmp_path), batch_size=2, image_size=SMALL))


def test_image_folder_with_an_empty_class_is_refused(tmp_path):
    write_image_folder(tmp_path, classes=("a", "b"), per_class=1)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("no images here")
    with pytest.raises(AutoproxError, match="class folder 'c' holds no images"):
        make_batch(BatchSpec("flowers", str(tmp_path), batch_size=2, image_size=SMALL))


def test_unreadable_image_is_refused(tmp_path):
    write_image_folder(tmp_path, classes=("a",), per_class=1)
    (tmp_path / "a" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(AutoproxError, match="broken.jpg: cannot read image"):
        make_batch(BatchSpec("flowers", str(tmp_path), batch_size=2, image_size=SMALL))


# --- paths that are not data -----------------------------------------------------------------


LAYOUT_MESSAGE = (
    "not a CIFAR-10/100 folder \\(data_batch_\\*, train or \\*.bin training files\\) or an ImageFolder tree"
)


def test_unknown_layouts_are_refused(tmp_path):
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "x.png")  # images without class folders
    (tmp_path / "textonly" / "a").mkdir(parents=True)
    (tmp_path / "textonly" / "a" / "x.txt").write_text("hi")
    (tmp_path / "file.png").write_bytes(b"")
    for path in ("flat", "textonly", "file.png"):
        spec = BatchSpec("c100", str(tmp_path / path))
        with pytest.raises(AutoproxError, match=f"{path}: {LAYOUT_MESSAGE}"):
            spec.validate()
        with pytest.raises(AutoproxError, match=LAYOUT_MESSAGE):
            make_batch(spec)


def test_nonexistent_path_is_refused(tmp_path):
    with pytest.raises(AutoproxError, match="missing: no such data folder"):
        make_batch(BatchSpec("c100", str(tmp_path / "missing")))
