"""The main job needs nothing from the network: Fashion-MNIST's default probe rows ship with autoprox."""

import json
import shutil
import socket

import numpy as np
import pytest
import torch

from gp_proxy.errors import AutoproxError
from vit_space.bench.benchmark import SHIPPED_DIR
from vit_space.cli import main
from vit_space.data import images as datasets
from vit_space.data.batches import BatchSpec, make_batch
from vit_space.data.images import PROBE_FILE, PROBE_ROWS, PROBE_SEED, PROBE_SHA256, shipped_probe_rows

fmnist_missing = datasets.fmnist_folder() is None


@pytest.fixture
def no_fmnist(monkeypatch, tmp_path):
    """No Fashion-MNIST anywhere autoprox looks, no network, a fresh HOME and user cache."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("AUTOPROX_FMNIST_DIR", str(empty))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(datasets, "DEBIAN_FMNIST", tmp_path / "no-debian")
    monkeypatch.setattr(datasets, "_builtin", datasets._builtin.__wrapped__)  # nothing loaded earlier is reused

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    assert datasets.fmnist_folder() is None


def test_shipped_rows_are_the_default_picks():
    shipped = shipped_probe_rows()
    spec = BatchSpec("fmnist", "train", PROBE_ROWS, PROBE_SEED, 28)
    expected = torch.randperm(shipped.num_train, generator=torch.Generator().manual_seed(spec.seed))[:PROBE_ROWS]
    assert shipped.num_train == 60000 and torch.equal(shipped.indices, expected)
    assert shipped.images.shape == (PROBE_ROWS, 1, 28, 28) and shipped.images.dtype == torch.uint8
    assert shipped.labels.dtype == torch.int64 and 0 <= int(shipped.labels.min()) <= int(shipped.labels.max()) < 10
    assert PROBE_FILE.stat().st_size < 64 * 1024


@pytest.mark.skipif(fmnist_missing, reason="Fashion-MNIST is not on disk (apt-get install dataset-fashion-mnist)")
@pytest.mark.parametrize("batch_size", [1, 16, PROBE_ROWS])
def test_shipped_batch_is_byte_identical_to_the_data_sets(monkeypatch, batch_size):
    spec = BatchSpec("fmnist", "train", batch_size, PROBE_SEED, 28)
    full = make_batch(spec)
    monkeypatch.setattr(datasets, "fmnist_folder", lambda: None)
    monkeypatch.setattr(datasets, "load_images", lambda *a: pytest.fail("the shipped rows should be used"))
    shipped = make_batch(spec)
    assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(full, shipped))


@pytest.mark.skipif(fmnist_missing, reason="Fashion-MNIST is not on disk (apt-get install dataset-fashion-mnist)")
def test_shipped_rows_are_the_data_sets_rows_and_statistics():
    data, shipped = datasets.load_images("fmnist"), shipped_probe_rows()
    assert torch.equal(data.train_images[shipped.indices], shipped.images)
    assert torch.equal(data.train_labels[shipped.indices], shipped.labels)
    assert (shipped.mean, shipped.std) == data.mean_std()


def test_normalisation_statistics_do_not_depend_on_torch_threads():
    data = datasets.load_images("digits")
    torch.set_num_threads(2)
    two = data.mean_std()
    torch.set_num_threads(1)
    assert data.mean_std() == two


def test_a_changed_shipped_file_is_refused(tmp_path):
    copy = tmp_path / "rows.npz"
    shutil.copy(PROBE_FILE, copy)
    raw = bytearray(copy.read_bytes())
    raw[len(raw) // 2] ^= 1
    copy.write_bytes(bytes(raw))
    with pytest.raises(AutoproxError, match="sha256 .* does not match the expected"):
        shipped_probe_rows(copy, PROBE_SHA256)
    with pytest.raises(AutoproxError, match="cannot read the shipped probe rows"):
        shipped_probe_rows(tmp_path / "missing.npz", PROBE_SHA256)


@pytest.mark.parametrize("spec", [BatchSpec("fmnist", "train", 16, 1, 28), BatchSpec("fmnist", "train", 65, 0, 28)])
def test_other_picks_still_need_the_data_set(no_fmnist, spec):
    with pytest.raises(AutoproxError, match="Fashion-MNIST not found"):
        make_batch(spec)


def test_the_default_batch_needs_no_data_set(no_fmnist):
    images, labels = make_batch(BatchSpec("fmnist", "auto", 16, 0, 28))
    assert images.shape == (16, 1, 28, 28) and torch.isfinite(images).all() and labels.shape == (16,)
    with pytest.raises(AutoproxError, match="has 28x28 images but the batch asks for 32x32"):
        make_batch(BatchSpec("fmnist", "auto", 16, 0, 32))


def test_the_main_jobs_statistics_step_needs_no_network(no_fmnist, tmp_path, capsys):
    cache = tmp_path / "cache"
    assert main(["stats", "--bench", "af-tiny", "--limit", "1", "--cache", str(cache), "--quiet"]) == 0
    keys = {json.loads(torch.load(p, weights_only=True)["key"])["batch"] for p in cache.rglob("*.pt")}
    assert keys == {"fmnist|train|b16|s0|28", "digits|train|b16|s0|28"}  # the keys a full data set gives
    assert "2 entries" in capsys.readouterr().out


@pytest.mark.slow
def test_the_main_job_runs_offline_on_a_slice_of_af_tiny(no_fmnist, tmp_path, monkeypatch):
    payload = json.loads((SHIPPED_DIR / "af-tiny.json").read_text())
    bench = tmp_path / "af-tiny-slice.json"
    bench.write_text(json.dumps({**payload, "records": payload["records"][:8]}))
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--bench", str(bench), "--iterations", "10", "--search-budget", "3", "--quiet"]) == 0
    fitness = json.loads((tmp_path / "runs/quickstart/discover/proxies/rank01.json").read_text())["fitness"]
    assert np.isfinite(fitness["jcm_train"]) and (tmp_path / "runs/quickstart/search/best_arch.json").is_file()
