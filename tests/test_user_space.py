"""A user's own space by `package.module:ClassName`: the example DeiT-III space, probed, scored and searched."""

import json
import random
import re
import sys
import textwrap
from pathlib import Path

import pytest

from gp_proxy.errors import AutoproxError
from vit_space.cli import main
from vit_space.data.batches import BatchSpec
from vit_space.probe.cache import ProbeSpec, StatsCache
from vit_space.search.budget import Budget
from vit_space.search.scoring import score_archs
from vit_space.search.searchers import SearchConfig, search
from vit_space.spaces import UserSpace, get_space

EXPERIMENTS = str(Path(__file__).resolve().parents[1] / "experiments")
SPEC = ProbeSpec(BatchSpec("c100", "skimage", 4, 0, 32))  # 32 px: 4 tokens, a quick probe


@pytest.fixture
def deit3(monkeypatch):
    monkeypatch.syspath_prepend(EXPERIMENTS)
    return get_space("deit3_space:DeiT3Space")


def test_a_user_space_is_probed_scored_and_searched(deit3, tmp_path):
    assert isinstance(deit3, UserSpace) and deit3.name == "deit3_space:DeiT3Space"
    archs = [deit3.sample(random.Random(s)) for s in range(4)]
    assert len({deit3.arch_hash(a) for a in archs}) == 4
    table = score_archs("snip", deit3, archs, SPEC, StatsCache(tmp_path / "cache"), Budget(), progress=False)
    assert len(table.rows) == 4 and [r.rank for r in table.rows] == [1, 2, 3, 4]
    assert table.rows[0].params == deit3.num_params(deit3.validate(json.loads(table.rows[0].arch)), 1000, 224)
    state = search(
        deit3, ["snip"], Budget(), SPEC, StatsCache(tmp_path / "cache"), SearchConfig(count=6, population=3, parents=2),
        tmp_path / "search", progress=False,
    )  # fmt: skip
    assert len(state.evaluated) == 6 and (tmp_path / "search" / "best_arch.json").is_file()


def test_bad_user_spaces_are_one_line_naming_what_is_wrong(monkeypatch, tmp_path, capsys):
    (tmp_path / "half_space.py").write_text(textwrap.dedent("""
        class HalfSpace:
            def sample(self, rng): return {}
            def validate(self, arch): return arch
    """))  # fmt: skip
    (tmp_path / "broken_space.py").write_text("raise RuntimeError('no GPU here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(AutoproxError, match=r"class HalfSpace lacks mutate, crossover, build, num_params, macs of"):
        get_space("half_space:HalfSpace")
    with pytest.raises(AutoproxError, match=r"module 'broken_space' does not import \(RuntimeError: no GPU here\)"):
        get_space("broken_space:Any")
    with pytest.raises(AutoproxError, match=r"module 'half_space' has no class 'Whole'"):
        get_space("half_space:Whole")
    code = main(["score", "snip", "--space", "no_such_module:Space", "--sample", "2"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "does not import" in err
    assert "no_such_module" not in sys.modules


TINY_SPACE = '''
from vit_space.spaces import get_space

AF_TINY = get_space("af-tiny")


class TinySpace:
    """af-tiny's architectures and networks, as a user's own space would give them."""

    in_chans, img_size = AF_TINY.in_chans, AF_TINY.img_size

    def validate(self, arch): return AF_TINY.validate(arch)
    def sample(self, rng): return AF_TINY.sample(rng)
    def mutate(self, arch, rng, prob=0.2): return AF_TINY.mutate(arch, rng, prob)
    def crossover(self, a, b, rng): return AF_TINY.crossover(a, b, rng)
    def build(self, arch, num_classes=1000, img_size=None): return AF_TINY.build(arch, num_classes, img_size)
    def num_params(self, arch, num_classes=1000, img_size=None): return AF_TINY.num_params(arch, num_classes, img_size)
    def macs(self, arch, num_classes=1000, img_size=None): return AF_TINY.macs(arch, num_classes, img_size)
'''


def test_a_benchmark_of_a_user_space_is_built_and_ranked(monkeypatch, tmp_path, capsys):
    (tmp_path / "tiny_user_space.py").write_text(TINY_SPACE)
    monkeypatch.syspath_prepend(str(tmp_path))
    out, cache = tmp_path / "bench.json", str(tmp_path / "cache")
    build = ["bench", "build", "--space", "tiny_user_space:TinySpace", "--dataset", "digits", "--archs", "4"]
    assert main([*build, "--seeds", "1", "--steps", "5", "--test-size", "50", "--out", str(out), "--quiet"]) == 0
    assert "4 architectures; fields: digits_base_acc" in capsys.readouterr().out
    assert json.loads(out.read_text())["space"] == "tiny_user_space:TinySpace"
    assert main(["rank", "--bench", str(out), "--proxy", "snip,params", "--holdout", "0", "--cache", cache]) == 0
    printed = capsys.readouterr().out  # each proxy's Kendall tau over the 4 networks (probed for snip)
    for proxy in ("snip", "params"):
        assert re.search(rf"^{proxy}\s+\S+\s+all\s+digits_base_acc\s+-?[01]\.\d{{3}}\s+\S+\s+\S+\s+4\s", printed, re.M)
