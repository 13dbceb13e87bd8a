"""The proxy catalogue, cached pass scores, and scoring by name or saved file."""

import json
import math

import numpy as np
import pytest

from gp_proxy.errors import AutoproxError
from gp_proxy.library import KNOWN_PROXIES
from gp_proxy.store import SavedProxy, save_proxy
from vit_space.data.batches import BatchSpec
from vit_space.probe.cache import ProbeSpec, StatsCache, fill
from vit_space.probe.networks import batch_of, build_seeded
from vit_space.proxies import scores as px
from vit_space.proxies.zero_cost import PASS_PROXIES
from vit_space.spaces import get_space

ARCHS = [
    {"base_dim": 16, "mlp_ratio": 2, "depth": [1, 6, 6], "num_heads": [2, 2, 4]},
    {"base_dim": 24, "mlp_ratio": 4, "depth": [2, 4, 6], "num_heads": [2, 4, 8]},
    {"base_dim": 32, "mlp_ratio": 8, "depth": [3, 8, 2], "num_heads": [4, 4, 8]},
]
SPEC = ProbeSpec(BatchSpec("chaoyang", "skimage", 4, 0, 64), 8)


@pytest.fixture
def space():
    return get_space("pit")


def test_catalogue_holds_every_proxy_the_issue_names():
    expected = {
        "params",
        "flops",
        "grad_norm",
        "snip",
        "grasp",
        "fisher",
        "synflow",
        "logsynflow",
        "jacov",
        "naswot",
        "zen",
        "zico",
        "dss",
        "weight_l2",
        "ntk_cond",
        "autoprox_paper",
    }
    assert expected <= set(px.catalogue())
    assert all(kind in ("analytic", "program", "pass") and text for kind, text in px.catalogue().values())


def test_pass_scores_equal_a_direct_run_and_are_cached(space, tmp_path, monkeypatch):
    cache = StatsCache(tmp_path)
    names = ["synflow", "naswot", "zen"]
    scores, seconds = px.pass_scores(space, ARCHS, SPEC.batch, names, cache, progress=False)
    images, labels = batch_of(SPEC.batch)
    for i, arch in enumerate(ARCHS):
        for name in names:
            direct = PASS_PROXIES[name](build_seeded(space, arch, SPEC.batch), images, labels, SPEC.batch.seed)
            assert scores[name][i] == pytest.approx(direct, rel=1e-6)
            assert seconds[name][i] > 0
    monkeypatch.setitem(PASS_PROXIES, "synflow", lambda *a: pytest.fail("recomputed a cached score"))
    again, _ = px.pass_scores(space, ARCHS, SPEC.batch, ["synflow"], cache, compute_missing=False, progress=False)
    np.testing.assert_array_equal(again["synflow"], scores["synflow"])


def test_pass_scores_of_networks_built_ahead_are_the_same_bits(space, tmp_path, monkeypatch):
    names = ["synflow", "naswot"]
    inline, _ = px.pass_scores(space, ARCHS, SPEC.batch, names, StatsCache(tmp_path / "inline"), progress=False)
    real = px.built_ahead
    monkeypatch.setattr(px, "built_ahead", lambda build, items, ahead: real(build, items, ahead=True))  # as on a GPU
    ahead, _ = px.pass_scores(space, ARCHS, SPEC.batch, names, StatsCache(tmp_path / "ahead"), progress=False)
    for name in names:
        np.testing.assert_array_equal(ahead[name], inline[name])


def test_missing_scores_without_computing_say_how_to_get_them(space, tmp_path):
    with pytest.raises(AutoproxError, match="no cached grasp scores.*without --cached-only"):
        px.pass_scores(space, ARCHS[:1], SPEC.batch, ["grasp"], StatsCache(tmp_path), compute_missing=False)


