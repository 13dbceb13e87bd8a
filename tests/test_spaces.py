import hashlib
import json
import random

import pytest
import torch
from conftest import bench_archs

from gp_proxy.errors import AutoproxError
from vit_space.spaces import AutoFormerSpace, PiTSpace, count_params, disable_fused_attention, get_space, measure_macs

SPACES = ["autoformer", "pit"]


@pytest.mark.parametrize("name", SPACES)
def test_benchmark_archs_build_with_exact_params_and_macs(name):
    space = get_space(name)
    archs = random.Random(1).sample(bench_archs(name), 6)
    for arch, classes in zip(archs, [100, 102, 4, 1000, 100, 4]):
        model = space.build(arch, num_classes=classes)
        assert count_params(model) == space.num_params(arch, classes)
        disable_fused_attention(model)
        assert measure_macs(model, 224) == space.macs(arch, classes)


def test_autoformer_with_deit_genes_is_deit_tiny():
    """AutoFormer with hidden 192, 12 layers, 3 heads, MLP ratio 4 is DeiT-Ti: same size and cost as timm's."""
    deit_genes = {"hidden_dim": 192, "depth": 12, "mlp_ratio": [4.0] * 12, "num_heads": [3] * 12}
    deit = get_space("timm:deit_tiny_patch16_224")
    assert (
        get_space("autoformer").num_params(deit_genes)
        == deit.num_params({"timm": "deit_tiny_patch16_224"})
        == 5_717_416
    )
    assert get_space("autoformer").macs(deit_genes) == deit.macs({"timm": "deit_tiny_patch16_224"})


def test_autoformer_params_by_hand():
    d, h, depth = 192, 672, 12  # mlp_ratio 3.5
    block = 4 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * h + h) + (h * d + d)
    embed = (3 * 16 * 16 * d + d) + d + 197 * d
    expected = embed + depth * block + 2 * d + (d * 1000 + 1000)
    smallest = {"hidden_dim": d, "depth": depth, "mlp_ratio": [3.5] * depth, "num_heads": [3] * depth}
    assert get_space("autoformer").num_params(smallest) == expected == 5_273_896


@pytest.mark.parametrize("name", SPACES)
def test_sample_mutate_crossover_are_seeded_and_valid(name):
    space = get_space(name)
    draw = lambda seed: [space.sample(random.Random(seed)) for _ in range(3)]  # noqa: E731
    assert draw(5) == draw(5)
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(40)]
    assert len({space.arch_hash(a) for a in archs}) > 30
    for a, b in zip(archs, archs[1:]):
        child = space.mutate(a, rng)
        assert child != space.validate(a) and space.validate(child) == child
        for c in space.crossover(a, b, rng):
            assert space.validate(c) == c
            for key, value in c.items():
                assert value in (a[key], b[key]) or key in ("mlp_ratio", "num_heads")


def test_crossover_mixes_per_layer_genes():
    space, rng = get_space("autoformer"), random.Random(3)
    a = {"hidden_dim": 192, "depth": 12, "mlp_ratio": [3.5] * 12, "num_heads": [3] * 12}
    b = {"hidden_dim": 240, "depth": 14, "mlp_ratio": [4.0] * 14, "num_heads": [4] * 14}
    c, d = space.crossover(a, b, rng)
    assert c["depth"] == 12 and d["depth"] == 14
    assert set(c["mlp_ratio"]) == {3.5, 4.0} and set(d["num_heads"]) == {3, 4}


def test_canonical_json_and_stable_hash():
    space = get_space("pit")
    arch = {"num_heads": [2, 4, 8], "depth": [2, 6, 4], "mlp_ratio": 4.0, "base_dim": 32}
    assert space.to_json(arch) == '{"base_dim":32,"depth":[2,6,4],"mlp_ratio":4,"num_heads":[2,4,8]}'
    assert space.arch_hash(arch) == space.arch_hash(json.loads(space.to_json(arch)))
    canonical = '{"base_dim":32,"depth":[2,6,4],"mlp_ratio":4,"num_heads":[2,4,8]}'
    assert space.arch_hash(arch) == hashlib.sha256(f"pit|{canonical}".encode()).hexdigest()[:16]
    assert space.arch_hash(arch) != get_space("pit").arch_hash({**arch, "base_dim": 40})


@pytest.mark.parametrize(
    "arch, message",
    [
        ([1, 2], "must be a JSON object"),
        ({"hidden_dim": 192, "depth": 12, "mlp_ratio": [4.0] * 12}, "missing fields ['num_heads']"),
        (
            {"hidden_dim": 192, "depth": 12, "mlp_ratio": [4.0] * 12, "num_heads": [3] * 12, "x": 1},
            "unknown fields ['x']",
        ),
        (
            {"hidden_dim": 200, "depth": 12, "mlp_ratio": [4.0] * 12, "num_heads": [3] * 12},
            "hidden_dim=200 is not allowed; allowed values: [192, 216, 240]",
        ),
        (
            {"hidden_dim": "192", "depth": 12, "mlp_ratio": [4.0] * 12, "num_heads": [3] * 12},
            "hidden_dim='192' has the wrong type",
        ),
        (
            {"hidden_dim": 192, "depth": 12, "mlp_ratio": [4.0] * 11, "num_heads": [3] * 12},
            "mlp_ratio has 11 entries but depth is 12",
        ),
        (
            {"hidden_dim": 192, "depth": 12, "mlp_ratio": [4.0] * 11 + [5.0], "num_heads": [3] * 12},
            "mlp_ratio[11]=5.0 is not allowed; allowed values: [3.5, 4.0]",
        ),
        (
            {"hidden_dim": 192, "depth": True, "mlp_ratio": [4.0] * 12, "num_heads": [3] * 12},
            "depth=True has the wrong type",
        ),
    ],
)
def test_autoformer_validation_errors(arch, message):
    with pytest.raises(AutoproxError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        AutoFormerSpace().validate(arch)


def test_pit_validation_errors():
    ok = {"base_dim": 16, "mlp_ratio": 4, "depth": [2, 6, 4], "num_heads": [2, 4, 8]}
    with pytest.raises(AutoproxError, match=r"depth=\[2, 6, 5\] is not allowed; allowed values: \[\[1, 6, 6\]"):
        PiTSpace().validate({**ok, "depth": [2, 6, 5]})
    with pytest.raises(AutoproxError, match="base_dim=17 is not allowed"):
        PiTSpace().validate({**ok, "base_dim": 17})
    assert PiTSpace().validate({**ok, "mlp_ratio": 4.0})["mlp_ratio"] == 4


def test_unknown_names():
    with pytest.raises(AutoproxError, match="unknown space 'vit'; known: autoformer, pit, af-tiny, pit-tiny .*timm:"):
        get_space("vit")
    with pytest.raises(AutoproxError, match="did you mean deit_tiny_patch16_224"):
        get_space("timm:deit_tiny_patch16_22")
    with pytest.raises(AutoproxError, match="at least one model name"):
        get_space("timm:")


def test_timm_space_builds_and_walks_its_names(rng):
    space = get_space("timm:deit_tiny_patch16_224,timm:pit_ti_224")
    assert space.mutate({"timm": "pit_ti_224"}, rng) == {"timm": "deit_tiny_patch16_224"}
    model = space.build({"timm": "pit_ti_224"}, num_classes=10, img_size=64)
    assert count_params(model) == space.num_params({"timm": "pit_ti_224"}, 10, 64)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 10)
    with pytest.raises(AutoproxError, match="timm arch must be"):
        space.validate({"name": "x"})
