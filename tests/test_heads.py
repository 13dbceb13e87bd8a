import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from gp_proxy.errors import AutoproxError
from vit_space.data.batches import BatchSpec
from vit_space.probe.cache import ProbeSpec, StatsCache, fill, load_bundle
from vit_space.probe.conditions import latex_names
from vit_space.probe.heads import head_statistics, probe_heads, spectral_norm
from vit_space.probe.hooks import find_blocks
from vit_space.probe.sketch import sketch
from vit_space.spaces import get_space

ARCH = {"hidden_dim": 192, "depth": 12, "mlp_ratio": [3.5, 4.0] * 6, "num_heads": [3, 4] * 6}


def test_head_statistics_of_uniform_identity_and_mixed_heads():
    n = 5
    uniform, identity = torch.full((n, n), 1 / n), torch.eye(n)
    stats = head_statistics(torch.stack([uniform, identity, identity])[None])  # (1, 3 heads, 5, 5)
    assert stats["Ae"].shape == (3, n) and stats["Ar"].shape == (3, 1) and stats["Ah"].shape == (3, 3)
    assert torch.allclose(stats["Ae"][0], torch.ones(n))  # uniform rows: entropy log n, normalised to 1
    assert torch.allclose(stats["Ae"][1:], torch.zeros(2, n), atol=1e-6)  # one-hot rows: entropy 0
    assert stats["Ar"][0, 0] == pytest.approx(1 / n)  # rank one: ||U||_F^2 = ||U||_2^2 = 1
    assert stats["Ar"][1, 0] == pytest.approx(1.0)  # identity: ||I||_F^2 = n, ||I||_2 = 1
    assert stats["Ah"][1, 2] == pytest.approx(1.0) and stats["Ah"][0, 0] == pytest.approx(1.0)
    assert stats["Ah"][0, 1] == pytest.approx(1 / math.sqrt(n))  # trace(U) / (||U||_F ||I||_F) = 1 / sqrt n


def test_spectral_norm_matches_the_svd_on_peaked_and_flat_attention():
    g = torch.Generator().manual_seed(0)
    for temperature in (0.1, 5.0):
        maps = (temperature * torch.randn(4, 3, 40, 40, generator=g)).softmax(-1)
        exact = torch.linalg.matrix_norm(maps.double(), ord=2)
        assert torch.allclose(spectral_norm(maps).double(), exact, rtol=1e-4)


@pytest.fixture
def vit_and_images():
    torch.manual_seed(0)
    model = get_space("autoformer").build(ARCH, num_classes=10, img_size=32).train()
    return model, torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_probe_heads_reads_the_attention_of_each_block(vit_and_images):
    model, images = vit_and_images
    block = find_blocks(model)[1].module
    inputs = {}
    handle = block.register_forward_pre_hook(lambda module, args: inputs.setdefault("x", args[0]))
    stats = probe_heads(model, images, size=8, seed=3)
    handle.remove()
    attn = block.attn  # block 1's probabilities by hand, from its input: 4 heads
    qkv = attn.qkv(block.norm1(inputs["x"])).reshape(2, -1, 3, 4, attn.head_dim).permute(2, 0, 3, 1, 4)
    probs = ((qkv[0] * attn.scale) @ qkv[1].mT).softmax(-1)
    for kind, full in head_statistics(probs).items():
        for unit in (4, 5):  # block 1's qkv and proj units
            assert torch.allclose(stats.tensors[kind][unit], sketch(full, 8, 3), rtol=1e-4, atol=1e-6), kind
            assert stats.numel[kind][unit] == full.numel()
    assert stats.numel["Ah"][:8].tolist() == [9, 9, 0, 0, 16, 16, 0, 0]  # 3 then 4 heads; MLP units have none
    assert not any(p.grad is not None for p in model.parameters())  # forward only


def test_probe_heads_restores_fused_attention_and_refuses_attention_without_attn_drop(vit_and_images):
    model, images = vit_and_images
    fused = [b.attn.fused_attn for b in find_blocks(model)]
    probe_heads(model, images, size=8)
    assert [b.attn.fused_attn for b in find_blocks(model)] == fused
    find_blocks(model)[0].attn.attn_drop = None
    with pytest.raises(AutoproxError, match="no attn_drop module"):
        probe_heads(model, images, size=8)
    find_blocks(model)[0].attn.attn_drop = nn.Identity()
    find_blocks(model)[0].attn.forward = lambda x, *args, **kwargs: x  # attention that never reaches attn_drop
    with pytest.raises(AutoproxError, match=r"no attention probabilities in blocks \[0\]"):
        probe_heads(model, images, size=8)


def test_heads_statistics_reach_programs_through_the_cache(tmp_path):
    from gp_proxy import Evaluator, build_pset, parse

    space = get_space("af-tiny")
    spec = ProbeSpec(BatchSpec("digits", image_size=None), conditions=("data", "heads"))
    archs = [space.sample(random.Random(s)) for s in range(4)]
    fill(space, archs, [spec], StatsCache(tmp_path), progress=False)
    bundle = load_bundle(space, archs, spec, StatsCache(tmp_path))
    assert {"W", "h.Ae", "h.Ar", "h.Ah"} <= set(bundle.names)
    assert torch.equal(bundle.mask["h.Ae"], bundle.mask["W"] & bundle.groups["msa"])  # attention units only
    pset = build_pset(bundle.names, sorted(bundle.groups))
    entropy = Evaluator(bundle)(parse("agg_mean_msa(mean(h.Ae))", pset))
    assert entropy.shape == (4,) and ((entropy > 0.5) & (entropy <= 1.0 + 1e-6)).all()  # near-uniform at init
    assert np.isnan(Evaluator(bundle)(parse("agg_mean_mlp(mean(h.Ae))", pset))).all()
    assert latex_names(["h.Ae"]) == {"h.Ae": r"\mathcal{H}_A^{\text{h}}"}
