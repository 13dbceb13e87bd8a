import random

import pytest
import torch

from gp_proxy.errors import AutoproxError
from vit_space.bench.benchmark import Benchmark, load_bench


def bench(name: str) -> Benchmark:
    """ViT-Bench-101 by name ($AUTOPROX_BENCH_DIR or ../shared/vitbench101); skip the test without it."""
    try:
        return load_bench(name)
    except AutoproxError as e:
        pytest.skip(str(e))


def bench_archs(name: str) -> list[dict]:
    return list(bench(name).archs)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Every test gets its own user cache, no downloads, and one torch thread (the networks here are
    small: on a busy 2-core machine two threads made training steps 5 to 25 times slower)."""
    monkeypatch.setenv("AUTOPROX_CACHE", str(tmp_path / "user-cache"))
    monkeypatch.setenv("AUTOPROX_OFFLINE", "1")
    torch.set_num_threads(1)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(0)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes seconds to minutes; the fast set is `pytest -m 'not slow'`")
