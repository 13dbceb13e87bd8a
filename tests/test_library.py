import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gp_proxy.errors import AutoproxError
from gp_proxy.library import KNOWN_PROXIES, known_proxy
from gp_proxy.primitives import build_pset
from gp_proxy.program import Evaluator, parse
from gp_proxy.stats import stack
from vit_space.probe.fidelity import sketch_proxies
from vit_space.probe.hooks import GROUPS, KINDS, probe
from vit_space.spaces import get_space

ARCHS = [
    {"base_dim": 16, "mlp_ratio": 2, "depth": [1, 6, 6], "num_heads": [2, 2, 4]},
    {"base_dim": 24, "mlp_ratio": 4, "depth": [2, 4, 6], "num_heads": [2, 4, 8]},
    {"base_dim": 32, "mlp_ratio": 8, "depth": [3, 8, 2], "num_heads": [4, 4, 8]},
]


@pytest.fixture(scope="module")
def probed():
    space, images, labels = get_space("pit"), torch.randn(2, 3, 64, 64), torch.tensor([1, 2])
    stats, models = [], []
    for arch in ARCHS:
        torch.manual_seed(0)
        model = space.build(arch, num_classes=10, img_size=64)
        stats.append(probe(model, images, lambda logits: F.cross_entropy(logits, labels), size=8, seed=0))
        models.append(model)
    return stats, models


def score(name: str, stats) -> np.ndarray:
    pset = build_pset(list(KINDS), ["all", *GROUPS])
    return Evaluator(stack(stats))(parse(known_proxy(name).expression, pset))


def test_every_known_proxy_parses_and_scores_real_vits(probed):
    stats, _ = probed
    for name in KNOWN_PROXIES:
        scores = score(name, stats)
        assert np.isfinite(scores).all() and np.ptp(scores) > 0, name


def test_programs_equal_the_direct_computations(probed):
    stats, models = probed
    for name in ("snip", "grad_norm", "weight_l2"):
        np.testing.assert_allclose(score(name, stats), [sketch_proxies(s)[name] for s in stats], rtol=1e-4)
    linear_params = [
        sum(
            lin.weight.numel()
            for b in m.modules()
            if hasattr(b, "mlp") and hasattr(b, "attn")
            for lin in (b.attn.qkv, b.attn.proj, b.mlp.fc1, b.mlp.fc2)
        )
        for m in models
    ]
    np.testing.assert_allclose(score("linear_params", stats), linear_params, rtol=1e-6)
    # PiT: stage width = base_dim x heads, so depth x width = sum over stages of depth x base_dim x heads
    depth_width = [sum(d * a["base_dim"] * h for d, h in zip(a["depth"], a["num_heads"])) for a in ARCHS]
    np.testing.assert_allclose(score("depth_width", stats), np.sqrt(3) * np.array(depth_width), rtol=1e-5)


def test_paper_proxy_reads_layernorm_outputs_only(probed):
    stats, _ = probed
    s = stats[0]
    keep = s.groups["ln_out"]
    x, gx = s.tensors["X"][keep].double(), s.tensors["gX"][keep].double()
    x_mm = (x - x.amin((1, 2), keepdim=True)) / (x.amax((1, 2), keepdim=True) - x.amin((1, 2), keepdim=True) + 1e-12)
    fro = (x_mm.square().mean((1, 2)) * s.numel["X"][keep]).sqrt()
    total = torch.sigmoid(gx).sqrt().mean((1, 2)) * s.numel["gX"][keep]
    np.testing.assert_allclose(score("autoprox_paper", stats)[0], float((fro + total).mean()), rtol=1e-4)


def test_unknown_proxy_lists_the_known_ones():
    with pytest.raises(AutoproxError, match="unknown proxy 'zen'; known: autoprox_paper, snip"):
        known_proxy("zen")
