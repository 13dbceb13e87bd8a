import json
import random
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "vitbench101"


def bench_archs(name: str) -> list[dict]:
    """Architectures of the shared ViT-Bench-101 file (the test is skipped without it)."""
    path = SHARED / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    return [r["arch"] for r in json.loads(path.read_text())["records"]]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Every test gets its own user cache and two torch threads."""
    monkeypatch.setenv("AUTOPROX_CACHE", str(tmp_path / "user-cache"))
    torch.set_num_threads(2)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(0)
