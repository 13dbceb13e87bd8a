import random

import pytest
from conftest import bench_archs
from scipy.stats import kendalltau

from vit_space.data.batches import BatchSpec
from vit_space.probe.fidelity import PROXIES, both_ways
from vit_space.spaces import get_space


@pytest.mark.slow
def test_sketched_proxies_rank_30_autoformers_like_full_tensors():
    """snip, grad-norm and weight-L2 from 32x32 sketches vs full tensors: Kendall tau >= 0.95 (at 112
    pixels to keep the suite quick; benchmarks/sketch_fidelity.py measures 224)."""
    archs = random.Random(0).sample(bench_archs("autoformer"), 30)
    full, by_size = both_ways(get_space("autoformer"), archs, BatchSpec("c100", batch_size=2, image_size=112), [32])
    sketched = by_size[32]
    for p in PROXIES:
        tau = kendalltau(sketched[p], full[p]).statistic
        assert tau >= 0.95, f"{p}: tau {tau:.3f}"
    # norms of a single statistic are exact (sketches keep the tensor's RMS); SNIP is a real estimate
    assert sketched["grad_norm"] == pytest.approx(full["grad_norm"], rel=1e-5)
    assert sketched["weight_l2"] == pytest.approx(full["weight_l2"], rel=1e-5)
    assert sketched["snip"] != pytest.approx(full["snip"], rel=1e-3)
