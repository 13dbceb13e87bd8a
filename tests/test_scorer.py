"""The exported Python proxy's standalone `score(model, images, labels)`: autoprox's scores, without autoprox.

A small run of `experiments/scorer_check.py` (whose full run, 20 ViT-Bench-101 networks and 5 timm
models at 224 px, is `results/scorer_check.md`).
"""

import importlib.util
import random
import sys
from pathlib import Path

import pytest
import torch

from gp_proxy.errors import AutoproxError
from vit_space.probe.cache import StatsCache
from vit_space.spaces import get_space

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from scorer_check import PROXIES, autoprox_scores, exported_proxies, fresh_scores  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exported")
    return (folder, *exported_proxies(folder, batch=4))


def test_the_exported_file_scores_networks_as_autoprox_does_without_importing_it(exported):
    folder, proxies, files = exported
    for module in files.values():
        source = module.read_text()
        assert "import gp_proxy" not in source and "from vit_space" not in source and "def score(" in source
    archs = [get_space("autoformer").sample(random.Random(s)) for s in range(3)]
    timm = ["deit_tiny_patch16_224", "pit_ti_224"]
    targets = [
        ("main", "autoformer", archs, 32, 4),
        ("main", f"timm:{','.join(timm)}", [{"timm": name} for name in timm], 64, 4),
        ("others", "autoformer", archs[:2], 32, 4),
    ]
    scores = fresh_scores(files, targets)
    assert set(PROXIES) == {t[0] for t in targets}  # every exportable condition is read
    for target in targets:
        expected = autoprox_scores(proxies[target[0]], target, StatsCache(folder / "cache"))
        assert scores[f"{target[0]} {target[1]}"] == pytest.approx(list(expected), rel=1e-6), target[:2]


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_the_exported_scorer_refuses_a_model_without_transformer_blocks(exported):
    loaded = load(exported[2]["main"], "exported_refusal")
    with pytest.raises(loaded.AutoproxError, match="has no transformer blocks with attn.qkv"):
        loaded.score(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)), torch.randn(4, 3, 2, 2))
    assert not issubclass(loaded.AutoproxError, AutoproxError)  # its own error class: no autoprox inside


def test_the_exported_scorer_reads_other_module_names_through_units(exported):
    from renamed import NEOX, NEOX_UNITS, TIMM, PatchTransformer

    loaded = load(exported[2]["main"], "exported_units")
    images = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    expected = loaded.score(PatchTransformer(TIMM), images)
    assert loaded.score(PatchTransformer(NEOX), images, units=NEOX_UNITS) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(loaded.AutoproxError, match="units= maps other module names"):
        loaded.score(PatchTransformer(NEOX), images)


def test_an_exported_file_edited_by_hand_refuses_to_load(exported, tmp_path):
    _, _, files = exported
    text = files["main"].read_text()
    assert text.startswith("# sha256 of the rest of this file, written by autoprox: ")
    edited = tmp_path / "edited.py"
    edited.write_text(text.replace("PROBE = json.loads(", "PROBE = json.loads(  "))
    with pytest.raises(ImportError, match="was edited after autoprox exported it"):
        load(edited, "exported_edited")


def test_the_random_search_example_runs_on_an_exported_file_alone(exported):
    import subprocess

    example = Path(__file__).resolve().parents[1] / "experiments" / "random_search_timm.py"
    blocked = "import runpy, sys; sys.modules['gp_proxy'] = sys.modules['vit_space'] = None; sys.argv = sys.argv[1:]; "
    run = subprocess.run(  # the example as __main__, in an interpreter that cannot import autoprox
        [sys.executable, "-c", blocked + f"runpy.run_path({str(example)!r}, run_name='__main__')", str(example)]
        + [str(exported[2]["main"]), "--trials", "3", "--image-size", "32"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) >= 2 and lines[-1].startswith("best: {'depth'") and "parameters, score" in lines[-1]
