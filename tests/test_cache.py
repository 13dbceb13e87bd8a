import threading

import pytest
import torch
from conftest import bench_archs

from gp_proxy.errors import AutoproxError
from vit_space.data.batches import BatchSpec
from vit_space.probe import cache as cache_mod
from vit_space.probe.cache import ProbeSpec, StatsCache, fill, load_bundle
from vit_space.probe.networks import built_ahead
from vit_space.spaces import get_space

SPEC = ProbeSpec(BatchSpec("c100", batch_size=2, image_size=64), sketch_size=8, conditions=("data", "synflow"))


@pytest.fixture
def setup(tmp_path):
    return get_space("pit"), bench_archs("pit")[:3], StatsCache(tmp_path / "stats")


def test_fill_skips_cached_entries_and_loads_a_stacked_bundle(setup):
    space, archs, cache = setup
    first = fill(space, archs, [SPEC], cache, progress=False)
    again = fill(space, archs, [SPEC], cache, progress=False)
    assert (first.computed, first.cached, again.computed, again.cached) == (3, 0, 0, 3)
    assert len(list(cache.root.rglob("*.pt"))) == 6  # one file per arch and condition
    bundle = load_bundle(space, archs, SPEC, cache)
    units = [4 * sum(a["depth"]) for a in archs]
    assert bundle.tensors["X"].shape == (3, max(units), 8, 8)
    assert bundle.groups["all"].sum(1).tolist() == units
    assert "sf.gW" in bundle.names and (bundle.tensors["sf.W"] >= 0).all()
    assert bundle.ids == tuple(space.arch_hash(a) for a in archs)
    fresh = cache_mod.probe_arch(space, archs[1], SPEC)["data"]
    assert torch.equal(bundle.tensors["gX"][1, : units[1]], fresh.tensors["gX"])


def test_missing_entries_name_the_command(setup):
    space, archs, cache = setup
    fill(space, archs[:2], [SPEC], cache, progress=False)
    with pytest.raises(AutoproxError, match=r"1 of 3 pit architectures have no cached statistics.*autoprox stats"):
        load_bundle(space, archs, SPEC, cache)
    with pytest.raises(AutoproxError, match="benchmark is empty"):
        load_bundle(space, [], SPEC, cache)


def test_corrupt_and_mismatched_files_are_refused(setup):
    space, archs, cache = setup
    fill(space, archs[:2], [SPEC], cache, progress=False)
    key0, key1 = (SPEC.key(space, a, "data") for a in archs[:2])
    cache.path(key0).write_bytes(cache.path(key1).read_bytes())
    with pytest.raises(AutoproxError, match="holds another entry"):
        cache.load(key0)
    cache.path(key1).write_bytes(b"not a torch file")
    with pytest.raises(AutoproxError, match=f"cache file {cache.path(key1)} is corrupt"):
        cache.load(key1)
    with pytest.raises(AutoproxError, match="holds another entry|is corrupt"):
        fill(space, archs[:2], [SPEC], cache, progress=False)


def test_nan_statistics_are_refused(setup):
    space, archs, cache = setup
    fill(space, archs[:1], [SPEC], cache, progress=False)
    key = SPEC.key(space, archs[0], "data")
    payload = torch.load(cache.path(key), weights_only=True)
    payload["tensors"]["gX"][0, 0, 0] = float("nan")
    torch.save(payload, cache.path(key))
    with pytest.raises(AutoproxError, match="'gX' holds NaN or inf"):
        cache.load(key)