def test_score_cache_merges_keeps_nan_and_refuses_corrupt_files(space, tmp_path):
    store = px.ScoreCache(StatsCache(tmp_path))
    key = store.key(space, space.validate(ARCHS[0]), SPEC.batch)
    store.save(key, {"scores": {"jacov": float("nan")}, "seconds": {"jacov": 0.5}})
    store.save(key, {"scores": {"zen": 1.5}, "seconds": {"zen": 0.25}})
    entry = store.load(key)
    assert math.isnan(entry["scores"]["jacov"]) and entry["scores"]["zen"] == 1.5
    assert json.loads(store.path(key).read_text())["scores"]["jacov"] is None
    store.path(key).write_text("{not json")
    with pytest.raises(AutoproxError, match="corrupt.*delete it"):
        store.load(key)
    other = store.key(space, space.validate(ARCHS[1]), SPEC.batch)
    store.path(key).write_text(json.dumps({"key": other, "scores": {}, "seconds": {}}))
    with pytest.raises(AutoproxError, match="another entry"):
        store.load(key)


def test_analytic_and_program_proxies_score_like_their_definitions(space, tmp_path):
    cache = StatsCache(tmp_path)
    params = px.proxy_scores("params", space, ARCHS, SPEC, cache, progress=False).values
    assert params.tolist() == [space.num_params(a, 4, 64) for a in ARCHS]
    flops = px.proxy_scores("flops", space, ARCHS, SPEC, cache, progress=False).values
    assert flops.tolist() == [space.macs(a, 4, 64) for a in ARCHS]
    snip = px.proxy_scores("snip", space, ARCHS, SPEC, cache, progress=False)
    saved = SavedProxy(
        KNOWN_PROXIES["snip"].expression,
        ["W", "gW", "X", "gX", "Y", "gY", "A"],
        ["all", "msa", "mlp", "ln_out", "qkv", "proj", "fc1", "fc2"],
        SPEC.as_dict(),
    )
    np.testing.assert_array_equal(px.proxy_scores(saved, space, ARCHS, SPEC, cache, progress=False).values, snip.values)
    assert np.isfinite(snip.values).all() and snip.seconds_per_arch > 0


def test_program_without_cached_statistics_says_how_to_fill_them(space, tmp_path):
    with pytest.raises(AutoproxError, match="no cached statistics.*autoprox stats"):
        px.proxy_scores("snip", space, ARCHS, SPEC, StatsCache(tmp_path), compute_missing=False)


def test_saved_proxy_uses_its_own_spec_and_needs_its_statistics(space, tmp_path):
    cache = StatsCache(tmp_path)
    synflow_spec = ProbeSpec(SPEC.batch, SPEC.sketch_size, ("data", "synflow"))
    fill(space, ARCHS, [synflow_spec], cache, progress=False)
    names = ["W", "gW", "sf.W", "sf.gW"]
    proxy = SavedProxy("agg_sum_all(l1(mul(sf.W, sf.gW)))", names, ["all"], synflow_spec.as_dict())
    scores = px.proxy_scores(proxy, space, ARCHS, SPEC, cache, compute_missing=False).values
    assert np.isfinite(scores).all() and len(set(scores.tolist())) == 3
    wrong = SavedProxy(proxy.expression, names, ["all"], SPEC.as_dict())
    with pytest.raises(AutoproxError, match=r"reads statistics \['sf.W', 'sf.gW'\]"):
        px.proxy_scores(wrong, space, ARCHS, SPEC, cache, compute_missing=False)
    incomplete = SavedProxy(proxy.expression, names, ["all"], {"source": "skimage"})
    with pytest.raises(AutoproxError, match="spec lacks 'batch_size'"):
        px.proxy_scores(incomplete, space, ARCHS, SPEC, cache)


def test_resolve_proxy_names_files_and_unknowns(tmp_path):
    assert px.resolve_proxy("grasp") == "grasp"
    path = save_proxy(tmp_path / "p.json", SavedProxy("agg_sum_all(fro(W))", ["W"], ["all"], SPEC.as_dict()))
    assert px.resolve_proxy(str(path)).expression == "agg_sum_all(fro(W))"
    with pytest.raises(AutoproxError, match="unknown proxy 'nope'; known: params, flops"):
        px.resolve_proxy("nope")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(AutoproxError, match="not a JSON proxy file"):
        px.resolve_proxy(str(tmp_path / "bad.json"))
