"""Training data sets, the trainer and the resumable benchmark build, on real images."""

import argparse
import gzip
import json
import pickle
import random
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gp_proxy.errors import AutoproxError
from vit_space.bench.benchmark import load_bench
from vit_space.bench.build import BuildPlan, build_bench, journal_path, read_journal
from vit_space.bench.training import Recipe, train, validate_fits
from vit_space.cli import main
from vit_space.cli.bench_commands import _build_command
from vit_space.cli.parser import build_parser
from vit_space.data import images as datasets
from vit_space.data import readers
from vit_space.data.images import FMNIST_FILES, fetch_fmnist, load_images
from vit_space.spaces import get_space

QUICK = Recipe(steps=30, batch_size=16, test_size=200)
fmnist_missing = not any(all((d / f).is_file() for f in FMNIST_FILES) for d in datasets.fmnist_dirs())


@pytest.fixture(scope="module")
def digits():
    return load_images("digits")


@pytest.fixture(scope="module")
def space():
    return get_space("af-tiny")


def small_arch(space, seed=0):
    rng = random.Random(seed)
    while True:
        arch = space.sample(rng)
        if space.num_params(arch, 10) < 40_000:
            return arch


def test_small_archs_differ(space):
    assert len({space.arch_hash(small_arch(space, s)) for s in (0, 1, 2)}) == 3


# --- data sets -------------------------------------------------------------------------------


def test_digits_are_28x28_grey_with_a_fixed_split(digits):
    assert digits.train_images.shape == (1348, 1, 28, 28) and digits.test_images.shape == (449, 1, 28, 28)
    assert digits.train_images.dtype == torch.uint8 and set(digits.train_labels.unique().tolist()) == set(range(10))
    assert load_images("digits") is digits  # cached, and the split never depends on a training seed
    mean, std = digits.mean_std()
    assert 0.2 < mean[0] < 0.4 and 0.2 < std[0] < 0.45


@pytest.mark.skipif(
    fmnist_missing, reason="Fashion-MNIST IDX files not installed (apt-get install dataset-fashion-mnist)"
)
def test_fashion_mnist_from_idx_files():
    data = load_images("fmnist")
    assert data.train_images.shape == (60000, 1, 28, 28) and data.test_images.shape == (10000, 1, 28, 28)
    assert torch.bincount(data.test_labels).tolist() == [1000] * 10  # the published balanced test set


def test_fmnist_fetch_from_file_url_checks_sha256(tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    blobs = {
        name: gzip.compress(
            bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in images.shape) + images.tobytes()
        )
        for name in FMNIST_FILES
    }
    for name, blob in blobs.items():
        (served / name).write_bytes(blob)
    with pytest.raises(AutoproxError, match="does not match the expected"):
        fetch_fmnist(served.as_uri(), tmp_path / "dest")
    assert not list((tmp_path / "dest").glob("*.gz"))  # nothing half-saved
    import hashlib

    monkeypatch.setattr(datasets, "FMNIST_FILES", {n: hashlib.sha256(b).hexdigest() for n, b in blobs.items()})
    folder = fetch_fmnist(served.as_uri(), tmp_path / "dest")
    assert readers.read_idx(folder / "t10k-images-idx3-ubyte.gz").tolist() == images.tolist()


def test_corrupt_idx_file_is_refused(tmp_path):
    (tmp_path / "x.gz").write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\x05abc"))
    with pytest.raises(AutoproxError, match="holds 3 bytes, its header says"):
        readers.read_idx(tmp_path / "x.gz")


def test_cifar10_python_folder(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in (("data_batch_1", 6), ("data_batch_2", 4), ("test_batch", 5)):
        with open(tmp_path / name, "wb") as f:
            pickle.dump(
                {b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}, f
            )
    data = load_images(str(tmp_path))
    assert data.train_images.shape == (10, 3, 32, 32) and data.test_images.shape == (5, 3, 32, 32)
    assert data.num_classes <= 10


def test_image_folder_with_train_and_val(tmp_path):
    for split in ("train", "val"):
        for c, colour in enumerate(("red", "blue")):
            (tmp_path / split / f"class{c}").mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (40, 30), colour).save(tmp_path / split / f"class{c}" / f"{i}.png")
    data = load_images(str(tmp_path), image_size=16)
    assert data.train_images.shape == (6, 3, 16, 16) and data.num_classes == 2
    assert data.train_images[0, 0].float().mean() > 200 and data.train_images[-1, 2].float().mean() > 200