def test_interrupted_fill_keeps_finished_entries_and_resumes(setup, monkeypatch):
    space, archs, cache = setup
    real_save, calls = StatsCache.save, []

    def save_then_interrupt(self, key, stats):
        if len(calls) == 2:  # the first arch's two conditions are saved, then Ctrl-C
            raise KeyboardInterrupt
        calls.append(key)
        return real_save(self, key, stats)

    monkeypatch.setattr(StatsCache, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        fill(space, archs, [SPEC], cache, progress=False)
    monkeypatch.setattr(StatsCache, "save", real_save)
    assert len(list(cache.root.rglob("*.pt"))) == 2 and not list(cache.root.rglob("*.part"))
    resumed = fill(space, archs, [SPEC], cache, progress=False)
    assert (resumed.computed, resumed.cached) == (2, 1)


def test_networks_built_ahead_give_the_same_bytes_as_built_in_line(tmp_path):
    space, archs = get_space("pit"), bench_archs("pit")[:3]
    spec = ProbeSpec(SPEC.batch, sketch_size=8, conditions=("data", "init2"))  # init2 builds in the probe too
    for ahead in (False, True):
        assert fill(space, archs, [spec], StatsCache(tmp_path / str(ahead)), False, ahead=ahead).computed == 3
    inline = sorted((tmp_path / "False").rglob("*.pt"))
    assert len(inline) == 6
    for path in inline:
        assert (tmp_path / "True" / path.relative_to(tmp_path / "False")).read_bytes() == path.read_bytes()


def test_built_ahead_keeps_order_builds_one_ahead_and_passes_errors_on():
    used, built = [], []

    def build(item):
        built.append((item, len(used), threading.current_thread().name))
        if item == 3:
            raise AutoproxError("no such network")
        return torch.nn.Linear(item, 1)

    models = built_ahead(build, [1, 2, 3, 4], ahead=True)
    used.append(next(models).in_features)
    used.append(next(models).in_features)
    with pytest.raises(AutoproxError, match="no such network"):
        next(models)
    assert used == [1, 2] and [b[0] for b in built] == [1, 2, 3]  # nothing is built after a failure
    assert all(in_use >= item - 2 for item, in_use, _ in built)  # never more than one network ahead
    assert all(thread.startswith("build") for *_, thread in built)
    assert [m.in_features for m in built_ahead(build, [2, 1], ahead=False)] == [2, 1]
    assert built[-1][2] == threading.current_thread().name


def test_failed_write_leaves_the_old_file_intact(setup, monkeypatch):
    space, archs, cache = setup
    fill(space, archs[:1], [SPEC], cache, progress=False)
    key = SPEC.key(space, archs[0], "data")
    before = cache.path(key).read_bytes()

    def broken_save(obj, f):
        f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(AutoproxError, match=rf"^cannot write into the cache folder {cache.root} \(disk full\); pass"):
        cache.save(key, cache.load(key))
    assert cache.path(key).read_bytes() == before
    assert not list(cache.root.rglob("*.part"))


def test_keys_separate_everything_that_changes_the_numbers():
    space, arch = get_space("pit"), bench_archs("pit")[0]
    keys = {
        cache_mod.digest(spec.key(space, arch, "data"))
        for spec in [
            SPEC,
            ProbeSpec(BatchSpec("c100", batch_size=4, image_size=64), 8),
            ProbeSpec(BatchSpec("c100", batch_size=2, image_size=64, seed=1), 8),
            ProbeSpec(BatchSpec("c100", "noise", batch_size=2, image_size=64), 8),
            ProbeSpec(BatchSpec("flowers", batch_size=2, image_size=64), 8),
            ProbeSpec(BatchSpec("c100", batch_size=2, image_size=64), 16),
        ]
    }
    assert len(keys) == 6


def test_unfused_attention_has_entries_of_its_own_and_the_default_keeps_its_file_names(setup, monkeypatch):
    from vit_space.proxies.scores import ScoreCache

    space, archs, cache = setup
    fused = fill(space, archs, [SPEC], cache, progress=False)
    data_key, heads_key = SPEC.key(space, archs[0], "data"), SPEC.key(space, archs[0], "heads")
    score_key = ScoreCache.key(space, archs[0], SPEC.for_space(space).batch)
    assert "attention" not in data_key and "attention" not in score_key  # files written before keep their names
    monkeypatch.setattr("timm.layers.config._USE_FUSED_ATTN", 0)  # as TIMM_FUSED_ATTN=0 does at import
    assert SPEC.key(space, archs[0], "data") == data_key | {"attention": "unfused"}
    assert SPEC.key(space, archs[0], "heads") == heads_key  # the heads condition runs unfused either way
    assert ScoreCache.key(space, archs[0], SPEC.for_space(space).batch) == score_key | {"attention": "unfused"}
    monkeypatch.setattr("timm.layers.config._USE_FUSED_ATTN", 2)  # timm's experimental level: Swin, XCiT fused too
    assert SPEC.key(space, archs[0], "data") == data_key | {"attention": "fused+experimental"}
    with pytest.raises(AutoproxError, match=r"no cached statistics .* with timm's fused\+experimental attention"):
        load_bundle(space, archs, SPEC, cache)
    monkeypatch.setattr("timm.layers.config._USE_FUSED_ATTN", 0)
    unfused = fill(space, archs, [SPEC], cache, progress=False)
    assert (fused.computed, unfused.computed, unfused.cached) == (3, 3, 0)
    assert len(list(cache.root.rglob("*.pt"))) == 12
    a = load_bundle(space, archs, SPEC, cache)
    monkeypatch.setattr("timm.layers.config._USE_FUSED_ATTN", 1)
    b = load_bundle(space, archs, SPEC, cache)
    for name in ("X", "Y", "gX", "A"):  # the same statistics up to float rounding
        torch.testing.assert_close(a.tensors[name], b.tensors[name], rtol=1e-4, atol=1e-6)
    assert not torch.equal(a.tensors["X"], b.tensors["X"])  # but not to the bit: why the keys differ
