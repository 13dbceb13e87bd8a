"""ViT-Bench-101 loading, resolution, fetching and splitting, on the real shared data."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gp_proxy.errors import AutoproxError, AutoproxWarning
from vit_space.bench import benchmark as bench
from vit_space.bench.benchmark import (
    Benchmark,
    fetch_bench,
    field_dataset,
    field_name,
    load_bench,
    resolve_bench,
    search_paths,
)

# The real ViT-Bench-101 JSON files: $AUTOPROX_BENCH_DIR (as .ci/run sets it) or ../shared next to the checkout.
SHARED = Path(os.environ.get("AUTOPROX_BENCH_DIR") or bench.SHARED_DIR)
KD_FIELDS = ["c100_kd_acc", "flower_kd_acc", "chaoyang_kd_acc"]

needs_shared = pytest.mark.skipif(
    not (SHARED / "autoformer.json").is_file(), reason=f"ViT-Bench-101 not found in {SHARED} (set AUTOPROX_BENCH_DIR)"
)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """Empty bench dir and cache so that names resolve to the shared data unless a test says otherwise."""
    monkeypatch.setattr(bench, "SHARED_DIR", SHARED)
    monkeypatch.setenv("AUTOPROX_BENCH_DIR", str(tmp_path / "bench_dir"))
    monkeypatch.setenv("AUTOPROX_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AUTOPROX_BENCH_URL", raising=False)


def _records(name):
    return json.loads((SHARED / f"{name}.json").read_text())["records"]


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_json(path, payload):
    path.write_text(json.dumps(payload))
    return path


# --- field names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dataset, kind, expected",
    [
        ("c100", "kd", "c100_kd_acc"),
        ("flowers", "base", "flower_base_acc"),
        ("chaoyang", "kd", "chaoyang_kd_acc"),
        ("imagenet", "kd", "imagenet_super_acc"),
        ("imagenet", "base", "imagenet_super_acc"),
        ("flower_base_acc", "kd", "flower_base_acc"),
    ],
)
def test_field_name(dataset, kind, expected):
    assert field_name(dataset, kind) == expected


def test_field_name_of_other_data_sets_and_bad_names():
    assert field_name("fmnist", "base") == "fmnist_base_acc"
    assert field_dataset("flower_kd_acc") == "flowers" and field_dataset("my-data_base_acc") == "my-data"
    with pytest.raises(AutoproxError, match="c100, flowers, chaoyang, imagenet"):
        field_name("no spaces/slashes")
    with pytest.raises(AutoproxError, match="kd, base"):
        field_name("c100", "distilled")


# --- loading the real data -----------------------------------------------------------------


@needs_shared
def test_load_autoformer_by_name_uses_shared_fallback():
    b = load_bench("autoformer")
    assert (b.name, b.space, len(b)) == ("autoformer", "autoformer", 100)
    assert b.source == str(SHARED / "autoformer.json")
    assert b.fields == [f"{s}_{k}_acc" for s in ("c100", "flower", "chaoyang") for k in ("base", "kd")] + [
        "imagenet_super_acc"
    ]
    assert b.datasets() == ["c100", "flowers", "chaoyang"]
    assert b.datasets("base", imagenet=True) == ["c100", "flowers", "chaoyang", "imagenet"]
    first = _records("autoformer")[0]
    assert b.archs[0] == first["arch"]
    assert b.archs[0]["hidden_dim"] == 192 and len(b.archs[0]["num_heads"]) == b.archs[0]["depth"]
    c100 = b.accuracy("c100")
    assert c100.shape == (100,) and c100.dtype == np.float64 and np.isfinite(c100).all()
    assert c100[0] == pytest.approx(76.06)
    assert b.accuracy("imagenet")[0] == pytest.approx(74.644)
    assert b.accuracy("flowers", "base")[0] == pytest.approx(53.6835)
    assert b.accuracy("flower_kd_acc")[0] == pytest.approx(66.5962)


@needs_shared
def test_load_pit_by_name_has_no_imagenet():
    b = load_bench("pit")
    assert (b.space, len(b)) == ("pit", 100)
    assert "imagenet_super_acc" not in b.fields
    assert b.datasets(imagenet=True) == ["c100", "flowers", "chaoyang"]
    assert b.archs[0] == {"base_dim": 16, "mlp_ratio": 6, "depth": [2, 8, 4], "num_heads": [2, 4, 4]}
    assert b.accuracy("chaoyang")[0] == pytest.approx(83.1697)
    with pytest.raises(AutoproxError, match="no field 'imagenet_super_acc'.*c100_kd_acc"):
        b.accuracy("imagenet")


@needs_shared
def test_accuracy_is_read_only():
    with pytest.raises(ValueError):
        load_bench("pit").accuracy("c100")[0] = 0.0


@needs_shared
def test_load_from_path_uses_file_stem(tmp_path):
    path = shutil.copy(SHARED / "pit.json", tmp_path / "my_pit.json")
    b = load_bench(str(path))
    assert (b.name, b.space, b.source, len(b)) == ("my_pit", "pit", str(path), 100)
    np.testing.assert_array_equal(b.accuracy("c100"), load_bench("pit").accuracy("c100"))


def test_search_paths_order(tmp_path, monkeypatch):
    assert search_paths() == [tmp_path / "bench_dir", tmp_path / "cache" / "bench", SHARED]
    monkeypatch.delenv("AUTOPROX_BENCH_DIR")
    monkeypatch.delenv("AUTOPROX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert search_paths() == [tmp_path / "xdg" / "autoprox" / "bench", SHARED]


@needs_shared
def test_bench_dir_env_takes_priority(tmp_path):
    records = _records("autoformer")[:10]
    for d in (tmp_path / "bench_dir", tmp_path / "cache" / "bench"):
        d.mkdir(parents=True)
    _write_json(tmp_path / "cache" / "bench" / "autoformer.json", {"space": "autoformer", "records": records[:5]})
    assert len(load_bench("autoformer")) == 5  # cache beats the shared data
    _write_json(tmp_path / "bench_dir" / "autoformer.json", {"space": "autoformer", "records": records})
    b = load_bench("autoformer")
    assert (len(b), b.source) == (10, str(tmp_path / "bench_dir" / "autoformer.json"))


def test_unresolved_name_lists_places(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "SHARED_DIR", tmp_path / "no_shared")
    with pytest.raises(AutoproxError) as err:
        resolve_bench("pit")
    message = str(err.value)
    for d in (tmp_path / "bench_dir", tmp_path / "cache" / "bench", tmp_path / "no_shared"):
        assert str(d / "pit.json") in message and str(d / "gt_pit.pth") in message
    assert "autoprox bench fetch" in message and "AUTOPROX_BENCH_DIR" in message
    assert "\n" not in message


def test_unknown_name_or_missing_file():
    with pytest.raises(AutoproxError, match="'nasbench'.*autoformer, pit"):
        load_bench("nasbench")


# --- .pth files ----------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["list", "records", "mapping"])
@needs_shared
def test_pth_round_trip_equals_json(tmp_path, layout):
    records = _records("autoformer")
    payload = {
        "list": records,
        "records": {"space": "autoformer", "records": records},
        "mapping": {i: r for i, r in enumerate(records)},
    }[layout]
    path = tmp_path / "autoformer_copy.pth"
    torch.save(payload, path)
    from_pth, from_json = load_bench(path), load_bench("autoformer")
    assert from_pth.space == "autoformer" and from_pth.archs == from_json.archs
    assert from_pth.fields == from_json.fields
    for field in from_json.fields:
        np.testing.assert_array_equal(from_pth.accuracies[field], from_json.accuracies[field])


def test_pth_space_inferred_from_file_name(tmp_path):
    records = [{"arch": {"dims": [1, 2]}, "c100_kd_acc": 70.0}, {"arch": {"dims": [3]}, "c100_kd_acc": 71.0}]
    torch.save(records, tmp_path / "gt_pit_extra.pth")
    with pytest.raises(AutoproxError, match=r"gt_pit_extra\.pth: record 0: pit arch: missing fields"):
        load_bench(tmp_path / "gt_pit_extra.pth")  # read as PiT, then each architecture checked
    torch.save(records, tmp_path / "other.pth")
    with pytest.raises(AutoproxError, match="cannot tell the search space"):
        load_bench(tmp_path / "other.pth")


@needs_shared
def test_origin_file_with_wrong_sha_is_refused(tmp_path):
    path = tmp_path / "gt_autoformer.pth"
    torch.save(_records("autoformer"), path)
    with pytest.raises(AutoproxError, match=r"gt_autoformer\.pth: sha256 .* does not match the published 712ad2"):
        load_bench(path)


def test_corrupt_pth_is_refused(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a torch file")
    with pytest.raises(AutoproxError, match=r"broken\.pth: torch\.load failed"):
        load_bench(path)


# --- malformed files and missing values ----------------------------------------------------


def _archs(name, count):
    return [r["arch"] for r in _records(name)[:count]]


@needs_shared
def test_missing_values_are_nan_per_field(tmp_path):
    a, b, c = _archs("pit", 3)
    records = [
        {"arch": a, "c100_kd_acc": 70.5, "flower_kd_acc": None, "chaoyang_kd_acc": 80.0},
        {"arch": b, "c100_kd_acc": 72.0, "chaoyang_kd_acc": 81.0},
        {"arch": c, "c100_kd_acc": float("nan"), "flower_kd_acc": 60.0, "chaoyang_kd_acc": 82},
    ]
    b = load_bench(_write_json(tmp_path / "small.json", {"records": records}))
    assert (b.space, len(b)) == ("pit", 3)
    np.testing.assert_array_equal(b.accuracy("c100"), [70.5, 72.0, np.nan])
    np.testing.assert_array_equal(b.accuracy("flowers"), [np.nan, np.nan, 60.0])
    np.testing.assert_array_equal(b.accuracy("chaoyang"), [80.0, 81.0, 82.0])
    assert b.datasets() == ["c100", "flowers", "chaoyang"]


@needs_shared
def test_all_missing_field_is_not_a_field_and_is_warned_about(tmp_path):
    records = [{"arch": arch, "c100_kd_acc": 70.0, "flower_kd_acc": None} for arch in _archs("autoformer", 2)]
    with pytest.warns(AutoproxWarning, match=r"af\.json: field 'flower_kd_acc' has no value in any record"):
        b = load_bench(_write_json(tmp_path / "af.json", {"space": "autoformer", "records": records}))
    assert b.fields == ["c100_kd_acc"] and b.datasets() == ["c100"]
    with pytest.raises(AutoproxError, match="no field 'flower_kd_acc'; it has: c100_kd_acc"):
        b.accuracy("flowers")


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"records": [', "malformed JSON"),
        ('{"space": "pit", "records": []}', "no records"),
        ("[]", "no records"),
        ('"hello"', "expected a list of records"),
        ('{"records": [{"c100_kd_acc": 70.0}]}', "record 0 has no 'arch' dict"),
        ('{"records": [{"arch": [1, 2]}]}', "record 0 has no 'arch' dict"),
        ('{"records": [{"arch": {"base_dim": 16}, "c100_kd_acc": "hi"}]}', "record 0 field 'c100_kd_acc' is not a num"),
        ('{"records": [{"arch": {"base_dim": 16}, "c100_kd_acc": true}]}', "is not a number"),
        ('{"space": "nasbench", "records": [{"arch": {}}]}', "unknown space 'nasbench'"),
    ],
)
def test_malformed_json_is_refused(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(AutoproxError, match=message) as err:
        load_bench(path)
    assert str(path) in str(err.value)


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "bench.csv"
    path.write_text("a,b\n")
    with pytest.raises(AutoproxError, match="unsupported benchmark file type '.csv'"):
        load_bench(path)


# --- subset, split, kfold ------------------------------------------------------------------


@needs_shared
def test_subset():
    b = load_bench("autoformer")
    s = b.subset([5, 2, 9])
    assert len(s) == 3 and s.archs == (b.archs[5], b.archs[2], b.archs[9])
    np.testing.assert_array_equal(s.accuracy("c100"), b.accuracy("c100")[[5, 2, 9]])
    mask = b.accuracy("c100") > np.median(b.accuracy("c100"))
    assert len(b.subset(mask)) == mask.sum() == 50


@pytest.mark.parametrize("fraction, n_test", [(0.5, 50), (0.2, 20), (0.01, 1), (0.999, 99)])
@needs_shared
def test_split_properties(fraction, n_test):
    b = load_bench("pit")
    train, test = b.split(fraction, seed=3)
    assert len(test) == n_test and len(train) == 100 - n_test
    assert np.issubdtype(train.dtype, np.integer) and np.issubdtype(test.dtype, np.integer)
    assert (np.diff(train) > 0).all() and (np.diff(test) > 0).all()
    np.testing.assert_array_equal(np.union1d(train, test), np.arange(100))


@needs_shared
def test_split_is_seeded():
    b = load_bench("pit")
    a, c = b.split(seed=7), b.split(seed=7)
    np.testing.assert_array_equal(a[0], c[0])
    assert not np.array_equal(a[1], b.split(seed=8)[1])
    with pytest.raises(AutoproxError, match="test_fraction"):
        b.split(1.0)
    with pytest.raises(AutoproxError, match="at least 2"):
        b.subset([0]).split()


@needs_shared
def test_kfold_properties_and_seed():
    b = load_bench("autoformer")
    folds = b.kfold(k=3, seed=1)
    assert [len(test) for _, test in folds] == [34, 33, 33]
    np.testing.assert_array_equal(np.sort(np.concatenate([t for _, t in folds])), np.arange(100))
    for train, test in folds:
        assert (np.diff(train) > 0).all() and (np.diff(test) > 0).all()
        assert np.intersect1d(train, test).size == 0 and len(train) + len(test) == 100
    again = b.kfold(k=3, seed=1)
    assert all(np.array_equal(t1, t2) for (_, t1), (_, t2) in zip(folds, again))
    assert not np.array_equal(folds[0][1], b.kfold(k=3, seed=2)[0][1])
    with pytest.raises(AutoproxError, match="k must be between 2"):
        b.kfold(k=1)


def test_benchmark_rejects_misaligned_fields():
    with pytest.raises(AutoproxError, match="shape"):
        Benchmark("x", "pit", ({"base_dim": 16},), {"c100_kd_acc": np.zeros(2)}, "here")


# --- fetching (file:// only, never the network) --------------------------------------------


@pytest.fixture
def served(tmp_path):
    """A folder with both origin files rebuilt from the JSON, its file:// URL and their sha256."""
    root = tmp_path / "served"
    root.mkdir()
    sums = {}
    for name, (filename, _) in bench.ORIGIN_FILES.items():
        torch.save(_records(name), root / filename)
        sums[name] = _sha256(root / filename)
    return root, root.as_uri(), sums