def test_unknown_layout_names_the_layouts(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(AutoproxError, match="unknown data layout; understood: CIFAR-10/100 python"):
        load_images(str(tmp_path))
    with pytest.raises(AutoproxError, match="unknown data set 'mnist': not one of fmnist, digits and not a folder"):
        load_images("mnist")


# --- spaces and the trainer ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["af-tiny", "pit-tiny", "af-tiny@3x32"])
def test_small_spaces_count_exactly(name):
    space, rng = get_space(name), random.Random(3)
    for _ in range(5):
        arch = space.validate(space.sample(rng))
        model = space.build(arch, num_classes=10)
        assert sum(p.numel() for p in model.parameters()) == space.num_params(arch, 10)
        out = model(torch.zeros(2, space.in_chans, space.img_size, space.img_size))
        assert out.shape == (2, 10)


def test_bad_space_input_suffix():
    with pytest.raises(AutoproxError, match="CHANNELSxSIDE"):
        get_space("af-tiny@rgb")


@pytest.mark.slow
def test_training_learns_and_is_reproducible(space, digits):
    arch, recipe = small_arch(space), Recipe(steps=150, test_size=200)
    first, again = train(space, arch, digits, recipe, seed=0), train(space, arch, digits, recipe, seed=0)
    other = train(space, arch, digits, recipe, seed=1)
    assert first.top1 == again.top1 and first.final_loss == again.final_loss
    assert first.top1 > 30  # chance is 10%
    assert other.final_loss != first.final_loss


def test_space_and_data_mismatch_is_refused(digits):
    with pytest.raises(AutoproxError, match="takes 3-channel 32x32 images but digits has 1-channel 28x28 ones"):
        validate_fits(get_space("af-tiny@3x32"), digits)


def test_bad_recipe_values_are_named():
    with pytest.raises(AutoproxError, match="steps=0, lr=-1"):
        Recipe(steps=0, lr=-1)
    with pytest.raises(AutoproxError, match="unknown recipe field"):
        Recipe.from_dict({"epochz": 3})


# --- building a benchmark --------------------------------------------------------------------


def plan_of(space, archs, recipe=QUICK, seeds=(0, 1)):
    return BuildPlan(space, tuple(archs), ("digits",), recipe, seeds)


@pytest.mark.slow
def test_build_resumes_after_interruption_with_the_same_numbers(space, tmp_path, monkeypatch):
    archs = [small_arch(space, s) for s in (0, 1, 2)]
    whole = build_bench(plan_of(space, archs), tmp_path / "whole.json", progress=False)
    calls = []
    import vit_space.bench.build as bb

    def interrupted(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(1)
        return train(*args, **kwargs)

    monkeypatch.setattr(bb, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_bench(plan_of(space, archs), tmp_path / "cut.json", progress=False)
    partial = json.loads((tmp_path / "cut.json").read_text())
    assert len(partial["records"]) == 2 and "digits_base_acc" not in partial["records"][1]  # seed 1 of arch 1 missing
    monkeypatch.setattr(bb, "train", train)
    with pytest.raises(AutoproxError, match="exists: pass --resume"):
        build_bench(plan_of(space, archs), tmp_path / "cut.json", progress=False)
    build_bench(plan_of(space, archs), tmp_path / "cut.json", resume=True, progress=False)
    resumed, full = json.loads((tmp_path / "cut.json").read_text()), json.loads(whole.read_text())

    def numbers(records):
        return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in records]

    assert numbers(resumed["records"]) == numbers(full["records"])
    bench = load_bench(tmp_path / "cut.json")
    assert bench.space == "af-tiny" and bench.fields == ["digits_base_acc"] and bench.datasets("base") == ["digits"]
    assert full["noise"]["digits"]["pairs"][0]["n"] == 3


def test_build_shards_fill_one_benchmark(space, tmp_path):
    archs = [small_arch(space, s) for s in (0, 1)]
    for shard in ((0, 2), (1, 2)):
        build_bench(plan_of(space, archs), tmp_path / "b.json", resume=True, shard=shard, progress=False)
    _, runs = read_journal(journal_path(tmp_path / "b.json"))
    assert sorted((r["arch"], r["seed"]) for r in runs) == sorted(
        (space.arch_hash(a), s) for a in archs for s in (0, 1)
    )


def test_resume_from_another_configuration_or_corrupt_journal(space, tmp_path):
    archs = [small_arch(space)]
    build_bench(plan_of(space, archs, seeds=(0,)), tmp_path / "b.json", progress=False)
    with pytest.raises(AutoproxError, match=r"belongs to another build \(different recipe\)"):
        build_bench(
            plan_of(space, archs, Recipe(steps=31, batch_size=16, test_size=200), seeds=(0,)),
            tmp_path / "b.json",
            resume=True,
            progress=False,
        )
    grown = [*archs, small_arch(space, 1)]
    build_bench(plan_of(space, grown, seeds=(0, 1)), tmp_path / "b.json", resume=True, progress=False)  # may grow
    assert len(read_journal(journal_path(tmp_path / "b.json"))[1]) == 4
    with pytest.raises(AutoproxError, match="has archs this build lacks"):
        build_bench(plan_of(space, grown[1:], seeds=(0, 1)), tmp_path / "b.json", resume=True, progress=False)
    journal = journal_path(tmp_path / "b.json")
    journal.write_text(journal.read_text() + '{"arch": "cut off mid-wri')  # an interrupted append: ignored
    assert len(read_journal(journal)[1]) == 4
    journal.write_text("not json\n")
    with pytest.raises(AutoproxError, match="is corrupt"):
        build_bench(plan_of(space, archs, seeds=(0,)), tmp_path / "b.json", resume=True, progress=False)


def test_cli_bench_build_and_bad_inputs(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert (
        main(
            [
                "bench",
                "build",
                "--space",
                "af-tiny",
                "--dataset",
                "digits",
                "--archs",
                "2",
                "--seeds",
                "1",
                "--steps",
                "5",
                "--test-size",
                "50",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert "2 architectures; fields: digits_base_acc" in capsys.readouterr().out
    command = json.loads(out.read_text())["command"]
    assert command.startswith("autoprox bench build --space af-tiny")
    rerun = vars(build_parser().parse_args(shlex.split(command)[1:]))  # the recorded command parses again
    assert rerun["archs"] == "2" and rerun["seeds"] == "1" and rerun["steps"] == 5 and rerun["test_size"] == 50
    assert rerun["out"] == str(out) and rerun["cluster"] is None and "--device" not in command
    flags = argparse.Namespace(space="af-tiny", on=True, off=False, unset=None, quiet=True, lr=0.5)
    assert _build_command(flags) == "autoprox bench build --space af-tiny --on --lr 0.5"
    (tmp_path / "empty").mkdir()
    cases = [
        (["--dataset", str(tmp_path / "empty")], "unknown data layout"),
        (["--dataset", "digits", "--space", "af-tiny@3x32"], "takes 3-channel 32x32 images"),
        (["--dataset", "digits", "--seeds", "x"], "--seeds takes K"),
        (["--dataset", "digits", "--shard", "2/2"], "shard must be I/N"),
    ]
    for extra, message in cases:
        argv = [
            "bench",
            "build",
            "--space",
            "af-tiny",
            "--archs",
            "1",
            "--steps",
            "2",
            "--out",
            str(tmp_path / "x.json"),
        ]
        assert main(argv + extra + ["--quiet"]) == 2
        assert message in capsys.readouterr().err


# --- probing on the data the networks were trained on, and the whole job -------------------


def test_auto_source_probes_the_training_images(digits):
    from vit_space.data.batches import BatchSpec, make_batch

    spec = BatchSpec("digits", batch_size=8, image_size=28)
    assert spec.origin == "train" and spec.key() == "digits|train|b8|s0|28"
    images, labels = make_batch(spec)
    mean, std = digits.mean_std()
    rows = [(digits.train_images.float() / 255 - mean[0]) / std[0] - images[i] for i in range(8)]
    assert all(torch.isclose(r.flatten(1).abs().amax(1), torch.tensor(0.0), atol=1e-6).any() for r in rows)
    assert all(
        int(labels[i])
        == int(digits.train_labels[torch.isclose(r.flatten(1).abs().amax(1), torch.tensor(0.0), atol=1e-6)][0])
        for i, r in enumerate(rows)
    )


def test_probing_a_space_on_data_with_other_channels_is_refused():
    from vit_space.data.batches import BatchSpec
    from vit_space.probe.cache import ProbeSpec, probe_arch

    space = get_space("autoformer")
    arch = space.sample(random.Random(0))
    with pytest.raises(AutoproxError, match="takes 3-channel images but digits has 1-channel ones"):
        probe_arch(space, arch, ProbeSpec(BatchSpec("digits", image_size=None)))


@pytest.mark.slow
def test_the_whole_job_runs_on_a_built_benchmark(tmp_path, capsys):
    bench = tmp_path / "mini.json"
    assert (
        main(
            [
                "bench",
                "build",
                "--space",
                "af-tiny",
                "--dataset",
                "digits",
                "--archs",
                "8",
                "--seeds",
                "1",
                "--steps",
                "40",
                "--test-size",
                "100",
                "--out",
                str(bench),
                "--quiet",
            ]
        )
        == 0
    )
    argv = [
        "run",
        "--bench",
        str(bench),
        "--out",
        str(tmp_path / "run"),
        "--iterations",
        "30",
        "--search-budget",
        "12",
        "--cache",
        str(tmp_path / "cache"),
        "--quiet",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "searched architecture" in out and (tmp_path / "run" / "export" / "proxy.py").is_file()
    best = json.loads((tmp_path / "run" / "search" / "best_arch.json").read_text())
    assert get_space("af-tiny").validate(best["arch"])
    assert main(argv) == 0  # a rerun resumes every step


def test_a_cifar_folder_benchmark_is_built_probed_and_ranked(tmp_path, capsys):
    rng = np.random.default_rng(1)
    folder = tmp_path / "my-cifar"
    folder.mkdir()
    for name, n in (("data_batch_1", 64), ("test_batch", 32)):
        with open(folder / name, "wb") as f:
            pickle.dump(
                {b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), b"labels": [i % 10 for i in range(n)]}, f
            )
    out = tmp_path / "b.json"
    assert (
        main(
            [
                "bench",
                "build",
                "--space",
                "af-tiny@3x32",
                "--dataset",
                str(folder),
                "--archs",
                "5",
                "--seeds",
                "1",
                "--steps",
                "3",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["datasets"]["my-cifar"]["source"] == str(folder)
    assert (
        main(
            [
                "rank",
                "--bench",
                str(out),
                "--proxy",
                "params,synflow",
                "--holdout",
                "0",
                "--quiet",
                "--cache",
                str(tmp_path / "cache"),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "my-cifar_base_acc" in table and "synflow" in table


# --- the shipped benchmark -------------------------------------------------------------------


def test_shipped_benchmark_is_complete():
    bench = load_bench("af-tiny")
    payload = json.loads(Path(bench.source).read_text())
    space = get_space(bench.space)
    assert len(bench) >= 80 and bench.fields == ["fmnist_base_acc", "digits_base_acc"]
    assert all(np.isfinite(bench.accuracy(f)).all() for f in bench.fields)
    assert len(payload["seeds"]) >= 2 and set(payload["noise"]) == {"fmnist", "digits"}
    assert all(r["params"] == space.num_params(r["arch"], 10) for r in payload["records"])


@pytest.mark.slow
def test_a_shipped_run_retrains_to_its_numbers_and_a_retrain_is_bit_equal(digits, space):
    bench = load_bench("af-tiny")
    payload = json.loads(Path(bench.source).read_text())
    recipe = Recipe.from_dict(payload["recipe"])
    record = min(payload["records"], key=lambda r: r["digits_seconds"])  # the quickest to retrain
    _, runs = read_journal(journal_path(bench.source))
    logged = next(r for r in runs if (r["arch"], r["dataset"], r["seed"]) == (record["hash"], "digits", 0))
    torch.set_num_threads(1)
    result = train(space, record["arch"], digits, recipe, seed=0)
    # the file's accuracy; the loss is allowed 1e-4 (another CPU or BLAS can change its last bits)
    assert result.top1 == record["digits_base_seeds"]["0"]
    assert result.final_loss == pytest.approx(logged["final_loss"], rel=1e-4)
    short = Recipe.from_dict({**payload["recipe"], "steps": 60})
    first, again = (train(space, record["arch"], digits, short, seed=0) for _ in range(2))
    assert (first.top1, first.final_loss) == (again.top1, again.final_loss)  # bit-equal: same machine, one thread


def test_a_saved_proxy_scores_small_networks_at_their_own_input_size(tmp_path):
    from gp_proxy.store import load_proxy
    from vit_space.data.batches import BatchSpec
    from vit_space.probe.cache import ProbeSpec, StatsCache
    from vit_space.proxies.scores import proxy_scores

    saved = load_proxy(Path(__file__).parents[1] / "results/discovery/seed1/proxies/rank01.json")
    assert saved.probe.get("image_size", 224) == 224  # measured on 224-pixel ViT-Bench-101 networks
    space = get_space("af-tiny")
    archs = [small_arch(space, s) for s in (0, 1, 2)]
    cache = StatsCache(tmp_path)
    scores = proxy_scores(saved, space, archs, ProbeSpec(BatchSpec("digits", image_size=None)), cache, progress=False)
    assert np.isfinite(scores.values).all()
    keys = {json.loads(torch.load(p, weights_only=True)["key"])["batch"] for p in tmp_path.rglob("*.pt")}
    assert keys == {"digits|skimage|b16|s0|28"}  # the proxy's own batch source, the networks' own size
    proxy_file = str(Path(__file__).parents[1] / "results/discovery/seed1/proxies/rank01.json")
    assert (
        main(
            [
                "score",
                proxy_file,
                "--space",
                "af-tiny",
                "--sample",
                "2",
                "--dataset",
                "digits",
                "--source",
                "noise",
                "--cache",
                str(tmp_path / "other"),
                "--quiet",
            ]
        )
        == 0
    )  # an explicit --source replaces the recorded one
    keys = {json.loads(torch.load(p, weights_only=True)["key"])["batch"] for p in (tmp_path / "other").rglob("*.pt")}
    assert keys == {"digits|noise|b16|s0|28"}
