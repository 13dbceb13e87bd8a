import random

import pytest
import torch
import torch.nn.functional as F
from conftest import bench_archs
from scipy.stats import kendalltau

from vit_space.data.batches import BatchSpec, make_batch
from vit_space.probe.fidelity import PROXIES, full_proxies, sketch_proxies
from vit_space.probe.hooks import probe
from vit_space.spaces import get_space


@pytest.mark.slow
def test_sketched_proxies_rank_30_autoformers_like_full_tensors():
    """snip, grad-norm and weight-L2 from 32x32 sketches vs full tensors: Kendall tau >= 0.95 (at 112
    pixels to keep the suite quick; benchmarks/sketch_fidelity.py measures 224)."""
    space = get_space("autoformer")
    archs = random.Random(0).sample(bench_archs("autoformer"), 30)
    images, labels = make_batch(BatchSpec("c100", batch_size=2, image_size=112))
    loss_fn = lambda logits: F.cross_entropy(logits, labels)  # noqa: E731
    sketched, full = {p: [] for p in PROXIES}, {p: [] for p in PROXIES}
    for arch in archs:
        torch.manual_seed(space.seeded_init(arch, 0))
        model = space.build(arch, num_classes=100, img_size=112)
        s, f = sketch_proxies(probe(model, images, loss_fn, size=32, seed=0)), full_proxies(model, images, loss_fn)
        for p in PROXIES:
            sketched[p].append(s[p])
            full[p].append(f[p])
    for p in PROXIES:
        tau = kendalltau(sketched[p], full[p]).statistic
        assert tau >= 0.95, f"{p}: tau {tau:.3f}"
    # norms of a single statistic are exact (sketches keep the tensor's RMS); SNIP is a real estimate
    assert sketched["grad_norm"] == pytest.approx(full["grad_norm"], rel=1e-5)
    assert sketched["weight_l2"] == pytest.approx(full["weight_l2"], rel=1e-5)
    assert sketched["snip"] != pytest.approx(full["snip"], rel=1e-3)