@needs_shared
def test_fetch_downloads_and_verifies(tmp_path, served):
    root, url, sums = served
    dest = tmp_path / "dest"
    paths = fetch_bench(base_url=url, dest=dest, checksums=sums)
    assert paths == [dest / "gt_autoformer.pth", dest / "gt_pit.pth"]
    assert sorted(p.name for p in dest.iterdir()) == ["gt_autoformer.pth", "gt_pit.pth"]
    assert all(_sha256(p) == sums[n] for n, p in zip(bench.BENCH_NAMES, paths))
    # not the published bytes, so loading them under the origin name is refused
    with pytest.raises(AutoproxError, match="does not match the published"):
        load_bench(paths[1])


@needs_shared
def test_fetch_defaults_to_cache_and_env_url(tmp_path, served, monkeypatch):
    root, url, sums = served
    monkeypatch.setenv("AUTOPROX_BENCH_URL", url)
    (path,) = fetch_bench("pit", checksums=sums)
    assert path == tmp_path / "cache" / "bench" / "gt_pit.pth" and path.is_file()


@needs_shared
def test_fetch_skips_present_files_unless_forced(tmp_path, served):
    root, url, sums = served
    dest = tmp_path / "dest"
    (path,) = fetch_bench(["pit"], base_url=url, dest=dest, checksums=sums)
    (root / "gt_pit.pth").unlink()  # a second download would now fail
    assert fetch_bench(["pit"], base_url=url, dest=dest, checksums=sums) == [path]
    with pytest.raises(AutoproxError, match="cannot download"):
        fetch_bench(["pit"], base_url=url, dest=dest, checksums=sums, force=True)
    assert [p.name for p in dest.iterdir()] == ["gt_pit.pth"]


@needs_shared
def test_fetch_wrong_checksum_leaves_nothing(tmp_path, served):
    root, url, sums = served
    dest = tmp_path / "dest"
    with pytest.raises(AutoproxError, match=r"gt_pit\.pth: sha256 .* does not match the expected 0000"):
        fetch_bench(["pit"], base_url=url, dest=dest, checksums={"pit": "0" * 64})
    assert list(dest.iterdir()) == []
    with pytest.raises(AutoproxError, match="does not match"):  # default: the published checksum
        fetch_bench(["autoformer"], base_url=url, dest=dest)
    assert list(dest.iterdir()) == []


@needs_shared
def test_fetch_errors(tmp_path, served):
    root, url, sums = served
    with pytest.raises(AutoproxError, match="unknown benchmark 'nb201'"):
        fetch_bench(["nb201"], base_url=url, dest=tmp_path / "dest")
    with pytest.raises(AutoproxError, match="cannot download"):
        fetch_bench(["pit"], base_url=(tmp_path / "nowhere").as_uri(), dest=tmp_path / "dest")
    assert list((tmp_path / "dest").iterdir()) == []
